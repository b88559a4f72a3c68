/*
 * Many short-lived threads (docs/API.md 2.1: a thread's memory is not lost when
 * it exits; memory freed by another thread is reclaimed).
 * 2000 threads, 4 alive at a time; each mallocs/callocs/reallocs/frees a few
 * hundred blocks (small, medium, sometimes large or aligned), frees most of
 * them itself and leaves 40 for the main thread to free after it exited.
 * Afterwards bytes_in_use is back at baseline and bytes_mapped / arenas in
 * use did not grow with the number of threads (a per-thread heap or cache
 * lost at exit, even one arena, would add >= 500 MB over 2000 threads).
 */

#include "test_util.h"

#include <pthread.h>

enum { THREADS = 2000, AT_ONCE = 4, PER_THREAD = 300, LEFT = 40 };

typedef struct {
    int id;
    unsigned char *left[LEFT];
    size_t left_size[LEFT];
} job;

static void *worker(void *arg)
{
    job *j = arg;
    uint64_t rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)j->id * 0x100000001b3ull;
    unsigned char *p[PER_THREAD];
    size_t n[PER_THREAD];
    for (int i = 0; i < PER_THREAD; i++) {
        uint64_t r = rng_next(&rng);
        n[i] = (r >> 32) % (i % 8 == 0 ? 12000 : 700);
        if (i == 5 && j->id % 10 == 0)
            n[i] = 200000;
        switch (r % 5) {
        case 0:
            p[i] = calloc(1, opaque_size(n[i]));
            CHECK_NOT_NULL(p[i]);
            CHECK_ZERO(p[i], n[i]);
            break;
        case 1: {
            void *a = NULL;
            CHECK(posix_memalign(&a, (size_t)64 << (r >> 8) % 4, opaque_size(n[i])) == 0);
            p[i] = a;
            break;
        }
        case 2:
            n[i] += 1; /* realloc(p, 0) would free p */
            p[i] = malloc(opaque_size(n[i] / 2));
            CHECK_NOT_NULL(p[i]);
            p[i] = realloc(opaque_ptr(p[i]), opaque_size(n[i]));
            break;
        default:
            p[i] = malloc(opaque_size(n[i]));
            break;
        }
        CHECK_NOT_NULL(p[i]);
        CHECK_ALIGNED(p[i], 16);
        fill_pattern(p[i], n[i], (uint64_t)j->id * 1000 + (uint64_t)i);
    }
    for (int i = 0; i < PER_THREAD; i++) {
        CHECK_PATTERN(p[i], n[i], (uint64_t)j->id * 1000 + (uint64_t)i);
        if (i < LEFT) {
            j->left[i] = p[i];
            j->left_size[i] = n[i];
        } else {
            free(p[i]);
        }
    }
    return NULL;
}

static void *noop(void *arg) { return arg; }

int main(void)
{
    check_obmem_is_malloc();
    printf("start\n");
    pthread_t t0;
    CHECK(pthread_create(&t0, NULL, noop, NULL) == 0);
    pthread_join(t0, NULL);

    static job jobs[THREADS];
    obm_stats s0 = stats_now();
    obm_stats mid = s0;
    for (int base = 0; base < THREADS; base += AT_ONCE) {
        pthread_t t[AT_ONCE];
        for (int k = 0; k < AT_ONCE; k++) {
            jobs[base + k].id = base + k;
            int rc = pthread_create(&t[k], NULL, worker, &jobs[base + k]);
            CHECK_MSG(rc == 0, "pthread_create #%d: %s", base + k, strerror(rc));
        }
        for (int k = 0; k < AT_ONCE; k++)
            pthread_join(t[k], NULL);
        /* The main thread frees what the dead threads left. */
        for (int k = 0; k < AT_ONCE; k++) {
            job *j = &jobs[base + k];
            for (int i = 0; i < LEFT; i++) {
                CHECK_PATTERN(j->left[i], j->left_size[i], (uint64_t)j->id * 1000 + (uint64_t)i);
                free(j->left[i]);
                j->left[i] = NULL;
            }
        }
        if (base == 200)
            mid = stats_now();
    }
    obm_stats s1 = stats_now();
    printf("in use %zu -> %zu; mapped %zu -> %zu (after 200 threads: %zu); peak %zu; "
           "arenas in use %zu -> %zu\n",
           s0.bytes_in_use, s1.bytes_in_use, s0.bytes_mapped, s1.bytes_mapped, mid.bytes_mapped,
           s1.peak_mapped, s0.arenas_in_use, s1.arenas_in_use);
    CHECK_MSG(abs_diff(s1.bytes_in_use, s0.bytes_in_use) <= 256 * 1024,
              "bytes_in_use %zu before %d threads, %zu after", s0.bytes_in_use, THREADS,
              s1.bytes_in_use);
    CHECK_MSG(s1.bytes_mapped <= mid.bytes_mapped + (32u << 20),
              "bytes_mapped grew from %zu (after 200 threads) to %zu (after %d)",
              mid.bytes_mapped, s1.bytes_mapped, THREADS);
    CHECK_MSG(s1.peak_mapped <= s0.bytes_mapped + (128u << 20),
              "peak_mapped %zu, started at %zu: thread memory piles up", s1.peak_mapped,
              s0.bytes_mapped);
    CHECK_MSG(s1.arenas_in_use <= s0.arenas_in_use + 256,
              "arenas_in_use %zu -> %zu over %d threads", s0.arenas_in_use, s1.arenas_in_use,
              THREADS);
    printf("test_threads_many: all ok\n");
    return 0;
}
