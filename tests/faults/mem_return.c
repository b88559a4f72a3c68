/*
 * mem_return: memory goes back after a program frees what it allocated.
 *
 * Three workloads, each repeated, measuring the resident set (RSS, from
 * /proc/self/smaps_rollup) and obmem's bytes mapped before, at the peak
 * and after each round:
 *   small:   1 GiB of small blocks (random sizes 16..512 bytes, every
 *            block written), freed in a shuffled order;
 *   large:   1 GiB of large blocks (160 KiB .. 8 MiB, every page written),
 *            freed in a shuffled order;
 *   threads: 4 threads each allocate 256 MiB of small blocks and exit;
 *            the main thread frees all of them (remote frees into the
 *            abandoned heaps).
 * Rounds: 3, 3 and 2 by default (make test-faults: about 2 s per GiB on
 * the 2-core test machine); FAULTS_FULL=1 (make faults-full): 10, 10, 4.
 *   classes: 4 threads each fill 4 MiB of every one of the 96 classes and
 *            free it all, then stay alive: measures what live heaps keep
 *            (the known gap: one empty pool per class and heap), and that
 *            it all goes back when the threads exit.
 * The pointer array is mapped and touched before the start is measured.
 *
 * Bounds (see docs/reliability/faults.md for the measured values):
 *   small, threads: RSS after a round <= RSS at the start + 8 MiB: the
 *     heap keeps up to 16 spare arenas (4 MiB, their pages possibly still
 *     resident) and one empty pool per class at the head of its queue (32
 *     classes of one 16 KiB unit here: 0.5 MiB); arenas given back are
 *     discarded (MADV_DONTNEED). Bytes mapped after <= start + 80 MiB: the
 *     reserve keeps 256 discarded arenas mapped (64 MiB, no RSS), plus the
 *     spare arenas and the arenas the kept empty pools pin (up to 32 x
 *     256 KiB);
 *   large: bytes mapped after <= start + 64 MiB + 8 MiB: the cache of freed
 *     large mappings keeps up to 64 MiB of them; RSS after <= start + 16
 *     MiB: it keeps the pages of at most 8 MiB (the rest are discarded).
 * And no growth from round to round: the last round's RSS after the free
 * is at most the first round's + 4 MiB (large: + 12 MiB, since which
 * cached mappings keep their pages varies).
 *
 * MEM_RETURN_MIB (default 1024) and MEM_RETURN_ROUNDS scale it.
 */
#include "fault_util.h"

static size_t target, rounds;
static void **ptrs;
static size_t ptr_cap;

static void shuffle(void **a, size_t n, uint64_t *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = rng_next(rng) % i;
        void *t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

typedef struct {
    size_t rss0, mapped0;      /* at the start of the workload */
    size_t rss_first_after;    /* after round 1's free */
    size_t rss_after, mapped_after, peak_rss, peak_mapped;
    double secs;
} measure;

static void report(const char *what, const measure *m, size_t rss_bound, size_t mapped_bound,
                   size_t growth_slack)
{
    printf("  %-8s start RSS %6.1f MiB mapped %6.1f | peak RSS %7.1f mapped %7.1f | after RSS "
           "%6.1f (+%.1f, bound +%.0f) mapped %6.1f (+%.1f, bound +%.0f) | %.1fs\n",
           what, mib(m->rss0), mib(m->mapped0), mib(m->peak_rss), mib(m->peak_mapped),
           mib(m->rss_after), mib(m->rss_after) - mib(m->rss0), mib(rss_bound),
           mib(m->mapped_after), mib(m->mapped_after) - mib(m->mapped0), mib(mapped_bound),
           m->secs);
    CHECK_MSG(m->rss_after <= m->rss0 + rss_bound, "%s: RSS %zu after, %zu at the start", what,
              m->rss_after, m->rss0);
    CHECK_MSG(m->mapped_after <= m->mapped0 + mapped_bound, "%s: %zu mapped after, %zu before",
              what, m->mapped_after, m->mapped0);
    CHECK_MSG(m->rss_after <= m->rss_first_after + growth_slack,
              "%s: RSS after the last round %zu, after the first %zu: growing", what,
              m->rss_after, m->rss_first_after);
}

static void after_round(measure *m, size_t r, const obm_stats *base)
{
    obm_stats st = stats_now();
    CHECK_EQ(small_in_use(&st), small_in_use(base));
    CHECK_EQ(st.large_blocks, base->large_blocks);
    m->rss_after = rss_bytes();
    m->mapped_after = st.bytes_mapped;
    if (r == 0)
        m->rss_first_after = m->rss_after;
}

/* ---- small ---------------------------------------------------------------------- */

static void small_workload(void)
{
    measure m = {0};
    obm_stats base = stats_now();
    m.rss0 = rss_bytes();
    m.mapped0 = base.bytes_mapped;
    uint64_t rng = 42;
    double t0 = now_sec();
    for (size_t r = 0; r < rounds; r++) {
        size_t bytes = 0, n = 0;
        while (bytes < target) {
            CHECK_LT(n, ptr_cap);
            size_t sz = 16 + rng_next(&rng) % 497;
            unsigned char *p = malloc(opaque_size(sz));
            CHECK_NOT_NULL(p);
            p[0] = (unsigned char)n;
            p[sz - 1] = (unsigned char)sz;
            ptrs[n++] = p;
            bytes += malloc_usable_size(p);
        }
        size_t rss = rss_bytes();
        obm_stats st = stats_now();
        if (rss > m.peak_rss)
            m.peak_rss = rss;
        if (st.bytes_mapped > m.peak_mapped)
            m.peak_mapped = st.bytes_mapped;
        CHECK_GE(rss, m.rss0 + target * 9 / 10); /* it really was resident */
        shuffle(ptrs, n, &rng);
        for (size_t i = 0; i < n; i++)
            free(ptrs[i]);
        after_round(&m, r, &base);
    }
    m.secs = now_sec() - t0;
    report("small", &m, 8 * MiB, 80 * MiB, 4 * MiB);
}

/* ---- large ---------------------------------------------------------------------- */

static void large_workload(void)
{
    measure m = {0};
    obm_stats base = stats_now();
    m.rss0 = rss_bytes();
    m.mapped0 = base.bytes_mapped;
    uint64_t rng = 43;
    double t0 = now_sec();
    for (size_t r = 0; r < rounds; r++) {
        size_t bytes = 0, n = 0;
        while (bytes < target) {
            size_t sz = 160 * KiB + rng_next(&rng) % (8 * MiB);
            unsigned char *p = malloc(opaque_size(sz));
            CHECK_NOT_NULL(p);
            for (size_t off = 0; off < sz; off += 4096)
                p[off] = 1;
            ptrs[n++] = p;
            bytes += sz;
        }
        size_t rss = rss_bytes();
        obm_stats st = stats_now();
        if (rss > m.peak_rss)
            m.peak_rss = rss;
        if (st.bytes_mapped > m.peak_mapped)
            m.peak_mapped = st.bytes_mapped;
        shuffle(ptrs, n, &rng);
        for (size_t i = 0; i < n; i++)
            free(ptrs[i]);
        after_round(&m, r, &base);
    }
    m.secs = now_sec() - t0;
    obm_stats st = stats_now();
    printf("  large: %zu runs of free granules (%.1f MiB) kept at the end\n", st.large_cached,
           mib(st.large_cached_bytes));
    /* Run with OBMEM_PURGE_DELAY_MS=0: a freed span's pages go back at once
     * (src/large/region.rs); the bounds are those of the former cache of
     * mappings, kept as they are. */
    report("large", &m, 16 * MiB, 72 * MiB, 12 * MiB);
}

/* ---- threads -------------------------------------------------------------------- */

enum { NT = 4 };
static size_t tcount[NT];

static void *thread_alloc(void *arg)
{
    size_t t = (size_t)(uintptr_t)arg;
    uint64_t rng = 1000 + t;
    size_t per = ptr_cap / NT, bytes = 0, n = 0;
    void **mine = ptrs + t * per;
    while (bytes < target / NT) {
        CHECK_LT(n, per);
        size_t sz = 16 + rng_next(&rng) % 497;
        unsigned char *p = malloc(opaque_size(sz));
        CHECK_NOT_NULL(p);
        p[0] = 1;
        mine[n++] = p;
        bytes += malloc_usable_size(p);
    }
    tcount[t] = n;
    return NULL;
}

static void threads_workload(void)
{
    measure m = {0};
    obm_stats base = stats_now();
    m.rss0 = rss_bytes();
    m.mapped0 = base.bytes_mapped;
    double t0 = now_sec();
    size_t tr = rounds < 4 ? (rounds < 2 ? rounds : 2) : 4;
    size_t rss_before_stats = 0;
    for (size_t r = 0; r < tr; r++) {
        uthread th[NT];
        for (size_t t = 0; t < NT; t++)
            CHECK_EQ(uthread_create(&th[t], thread_alloc, (void *)(uintptr_t)t), 0);
        for (size_t t = 0; t < NT; t++)
            uthread_join(&th[t]);
        size_t rss = rss_bytes();
        if (rss > m.peak_rss)
            m.peak_rss = rss;
        size_t per = ptr_cap / NT;
        for (size_t t = 0; t < NT; t++)
            for (size_t i = 0; i < tcount[t]; i++)
                free(ptrs[t * per + i]);
        rss_before_stats = rss_bytes(); /* before obm_get_stats reclaims anything */
        obm_stats st = stats_now();
        if (st.peak_mapped > m.peak_mapped)
            m.peak_mapped = st.peak_mapped;
        after_round(&m, r, &base);
    }
    m.secs = now_sec() - t0;
    printf("  threads: RSS right after the main thread's frees (before any statistics call): "
           "%.1f MiB\n",
           mib(rss_before_stats));
    /* The frees themselves gave the memory back (remote frees reclaim an
     * abandoned heap at once when its lock is free), not the stats call. */
    CHECK_LE(rss_before_stats, m.rss0 + 8 * MiB);
    report("threads", &m, 8 * MiB, 80 * MiB, 4 * MiB);
}

/* ---- classes: what live threads keep ------------------------------------------- */

/* The known gap: a live heap keeps one empty pool per class at the head of
 * its queue. CT threads each fill 4 MiB of every one of the 96 classes,
 * free everything, and stay alive (blocked) while the main thread measures;
 * then they exit and it measures again. */
enum { CT = 4 };
static pthread_barrier_t cbar1, cbar2;
static size_t class_sizes[OBM_NUM_CLASSES];

static void *class_thread(void *arg)
{
    (void)arg;
    enum { PER_CLASS = 4 * 1024 * 1024 };
    void **mine = mmap(NULL, PER_CLASS / 16 * sizeof(void *), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(mine != MAP_FAILED);
    for (size_t c = 0; c < OBM_NUM_CLASSES; c++) {
        size_t bs = class_sizes[c], n = PER_CLASS / bs;
        for (size_t i = 0; i < n; i++) {
            mine[i] = malloc(opaque_size(bs));
            CHECK_NOT_NULL(mine[i]);
            dirty(mine[i], 1, bs); /* every page of every pool resident */
        }
        for (size_t i = 0; i < n; i++)
            free(mine[i]);
    }
    munmap(mine, PER_CLASS / 16 * sizeof(void *));
    pthread_barrier_wait(&cbar1); /* everything freed; the main thread measures */
    pthread_barrier_wait(&cbar2);
    return NULL;
}

static void classes_workload(void)
{
    obm_stats base = stats_now();
    for (size_t c = 0; c < OBM_NUM_CLASSES; c++)
        class_sizes[c] = base.classes[c].block_size;
    size_t rss0 = rss_bytes();
    CHECK_EQ(pthread_barrier_init(&cbar1, NULL, CT + 1), 0);
    CHECK_EQ(pthread_barrier_init(&cbar2, NULL, CT + 1), 0);
    uthread th[CT];
    for (int t = 0; t < CT; t++)
        CHECK_EQ(uthread_create(&th[t], class_thread, NULL), 0);
    pthread_barrier_wait(&cbar1);
    obm_stats st = stats_now();
    size_t rss_live = rss_bytes(), pools, free_bytes = pool_free_bytes(&st, &pools);
    CHECK_EQ(small_in_use(&st), small_in_use(&base) + CT); /* the threads' DTVs */
    pthread_barrier_wait(&cbar2);
    for (int t = 0; t < CT; t++)
        uthread_join(&th[t]);
    obm_stats st2 = stats_now();
    size_t rss_gone = rss_bytes();
    size_t pools2, free_bytes2 = pool_free_bytes(&st2, &pools2);
    printf("  classes: %d live threads that filled 4 MiB of each of the 96 classes and freed "
           "everything keep %zu pools (%.1f MiB of free blocks), %zu arenas in use: RSS "
           "+%.1f MiB; after they exit: %zu pools (%.1f MiB), %zu arenas, RSS +%.1f MiB\n",
           CT, pools, mib(free_bytes), st.arenas_in_use, mib(rss_live) - mib(rss0), pools2,
           mib(free_bytes2), st2.arenas_in_use, mib(rss_gone) - mib(rss0));
    /* One empty pool per class and thread (the queue head), two more kept
     * for each class of 1 KiB blocks or more (pools of at most 16 blocks,
     * which empty and fill again all the time), one more for each class
     * of 256-512 B (bounded here by one for every class below 1 KiB): each
     * pool at most 13 units (208 KiB);
     * what they keep resident is bounded by that (plus the spare arenas,
     * 4 MiB per thread). */
    size_t pools0, kept_two = 0, kept_one = 0;
    pool_free_bytes(&base, &pools0);
    for (size_t c = 0; c < OBM_NUM_CLASSES; c++) {
        kept_two += class_sizes[c] >= 1024;
        kept_one += class_sizes[c] < 1024;
    }
    size_t per_thread = OBM_NUM_CLASSES + 2 * kept_two + kept_one;
    CHECK_LE(pools, (size_t)CT * per_thread + pools0 + 1); /* +1: the DTVs' pool */
    CHECK_LE(rss_live, rss0 + (size_t)CT * (per_thread * 208 * KiB + 4 * MiB));
    /* Exited threads keep nothing. */
    CHECK_LE(rss_gone, rss0 + 8 * MiB);
    CHECK_EQ(small_in_use(&st2), small_in_use(&base));
}

int main(int argc, char **argv)
{
    check_obmem_is_malloc();
    const char *e = getenv("MEM_RETURN_MIB");
    target = (e ? strtoull(e, NULL, 10) : 1024) * MiB;
    e = getenv("MEM_RETURN_ROUNDS");
    rounds = e ? strtoull(e, NULL, 10) : 3;
    const char *full = getenv("FAULTS_FULL");
    if (!e && full && *full == '1')
        rounds = 10;
    ptr_cap = target / 128 + 1024; /* blocks average 264 bytes */
    ptrs = mmap(NULL, ptr_cap * sizeof *ptrs, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(ptrs != MAP_FAILED);
    memset(ptrs, 0, ptr_cap * sizeof *ptrs); /* resident before the start */
    printf("  %zu MiB per round, %zu rounds\n", target / MiB, rounds);
    fflush(stdout);
    double t0 = now_sec();
    const char *only = argc > 1 ? argv[1] : NULL;
    if (!only || strcmp(only, "small") == 0)
        small_workload();
    if (!only || strcmp(only, "large") == 0)
        large_workload();
    if (!only || strcmp(only, "threads") == 0)
        threads_workload();
    if (!only || strcmp(only, "classes") == 0)
        classes_workload();
    obm_stats st = stats_now();
    size_t pools;
    size_t pool_free = pool_free_bytes(&st, &pools);
    printf("  at the end: %zu pools hold no block but stay (%.1f MiB of free blocks in pools), "
           "%zu arenas in use, peak RSS %.1f MiB\n",
           pools, mib(pool_free), st.arenas_in_use, mib(status_kb_field("VmHWM")));
    printf("summary: mem_return ok, %.1fs\n", now_sec() - t0);
    return 0;
}
