/*
 * mem_drift: the resident set of a long-running steady workload must not
 * creep upward.
 *
 * Four worker threads run a stationary random mix (fixed seeds): each keeps
 * a private working set of SLOTS blocks and replaces a random one per
 * operation (the slot's index fixes its kind: 80% small 16..512 B, 19%
 * medium up to 64 KiB, 1% large up to 512 KiB; one in sixteen through
 * realloc of the old block; every page written). Workers 0 and 1 also
 * produce small and medium blocks into bounded rings that workers 2 and 3
 * consume and free (cross-thread frees, checked first). The live data is therefore
 * bounded and, after a warm-up, stationary in distribution; a growing RSS
 * would be fragmentation or memory that frees never give back.
 *
 * The run lasts DRIFT_SECONDS (default 8; make faults-full: 120), cut into
 * EPOCHS epochs; the main thread samples RSS and the statistics at the end
 * of each. The first quarter of the epochs is warm-up. Checked:
 *   max RSS of the last 3 epochs <= RSS of the first epoch after warm-up
 *                                   x 1.1 + 8 MiB;
 *   the same for obmem's bytes mapped;
 * and at the end, with every block freed: the statistics are back to the
 * baseline and RSS <= the start + the large cache's bytes + 8 MiB.
 */
#include "fault_util.h"

#include <stdatomic.h>

enum { WORKERS = 4, SLOTS = 6000, RING = 1024, EPOCHS = 16 };

typedef struct {
    unsigned char *p;
    size_t n;
} blk;

static atomic_int stop;
static atomic_long ops_total;

/* Single-producer single-consumer ring. */
typedef struct {
    blk b[RING];
    _Atomic size_t head, tail; /* head: next to pop, tail: next to push */
} ring;
static ring rings[2];

static int ring_push(ring *r, blk b)
{
    size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (t - atomic_load_explicit(&r->head, memory_order_acquire) == RING)
        return 0;
    r->b[t % RING] = b;
    atomic_store_explicit(&r->tail, t + 1, memory_order_release);
    return 1;
}

static int ring_pop(ring *r, blk *b)
{
    size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (h == atomic_load_explicit(&r->tail, memory_order_acquire))
        return 0;
    *b = r->b[h % RING];
    atomic_store_explicit(&r->head, h + 1, memory_order_release);
    return 1;
}

/* A slot's kind is fixed by its index (1% large, 19% medium, 80% small), so
 * the live data is stationary: only the sizes within each kind vary. */
static size_t pick(unsigned kind, uint64_t r)
{
    if (kind < 1)
        return 131073 + r % (512 * KiB - 131073);
    if (kind < 20)
        return 513 + r % (64 * KiB);
    return 16 + r % 497;
}

static void stamp(blk b) /* size in the first word (blocks are >= 16 bytes) */
{
    memcpy(b.p, &b.n, sizeof b.n);
    for (size_t off = 4096; off < b.n; off += 4096) /* resident, as real data */
        b.p[off] = 1;
    b.p[b.n - 1] = (unsigned char)b.n;
}

static void check_stamp(blk b)
{
    size_t n;
    memcpy(&n, b.p, sizeof n);
    CHECK_MSG(n == b.n && b.p[b.n - 1] == (unsigned char)b.n, "block %p of %zu bytes damaged",
              (void *)b.p, b.n);
}

static blk *sets[WORKERS];

static void *worker(void *arg)
{
    int id = (int)(uintptr_t)arg;
    uint64_t rng = 0xD81F7 + (uint64_t)id;
    blk *set = sets[id];
    long ops = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (int k = 0; k < 64; k++) {
            uint64_t r = rng_next(&rng);
            unsigned idx = (unsigned)(r % SLOTS);
            blk *s = &set[idx];
            size_t n = pick(idx % 100, r >> 16);
            if (s->p)
                check_stamp(*s);
            unsigned char *p;
            if ((r >> 60) == 0 && s->p) {
                p = realloc(opaque_ptr(s->p), opaque_size(n));
            } else {
                free(s->p);
                p = malloc(opaque_size(n));
            }
            CHECK_NOT_NULL(p);
            *s = (blk){p, n};
            stamp(*s);
            if (id < 2) { /* produce */
                size_t m = pick(1 + (unsigned)((r >> 20) % 99), r >> 24); /* no large */
                blk b = {malloc(opaque_size(m)), m};
                CHECK_NOT_NULL(b.p);
                stamp(b);
                if (!ring_push(&rings[id], b))
                    free(b.p); /* consumer behind: keep the ring bounded */
            } else { /* consume: free what the producer allocated */
                blk b;
                for (int c = 0; c < 2 && ring_pop(&rings[id - 2], &b); c++) {
                    check_stamp(b);
                    free(b.p);
                }
            }
            ops++;
        }
    }
    atomic_fetch_add(&ops_total, ops);
    return NULL;
}

int main(void)
{
    check_obmem_is_malloc();
    const char *e = getenv("DRIFT_SECONDS");
    double seconds = e ? atof(e) : 8;
    for (int i = 0; i < WORKERS; i++) {
        sets[i] = mmap(NULL, SLOTS * sizeof(blk), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(sets[i] != MAP_FAILED);
        memset(sets[i], 0, SLOTS * sizeof(blk));
    }
    printf("  %.0f s, %d epochs, %d workers x %d slots, 2 producer/consumer rings\n", seconds,
           EPOCHS, WORKERS, SLOTS);
    fflush(stdout);
    obm_stats base = stats_now();
    size_t rss0 = rss_bytes();
    uthread th[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        CHECK_EQ(uthread_create(&th[i], worker, (void *)(uintptr_t)i), 0);
    size_t rss[EPOCHS], mapped[EPOCHS], inuse[EPOCHS];
    double t0 = now_sec();
    for (int ep = 0; ep < EPOCHS; ep++) {
        double until = t0 + seconds * (ep + 1) / EPOCHS;
        while (now_sec() < until)
            usleep(20000);
        rss[ep] = rss_bytes();
        obm_stats st = stats_now();
        mapped[ep] = st.bytes_mapped;
        inuse[ep] = st.bytes_in_use;
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < WORKERS; i++)
        uthread_join(&th[i]);
    double secs = now_sec() - t0;
    printf("  epoch  RSS MiB  mapped MiB  in use MiB\n");
    for (int ep = 0; ep < EPOCHS; ep++)
        printf("  %5d  %7.1f  %10.1f  %10.1f%s\n", ep, mib(rss[ep]), mib(mapped[ep]),
               mib(inuse[ep]), ep < EPOCHS / 4 ? "  (warm-up)" : "");
    int w = EPOCHS / 4;
    size_t last_rss = 0, last_mapped = 0;
    for (int ep = EPOCHS - 3; ep < EPOCHS; ep++) {
        if (rss[ep] > last_rss)
            last_rss = rss[ep];
        if (mapped[ep] > last_mapped)
            last_mapped = mapped[ep];
    }
    size_t rss_bound = rss[w] + rss[w] / 10 + 8 * MiB;
    size_t mapped_bound = mapped[w] + mapped[w] / 10 + 8 * MiB;
    /* Cleanup: drain the rings, free the working sets. */
    blk b;
    for (int r = 0; r < 2; r++)
        while (ring_pop(&rings[r], &b)) {
            check_stamp(b);
            free(b.p);
        }
    for (int i = 0; i < WORKERS; i++)
        for (int s = 0; s < SLOTS; s++)
            if (sets[i][s].p) {
                check_stamp(sets[i][s]);
                free(sets[i][s].p);
            }
    obm_stats st = stats_now();
    size_t rss_end = rss_bytes();
    printf("summary: %ld ops in %.1fs (%.2f M ops/s); RSS first post-warm-up epoch %.1f MiB, "
           "max of the last 3 %.1f MiB (bound %.1f); mapped %.1f -> %.1f MiB (bound %.1f); "
           "after freeing all: RSS %.1f MiB (start %.1f)\n",
           atomic_load(&ops_total), secs, (double)atomic_load(&ops_total) / secs / 1e6,
           mib(rss[w]), mib(last_rss), mib(rss_bound), mib(mapped[w]), mib(last_mapped),
           mib(mapped_bound), mib(rss_end), mib(rss0));
    CHECK_MSG(last_rss <= rss_bound, "RSS drifted: %zu after warm-up, %zu at the end", rss[w],
              last_rss);
    CHECK_MSG(last_mapped <= mapped_bound, "mapped bytes drifted: %zu after warm-up, %zu at the end",
              mapped[w], last_mapped);
    CHECK_EQ(small_in_use(&st), small_in_use(&base));
    CHECK_EQ(st.large_blocks, base.large_blocks);
    /* With the workers' heaps abandoned and everything freed, what stays
     * resident beyond the start is the large cache's mappings (pages kept)
     * and the main thread's spare arenas and empty pools. */
    CHECK_MSG(rss_end <= rss0 + st.large_cached_bytes + 8 * MiB,
              "RSS %zu at the end, %zu at the start, %zu in the large cache", rss_end, rss0,
              st.large_cached_bytes);
    return 0;
}
