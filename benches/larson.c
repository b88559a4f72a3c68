/*
 * larson: a server-like workload in the spirit of Larson & Krishnan's
 * benchmark.  `threads` workers each hold a set of `slots` live blocks and
 * repeatedly replace a random slot: check + free the old block, malloc a new
 * one of random size in [min, max], write it.  Every `handoff` operations a
 * worker passes its whole set to the next worker (thread t -> t+1 mod N,
 * through a small lock-free inbox) and takes the next set from its own
 * inbox, so it keeps freeing blocks that another thread allocated, as when
 * connections or requests move between the threads of a server.
 *
 * There are 2 sets per worker (one in hand, one waiting in its inbox), so a
 * worker can run up to one hand-off period ahead of its predecessor before
 * it has to wait.  Because each inbox is FIFO, the order in which every set
 * visits the workers is fixed, the work is identical under every allocator
 * and the checksum is deterministic; with 2+ threads every hand-off is
 * cross-thread.
 *
 * Each worker does a fixed number of ops from its own seeded RNG; the clock
 * runs from the release of all workers until the last one is done.  One op
 * = one free + one malloc.  Reported: aggregate ns_per_op (wall time / total
 * ops), ops_per_s, and wait_pct: the share of hand-offs at which a worker
 * found its inbox empty and had to wait for its predecessor (high values
 * mean the threads ran at very different speeds, e.g. a loaded machine).
 */
#include "bench_common.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#else
#define cpu_relax() atomic_signal_fence(memory_order_seq_cst)
#endif

#define MAX_THREADS 256
#define SETS_PER_THREAD 2
#define INBOX_CAP (SETS_PER_THREAD * MAX_THREADS) /* never full: holds at most all sets */

typedef struct {
    unsigned char *p;
    size_t size;
    uint64_t tag;
} slot_t;

typedef struct {
    _Alignas(64) _Atomic size_t head; /* written by the predecessor */
    _Alignas(64) _Atomic size_t tail; /* written by the owner */
    slot_t *set[INBOX_CAP];
} inbox_t;

typedef struct {
    _Alignas(64) int id;
    pthread_t th;
    slot_t *set;
    uint64_t errors, handoffs, waits, checksum;
} worker_t;

static long long nthreads = 2, nslots = 1000, ops_per_thread = 5000000;
static long long min = 16, max = 1024, handoff = 10000, seed = 42;
static _Atomic int ready, go;

/* static, so the harness itself needs nothing beyond malloc/free */
static worker_t w[MAX_THREADS];
static inbox_t inbox[MAX_THREADS];

static void inbox_push(inbox_t *b, slot_t *set)
{
    size_t h = atomic_load_explicit(&b->head, memory_order_relaxed);
    b->set[h % INBOX_CAP] = set;
    atomic_store_explicit(&b->head, h + 1, memory_order_release);
}

/* Pops the oldest set; *waited is set if the inbox was empty at first. */
static slot_t *inbox_pop(inbox_t *b, int *waited)
{
    size_t t = atomic_load_explicit(&b->tail, memory_order_relaxed);
    unsigned spins = 0;
    *waited = 0;
    while (atomic_load_explicit(&b->head, memory_order_acquire) == t) {
        *waited = 1;
        if (++spins < 1000)
            cpu_relax();
        else
            sched_yield(); /* predecessor descheduled: let it run */
    }
    slot_t *set = b->set[t % INBOX_CAP];
    atomic_store_explicit(&b->tail, t + 1, memory_order_release);
    return set;
}

static void *worker(void *arg)
{
    worker_t *me = arg;
    rng_t rng;
    rng_seed(&rng, (uint64_t)seed + 1000003ull * (uint64_t)(me->id + 1));
    uint64_t k = 0, checksum = 0, errors = 0;
    slot_t *set = me->set;
    inbox_t *mine = &inbox[me->id], *next = &inbox[(me->id + 1) % nthreads];
    atomic_fetch_add(&ready, 1);
    while (!atomic_load_explicit(&go, memory_order_acquire))
        cpu_relax();
    for (long long n = 0; n < ops_per_thread; n++) {
        size_t i = rng_range(&rng, 0, (size_t)nslots - 1);
        slot_t *s = &set[i];
        if (!check_block(s->p, s->size, s->tag))
            errors++;
        checksum += s->tag ^ s->size; /* order-independent across threads */
        free(s->p);
        size_t sz = rng_range(&rng, (size_t)min, (size_t)max);
        unsigned char *p = malloc(sz);
        if (!p)
            oom(sz);
        /* tag: unique per (thread, op), never zero */
        uint64_t t = (((uint64_t)me->id << 48) ^ ++k) * 0x9e3779b97f4a7c15ull | 1;
        touch_block(p, sz, t, 0);
        s->p = p, s->size = sz, s->tag = t;
        if ((n + 1) % handoff == 0 && n + 1 < ops_per_thread) {
            int waited;
            inbox_push(next, set);
            set = inbox_pop(mine, &waited);
            me->handoffs++;
            me->waits += (uint64_t)waited;
        }
    }
    me->set = set;
    me->checksum = checksum;
    me->errors = errors;
    return NULL;
}

int main(int argc, char **argv)
{
    opt_t opts[] = {
        {"threads", &nthreads, "worker threads"},
        {"slots", &nslots, "live blocks per set"},
        {"ops", &ops_per_thread, "malloc+free pairs per thread"},
        {"min", &min, "smallest block size in bytes"},
        {"max", &max, "largest block size in bytes"},
        {"handoff", &handoff, "ops between set hand-offs"},
        {"seed", &seed, "RNG seed"},
        {NULL, NULL, NULL},
    };
    parse_opts(argc, argv, opts, "[options]");
    if (nthreads < 1 || nthreads > MAX_THREADS || nslots < 1 || ops_per_thread < 1 || min < 1 ||
        max < min || handoff < 1) {
        fprintf(stderr, "larson: bad parameters\n");
        return 64;
    }

    /* 2 sets per worker, filled by the main thread (so the workers' first
     * frees are already cross-thread): set t in hand, set N+t in inbox t */
    rng_t rng;
    rng_seed(&rng, (uint64_t)seed);
    long long nsets = SETS_PER_THREAD * nthreads;
    slot_t **sets = malloc((size_t)nsets * sizeof *sets);
    if (!sets)
        oom((size_t)nsets * sizeof *sets);
    uint64_t k = 0;
    for (long long j = 0; j < nsets; j++) {
        sets[j] = malloc((size_t)nslots * sizeof(slot_t));
        if (!sets[j])
            oom((size_t)nslots * sizeof(slot_t));
        for (long long i = 0; i < nslots; i++) {
            size_t sz = rng_range(&rng, (size_t)min, (size_t)max);
            unsigned char *p = malloc(sz);
            if (!p)
                oom(sz);
            uint64_t t = (0xffffull << 48 ^ ++k) * 0x9e3779b97f4a7c15ull | 1;
            touch_block(p, sz, t, 0);
            sets[j][i] = (slot_t){p, sz, t};
        }
    }
    for (long long t = 0; t < nthreads; t++) {
        w[t].id = (int)t;
        w[t].set = sets[t];
        inbox_push(&inbox[t], sets[nthreads + t]);
    }

    for (long long t = 0; t < nthreads; t++) {
        if (pthread_create(&w[t].th, NULL, worker, &w[t])) {
            fprintf(stderr, "larson: pthread_create failed\n");
            return 1;
        }
    }
    while (atomic_load(&ready) < nthreads)
        cpu_relax();
    uint64_t t0 = now_ns();
    atomic_store_explicit(&go, 1, memory_order_release);
    uint64_t errors = 0, handoffs = 0, waits = 0, checksum = 0;
    for (long long t = 0; t < nthreads; t++) {
        pthread_join(w[t].th, NULL);
        errors += w[t].errors, handoffs += w[t].handoffs, waits += w[t].waits;
        checksum += w[t].checksum;
    }
    uint64_t t1 = now_ns();
    long rss = peak_rss_kib();

    /* free every set: the ones in hand and the ones left in inboxes */
    long long freed_sets = 0;
    for (long long t = 0; t < nthreads; t++) {
        slot_t *held[1 + INBOX_CAP];
        int n = 0, waited;
        held[n++] = w[t].set;
        while (atomic_load(&inbox[t].head) != atomic_load(&inbox[t].tail))
            held[n++] = inbox_pop(&inbox[t], &waited);
        for (int h = 0; h < n; h++) {
            for (long long i = 0; i < nslots; i++) {
                slot_t *s = &held[h][i];
                if (!check_block(s->p, s->size, s->tag))
                    errors++;
                checksum += s->tag ^ s->size;
                free(s->p);
            }
            free(held[h]);
            freed_sets++;
        }
    }
    free(sets);
    if (freed_sets != nsets) {
        fprintf(stderr, "larson: lost sets (%lld of %lld)\n", freed_sets, nsets);
        errors++;
    }

    double total = (double)nthreads * (double)ops_per_thread;
    double secs = (double)(t1 - t0) / 1e9;
    printf("RESULT bench=larson threads=%lld slots=%lld min=%lld max=%lld handoff=%lld "
           "ops=%.0f seed=%lld ns_per_op=%.2f ops_per_s=%.0f handoffs=%llu wait_pct=%.1f "
           "maxrss_kib=%ld malloc_from=%s errors=%llu checksum=%016llx\n",
           nthreads, nslots, min, max, handoff, total, seed, (double)(t1 - t0) / total,
           total / secs, (unsigned long long)handoffs,
           handoffs ? 100.0 * (double)waits / (double)handoffs : 0.0, rss, malloc_from(),
           (unsigned long long)errors, (unsigned long long)checksum);
    return errors ? 2 : 0;
}
