/*
 * A thread's memory outlives the thread (docs/API.md 2.1: "a thread's memory is
 * not lost when the thread exits"; memory freed by another thread is
 * reclaimed).
 * Each cycle: an owner thread allocates 60000 blocks (small, medium and a
 * few large), writes patterns, hands them to 3 freer threads through shared
 * arrays and exits. The freers check and free them while the owner is
 * exiting and after it is gone (half of them wait until it was joined).
 * After each cycle bytes_in_use is back at its starting value; over 12
 * cycles bytes_mapped stays flat (a leak of the dead threads' memory would
 * grow it by ~30 MB per cycle; peak_mapped would be a sum of cycles), and
 * the main thread allocates the same volume again in between.
 */

#include "test_util.h"

#include <pthread.h>
#include <stdatomic.h>

enum { NBLK = 60000, FREERS = 3, CYCLES = 12 };

static unsigned char *blocks[NBLK];
static size_t sizes[NBLK];
static atomic_int published; /* number of blocks published by the owner */
static atomic_int owner_joined;

static size_t block_size_for(int i, uint64_t cycle)
{
    uint64_t s = (uint64_t)i * 2654435761u + cycle;
    if (i % 3000 == 17)
        return 131073 + s % 300000;
    if (i % 10 == 3)
        return 513 + s % 4000;
    return 1 + s % 512;
}

static uint64_t cycle_no;

static void *owner(void *arg)
{
    (void)arg;
    for (int i = 0; i < NBLK; i++) {
        size_t n = block_size_for(i, cycle_no);
        unsigned char *p = malloc(opaque_size(n));
        CHECK_NOT_NULL(p);
        fill_pattern(p, n, (uint64_t)i ^ cycle_no);
        blocks[i] = p;
        sizes[i] = n;
        if (i % 64 == 63)
            atomic_store_explicit(&published, i + 1, memory_order_release);
    }
    atomic_store_explicit(&published, NBLK, memory_order_release);
    return NULL; /* exits with all its blocks alive in other threads' hands */
}

static void *freer(void *arg)
{
    int id = (int)(uintptr_t)arg;
    for (int i = id; i < NBLK; i += FREERS) {
        /* Even indices: free as soon as published (owner still running or
         * exiting). Odd: only after the owner has been joined. */
        if (i % 2 == 1)
            while (!atomic_load_explicit(&owner_joined, memory_order_acquire))
                sched_yield();
        while (atomic_load_explicit(&published, memory_order_acquire) <= i)
            sched_yield();
        CHECK_PATTERN(blocks[i], sizes[i], (uint64_t)i ^ cycle_no);
        free(blocks[i]);
        blocks[i] = NULL;
    }
    return NULL;
}

static void *noop(void *arg) { return arg; }

int main(void)
{
    check_obmem_is_malloc();
    printf("start\n");
    pthread_t t;
    CHECK(pthread_create(&t, NULL, noop, NULL) == 0);
    pthread_join(t, NULL);

    obm_stats s0 = stats_now();
    size_t mapped_after[CYCLES];
    for (int c = 0; c < CYCLES; c++) {
        cycle_no = (uint64_t)c;
        atomic_store(&published, 0);
        atomic_store(&owner_joined, 0);
        pthread_t ow, fr[FREERS];
        CHECK(pthread_create(&ow, NULL, owner, NULL) == 0);
        for (uintptr_t i = 0; i < FREERS; i++)
            CHECK(pthread_create(&fr[i], NULL, freer, (void *)i) == 0);
        pthread_join(ow, NULL);
        atomic_store_explicit(&owner_joined, 1, memory_order_release);
        for (int i = 0; i < FREERS; i++)
            pthread_join(fr[i], NULL);
        obm_stats s = stats_now();
        CHECK_MSG(abs_diff(s.bytes_in_use, s0.bytes_in_use) <= 256 * 1024,
                  "cycle %d: bytes_in_use %zu, started at %zu", c, s.bytes_in_use,
                  s0.bytes_in_use);
        mapped_after[c] = s.bytes_mapped;

        /* The main thread reuses the memory: allocate the same volume. */
        static unsigned char *mine[NBLK];
        for (int i = 0; i < NBLK; i++) {
            mine[i] = malloc(opaque_size(block_size_for(i, cycle_no)));
            CHECK_NOT_NULL(mine[i]);
            dirty(mine[i], 0x5A, 16);
        }
        for (int i = 0; i < NBLK; i++)
            free(mine[i]);
    }
    obm_stats s1 = stats_now();
    printf("bytes_mapped after each cycle:");
    for (int c = 0; c < CYCLES; c++)
        printf(" %zu", mapped_after[c]);
    printf("\npeak %zu\n", s1.peak_mapped);
    CHECK_MSG(mapped_after[CYCLES - 1] <= mapped_after[1] + (16u << 20),
              "bytes_mapped grew from %zu (cycle 1) to %zu (cycle %d): memory of exited "
              "threads is not reclaimed",
              mapped_after[1], mapped_after[CYCLES - 1], CYCLES - 1);
    /* One cycle holds ~30 MB at most; the peak must not be a sum of cycles. */
    CHECK_MSG(s1.peak_mapped <= s0.bytes_mapped + (96u << 20),
              "peak_mapped %zu (started at %zu): cycles do not reuse each other's memory",
              s1.peak_mapped, s0.bytes_mapped);
    CHECK_LE(abs_diff(s1.bytes_in_use, s0.bytes_in_use), 256 * 1024);
    printf("test_threads_exit: all ok\n");
    return 0;
}
