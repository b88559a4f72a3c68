/*
 * fork() in a multi-threaded parent (docs/API.md 2.1: "the child of fork() in a
 * multi-threaded parent can allocate").
 * 4 threads hammer malloc/free/realloc (small, medium, large) while the main
 * thread forks 50 times. Each child (with a 20 s alarm, so a deadlock on a
 * lock held by a parent thread at fork time shows as SIGALRM) checks and
 * frees blocks the parent's main thread and the hammer threads (which do
 * not exist in the child) allocated before fork, mallocs/frees a lot
 * (including large blocks), starts a thread of its own that allocates,
 * reads obm_get_stats, and _exit(0)s. The parent checks every child's exit
 * status and that its own blocks are intact afterwards.
 */

#include "test_util.h"

#include <pthread.h>
#include <stdatomic.h>

enum { HAMMERS = 4, FORKS = 50, PARENT_BLOCKS = 2000 };

static atomic_int stop;
static atomic_long hammer_ops;

/* Blocks owned by the hammer threads (allocated by them, alive across the
 * forks): a child frees them although their owners do not exist there. */
enum { HBLK = 300 };
static unsigned char *hblk[HAMMERS][HBLK];
static size_t hsz[HAMMERS][HBLK];
static atomic_int hammers_ready;

static void *hammer(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    for (int i = 0; i < HBLK; i++) {
        hsz[id][i] = (size_t)i * 113 % 6000 + (i % 100 == 0 ? 140000 : 0);
        hblk[id][i] = malloc(opaque_size(hsz[id][i]));
        CHECK_NOT_NULL(hblk[id][i]);
        fill_pattern(hblk[id][i], hsz[id][i], id * 1000 + (uint64_t)i);
    }
    atomic_fetch_add(&hammers_ready, 1);
    uint64_t rng = 0xF00D + id;
    unsigned char *slot[64] = {0};
    size_t len[64] = {0};
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        uint64_t r = rng_next(&rng);
        int s = (int)(r % 64);
        if (slot[s]) {
            CHECK_PATTERN(slot[s], len[s] < 32 ? len[s] : 32, (uint64_t)s + len[s]);
            if (r & 0x100) {
                free(slot[s]);
                slot[s] = NULL;
                continue;
            }
        }
        size_t n = (r >> 32) % ((r >> 12) % 16 == 0 ? 70000 : 1000);
        if ((r >> 20) % 128 == 0)
            n = 150000 + (r >> 40) % 2000000;
        unsigned char *p = realloc(opaque_ptr(slot[s]), opaque_size(n));
        if (n == 0 && slot[s]) {
            slot[s] = NULL; /* realloc(p, 0) freed it */
            continue;
        }
        CHECK_NOT_NULL(p);
        slot[s] = p;
        len[s] = n;
        fill_pattern(p, n < 32 ? n : 32, (uint64_t)s + n);
        atomic_fetch_add_explicit(&hammer_ops, 1, memory_order_relaxed);
    }
    for (int s = 0; s < 64; s++)
        free(slot[s]);
    return NULL;
}

static unsigned char *pblk[PARENT_BLOCKS];
static size_t psz[PARENT_BLOCKS];

static void *child_thread(void *arg)
{
    (void)arg;
    void *p[500];
    for (int i = 0; i < 500; i++) {
        p[i] = malloc(opaque_size((size_t)i * 53 % 5000 + 8 + (i == 100 ? 300000 : 0)));
        CHECK_NOT_NULL(p[i]);
        dirty(p[i], 0x33, 8);
    }
    for (int i = 0; i < 500; i++)
        free(p[i]);
    return NULL;
}

static void child(int k)
{
    alarm(20);
    /* Blocks inherited from the parent: intact, and freeable here. */
    for (int i = k % 2; i < PARENT_BLOCKS; i += 2) {
        CHECK_PATTERN(pblk[i], psz[i], (uint64_t)i);
        free(pblk[i]);
    }
    /* Blocks of threads that do not exist in the child. */
    for (int h = 0; h < HAMMERS; h++)
        for (int i = 0; i < HBLK; i++) {
            CHECK_PATTERN(hblk[h][i], hsz[h][i], (uint64_t)h * 1000 + (uint64_t)i);
            free(hblk[h][i]);
        }
    uint64_t rng = 0xC0FFEE + (uint64_t)k;
    static void *p[1000];
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 1000; i++) {
            uint64_t r = rng_next(&rng);
            size_t n = (r >> 32) % (i % 10 == 0 ? 100000 : 1500);
            if (i % 100 == 7)
                n = 131073 + (r >> 40) % 4000000; /* large */
            p[i] = i % 3 == 0 ? calloc(1, opaque_size(n)) : malloc(opaque_size(n));
            CHECK_NOT_NULL(p[i]);
            if (i % 3 == 0)
                CHECK_ZERO(p[i], n < 256 ? n : 256);
            fill_pattern(p[i], n < 64 ? n : 64, r);
            CHECK_PATTERN(p[i], n < 64 ? n : 64, r);
        }
        for (int i = 0; i < 1000; i++)
            free(p[i]);
    }
    pthread_t t;
    CHECK(pthread_create(&t, NULL, child_thread, NULL) == 0);
    pthread_join(t, NULL);
    obm_stats st = stats_now();
    CHECK(st.bytes_mapped >= st.bytes_in_use);
    _exit(0);
}

int main(void)
{
    check_obmem_is_malloc();
    printf("start\n");
    fflush(stdout);
    for (int i = 0; i < PARENT_BLOCKS; i++) {
        psz[i] = (size_t)i * 71 % 3000 + (i % 400 == 0 ? 200000 : 0);
        pblk[i] = malloc(opaque_size(psz[i]));
        CHECK_NOT_NULL(pblk[i]);
        fill_pattern(pblk[i], psz[i], (uint64_t)i);
    }
    pthread_t th[HAMMERS];
    for (uintptr_t i = 0; i < HAMMERS; i++)
        CHECK(pthread_create(&th[i], NULL, hammer, (void *)i) == 0);
    while (atomic_load(&hammers_ready) < HAMMERS || atomic_load(&hammer_ops) < 20000)
        sched_yield();

    int failed = 0;
    for (int k = 0; k < FORKS; k++) {
        /* let the hammers run a bit between forks */
        long before = atomic_load(&hammer_ops);
        while (atomic_load(&hammer_ops) < before + 2000)
            sched_yield();
        pid_t pid = fork();
        CHECK_MSG(pid >= 0, "fork #%d: %s", k, strerror(errno));
        if (pid == 0)
            child(k);
        int st;
        CHECK(waitpid(pid, &st, 0) == pid);
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
            char buf[64];
            fprintf(stderr, "child #%d: %s%s\n", k, describe_status(st, buf, sizeof buf),
                    WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM ? " (hung: deadlock after fork?)"
                                                               : "");
            if (++failed >= 3)
                break;
        }
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < HAMMERS; i++)
        pthread_join(th[i], NULL);
    CHECK_MSG(failed == 0, "%d of the fork children failed", failed);
    for (int i = 0; i < PARENT_BLOCKS; i++) {
        CHECK_PATTERN(pblk[i], psz[i], (uint64_t)i);
        free(pblk[i]);
    }
    for (int h = 0; h < HAMMERS; h++)
        for (int i = 0; i < HBLK; i++) {
            CHECK_PATTERN(hblk[h][i], hsz[h][i], (uint64_t)h * 1000 + (uint64_t)i);
            free(hblk[h][i]);
        }
    printf("%d forks ok, %ld hammer operations\n", FORKS, atomic_load(&hammer_ops));
    printf("test_fork_threads: all ok\n");
    return 0;
}
