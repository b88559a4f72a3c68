/* Empty pools a thread keeps for its next allocations go back once they
 * have not been used for the purge delay (docs/ARCHITECTURE.md, "Class
 * queues"): the queue heads and the empty pools kept beyond them. The
 * thread mallocs and frees 16 blocks of every class from 1 to 128 KiB
 * (the pools each class keeps empty, up to three, 10-13 MiB in all), then
 * mallocs and frees one small block every millisecond. With
 * OBMEM_PURGE_DELAY_MS=200, RSS must come back to within 3 MiB of the start
 * within three seconds, without obm_trim. (Before the heap looked at its
 * empty pools, RSS stayed 11 MiB above the start for as long as the thread
 * lived.) Runs in a fresh process: the delay is read when the library is
 * loaded. */
#include "test_util.h"

#define MiB ((size_t)1024 * 1024)
#define PER_CLASS 16

static void child(const char *mode)
{
    (void)mode;
    size_t rss0 = rss_bytes();
    double t_burst = now_sec();
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
    size_t rss_freed = rss_bytes();
    double waited = now_sec() - t_burst;
    double t;
    size_t rss = small_malloc_free_until_rss(rss0 + 3 * MiB, 3.0, 1000, &t);
    printf("  %.1f MiB in blocks of 1-128 KiB, all freed; RSS start %.1f MiB, after the "
           "frees %.1f MiB (%.3f s after the first malloc), %.1f MiB after %.2f s of "
           "malloc/free of one small block\n",
           (double)bytes / MiB, (double)rss0 / MiB, (double)rss_freed / MiB, waited,
           (double)rss / MiB, t);
    /* The pools were kept at first, if RSS was read well within the delay
     * (a loaded machine can stretch the burst): the reuse the keeping is for. */
    if (waited < 0.1)
        CHECK_MSG(rss_freed > rss0 + 6 * MiB, "the empty pools were kept at first");
    CHECK_LE(rss, rss0 + 3 * MiB);
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
    printf("test_purge_empty_pools: all ok\n");
    return 0;
}
