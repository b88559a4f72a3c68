/* Empty pools a thread keeps for its next allocations go back once they
 * have not been used for the purge delay, or sooner once the thread needs
 * more memory (docs/ARCHITECTURE.md, "Idle empty pools"): the queue heads
 * and the empty pools kept beyond them. Each case first mallocs and frees
 * 16 blocks of every class from 1 to 128 KiB (the pools each class keeps
 * empty, up to three, 10-13 MiB in all), on the free units of 16 MiB of
 * small blocks made and freed just before: a heap that had to grow for
 * the burst would look at its empty pools then and keep fewer.
 * - pools (OBMEM_PURGE_DELAY_MS=200): the thread then mallocs and frees one
 *   small block every millisecond; RSS must come back to within 3 MiB of
 *   the start within three seconds, without obm_trim. (Before the heap
 *   looked at its empty pools, RSS stayed 11 MiB above the start for as
 *   long as the thread lived.)
 * - growth (OBMEM_PURGE_DELAY_MS=60000, so no look is due in time): the
 *   thread then keeps 32 MiB of 256-byte blocks. No pool of the burst's
 *   classes may be left, and RSS may grow by at most the new blocks' bytes
 *   less half of what the burst's pools held: their units served the new
 *   pools. (Before growth looked, the burst's pools stayed and RSS grew by
 *   the whole 32 MiB.)
 * Each runs in a fresh process: the delay is read when the library is
 * loaded. */
#include "test_util.h"

#define MiB ((size_t)1024 * 1024)
#define PER_CLASS 16

#define GROWTH_BLOCKS (32 * MiB / 256)

/* Mallocs and frees PER_CLASS blocks of every class from 1 to 128 KiB, each
 * block written, in memory that 16 MiB of small blocks freed first;
 * returns their bytes. */
static size_t burst(void)
{
    static char *small[GROWTH_BLOCKS / 2];
    for (size_t i = 0; i < GROWTH_BLOCKS / 2; i++) {
        small[i] = malloc(256);
        CHECK_NOT_NULL(small[i]);
        memset(small[i], 1, 256);
    }
    for (size_t i = 0; i < GROWTH_BLOCKS / 2; i++)
        free(small[i]);
    size_t bytes = 0;
    for (size_t size = 1024; size <= 128 * 1024; size += size / 8) {
        char *p[PER_CLASS];
        for (size_t i = 0; i < PER_CLASS; i++) {
            p[i] = malloc(size);
            CHECK_NOT_NULL(p[i]);
            memset(p[i], (int)i, size);
            bytes += size;
        }
        for (size_t i = 0; i < PER_CLASS; i++) {
            CHECK_EQ(p[i][size - 1], (char)i);
            free(p[i]);
        }
    }
    return bytes;
}

/* Pools serving classes of 1 KiB and more, in every heap. */
static size_t medium_pools(void)
{
    static obm_stats st;
    obm_get_stats(&st);
    size_t n = 0;
    for (size_t c = 0; c < st.num_classes; c++)
        if (st.classes[c].block_size >= 1024)
            n += st.classes[c].pools;
    return n;
}

static void growth(void)
{
    size_t bytes = burst();
    size_t kept = medium_pools();
    size_t rss_freed = rss_bytes();
    /* 32 MiB: more than the burst's pools held, so that new pools take
     * units that were never resident and the heap grows. */
    static char *blocks[GROWTH_BLOCKS];
    for (size_t i = 0; i < GROWTH_BLOCKS; i++) {
        blocks[i] = malloc(256);
        CHECK_NOT_NULL(blocks[i]);
        memset(blocks[i], (int)i, 256);
    }
    size_t left = medium_pools();
    size_t rss = rss_bytes();
    printf("  %.1f MiB in blocks of 1-128 KiB, all freed: %zu empty pools kept, RSS %.1f "
           "MiB; then 32 MiB of 256-byte blocks: %zu of those pools left, RSS %.1f MiB\n",
           (double)bytes / MiB, kept, (double)rss_freed / MiB, left, (double)rss / MiB);
    CHECK_MSG(kept >= 48, "the burst's empty pools were kept at first: %zu", kept);
    CHECK_EQ(left, (size_t)0);
    CHECK_LE(rss, rss_freed + 32 * MiB - bytes / 2);
    for (size_t i = 0; i < GROWTH_BLOCKS; i++) {
        CHECK_EQ(blocks[i][255], (char)i);
        free(blocks[i]);
    }
}

static void idle(void)
{
    size_t rss0 = rss_bytes();
    double t_burst = now_sec();
    size_t bytes = burst();
    size_t kept = medium_pools();
    size_t rss_freed = rss_bytes();
    double waited = now_sec() - t_burst;
    double t;
    size_t rss = small_malloc_free_until_rss(rss0 + 3 * MiB, 3.0, 1000, &t);
    printf("  %.1f MiB in blocks of 1-128 KiB, all freed: %zu empty pools kept; RSS start "
           "%.1f MiB, after the frees %.1f MiB (%.3f s after the first malloc), %.1f MiB "
           "after %.2f s of malloc/free of one small block\n",
           (double)bytes / MiB, kept, (double)rss0 / MiB, (double)rss_freed / MiB, waited,
           (double)rss / MiB, t);
    /* The pools were kept at first, at least the head of each of the 57
     * classes, if they were counted well within the delay (a loaded machine
     * can stretch the burst): the reuse the keeping is for. */
    if (waited < 0.1)
        CHECK_MSG(kept >= 48, "the empty pools were kept at first: %zu", kept);
    CHECK_LE(rss, rss0 + 3 * MiB);
}

static void child(const char *mode)
{
    if (strcmp(mode, "growth") == 0)
        growth();
    else
        idle();
}

int main(int argc, char **argv)
{
    if (run_as_child(argc, argv, child))
        return 0;
    check_obmem_is_malloc();
    if (debug_hooks_on()) {
        printf("test_purge_empty_pools: skipped under the debug hooks (their quarantine "
               "keeps blocks)\n");
        return 0;
    }
    spawn_self_ok("pools", (const char *const[]){"OBMEM_PURGE_DELAY_MS=200", NULL});
    spawn_self_ok("growth", (const char *const[]){"OBMEM_PURGE_DELAY_MS=60000", NULL});
    printf("test_purge_empty_pools: all ok\n");
    return 0;
}
