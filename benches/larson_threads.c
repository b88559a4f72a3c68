/*
 * larson_threads: Larson & Krishnan's server benchmark as mimalloc-bench runs
 * it (the real larson.c), with thread replacement.
 *
 * `threads` lineages each own an array of `slots` live blocks (random sizes
 * in [min, max], allocated by the main thread before the clock starts).  A
 * lineage's thread does `life` random replace operations on its array
 * (check + free the block in a random slot, malloc a new one of random size,
 * write it), then creates a NEW thread that inherits the array and the RNG
 * state and exits.  The successor therefore frees the blocks its exited
 * predecessor allocated (the allocator must hand that memory back to the
 * living: abandoned thread heaps, cross-thread frees, thread-exit cleanup),
 * and every lineage goes through `lives` threads.  Total work is fixed:
 * threads x lives x life ops.
 *
 * In the original the run is timed (sleep_cnt seconds) and each thread does
 * num_rounds x chunks ops; here the work is fixed so that the checksum
 * (sum of tag ^ size of every block freed, each lineage deterministic) is
 * identical under every allocator.  One op = one free + one malloc;
 * ns_per_op = wall time / total ops of all threads (aggregate), ops_per_s
 * its inverse; threads= reports how many threads were created in all.
 */
#include "bench_common.h"
#include <pthread.h>
#include <semaphore.h>

#define MAX_THREADS 256

typedef struct {
    unsigned char *p;
    size_t size;
    uint64_t tag;
} slot_t;

typedef struct {
    _Alignas(64) int id;
    slot_t *slot;   /* the array inherited from thread to thread */
    rng_t rng;      /* continued by each successor */
    long long life; /* which life of the lineage is running (0-based) */
    uint64_t k, checksum, errors;
    int create_failed;
} lineage_t;

static long long nthreads = 2, nslots = 1000, min = 16, max = 1000;
static long long life_ops = 50000, lives = 500, seed = 42;
static lineage_t lin[MAX_THREADS];
static sem_t done;              /* posted when a lineage's last life ends */
static pthread_attr_t detached; /* nobody joins the threads: like larson */

static void *exercise_heap(void *arg)
{
    lineage_t *L = arg;
    uint64_t checksum = L->checksum, errors = L->errors, k = L->k;
    slot_t *slot = L->slot;
    for (long long n = 0; n < life_ops; n++) {
        size_t i = rng_range(&L->rng, 0, (size_t)nslots - 1);
        slot_t *s = &slot[i];
        if (!check_block(s->p, s->size, s->tag))
            errors++;
        checksum += s->tag ^ s->size;
        free(s->p);
        size_t sz = rng_range(&L->rng, (size_t)min, (size_t)max);
        unsigned char *p = malloc(sz);
        if (!p)
            oom(sz);
        /* unique per (lineage, op), never zero */
        uint64_t t = (((uint64_t)(L->id + 1) << 48) ^ ++k) * 0x9e3779b97f4a7c15ull | 1;
        touch_block(p, sz, t, 0);
        s->p = p, s->size = sz, s->tag = t;
    }
    L->checksum = checksum, L->errors = errors, L->k = k;
    if (++L->life < lives) {
        /* hand the array to a new thread and exit */
        pthread_t th;
        if (pthread_create(&th, &detached, exercise_heap, L) == 0)
            return NULL;
        L->create_failed = 1;
    }
    sem_post(&done);
    return NULL;
}

int main(int argc, char **argv)
{
    opt_t opts[] = {
        {"threads", &nthreads, "concurrent threads (lineages)"},
        {"slots", &nslots, "live blocks per thread's array"},
        {"life", &life_ops, "replace ops a thread does before handing over and exiting"},
        {"lives", &lives, "threads per lineage (each one replaced by a new thread)"},
        {"min", &min, "smallest block size in bytes"},
        {"max", &max, "largest block size in bytes"},
        {"seed", &seed, "RNG seed"},
        {NULL, NULL, NULL},
    };
    parse_opts(argc, argv, opts, "[options]");
    if (nthreads < 1 || nthreads > MAX_THREADS || nslots < 1 || life_ops < 1 || lives < 1 ||
        min < 1 || max < min) {
        fprintf(stderr, "larson_threads: bad parameters\n");
        return 64;
    }
    sem_init(&done, 0, 0);
    pthread_attr_init(&detached);
    pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);

    /* the main thread fills every array, so the first frees are remote too */
    rng_t rng;
    rng_seed(&rng, (uint64_t)seed);
    uint64_t k = 0;
    for (long long t = 0; t < nthreads; t++) {
        lineage_t *L = &lin[t];
        L->id = (int)t;
        rng_seed(&L->rng, (uint64_t)seed + 1000003ull * (uint64_t)(t + 1));
        L->slot = malloc((size_t)nslots * sizeof(slot_t));
        if (!L->slot)
            oom((size_t)nslots * sizeof(slot_t));
        for (long long i = 0; i < nslots; i++) {
            size_t sz = rng_range(&rng, (size_t)min, (size_t)max);
            unsigned char *p = malloc(sz);
            if (!p)
                oom(sz);
            uint64_t tg = (0xffffull << 48 ^ ++k) * 0x9e3779b97f4a7c15ull | 1;
            touch_block(p, sz, tg, 0);
            L->slot[i] = (slot_t){p, sz, tg};
        }
    }

    uint64_t t0 = now_ns();
    for (long long t = 0; t < nthreads; t++) {
        pthread_t th;
        if (pthread_create(&th, &detached, exercise_heap, &lin[t])) {
            fprintf(stderr, "larson_threads: pthread_create failed\n");
            return 1;
        }
    }
    for (long long t = 0; t < nthreads; t++)
        while (sem_wait(&done) != 0)
            ;
    uint64_t t1 = now_ns();
    long rss = peak_rss_kib();

    uint64_t errors = 0, checksum = 0;
    long long created = 0;
    for (long long t = 0; t < nthreads; t++) {
        lineage_t *L = &lin[t];
        if (L->create_failed) {
            fprintf(stderr, "larson_threads: pthread_create failed in lineage %lld\n", t);
            return 1;
        }
        created += L->life;
        errors += L->errors, checksum += L->checksum;
        for (long long i = 0; i < nslots; i++) {
            slot_t *s = &L->slot[i];
            if (!check_block(s->p, s->size, s->tag))
                errors++;
            checksum += s->tag ^ s->size;
            free(s->p);
        }
        free(L->slot);
    }

    double total = (double)nthreads * (double)lives * (double)life_ops;
    double secs = (double)(t1 - t0) / 1e9;
    printf("RESULT bench=larson_threads threads=%lld slots=%lld min=%lld max=%lld life=%lld lives=%lld "
           "ops=%.0f seed=%lld ns_per_op=%.2f ops_per_s=%.0f threads_created=%lld "
           "maxrss_kib=%ld malloc_from=%s errors=%llu checksum=%016llx\n",
           nthreads, nslots, min, max, life_ops, lives, total, seed, (double)(t1 - t0) / total,
           total / secs, created, rss, malloc_from(), (unsigned long long)errors,
           (unsigned long long)checksum);
    return errors ? 2 : 0;
}
