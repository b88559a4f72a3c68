/*
 * unwind.c: allocations from stacks of many shapes, for comparing the heap
 * profiler's unwinders (tests/prof/run.sh runs it under OBMEM_PROF=1, where
 * every allocation is sampled, once with the default unwinder and once
 * with OBMEM_PROF_UNWIND=libgcc, and compares the sets of stacks): frames
 * with and without a frame pointer, variable-sized frames (alloca), a
 * realigned frame, recursion deeper than the profile keeps, calls through
 * the C library (qsort's comparator), a signal handler (whose frame the
 * default unwinder leaves to libgcc) and another thread. Each allocation
 * stays live, so that the dump at exit shows its stack. Knows nothing of
 * obmem.
 */
#define _GNU_SOURCE
#include <alloca.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *kept[4096];
static int nkept;

__attribute__((noinline)) void leaf_alloc(size_t n)
{
    void *p = malloc(n);
    if (!p || nkept == 4096)
        abort();
    memset(p, 1, n);
    kept[nkept++] = p;
}

__attribute__((noinline)) void rec(int depth)
{
    if (depth == 0)
        leaf_alloc(64);
    else
        rec(depth - 1);
    __asm__ volatile("" ::: "memory"); /* not a tail call */
}

__attribute__((noinline)) void with_alloca(size_t n)
{
    char *buf = alloca(n);
    memset(buf, 2, n);
    leaf_alloc(n + (size_t)buf[n / 2]);
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void realigned(void)
{
    _Alignas(64) volatile char v[64];
    v[0] = 1;
    leaf_alloc(100 + v[0]);
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) int compare(const void *a, const void *b)
{
    leaf_alloc(32);
    return *(const int *)a - *(const int *)b;
}

__attribute__((noinline)) void sort_some(void)
{
    int v[8] = {5, 3, 8, 1, 9, 2, 7, 4};
    qsort(v, 8, sizeof v[0], compare);
}

__attribute__((noinline)) void on_signal(int sig)
{
    (void)sig;
    leaf_alloc(48);
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void *thread_main(void *arg)
{
    (void)arg;
    rec(3);
    with_alloca(200);
    return NULL;
}

int main(void)
{
    for (int d = 0; d < 60; d += 7)
        rec(d);
    with_alloca(100);
    with_alloca(3000);
    realigned();
    sort_some();
    signal(SIGUSR1, on_signal);
    raise(SIGUSR1);
    pthread_t t;
    if (pthread_create(&t, NULL, thread_main, NULL) || pthread_join(t, NULL))
        abort();
    printf("%d blocks\n", nkept);
    return 0;
}
