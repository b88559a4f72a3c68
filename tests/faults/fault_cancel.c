/*
 * fault_cancel: threads killed with pthread_cancel while they hold blocks.
 *
 * Each round starts NT threads of five kinds; each allocates blocks
 * (small, medium, a few large), publishes them in its own table, and then:
 *   0. blocks in nanosleep (deferred cancellation point), with a cleanup
 *      handler that frees the first half of its blocks;
 *   1. blocks in read() on an empty pipe, same cleanup handler;
 *   2. spins in a loop that calls nothing, with asynchronous cancellation
 *      enabled only around the loop (never inside malloc), same handler;
 *   3. churns (malloc/free of random sizes) with pthread_testcancel()
 *      between operations, so it is cancelled holding a random set;
 *   4. waits on a condition variable (cleanup: unlock, free half).
 * While they wait, the main thread frees some of their blocks (remote
 * frees into live heaps), then cancels them all and joins (the status
 * must be PTHREAD_CANCELED). The cancelled threads' heaps are abandoned by
 * the pthread key destructor during cancellation; the main thread then
 * frees every block still published (remote frees into abandoned heaps),
 * checking each block's pattern first. The next round's threads adopt the
 * abandoned heaps.
 *
 * Checked after every round: small blocks in use and large blocks equal
 * the baseline taken after a warm-up round, no new heap is created (every
 * cancelled heap was abandoned and adopted again), and the arenas in use
 * do not grow over the rounds.
 */
#include "fault_util.h"

#include <stdatomic.h>

enum { NT = 10, PER = 160, ROUNDS_DEFAULT = 100 };

typedef struct {
    _Atomic(unsigned char *) blk[PER];
    size_t len[PER];
    int kind;
    int pipe_rd;
    atomic_int ready;
    uint64_t seed;
} tstate;

static tstate ts[NT];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static atomic_long cleanups;

static size_t size_for(uint64_t r)
{
    if (r % 40 == 0)
        return 140000 + (r >> 8) % 400000; /* large */
    if (r % 8 == 0)
        return 600 + (r >> 8) % 30000;
    return 1 + (r >> 8) % 500;
}

static void fill(tstate *t, int i, uint64_t r)
{
    size_t n = size_for(r);
    unsigned char *p = malloc(opaque_size(n));
    CHECK_NOT_NULL(p);
    fill_pattern(p, n < 64 ? n : 64, t->seed + (uint64_t)i);
    t->len[i] = n;
    atomic_store(&t->blk[i], p);
}

/* Frees blocks [0, PER/2) that nobody took yet. */
static void cleanup_half(void *arg)
{
    tstate *t = arg;
    for (int i = 0; i < PER / 2; i++) {
        unsigned char *p = atomic_exchange(&t->blk[i], NULL);
        if (p) {
            CHECK_PATTERN(p, t->len[i] < 64 ? t->len[i] : 64, t->seed + (uint64_t)i);
            free(p);
        }
    }
    atomic_fetch_add(&cleanups, 1);
}

static void cleanup_unlock(void *arg)
{
    (void)arg;
    pthread_mutex_unlock(&mu);
}

/* Kind 3's loop, outside victim() so that its state lives in a frame
 * without the cleanup handlers' setjmp. */
static __attribute__((noinline)) void churn(tstate *t, uint64_t rng)
{
    for (;;) {
        uint64_t r = rng_next(&rng);
        int i = PER / 2 + (int)(r % (PER / 2)); /* the half the cleanup leaves */
        /* no cancellation point between taking and re-publishing */
        unsigned char *p = atomic_exchange(&t->blk[i], NULL);
        if (p) {
            CHECK_PATTERN(p, t->len[i] < 64 ? t->len[i] : 64, t->seed + (uint64_t)i);
            free(p);
        }
        fill(t, i, r);
        pthread_testcancel();
    }
}

static __attribute__((noinline)) uint64_t fill_all(tstate *t)
{
    uint64_t rng = t->seed;
    for (int i = 0; i < PER; i++)
        fill(t, i, rng_next(&rng));
    return rng;
}

static void *victim(void *arg)
{
    tstate *t = arg;
    const uint64_t churn_seed = fill_all(t);
    pthread_cleanup_push(cleanup_half, t);
    switch (t->kind) {
    case 0:
        atomic_store(&t->ready, 1);
        for (;;) {
            struct timespec d = {10, 0};
            nanosleep(&d, NULL);
        }
        break;
    case 1: {
        atomic_store(&t->ready, 1);
        char c;
        for (;;)
            if (read(t->pipe_rd, &c, 1) < 0 && errno != EINTR)
                FAIL("read: %s", strerror(errno));
        break;
    }
    case 2: {
        int old;
        atomic_store(&t->ready, 1);
        pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, &old);
        volatile unsigned long spin = 0;
        for (;;)
            spin++;
        break;
    }
    case 3:
        atomic_store(&t->ready, 1);
        churn(t, churn_seed);
        break;
    default:
        pthread_mutex_lock(&mu);
        pthread_cleanup_push(cleanup_unlock, NULL);
        atomic_store(&t->ready, 1);
        for (;;)
            pthread_cond_wait(&never, &mu);
        pthread_cleanup_pop(1);
        break;
    }
    pthread_cleanup_pop(1);
    return NULL;
}

/* Frees the blocks still published; returns how many. */
static size_t reap(tstate *t)
{
    size_t n = 0;
    for (int i = 0; i < PER; i++) {
        unsigned char *p = atomic_exchange(&t->blk[i], NULL);
        if (p) {
            CHECK_PATTERN(p, t->len[i] < 64 ? t->len[i] : 64, t->seed + (uint64_t)i);
            free(p);
            n++;
        }
    }
    return n;
}

static size_t round_(int r, int pipe_rd)
{
    uthread th[NT];
    for (int i = 0; i < NT; i++) {
        tstate *t = &ts[i];
        for (int j = 0; j < PER; j++)
            atomic_store(&t->blk[j], NULL);
        t->kind = (i + r) % 5;
        t->pipe_rd = pipe_rd;
        t->seed = (uint64_t)r * 1000 + (uint64_t)i + 1;
        atomic_store(&t->ready, 0);
        CHECK_EQ(uthread_create(&th[i], victim, t), 0);
    }
    for (int i = 0; i < NT; i++)
        while (!atomic_load(&ts[i].ready))
            sched_yield();
    /* Remote frees into live heaps: a quarter of each thread's blocks
     * that neither its cleanup nor its churn touches... any of them. */
    size_t remote = 0;
    for (int i = 0; i < NT; i++)
        for (int j = PER / 2; j < PER; j += 4)
            if (ts[i].kind != 3) {
                unsigned char *p = atomic_exchange(&ts[i].blk[j], NULL);
                if (p) {
                    free(p);
                    remote++;
                }
            }
    if (r % 2)
        usleep(200); /* sometimes let the churners churn */
    for (int i = 0; i < NT; i++)
        CHECK_EQ(pthread_cancel(th[i].t), 0);
    size_t reaped = 0;
    for (int i = 0; i < NT; i++) {
        void *ret = uthread_join(&th[i]);
        CHECK_MSG(ret == PTHREAD_CANCELED, "thread %d (kind %d) returned %p", i, ts[i].kind, ret);
        reaped += reap(&ts[i]);
    }
    return reaped + remote;
}

int main(int argc, char **argv)
{
    check_obmem_is_malloc();
    int rounds = argc > 1 ? atoi(argv[1]) : ROUNDS_DEFAULT;
    const char *full = getenv("FAULTS_FULL");
    if (argc <= 1 && full && *full == '1')
        rounds *= 10;
    int fds[2];
    CHECK_EQ(pipe(fds), 0);
    double t0 = now_sec();
    /* Warm-up: the first cancellation makes glibc dlopen libgcc_s (which
     * allocates, for good), and the heaps for NT threads are made. */
    round_(0, fds[0]);
    obm_stats warm = stats_now();
    size_t freed_by_main = 0;
    size_t max_arenas = warm.arenas_in_use;
    for (int r = 1; r <= rounds; r++) {
        freed_by_main += round_(r, fds[0]);
        obm_stats st = stats_now();
        CHECK_MSG(small_in_use(&st) == small_in_use(&warm),
                  "round %d: %zu small blocks in use, %zu at the baseline", r, small_in_use(&st),
                  small_in_use(&warm));
        CHECK_EQ(st.large_blocks, warm.large_blocks);
        CHECK_MSG(st.heaps == warm.heaps, "round %d: %zu heaps, %zu after the warm-up", r,
                  st.heaps, warm.heaps);
        if (st.arenas_in_use > max_arenas)
            max_arenas = st.arenas_in_use;
    }
    obm_stats st = stats_now();
    /* Arenas do not pile up round after round (abandoned heaps keep no
     * spare arenas; a few rounds' worth of fragmentation is allowed). */
    CHECK_MSG(max_arenas <= warm.arenas_in_use + 16, "arenas in use grew to %zu from %zu",
              max_arenas, warm.arenas_in_use);
    long cl = atomic_load(&cleanups);
    CHECK_EQ(cl, (long)(rounds + 1) * NT);
    printf("summary: %d rounds x %d cancelled threads (nanosleep, read, async spin, "
           "testcancel churn, cond_wait): %ld cleanup handlers ran, the main thread freed "
           "%zu of their blocks; heaps %zu, arenas in use %zu (max %zu, %zu after warm-up), "
           "%.1fs\n",
           rounds, NT, cl, freed_by_main, st.heaps, st.arenas_in_use, max_arenas,
           warm.arenas_in_use, now_sec() - t0);
    return 0;
}
