/*
 * mstress: a multi-threaded mix of short- and long-lived blocks, after
 * mimalloc's test-stress.c (run by mimalloc-bench as "mstress").
 *
 * Each round starts `threads` new threads and joins them (threads are
 * replaced every round).  Thread t does allocs = 100 x scale x (t % 8 + 1)
 * short-lived allocations and allocs / 2 long-lived ("retained") ones, in a
 * random interleaving, and per step:
 *   - allocates a block, mostly small (16-256 B short-lived, 16 B-1 KiB
 *     retained, powers of two), 1% of them x100 (up to 100 KiB) and 0.1%
 *     16-256 KiB;
 *   - 66%: frees a random earlier short-lived block (if still there);
 *   - 25%: swaps a random short-lived block with a random slot of a global
 *     array of 1000 transfer slots (atomic exchange), so it is freed later by
 *     another thread (or by a thread of a later round: blocks outlive their
 *     thread);
 * and at its end frees everything it still holds.  After each round the
 * main thread frees a random half of the transfer slots (all of them after
 * the last round).
 *
 * Blocks are written when allocated (tag, size, last byte, one byte per
 * 4 KiB page) and checked when freed, by whichever thread frees them.  Which
 * thread frees a transferred block depends on the scheduling, but every
 * block is freed exactly once and each thread's allocations depend only on
 * its seed, so the checksum (sum of tag ^ size of all blocks freed) is the
 * same under every allocator.  One op = one allocation (each is freed);
 * ns_per_op = wall time / allocations; maxrss_kib = peak RSS.
 */
#include "bench_common.h"
#include <pthread.h>
#include <stdatomic.h>

#define MAX_THREADS 256
#define TRANSFERS 1000
#define PAGE 4096

static long long nthreads = 4, scale = 50, rounds = 200, seed = 42;
static _Atomic(unsigned char *) transfer[TRANSFERS];

typedef struct {
    uint64_t checksum, errors, frees;
} tally_t;

typedef struct {
    _Alignas(64) int tid;
    long long round;
    pthread_t th;
    uint64_t allocs;
    tally_t tally;
} worker_t;
static worker_t w[MAX_THREADS];

static inline uint64_t size_key(uint64_t tag) { return tag * 0xbf58476d1ce4e5b9ull; }

static unsigned char *alloc_block(rng_t *r, unsigned shift, uint64_t tag)
{
    uint64_t x = rng_next(r);
    size_t size = (size_t)16 << ((x >> 8) % shift);
    if (x % 100 == 17) /* 1% large */
        size = (x >> 32) % 10 == 0 ? ((size_t)16 << ((x >> 40) % 5)) * 1024 /* 0.1%: 16-256 KiB */
                                   : size * 100;
    unsigned char *p = malloc(size);
    if (!p)
        oom(size);
    uint64_t sk = size ^ size_key(tag);
    memcpy(p, &tag, 8);
    memcpy(p + 8, &sk, 8);
    for (size_t off = PAGE; off < size - 1; off += PAGE)
        p[off] = (unsigned char)(off >> 12);
    if (size > 16) /* a 16-byte block is all header */
        p[size - 1] = (unsigned char)tag;
    return p;
}

/* Checks and frees a block (NULL is ignored), adding its tag ^ size to the
 * tally of the thread that frees it. */
static void free_block(unsigned char *p, tally_t *tl)
{
    if (!p)
        return;
    uint64_t tag, sk;
    memcpy(&tag, p, 8);
    memcpy(&sk, p + 8, 8);
    size_t size = (size_t)(sk ^ size_key(tag));
    int ok = size >= 16 && size <= ((size_t)256 << 10) && (size == 16 || p[size - 1] == (unsigned char)tag);
    for (size_t off = PAGE; ok && off < size - 1; off += PAGE)
        ok = p[off] == (unsigned char)(off >> 12);
    if (!ok) {
        tl->errors++;
        size = 0; /* do not trust it: the checksum will differ too */
    }
    free(p);
    tl->checksum += tag ^ size;
    tl->frees++;
}

static void *stress(void *arg)
{
    worker_t *me = arg;
    rng_t r;
    rng_seed(&r, (uint64_t)seed + 1000003ull * (((uint64_t)me->round << 16) + (uint64_t)me->tid + 1));
    uint64_t uid = ((uint64_t)me->round << 40) ^ ((uint64_t)me->tid << 32); /* tag prefix */
    uint64_t k = 0;
    tally_t tl = {0, 0, 0};
    size_t allocs = (size_t)(100 * scale * (me->tid % 8 + 1));
    size_t retain = allocs / 2, retain_top = 0;
    size_t data_size = 0, data_top = 0;
    unsigned char **data = NULL;
    unsigned char **retained = calloc(retain ? retain : 1, sizeof *retained);
    if (!retained)
        oom(retain * sizeof *retained);
    me->allocs = allocs + retain;

    while (allocs > 0 || retain > 0) {
        if (retain == 0 || (allocs > 0 && rng_next(&r) % 2 == 0)) {
            allocs--;
            if (data_top >= data_size) {
                data_size += 100000;
                data = realloc(data, data_size * sizeof *data);
                if (!data)
                    oom(data_size * sizeof *data);
            }
            data[data_top++] = alloc_block(&r, 5, (uid ^ ++k) * 0x9e3779b97f4a7c15ull | 1);
        } else {
            retained[retain_top++] = alloc_block(&r, 7, (uid ^ ++k) * 0x9e3779b97f4a7c15ull | 1);
            retain--;
        }
        uint64_t x = rng_next(&r);
        if (x % 100 < 66 && data_top > 0) {
            size_t idx = (size_t)((x >> 8) % data_top);
            free_block(data[idx], &tl);
            data[idx] = NULL;
        }
        x = rng_next(&r);
        if (x % 100 < 25 && data_top > 0) {
            size_t idx = (size_t)((x >> 8) % data_top);
            size_t t = (size_t)((x >> 40) % TRANSFERS);
            data[idx] = atomic_exchange(&transfer[t], data[idx]);
        }
    }
    for (size_t i = 0; i < retain_top; i++)
        free_block(retained[i], &tl);
    for (size_t i = 0; i < data_top; i++)
        free_block(data[i], &tl);
    free(retained);
    free(data);
    me->tally = tl;
    return NULL;
}

int main(int argc, char **argv)
{
    opt_t opts[] = {
        {"threads", &nthreads, "threads per round (replaced every round)"},
        {"scale", &scale, "thread t allocates 150 x scale x (t % 8 + 1) blocks per round"},
        {"rounds", &rounds, "rounds"},
        {"seed", &seed, "RNG seed"},
        {NULL, NULL, NULL},
    };
    parse_opts(argc, argv, opts, "[options]");
    if (nthreads < 1 || nthreads > MAX_THREADS || scale < 1 || rounds < 1) {
        fprintf(stderr, "mstress: bad parameters\n");
        return 64;
    }
    rng_t r;
    rng_seed(&r, (uint64_t)seed);
    uint64_t allocs = 0;
    tally_t tl = {0, 0, 0};
    uint64_t t0 = now_ns();
    for (long long round = 0; round < rounds; round++) {
        for (long long t = 0; t < nthreads; t++) {
            w[t] = (worker_t){.tid = (int)t, .round = round};
            if (pthread_create(&w[t].th, NULL, stress, &w[t])) {
                fprintf(stderr, "mstress: pthread_create failed\n");
                return 1;
            }
        }
        for (long long t = 0; t < nthreads; t++) {
            pthread_join(w[t].th, NULL);
            tl.checksum += w[t].tally.checksum, tl.errors += w[t].tally.errors;
            tl.frees += w[t].tally.frees, allocs += w[t].allocs;
        }
        for (int i = 0; i < TRANSFERS; i++)
            if (round + 1 == rounds || rng_next(&r) % 2 == 0)
                free_block(atomic_exchange(&transfer[i], NULL), &tl);
    }
    uint64_t t1 = now_ns();
    long rss = peak_rss_kib();
    if (tl.frees != allocs) {
        fprintf(stderr, "mstress: %llu blocks allocated but %llu freed\n", (unsigned long long)allocs,
                (unsigned long long)tl.frees);
        tl.errors++;
    }
    printf("RESULT bench=mstress threads=%lld scale=%lld rounds=%lld ops=%llu seed=%lld "
           "ns_per_op=%.2f maxrss_kib=%ld malloc_from=%s errors=%llu checksum=%016llx\n",
           nthreads, scale, rounds, (unsigned long long)allocs, seed,
           (double)(t1 - t0) / (double)allocs, rss, malloc_from(), (unsigned long long)tl.errors,
           (unsigned long long)tl.checksum);
    return tl.errors ? 2 : 0;
}
