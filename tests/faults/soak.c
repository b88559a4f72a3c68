/*
 * soak: a multi-threaded stress for SOAK_SECONDS (default 600; make soak).
 *
 * ROLES supervisor threads each run a succession of worker threads (thread
 * churn: a worker exits after a random 20,000..200,000 operations and the
 * next one takes over its role's table of live blocks, whose heap is then
 * abandoned and later adopted). A worker's operations, at random:
 *   malloc of a small (16..512), medium (..128 KiB) or large (..4 MiB)
 *   size; calloc (checked zero); realloc across those sizes (the common
 *   prefix checked); posix_memalign / aligned_alloc / memalign with
 *   alignments 32..4096 and 256 KiB, 1 MiB (checked aligned); free; a
 *   transfer of a block to another role's mailbox (the receiver checks and
 *   frees or keeps it: cross-thread frees); now and then obm_get_stats.
 * Every block carries a pattern (its first 64 and last 32 bytes) from its
 * seed, checked before every free, realloc and transfer.
 *
 * The main thread prints progress ten times (operations, RSS, bytes
 * mapped, in use, heaps). At the end everything is freed and checked:
 *   - small blocks in use and large blocks equal the baseline snapshot
 *     (allocations - frees = blocks in use, for the test's own blocks);
 *   - the per-class allocation counters grew by exactly the pool blocks the
 *     test allocated plus one per thread created (glibc's DTV, a calloc);
 *   - arenas in use are back to the baseline (+8: the main thread's spare
 *     arenas and the arenas its kept empty pools pin);
 *   - the number of heaps stays bounded (adoption works): at most one per
 *     supervisor and one per role's current worker.
 * Prints a summary: ops/s, peak RSS (VmHWM).
 */
#include "fault_util.h"

#include <stdatomic.h>

enum { ROLES = 4, SLOTS = 4096, MAILBOX = 512 };

typedef struct {
    unsigned char *p;
    size_t n;
    uint64_t seed;
} blk;

typedef struct {
    blk slot[SLOTS];
    pthread_mutex_t mu;
    blk box[MAILBOX];
    int box_n;
    uint64_t rng;
    long ops, pool_allocs, large_allocs, large_moves, transfers, reallocs, aligned, callocs,
        stats_calls;
    long threads;
} role_t;

static role_t roles[ROLES];
static atomic_int stop;
static atomic_long ops_now;

/* Pool blocks are at most 128 KiB and never in an arena's first 16 KiB
 * (its header). Large blocks: either above 128 KiB (spans, which start at
 * any 64 KiB granule) or aligned to 256 KiB or more (at a chunk start). */
static int is_pool(const void *p)
{
    return malloc_usable_size((void *)p) <= 128 * KiB &&
           ((uintptr_t)p & (256 * KiB - 1)) >= 16 * KiB;
}

static void stamp(blk *b)
{
    size_t h = b->n < 64 ? b->n : 64;
    fill_pattern(b->p, h, b->seed);
    if (b->n >= 128)
        fill_pattern(b->p + b->n - 32, 32, b->seed ^ 0xABCD);
}

static void verify(const blk *b)
{
    size_t h = b->n < 64 ? b->n : 64;
    CHECK_PATTERN(b->p, h, b->seed);
    if (b->n >= 128)
        CHECK_PATTERN(b->p + b->n - 32, 32, b->seed ^ 0xABCD);
}

static void count_alloc(role_t *r, const void *p)
{
    if (is_pool(p))
        r->pool_allocs++;
    else
        r->large_allocs++;
}

static size_t pick(uint64_t x)
{
    unsigned k = (unsigned)(x % 128);
    if (k == 0)
        return 131073 + (x >> 8) % (4 * MiB);
    if (k < 24)
        return 513 + (x >> 8) % (128 * KiB - 512);
    return 16 + (x >> 8) % 497;
}

static void drop(blk *b)
{
    if (b->p) {
        verify(b);
        free(b->p);
        b->p = NULL;
    }
}

/* Takes the blocks others sent: keep some, free the rest. */
static void take_mail(role_t *r)
{
    blk got[MAILBOX];
    pthread_mutex_lock(&r->mu);
    int n = r->box_n;
    memcpy(got, r->box, (size_t)n * sizeof(blk));
    r->box_n = 0;
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < n; i++) {
        verify(&got[i]);
        blk *s = &r->slot[rng_next(&r->rng) % SLOTS];
        if (!s->p && (got[i].seed & 1))
            *s = got[i];
        else
            free(got[i].p);
    }
}

static void one_op(role_t *r, int self)
{
    uint64_t x = rng_next(&r->rng);
    blk *s = &r->slot[x % SLOTS];
    unsigned op = (unsigned)((x >> 12) % 100);
    uint64_t seed = rng_next(&r->rng);
    size_t n = pick(x >> 20);
    if (op < 30) { /* malloc */
        drop(s);
        unsigned char *p = malloc(opaque_size(n));
        CHECK_NOT_NULL(p);
        count_alloc(r, p);
        *s = (blk){p, n, seed};
        stamp(s);
    } else if (op < 38) { /* calloc */
        drop(s);
        unsigned char *p = calloc(1, opaque_size(n));
        CHECK_NOT_NULL(p);
        count_alloc(r, p);
        CHECK_ZERO(p, n < 512 ? n : 512);
        CHECK_ZERO(p + n - (n < 64 ? n : 64), n < 64 ? n : 64);
        *s = (blk){p, n, seed};
        stamp(s);
        r->callocs++;
    } else if (op < 55) { /* realloc */
        if (s->p)
            verify(s);
        unsigned char *old = s->p;
        int old_pool = old && is_pool(old); /* asked while old is live */
        unsigned char *p = realloc(opaque_ptr(old), opaque_size(n));
        CHECK_NOT_NULL(p);
        if (p != old && (is_pool(p) || !old))
            count_alloc(r, p);
        else if (p != old && !is_pool(p) && old_pool)
            count_alloc(r, p); /* small to large: a new large block */
        else if (p != old)
            r->large_moves++; /* large to large: mremap, or a new block and a copy */
        if (old) {
            size_t keep = s->n < n ? s->n : n;
            CHECK_PATTERN(p, keep < 64 ? keep : 64, s->seed);
        }
        *s = (blk){p, n, seed};
        stamp(s);
        r->reallocs++;
    } else if (op < 62) { /* aligned */
        drop(s);
        static const size_t aligns[] = {32, 64, 128, 256, 1024, 4096, 256 * KiB, MiB};
        size_t a = aligns[(x >> 40) % 8];
        if (a > 4096)
            n = 1 + n % (300 * KiB);
        void *p = NULL;
        switch ((x >> 44) % 3) {
        case 0:
            CHECK_EQ(posix_memalign(&p, a, opaque_size(n)), 0);
            break;
        case 1:
            p = aligned_alloc(a, opaque_size(round_up(n, a)));
            break;
        default:
            p = memalign(a, opaque_size(n));
            break;
        }
        CHECK_NOT_NULL(p);
        CHECK_ALIGNED(p, a);
        count_alloc(r, p);
        *s = (blk){p, n, seed};
        stamp(s);
        r->aligned++;
    } else if (op < 80) { /* free */
        drop(s);
    } else if (op < 90) { /* send to another role */
        if (s->p) {
            verify(s);
            role_t *o = &roles[(self + 1 + (int)(x >> 50) % (ROLES - 1)) % ROLES];
            pthread_mutex_lock(&o->mu);
            int sent = 0;
            if (o->box_n < MAILBOX) {
                o->box[o->box_n++] = *s;
                sent = 1;
            }
            pthread_mutex_unlock(&o->mu);
            if (!sent)
                free(s->p);
            s->p = NULL;
            r->transfers++;
        }
    } else if (op < 99) {
        take_mail(r);
    } else if ((x >> 30) % 64 == 0) {
        obm_stats st = stats_now();
        CHECK_GE(st.bytes_mapped, st.arenas_in_use * 256 * KiB);
        r->stats_calls++;
    }
}

static void *worker(void *arg)
{
    int self = (int)(uintptr_t)arg;
    role_t *r = &roles[self];
    long life = 20000 + (long)(rng_next(&r->rng) % 180000);
    for (long i = 0; i < life; i++) {
        one_op(r, self);
        if ((i & 255) == 0) {
            atomic_fetch_add_explicit(&ops_now, 256, memory_order_relaxed);
            if (atomic_load_explicit(&stop, memory_order_relaxed))
                break;
        }
        r->ops++;
    }
    return NULL;
}

static atomic_int alive, max_alive;

static void *supervisor(void *arg)
{
    role_t *r = &roles[(uintptr_t)arg];
    while (!atomic_load(&stop)) {
        uthread t;
        CHECK_EQ(uthread_create(&t, worker, arg), 0);
        int a = atomic_fetch_add(&alive, 1) + 1;
        int m = atomic_load(&max_alive);
        while (a > m && !atomic_compare_exchange_weak(&max_alive, &m, a))
            ;
        r->threads++;
        uthread_join(&t);
        atomic_fetch_sub(&alive, 1);
    }
    return NULL;
}

int main(void)
{
    check_obmem_is_malloc();
    const char *e = getenv("SOAK_SECONDS");
    double seconds = e ? atof(e) : 600;
    printf("  soak: %.0f s, %d roles x %d slots, thread churn\n", seconds, ROLES, SLOTS);
    fflush(stdout);
    for (int i = 0; i < ROLES; i++) {
        pthread_mutex_init(&roles[i].mu, NULL);
        roles[i].rng = 0x50A4 + (uint64_t)i;
    }
    obm_stats base = stats_now();
    size_t rss0 = rss_bytes();
    double t0 = now_sec();
    uthread sup[ROLES];
    for (int i = 0; i < ROLES; i++)
        CHECK_EQ(uthread_create(&sup[i], supervisor, (void *)(uintptr_t)i), 0);
    for (int k = 1; k <= 10; k++) {
        double until = t0 + seconds * k / 10;
        while (now_sec() < until)
            usleep(50000);
        obm_stats st = stats_now();
        printf("  %5.0fs: %11ld ops, RSS %7.1f MiB, mapped %7.1f MiB, in use %7.1f MiB, "
               "%zu heaps, %zu arenas\n",
               now_sec() - t0, atomic_load(&ops_now), mib(rss_bytes()), mib(st.bytes_mapped),
               mib(st.bytes_in_use), st.heaps, st.arenas_in_use);
        fflush(stdout);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < ROLES; i++)
        uthread_join(&sup[i]);
    double secs = now_sec() - t0;
    long ops = 0, pool = 0, large = 0, lmoves = 0, threads = ROLES, transfers = 0,
         reallocs = 0, aligned = 0, callocs = 0, stats_calls = 0;
    for (int i = 0; i < ROLES; i++) {
        role_t *r = &roles[i];
        take_mail(r);
        for (int s = 0; s < SLOTS; s++)
            drop(&r->slot[s]);
        ops += r->ops;
        pool += r->pool_allocs;
        large += r->large_allocs;
        lmoves += r->large_moves;
        threads += r->threads;
        transfers += r->transfers;
        reallocs += r->reallocs;
        aligned += r->aligned;
        callocs += r->callocs;
        stats_calls += r->stats_calls;
    }
    /* Free arenas are kept for the purge delay (OBMEM_PURGE_DELAY_MS):
     * give them back now, so that what is left in use is what the check
     * below bounds. */
    obm_trim();
    obm_stats st = stats_now();
    size_t pool_delta = small_allocations(&st) - small_allocations(&base);
    printf("summary: %ld ops in %.0f s (%.2f M ops/s); %ld threads (at most %d workers at "
           "once), %ld reallocs, %ld aligned, %ld callocs, %ld cross-thread transfers, %ld "
           "stats calls; %ld pool and %ld large allocations (obmem counted %zu and %zu); "
           "peak RSS %.1f MiB; at the end: RSS %.1f MiB (start %.1f), %zu heaps, %zu arenas "
           "in use (start %zu), %zu blocks in use (start %zu), %zu large (start %zu)\n",
           ops, secs, (double)ops / secs / 1e6, threads, atomic_load(&max_alive), reallocs,
           aligned, callocs, transfers, stats_calls, pool, large, pool_delta,
           st.large_allocations - base.large_allocations, mib(status_kb_field("VmHWM")),
           mib(rss_bytes()), mib(rss0), st.heaps, st.arenas_in_use, base.arenas_in_use,
           small_in_use(&st), small_in_use(&base), st.large_blocks, base.large_blocks);
    CHECK_EQ(small_in_use(&st), small_in_use(&base));
    CHECK_EQ(st.large_blocks, base.large_blocks);
    CHECK_EQ(st.large_bytes, base.large_bytes);
    /* Every pool allocation of the test, plus glibc's DTV for each thread. */
    CHECK_EQ(pool_delta, (size_t)(pool + threads));
    /* A large block realloc moves is either remapped (no allocation) or
     * copied to a new one: obmem counts between the two. */
    size_t large_delta = st.large_allocations - base.large_allocations;
    CHECK_GE(large_delta, (size_t)large);
    CHECK_LE(large_delta, (size_t)(large + lmoves));
    CHECK_LE(st.arenas_in_use, base.arenas_in_use + 8);
    /* supervisors + workers alive at once; exited workers' heaps are adopted */
    CHECK_LE(st.heaps, base.heaps + ROLES * 2);
    return 0;
}
