/*
 * fault_fork_threads: fork from several threads at once while other
 * threads allocate, free, churn threads and read the statistics.
 *
 * c_tests/test_fork_threads.c forks from the main thread only. Here:
 *   - FORKERS threads fork concurrently, each FORKS times, while two
 *     hammer threads malloc/realloc/free (small to large), a churner
 *     creates short-lived threads (so forks land while heaps are being
 *     created, abandoned and adopted), and a reader calls obm_get_stats
 *     (which takes the registry lock) in a loop;
 *   - each child (alarm 20 s: a deadlock on a lock some parent thread held
 *     at the fork shows as SIGALRM) checks and frees half of the blocks the
 *     main thread allocated before the threads started (owned by a heap
 *     whose thread does not exist in the child), takes a statistics
 *     baseline, allocates 8,000 blocks of mixed kinds, starts 4 threads
 *     that allocate and free each other's blocks, and forks a grandchild
 *     from one of those threads; the grandchild allocates, starts 2
 *     threads of its own, and leaves with exit(42) (atexit handlers and
 *     the library destructor run); the child checks that status, checks
 *     that its statistics are back to its baseline, and leaves with
 *     exit(10 + k % 100) — the parent checks the exact code;
 *   - the parent, at the end, checks its own blocks and its statistics.
 * Then the same again (fewer forks) under OBMEM_MALLOC=debug, re-executed,
 * where the debug hooks' locks are taken across fork too.
 */
#include "fault_util.h"

#include <stdatomic.h>

static int FORKERS = 3, FORKS = 8;
enum { INHERITED = 3000, HAMMERS = 2 };

static unsigned char *inh[INHERITED];
static size_t inh_len[INHERITED];
static atomic_int stop;
static atomic_long hammer_ops, churned, stat_reads;
static int debug;
static int child_blocks = 8000;

static size_t mixed_size(uint64_t r)
{
    switch (r % 32) {
    case 0:
        /* under the debug hooks every byte is filled on malloc and free */
        return 131073 + (r >> 8) % (debug ? 200000 : 2 * MiB);
    case 1:
    case 2:
    case 3:
        return 513 + (r >> 8) % 60000;
    default:
        return (r >> 8) % 512;
    }
}

static void *hammer(void *arg)
{
    uint64_t rng = 0x1111 + (uintptr_t)arg;
    enum { S = 128 };
    unsigned char *slot[S] = {0};
    size_t len[S] = {0};
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        uint64_t r = rng_next(&rng);
        int s = (int)(r % S);
        if (slot[s]) {
            CHECK_PATTERN(slot[s], len[s] < 32 ? len[s] : 32, (uint64_t)s + len[s]);
            if (r & 0x100) {
                free(slot[s]);
                slot[s] = NULL;
                continue;
            }
        }
        size_t n = mixed_size(r >> 9) + 1;
        unsigned char *p = realloc(opaque_ptr(slot[s]), opaque_size(n));
        CHECK_NOT_NULL(p);
        slot[s] = p;
        len[s] = n;
        fill_pattern(p, n < 32 ? n : 32, (uint64_t)s + n);
        atomic_fetch_add_explicit(&hammer_ops, 1, memory_order_relaxed);
    }
    for (int s = 0; s < S; s++)
        free(slot[s]);
    return NULL;
}

static void *short_lived(void *arg)
{
    (void)arg;
    void *p[50];
    for (int i = 0; i < 50; i++) {
        p[i] = malloc(opaque_size((size_t)i * 37 + 1));
        CHECK_NOT_NULL(p[i]);
    }
    for (int i = 0; i < 50; i++)
        free(p[i]);
    return NULL;
}

static void *churner(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        uthread t;
        CHECK_EQ(uthread_create(&t, short_lived, NULL), 0);
        uthread_join(&t);
        atomic_fetch_add(&churned, 1);
    }
    return NULL;
}

static void *reader(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        obm_stats st = stats_now();
        CHECK_GE(st.bytes_mapped, st.arenas_in_use * 256 * KiB);
        atomic_fetch_add(&stat_reads, 1);
        usleep(100);
    }
    return NULL;
}

/* ---- in the child -------------------------------------------------------- */

enum { CT = 4, CPER = 2000 };
static unsigned char *exch[CT][CPER]; /* thread t allocates row t, thread t+1 frees it */
static pthread_barrier_t cbar;

static void *grandchild_thread(void *arg)
{
    (void)arg;
    for (int r = 0; r < 20; r++) {
        void *p[100];
        for (int i = 0; i < 100; i++) {
            p[i] = malloc(opaque_size((size_t)(i * 97 + r) % 9000 + 1));
            CHECK_NOT_NULL(p[i]);
            dirty(p[i], 0x44, 1);
        }
        for (int i = 0; i < 100; i++)
            free(p[i]);
    }
    return NULL;
}

static void grandchild(void)
{
    alarm(20);
    uint64_t rng = 77;
    enum { G = 2000 };
    static void *g[G];
    for (int i = 0; i < G; i++) {
        g[i] = malloc(opaque_size(mixed_size(rng_next(&rng))));
        CHECK_NOT_NULL(g[i]);
    }
    uthread t[2];
    for (int i = 0; i < 2; i++)
        CHECK_EQ(uthread_create(&t[i], grandchild_thread, NULL), 0);
    for (int i = 0; i < 2; i++)
        uthread_join(&t[i]);
    for (int i = 0; i < G; i++)
        free(g[i]);
    obm_stats st = stats_now();
    CHECK_GE(st.bytes_mapped, st.bytes_in_use);
    exit(42); /* atexit handlers and the library's destructor run */
}

static atomic_int grandchild_status;

static void *child_thread(void *arg)
{
    int t = (int)(uintptr_t)arg;
    uint64_t rng = 0xC0DE + (uint64_t)t;
    for (int i = 0; i < CPER; i++) {
        size_t n = mixed_size(rng_next(&rng)) + 8;
        exch[t][i] = malloc(opaque_size(n));
        CHECK_NOT_NULL(exch[t][i]);
        memcpy(exch[t][i], &n, sizeof n);
    }
    pthread_barrier_wait(&cbar);
    /* free the next thread's blocks: cross-thread frees */
    int o = (t + 1) % CT;
    for (int i = 0; i < CPER; i++) {
        size_t n;
        memcpy(&n, exch[o][i], sizeof n);
        CHECK_GE(malloc_usable_size(exch[o][i]), n);
        free(exch[o][i]);
    }
    if (t == 0) {
        /* fork from a thread of the child, while the others run */
        fflush(stdout);
        pid_t g = fork();
        CHECK(g >= 0);
        if (g == 0)
            grandchild();
        int st;
        CHECK(waitpid(g, &st, 0) == g);
        atomic_store(&grandchild_status, st);
    }
    return NULL;
}

static void child(int k)
{
    alarm(20);
    /* Half the blocks the parent's main thread allocated: intact, freeable.
     * Their heap's thread does not exist here; the frees go to its remote
     * list for good (the heap is orphaned). */
    for (int i = k % 2; i < INHERITED; i += 2) {
        CHECK_PATTERN(inh[i], inh_len[i] < 64 ? inh_len[i] : 64, (uint64_t)i);
        free(inh[i]);
    }
    obm_stats base = stats_now();
    uint64_t rng = 0xF00D + (uint64_t)k;
    enum { NMAX = 20000 };
    static unsigned char *p[NMAX];
    static size_t len[NMAX];
    const int N = child_blocks;
    for (int i = 0; i < N; i++) {
        uint64_t r = rng_next(&rng);
        size_t n = mixed_size(r) + 1;
        p[i] = (r >> 50) % 4 == 0 ? calloc(n, 1) : malloc(opaque_size(n));
        CHECK_NOT_NULL(p[i]);
        len[i] = n;
        fill_pattern(p[i], n < 32 ? n : 32, r);
        if (i % 3 == 0 && i > 0) { /* realloc an earlier one */
            int j = (int)(r % (uint64_t)i);
            size_t m = mixed_size(r >> 20) + 1;
            unsigned char *q = realloc(opaque_ptr(p[j]), opaque_size(m));
            CHECK_NOT_NULL(q);
            p[j] = q;
            len[j] = m;
        }
    }
    CHECK_EQ(pthread_barrier_init(&cbar, NULL, CT), 0);
    uthread th[CT];
    for (int t = 0; t < CT; t++)
        CHECK_EQ(uthread_create(&th[t], child_thread, (void *)(uintptr_t)t), 0);
    for (int t = 0; t < CT; t++)
        uthread_join(&th[t]);
    pthread_barrier_destroy(&cbar);
    int gs = atomic_load(&grandchild_status);
    char buf[64];
    CHECK_MSG(WIFEXITED(gs) && WEXITSTATUS(gs) == 42, "grandchild: %s",
              describe_status(gs, buf, sizeof buf));
    for (int i = 0; i < N; i++) {
        CHECK_GE(malloc_usable_size(p[i]), len[i]);
        free(p[i]);
    }
    obm_stats st = stats_now();
    if (!debug) {
        CHECK_EQ(small_in_use(&st), small_in_use(&base));
        CHECK_EQ(st.large_blocks, base.large_blocks);
    }
    exit(10 + k % 100);
}

/* ---- in the parent ---------------------------------------------------------- */

static atomic_int bad_children;
static atomic_int next_k;

static void *forker(void *arg)
{
    (void)arg;
    for (int f = 0; f < FORKS; f++) {
        long before = atomic_load(&hammer_ops);
        while (atomic_load(&hammer_ops) < before + 500)
            sched_yield();
        int k = atomic_fetch_add(&next_k, 1);
        pid_t pid = fork();
        CHECK_MSG(pid >= 0, "fork: %s", strerror(errno));
        if (pid == 0)
            child(k);
        int st;
        CHECK(waitpid(pid, &st, 0) == pid);
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 10 + k % 100)) {
            char buf[64];
            fprintf(stderr, "child #%d: %s%s\n", k, describe_status(st, buf, sizeof buf),
                    WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM ? " (hung: deadlock after fork?)"
                                                               : "");
            atomic_fetch_add(&bad_children, 1);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    debug = debug_hooks_on();
    if (!debug)
        check_obmem_is_malloc();
    if (debug) {
        FORKS = 3;
        child_blocks = 2000;
    }
    const char *full = getenv("FAULTS_FULL");
    if (full && *full == '1')
        FORKS *= 5;
    double t0 = now_sec();
    obm_stats base = stats_now();
    for (int i = 0; i < INHERITED; i++) {
        inh_len[i] = mixed_size((uint64_t)i * 2654435761u) + 1;
        inh[i] = malloc(opaque_size(inh_len[i]));
        CHECK_NOT_NULL(inh[i]);
        fill_pattern(inh[i], inh_len[i] < 64 ? inh_len[i] : 64, (uint64_t)i);
    }
    uthread hm[HAMMERS], ch, rd;
    for (int i = 0; i < HAMMERS; i++)
        CHECK_EQ(uthread_create(&hm[i], hammer, (void *)(uintptr_t)i), 0);
    CHECK_EQ(uthread_create(&ch, churner, NULL), 0);
    CHECK_EQ(uthread_create(&rd, reader, NULL), 0);
    while (atomic_load(&hammer_ops) < 5000)
        sched_yield();
    uthread fk[8];
    for (int i = 0; i < FORKERS; i++)
        CHECK_EQ(uthread_create(&fk[i], forker, NULL), 0);
    for (int i = 0; i < FORKERS; i++)
        uthread_join(&fk[i]);
    atomic_store(&stop, 1);
    for (int i = 0; i < HAMMERS; i++)
        uthread_join(&hm[i]);
    uthread_join(&ch);
    uthread_join(&rd);
    for (int i = 0; i < INHERITED; i++) {
        CHECK_PATTERN(inh[i], inh_len[i] < 64 ? inh_len[i] : 64, (uint64_t)i);
        free(inh[i]);
    }
    obm_stats st = stats_now();
    if (!debug) {
        CHECK_EQ(small_in_use(&st), small_in_use(&base));
        CHECK_EQ(st.large_blocks, base.large_blocks);
    }
    int bad = atomic_load(&bad_children);
    printf("  %s%d forks from %d threads at once (each child: %d blocks, 4 threads, a "
           "grandchild forked from a thread), %ld hammer ops, %ld threads churned, %ld "
           "stats reads: %d bad children, %.1fs\n",
           debug ? "debug hooks: " : "", FORKS * FORKERS, FORKERS, child_blocks,
           atomic_load(&hammer_ops),
           atomic_load(&churned), atomic_load(&stat_reads), bad, now_sec() - t0);
    CHECK_MSG(bad == 0, "%d children failed", bad);
    if (!debug && !(argc > 1 && strcmp(argv[1], "nodebug") == 0)) {
        /* The same under the debug hooks, re-executed. */
        const char *env[] = {"OBMEM_MALLOC=debug", full && full[0] == '1' ? "FAULTS_FULL=1" : NULL,
                             NULL};
        run_result r;
        run_self(NULL, env, 0, 200, &r);
        fputs(r.out, stdout);
        if (!run_ok(&r)) {
            char buf[64];
            FAIL("under the debug hooks: %s", describe_status(r.status, buf, sizeof buf));
        }
        free(r.out);
    }
    if (!debug)
        printf("summary: fault_fork_threads ok\n");
    return 0;
}
