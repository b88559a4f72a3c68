/* Giving memory back (docs/API.md section 10): obm_trim, malloc_trim and the
 * purge delay OBMEM_PURGE_DELAY_MS.
 * - obm_trim() after 4 live threads freed 1 GiB of small blocks brings RSS
 *   back to within 20 MiB of the start, and returns the bytes it gave back;
 *   the same once the threads have exited;
 * - malloc_trim(0) returns 1 when it gave memory back, 0 when there was
 *   nothing;
 * - with OBMEM_PURGE_DELAY_MS=500, a burst's pages are kept after its
 *   frees (when the frees took under half the delay) and RSS falls by
 *   itself within three seconds of small allocations;
 * - with a long delay, a second burst reuses the pages of the first (minor
 *   page faults counted with getrusage), also when the first burst was
 *   another thread's, still alive: the empty arenas it leaves serve any
 *   thread with their pages resident;
 * - bad values of OBMEM_PURGE_DELAY_MS get one warning and the default.
 * Each case runs in a fresh process (the delay is read when the library is
 * loaded, and RSS is a per-process figure). */
#include "test_util.h"
#include <pthread.h>

#define MiB ((size_t)1024 * 1024)
#define NT 4


/* How long the frees of the last burst took, in seconds. */
static double last_free_secs;

/* Allocates `bytes` of small blocks, then frees them all, from the calling
 * thread. */
static void burst(size_t bytes, uint64_t seed)
{
    small_blocks b = small_blocks_alloc(bytes, seed);
    double t0 = now_sec();
    small_blocks_free(b);
    last_free_secs = now_sec() - t0;
}

/* ---- obm_trim with live threads and after they exit ---------------------- */

static pthread_barrier_t freed, trimmed;

static void *thread_burst(void *arg)
{
    burst(1024 * MiB / NT, 7 + (uint64_t)(uintptr_t)arg);
    pthread_barrier_wait(&freed);   /* alive while the main thread trims */
    pthread_barrier_wait(&trimmed);
    return NULL;
}

static void case_trim(int wait_for_exit)
{
    /* Not counted against obmem: the test's own start-up. */
    size_t rss0 = rss_bytes();
    CHECK_EQ(pthread_barrier_init(&freed, NULL, NT + 1), 0);
    CHECK_EQ(pthread_barrier_init(&trimmed, NULL, NT + 1), 0);
    pthread_t th[NT];
    for (size_t t = 0; t < NT; t++)
        CHECK_EQ(pthread_create(&th[t], NULL, thread_burst, (void *)(uintptr_t)t), 0);
    pthread_barrier_wait(&freed);
    if (wait_for_exit) {
        pthread_barrier_wait(&trimmed);
        for (size_t t = 0; t < NT; t++)
            pthread_join(th[t], NULL);
    }
    /* After the exits: an exiting thread returns its empty pools, which may
     * take its heap over the bound on kept pages and purge half of them
     * then, before obm_trim runs. */
    size_t rss_freed = rss_bytes();
    obm_stats before = stats_now();
    size_t given = obm_trim();
    size_t rss_trimmed = rss_bytes();
    obm_stats after = stats_now();
    printf("  %s: RSS start %.1f MiB, after the frees %.1f MiB, after obm_trim %.1f MiB; "
           "obm_trim gave back %.1f MiB; kept %.1f -> %.1f MiB\n",
           wait_for_exit ? "threads exited" : "threads alive", (double)rss0 / MiB,
           (double)rss_freed / MiB, (double)rss_trimmed / MiB, (double)given / MiB,
           (double)before.bytes_kept / MiB, (double)after.bytes_kept / MiB);
    CHECK_LE(rss_trimmed, rss0 + 20 * MiB);
    /* Most of what the frees left resident went back through obm_trim. */
    CHECK_GE(given + 20 * MiB, rss_freed - rss0);
    /* What it gave back is what it said, give or take the pages the
     * statistics walk and the threads' last steps touched. */
    CHECK_GE(after.bytes_purged - before.bytes_purged, given);
    CHECK_LE(after.bytes_kept, 20 * MiB);
    if (!wait_for_exit) {
        pthread_barrier_wait(&trimmed);
        for (size_t t = 0; t < NT; t++)
            pthread_join(th[t], NULL);
    }
}

/* ---- malloc_trim's return value ------------------------------------------ */

static void case_malloc_trim(void)
{
    burst(64 * MiB, 3);
    void *big = malloc(4 * MiB); /* a large block: cached when freed */
    CHECK_NOT_NULL(big);
    memset(big, 1, 4 * MiB);
    free(big);
    CHECK_EQ(malloc_trim(0), 1);
    CHECK_EQ(malloc_trim(0), 0);
    CHECK_EQ(obm_trim(), 0);
}

/* ---- the delay ------------------------------------------------------------ */

/* Small allocations that go through the slow paths now and then: pools of
 * several classes fill and empty. */
static void churn(void)
{
    void *p[2048];
    for (size_t i = 0; i < 2048; i++) {
        p[i] = malloc(64 + (i % 8) * 64);
        CHECK_NOT_NULL(p[i]);
    }
    for (size_t i = 0; i < 2048; i++)
        free(p[i]);
}

static void case_delay_short(void)
{
    size_t rss0 = rss_bytes();
    burst(256 * MiB, 5);
    size_t rss_freed = rss_bytes();
    double t0 = now_sec(), t = 0;
    size_t rss = rss_freed;
    while ((t = now_sec() - t0) < 3.0) {
        churn();
        rss = rss_bytes();
        if (rss <= rss0 + 20 * MiB)
            break;
        usleep(10000);
    }
    printf("  OBMEM_PURGE_DELAY_MS=500: RSS start %.1f MiB, after the frees %.1f MiB, "
           "%.1f MiB after %.2f s of small allocations\n",
           (double)rss0 / MiB, (double)rss_freed / MiB, (double)rss / MiB, t);
    /* Pages freed more than the delay before the measurement may already
     * be back: the check means something only if the frees took well under
     * the delay (a loaded machine can stretch them). */
    if (last_free_secs < 0.25)
        CHECK_MSG(rss_freed > rss0 + 40 * MiB, "the burst's pages were kept at first");
    else
        printf("  (the frees took %.3f s: too long to check that pages were kept)\n",
               last_free_secs);
    CHECK_LE(rss, rss0 + 20 * MiB);
}

/* The second of two bursts (minor faults counted before, between and after
 * them) reused the pages of the first: a quarter of the peak may be given
 * back (the bound), and the pointer array of each burst is mapped afresh. */
static void check_second_burst_reused(const char *first, long f0, long f1, long f2)
{
    printf("  OBMEM_PURGE_DELAY_MS=60000: minor faults of %s %ld, then of this thread's %ld\n",
           first, f1 - f0, f2 - f1);
    CHECK_GT(f1 - f0, 10000);
    CHECK_LE(f2 - f1, (f1 - f0) / 2);
}

static void case_delay_long(void)
{
    long f0 = minor_faults();
    burst(128 * MiB, 9);
    long f1 = minor_faults();
    burst(128 * MiB, 9);
    check_second_burst_reused("this thread's first burst", f0, f1, minor_faults());
}

static pthread_barrier_t other_done, other_exit;

static void *other_burst(void *arg)
{
    (void)arg;
    burst(128 * MiB, 11);
    pthread_barrier_wait(&other_done);
    pthread_barrier_wait(&other_exit); /* alive, and its heap with it */
    return NULL;
}

static void case_delay_long_other_thread(void)
{
    pthread_t t;
    CHECK_EQ(pthread_barrier_init(&other_done, NULL, 2), 0);
    CHECK_EQ(pthread_barrier_init(&other_exit, NULL, 2), 0);
    long f0 = minor_faults();
    CHECK_EQ(pthread_create(&t, NULL, other_burst, NULL), 0);
    pthread_barrier_wait(&other_done);
    long f1 = minor_faults();
    burst(128 * MiB, 9);
    long f2 = minor_faults();
    pthread_barrier_wait(&other_exit);
    CHECK_EQ(pthread_join(t, NULL), 0);
    check_second_burst_reused("another thread's burst", f0, f1, f2);
}

static void child(const char *mode)
{
    if (strcmp(mode, "trim_alive") == 0)
        case_trim(0);
    else if (strcmp(mode, "trim_exited") == 0)
        case_trim(1);
    else if (strcmp(mode, "malloc_trim") == 0)
        case_malloc_trim();
    else if (strcmp(mode, "delay_short") == 0)
        case_delay_short();
    else if (strcmp(mode, "delay_long") == 0)
        case_delay_long();
    else if (strcmp(mode, "delay_long_other_thread") == 0)
        case_delay_long_other_thread();
    else if (strcmp(mode, "default") == 0)
        free(malloc(10));
    else
        FAIL("unknown mode %s", mode);
}

int main(int argc, char **argv)
{
    if (run_as_child(argc, argv, child))
        return 0;
    check_obmem_is_malloc();
    if (debug_hooks_on()) {
        printf("test_purge: skipped under the debug hooks (their quarantine keeps blocks)\n");
        return 0;
    }
    /* A long delay: what goes back is what obm_trim gives back, not what
     * the delay has already returned by the time it runs. */
    const char *const long_delay[] = {"OBMEM_PURGE_DELAY_MS=60000", NULL};
    spawn_self_ok("trim_alive", long_delay);
    spawn_self_ok("trim_exited", long_delay);
    spawn_self_ok("malloc_trim", long_delay);
    spawn_self_ok("delay_short", (const char *const[]){"OBMEM_PURGE_DELAY_MS=500", NULL});
    spawn_self_ok("delay_long", (const char *const[]){"OBMEM_PURGE_DELAY_MS=60000", NULL});
    spawn_self_ok("delay_long_other_thread",
                  (const char *const[]){"OBMEM_PURGE_DELAY_MS=60000", NULL});

    const char *bad[] = {"OBMEM_PURGE_DELAY_MS=abc", "OBMEM_PURGE_DELAY_MS=-5",
                         "OBMEM_PURGE_DELAY_MS=99999999999", "OBMEM_PURGE_DELAY_MS="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        check_bad_env("default", bad[i], "OBMEM_PURGE_DELAY_MS", "1000");
    printf("bad OBMEM_PURGE_DELAY_MS ok\n");
    printf("test_purge: all ok\n");
    return 0;
}
