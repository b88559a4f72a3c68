/*
 * count_unwind.c: an LD_PRELOAD shim that counts the calls of libgcc's
 * _Unwind_Backtrace (forwarding each) and writes the count to the file
 * $COUNT_UNWIND_OUT at exit. tests/prof/run.sh uses it to check that the
 * heap profiler's default unwinder leaves libgcc only the stacks it cannot
 * walk itself.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef int (*trace_fn)(void *, void *);
typedef int (*backtrace_fn)(trace_fn, void *);

static backtrace_fn real;
static long calls;

__attribute__((constructor)) static void init(void)
{
    real = (backtrace_fn)dlsym(RTLD_NEXT, "_Unwind_Backtrace");
}

int _Unwind_Backtrace(trace_fn trace, void *arg)
{
    __atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED);
    return real ? real(trace, arg) : 5; /* _URC_END_OF_STACK */
}

__attribute__((destructor)) static void report(void)
{
    const char *path = getenv("COUNT_UNWIND_OUT");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (f) {
        fprintf(f, "%ld\n", calls);
        fclose(f);
    }
}
