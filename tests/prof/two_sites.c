/*
 * two_sites.c [keep|free|fork] [THREADS]: an ordinary program (it knows nothing
 * of obmem) for the heap profiler's tests. Two call sites, site_a and
 * site_b, keep 48 MiB and 16 MiB of requested bytes live, in mixed sizes
 * and through every allocation function: malloc of 16 B to 2 KiB,
 * calloc, posix_memalign, aligned_alloc, realloc, and large blocks of 200
 * to 400 KiB. With THREADS > 1 (default 1), each of that many threads does
 * its share of both sites. "keep" exits with the blocks live; "free"
 * frees them first (from the main thread, so freeing another thread's
 * sampled blocks is exercised). Build with -rdynamic so dladdr names the
 * sites. Prints the bytes each site requested.
 *
 * "fork" keeps the blocks, then forks a child that frees site_b's blocks,
 * keeps 48 MiB more at a third site, site_c, and exits (through exit, so
 * the library's destructor runs in it); the parent waits for it and exits
 * with its blocks live. Prints "child_pid", "child_site_c" (the bytes
 * site_c requested) and "parent_pid" too.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB (1024UL * 1024UL)

typedef struct {
    void **blocks;
    size_t n, cap, bytes;
    uint64_t rng;
} Keep;

static uint64_t next(Keep *k)
{
    k->rng ^= k->rng << 13;
    k->rng ^= k->rng >> 7;
    k->rng ^= k->rng << 17;
    return k->rng;
}

static void keep(Keep *k, void *p, size_t n)
{
    if (!p) {
        fprintf(stderr, "two_sites: allocation of %zu bytes failed\n", n);
        exit(1);
    }
    memset(p, 1, n < 64 ? n : 64);
    k->blocks[k->n++] = p;
    k->bytes += n;
}

/* One allocation of a random kind; inlined into each site, so that the
 * site is the caller of the allocation function. */
static inline __attribute__((always_inline)) void alloc_one(Keep *k)
{
    uint64_t r = next(k);
    size_t n = 16 + (size_t)(r >> 40) % 2033;
    void *p;
    switch (r % 20) {
    case 0: case 1: case 2:
        p = calloc(1, n);
        break;
    case 3: case 4:
        p = NULL;
        if (posix_memalign(&p, 64, n) != 0)
            p = NULL;
        break;
    case 5:
        n = (n + 127) & ~(size_t)127;
        p = aligned_alloc(128, n);
        break;
    case 6: case 7:
        p = malloc(n / 2 + 1);
        p = realloc(p, n);
        break;
    case 8:
        if ((r >> 20) % 8 == 0) {
            n = 200 * 1024 + (size_t)(r >> 32) % (200 * 1024);
        }
        p = malloc(n);
        break;
    default:
        p = malloc(n);
    }
    keep(k, p, n);
}

__attribute__((noinline)) void site_a(Keep *k, size_t bytes)
{
    while (k->bytes < bytes)
        alloc_one(k);
    __asm__ volatile("" ::: "memory"); /* not a tail call */
}

__attribute__((noinline)) void site_b(Keep *k, size_t bytes)
{
    while (k->bytes < bytes)
        alloc_one(k);
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void site_c(Keep *k, size_t bytes)
{
    while (k->bytes < bytes)
        alloc_one(k);
    __asm__ volatile("" ::: "memory");
}

static int nthreads = 1;

static void *worker(void *arg)
{
    Keep *k = arg; /* k[0] for site_a, k[1] for site_b */
    site_a(&k[0], 48 * MIB / nthreads);
    site_b(&k[1], 16 * MIB / nthreads);
    return NULL;
}

int main(int argc, char **argv)
{
    int do_free = argc > 1 && strcmp(argv[1], "free") == 0;
    int do_fork = argc > 1 && strcmp(argv[1], "fork") == 0;
    nthreads = argc > 2 ? atoi(argv[2]) : 1;
    if (nthreads < 1 || nthreads > 64)
        return 2;
    static Keep k[64][2];
    for (int t = 0; t < nthreads; t++)
        for (int s = 0; s < 2; s++) {
            k[t][s].cap = 200000;
            k[t][s].blocks = calloc(k[t][s].cap, sizeof(void *));
            k[t][s].rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(2 * t + s + 1);
        }
    if (nthreads == 1) {
        worker(k[0]);
    } else {
        pthread_t th[64];
        for (int t = 0; t < nthreads; t++)
            if (pthread_create(&th[t], NULL, worker, k[t]) != 0)
                return 3;
        for (int t = 0; t < nthreads; t++)
            pthread_join(th[t], NULL);
    }
    size_t a = 0, b = 0;
    for (int t = 0; t < nthreads; t++) {
        a += k[t][0].bytes;
        b += k[t][1].bytes;
    }
    printf("site_a %zu\nsite_b %zu\n", a, b);
    if (do_fork) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
            return 4;
        if (pid == 0) {
            for (int t = 0; t < nthreads; t++)
                for (size_t i = 0; i < k[t][1].n; i++)
                    free(k[t][1].blocks[i]);
            static Keep c = {.cap = 200000, .rng = 0x2545f4914f6cdd1dULL};
            c.blocks = calloc(c.cap, sizeof(void *));
            site_c(&c, 48 * MIB);
            printf("child_pid %d\nchild_site_c %zu\n", (int)getpid(), c.bytes);
            exit(0);
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            return 5;
        printf("parent_pid %d\n", (int)getpid());
    }
    if (do_free)
        for (int t = 0; t < nthreads; t++)
            for (int s = 0; s < 2; s++)
                for (size_t i = 0; i < k[t][s].n; i++)
                    free(k[t][s].blocks[i]);
    return 0;
}
