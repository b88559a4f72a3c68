/* Free pages of idle threads go back while another thread still allocates
 * (docs/ARCHITECTURE.md, "Any thread purges any heap's expired pages").
 * Four threads fill and free 256 MiB of small blocks, then wait, alive and
 * idle; the main thread frees 64 MiB of large blocks. Then it mallocs and
 * frees one small block every 5 ms, which never takes a slow path of its
 * own. With OBMEM_PURGE_DELAY_MS=500, RSS
 * must fall back to within 24 MiB of the start within three seconds,
 * without obm_trim: the main thread's frees look at the clock for every
 * heap. (When only a thread's own slow paths looked at it, RSS stayed at
 * about half the burst until the threads allocated again.)
 * Runs in a fresh process: the delay is read when the library is loaded. */
#include "test_util.h"
#include <pthread.h>

#define MiB ((size_t)1024 * 1024)
#define NT 4

static pthread_barrier_t freed, done;
static double free_start[NT]; /* when each thread began to free */

/* Fills and frees 64 MiB of 16-512 B blocks (`small_blocks_alloc`). */
static void *idle_after_burst(void *arg)
{
    size_t t = (size_t)(uintptr_t)arg;
    small_blocks b = small_blocks_alloc(256 * MiB / NT, 11 + t);
    free_start[t] = now_sec();
    small_blocks_free(b);
    pthread_barrier_wait(&freed);
    pthread_barrier_wait(&done); /* idle, alive, while the main thread checks */
    return NULL;
}

static void child(const char *mode)
{
    (void)mode;
    size_t rss0 = rss_bytes();
    CHECK_EQ(pthread_barrier_init(&freed, NULL, NT + 1), 0);
    CHECK_EQ(pthread_barrier_init(&done, NULL, NT + 1), 0);
    /* Large blocks, written before the threads start (written after some
     * thread had freed its blocks, their fresh pages would make as many
     * bytes of its free units go back at once: docs/ARCHITECTURE.md, "One
     * kind of kept memory for the other"), freed with theirs: kept in
     * their region, then expired the same way. */
    void *big[8];
    for (size_t i = 0; i < 8; i++) {
        big[i] = malloc(8 * MiB);
        CHECK_NOT_NULL(big[i]);
        memset(big[i], 1, 8 * MiB);
    }
    pthread_t th[NT];
    for (size_t t = 0; t < NT; t++)
        CHECK_EQ(pthread_create(&th[t], NULL, idle_after_burst, (void *)(uintptr_t)t), 0);
    pthread_barrier_wait(&freed);
    for (size_t i = 0; i < 8; i++)
        free(big[i]);
    size_t rss_freed = rss_bytes();
    /* How long the first freed pages had waited when RSS was read. */
    double waited = now_sec() - free_start[0];
    for (size_t i = 1; i < NT; i++)
        if (now_sec() - free_start[i] > waited)
            waited = now_sec() - free_start[i];
    double t;
    size_t rss = small_malloc_free_until_rss(rss0 + 24 * MiB, 3.0, 5000, &t);
    printf("  RSS start %.1f MiB, after the frees %.1f MiB, %.1f MiB after %.2f s of one "
           "thread's malloc/free (the others idle); the first frees were %.3f s old\n"
           "  when RSS was read after them\n",
           (double)rss0 / MiB, (double)rss_freed / MiB, (double)rss / MiB, t, waited);
    /* The pages were kept at first, if they were read well within the delay
     * (a loaded machine can stretch the frees). */
    if (waited < 0.25)
        CHECK_MSG(rss_freed > rss0 + 128 * MiB, "the burst's pages were kept at first");
    CHECK_LE(rss, rss0 + 24 * MiB);
    pthread_barrier_wait(&done);
    for (size_t i = 0; i < NT; i++)
        pthread_join(th[i], NULL);
}

int main(int argc, char **argv)
{
    if (run_as_child(argc, argv, child))
        return 0;
    check_obmem_is_malloc();
    if (debug_hooks_on()) {
        printf("test_purge_idle: skipped under the debug hooks (their quarantine keeps blocks)\n");
        return 0;
    }
    spawn_self_ok("idle", (const char *const[]){"OBMEM_PURGE_DELAY_MS=500", NULL});
    printf("test_purge_idle: all ok\n");
    return 0;
}
