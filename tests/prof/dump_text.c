/*
 * dump_text.c: an LD_PRELOAD shim that, at exit, writes obmem's heap
 * profile in its text format (obm_prof_dump with OBM_PROF_TEXT) to the
 * file $DUMP_TEXT_OUT, for a program that knows nothing of obmem.
 * tests/prof/run.sh reads its header, which counts the stacks libgcc's
 * unwinder walked: the check that the profiler's default unwinder leaves
 * libgcc only the stacks it cannot walk itself.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>

__attribute__((destructor)) static void dump(void)
{
    const char *path = getenv("DUMP_TEXT_OUT");
    int (*prof_dump)(const char *, int) =
        (int (*)(const char *, int))dlsym(RTLD_DEFAULT, "obm_prof_dump");
    if (path && prof_dump)
        prof_dump(path, 1 /* OBM_PROF_TEXT */);
}
