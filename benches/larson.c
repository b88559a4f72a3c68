/*
 * larson: a server-like workload in the spirit of Larson & Krishnan's
 * benchmark.  `threads` workers each own a set of `slots` live blocks and
 * repeatedly replace a random slot: check + free the old block, malloc a new
 * one of random size in [min, max], write it.  Every `handoff` operations a
 * worker trades its whole set for the set parked in a shared mailbox (an
 * atomic exchange; there is one more set than workers), so a worker keeps
 * freeing blocks that another thread allocated, as when requests move
 * between threads of a server.
 *
 * Each worker does a fixed number of ops from its own seeded RNG; the clock
 * runs from the release of all workers until the last one is done.  One op
 * = one free + one malloc.  Reported: aggregate ns_per_op (wall time / total
 * ops), ops_per_s, and cross_pct, the share of set hand-offs in which a
 * worker received a set last used by a different thread.  Which set a
 * worker gets depends on timing, so the checksum is "-".
 */
#include "bench_common.h"
#include <pthread.h>
#include <stdatomic.h>

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#else
#define cpu_relax() atomic_signal_fence(memory_order_seq_cst)
#endif

typedef struct {
    unsigned char *p;
    size_t size;
    uint64_t tag;
} slot_t;

typedef struct {
    slot_t *slot;
    int last_owner;
} set_t;

static long long nthreads = 2, nslots = 1000, ops_per_thread = 5000000;
static long long min = 16, max = 1024, handoff = 10000, seed = 42;
static _Atomic(set_t *) mailbox;
static _Atomic int ready, go;
#define MAX_THREADS 256

typedef struct {
    _Alignas(64) int id;
    pthread_t th;
    set_t *set;
    uint64_t errors, handoffs, cross;
} worker_t;

/* static, so the harness itself needs nothing beyond malloc/free */
static worker_t w[MAX_THREADS];

static void *worker(void *arg)
{
    worker_t *w = arg;
    rng_t rng;
    rng_seed(&rng, (uint64_t)seed + 1000003ull * (uint64_t)(w->id + 1));
    uint64_t k = 0;
    set_t *set = w->set;
    atomic_fetch_add(&ready, 1);
    while (!atomic_load_explicit(&go, memory_order_acquire))
        cpu_relax();
    for (long long n = 0; n < ops_per_thread; n++) {
        size_t i = rng_range(&rng, 0, (size_t)nslots - 1);
        slot_t *s = &set->slot[i];
        if (!check_block(s->p, s->size, s->tag))
            w->errors++;
        free(s->p);
        size_t sz = rng_range(&rng, (size_t)min, (size_t)max);
        unsigned char *p = malloc(sz);
        if (!p)
            oom(sz);
        /* tag: unique per (thread, op), never zero */
        uint64_t t = (((uint64_t)w->id << 48) ^ ++k) * 0x9e3779b97f4a7c15ull | 1;
        touch_block(p, sz, t, 0);
        s->p = p, s->size = sz, s->tag = t;
        if ((n + 1) % handoff == 0) {
            set->last_owner = w->id;
            set = atomic_exchange_explicit(&mailbox, set, memory_order_acq_rel);
            w->handoffs++;
            if (set->last_owner != w->id)
                w->cross++;
        }
    }
    set->last_owner = w->id;
    w->set = set;
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
    if (nthreads < 1 || nthreads > MAX_THREADS || nslots < 1 || ops_per_thread < 1 || min < 1 || max < min || handoff < 1) {
        fprintf(stderr, "larson: bad parameters\n");
        return 64;
    }

    /* nthreads + 1 sets, filled by the main thread (so the workers' first
     * frees are already cross-thread) */
    rng_t rng;
    rng_seed(&rng, (uint64_t)seed);
    set_t *sets = malloc((size_t)(nthreads + 1) * sizeof *sets);
    if (!sets)
        oom(0);
    uint64_t k = 0;
    for (long long j = 0; j <= nthreads; j++) {
        sets[j].slot = malloc((size_t)nslots * sizeof(slot_t));
        sets[j].last_owner = -1;
        if (!sets[j].slot)
            oom((size_t)nslots * sizeof(slot_t));
        for (long long i = 0; i < nslots; i++) {
            size_t sz = rng_range(&rng, (size_t)min, (size_t)max);
            unsigned char *p = malloc(sz);
            if (!p)
                oom(sz);
            uint64_t t = (0xffffull << 48 ^ ++k) * 0x9e3779b97f4a7c15ull | 1;
            touch_block(p, sz, t, 0);
            sets[j].slot[i] = (slot_t){p, sz, t};
        }
    }
    atomic_store(&mailbox, &sets[nthreads]);

    for (long long t = 0; t < nthreads; t++) {
        w[t].id = (int)t;
        w[t].set = &sets[t];
        if (pthread_create(&w[t].th, NULL, worker, &w[t])) {
            fprintf(stderr, "larson: pthread_create failed\n");
            return 1;
        }
    }
    while (atomic_load(&ready) < nthreads)
        cpu_relax();
    uint64_t t0 = now_ns();
    atomic_store_explicit(&go, 1, memory_order_release);
    uint64_t errors = 0, handoffs = 0, cross = 0;
    for (long long t = 0; t < nthreads; t++) {
        pthread_join(w[t].th, NULL);
        errors += w[t].errors, handoffs += w[t].handoffs, cross += w[t].cross;
    }
    uint64_t t1 = now_ns();
    long rss = peak_rss_kib();

    for (long long j = 0; j <= nthreads; j++) {
        for (long long i = 0; i < nslots; i++) {
            slot_t *s = &sets[j].slot[i];
            if (!check_block(s->p, s->size, s->tag))
                errors++;
            free(s->p);
        }
        free(sets[j].slot);
    }
    free(sets);

    double total = (double)nthreads * (double)ops_per_thread;
    double secs = (double)(t1 - t0) / 1e9;
    printf("RESULT bench=larson threads=%lld slots=%lld min=%lld max=%lld handoff=%lld "
           "ops=%.0f seed=%lld ns_per_op=%.2f ops_per_s=%.0f cross_pct=%.1f maxrss_kib=%ld "
           "malloc_from=%s errors=%llu checksum=-\n",
           nthreads, nslots, min, max, handoff, total, seed, (double)(t1 - t0) / total,
           total / secs, handoffs ? 100.0 * (double)cross / (double)handoffs : 0.0, rss, malloc_from(),
           (unsigned long long)errors);
    return errors ? 2 : 0;
}
