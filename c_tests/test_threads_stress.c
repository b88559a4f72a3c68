/*
 * Cross-thread producer/consumer stress (docs/API.md 2.1: thread-safe, memory
 * freed by another thread is reclaimed).
 * 2 producers malloc blocks of random sizes 1..2000 (and a few large ones),
 * write a pattern and pass them through a queue; 2 consumers check the
 * pattern, sometimes realloc the block (checking the content is kept), and
 * free it. Meanwhile every thread also does private malloc/free churn.
 * Afterwards: every block was seen intact, bytes_in_use is back to its
 * starting value, and a second identical round does not map more memory
 * (remote frees are really reused).
 */

#include "test_util.h"

#include <pthread.h>
#include <stdatomic.h>

enum { PRODUCERS = 2, CONSUMERS = 2, PER_PRODUCER = 150000, QCAP = 1024 };

typedef struct {
    uint32_t size;
    uint32_t seed;
} hdr;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    void *items[QCAP];
    size_t head, count;
    int producers_left;
} q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0, 0, 0};

static atomic_size_t consumed;

static void push(void *p)
{
    pthread_mutex_lock(&q.mu);
    while (q.count == QCAP)
        pthread_cond_wait(&q.not_full, &q.mu);
    q.items[(q.head + q.count) % QCAP] = p;
    q.count++;
    pthread_cond_signal(&q.not_empty);
    pthread_mutex_unlock(&q.mu);
}

static void *pop(void)
{
    pthread_mutex_lock(&q.mu);
    while (q.count == 0 && q.producers_left > 0)
        pthread_cond_wait(&q.not_empty, &q.mu);
    void *p = NULL;
    if (q.count > 0) {
        p = q.items[q.head];
        q.head = (q.head + 1) % QCAP;
        q.count--;
        pthread_cond_signal(&q.not_full);
    }
    pthread_mutex_unlock(&q.mu);
    return p;
}

static void churn(uint64_t *rng)
{
    void *tmp[4];
    for (int k = 0; k < 4; k++) {
        size_t n = rng_next(rng) % 3000;
        tmp[k] = malloc(opaque_size(n));
        CHECK_NOT_NULL(tmp[k]);
        dirty(tmp[k], k, n);
    }
    for (int k = 0; k < 4; k++)
        free(tmp[k]);
}

static void *producer(void *arg)
{
    uint64_t rng = 0x1234567ull + (uintptr_t)arg * 7919;
    for (int i = 0; i < PER_PRODUCER; i++) {
        uint64_t r = rng_next(&rng);
        size_t n = 1 + (r >> 32) % 2000;
        if (i % 5000 == 4999)
            n = 131073 + (r >> 40) % 500000; /* now and then a large block */
        size_t total = sizeof(hdr) + n;
        unsigned char *p = malloc(opaque_size(total));
        CHECK_NOT_NULL(p);
        CHECK_ALIGNED(p, 16);
        CHECK_GE(malloc_usable_size(p), total);
        hdr h = {(uint32_t)n, (uint32_t)r};
        memcpy(p, &h, sizeof h);
        fill_pattern(p + sizeof h, n, h.seed);
        push(p);
        if (i % 16 == 0)
            churn(&rng);
    }
    pthread_mutex_lock(&q.mu);
    q.producers_left--;
    pthread_cond_broadcast(&q.not_empty);
    pthread_mutex_unlock(&q.mu);
    return NULL;
}

static void *consumer(void *arg)
{
    uint64_t rng = 0xABCDEFull + (uintptr_t)arg;
    unsigned char *p;
    while ((p = pop()) != NULL) {
        hdr h;
        memcpy(&h, p, sizeof h);
        CHECK_MSG(h.size >= 1 && (h.size <= 2000 || h.size > 131072),
                  "block %p: corrupt header size %u", (void *)p, h.size);
        CHECK_GE(malloc_usable_size(p), sizeof h + h.size);
        CHECK_PATTERN(p + sizeof h, h.size, h.seed);
        uint64_t r = rng_next(&rng);
        if (r % 4 == 0) {
            /* realloc a block another thread allocated */
            size_t n2 = 1 + (r >> 32) % 4000;
            unsigned char *p2 = realloc(opaque_ptr(p), opaque_size(sizeof h + n2));
            CHECK_NOT_NULL(p2);
            size_t keep = h.size < n2 ? h.size : n2;
            CHECK_PATTERN(p2 + sizeof h, keep, h.seed);
            p = p2;
        }
        free(p);
        atomic_fetch_add(&consumed, 1);
        if (r % 32 == 1)
            churn(&rng);
    }
    return NULL;
}

static void run_round(void)
{
    pthread_t pt[PRODUCERS], ct[CONSUMERS];
    q.producers_left = PRODUCERS;
    atomic_store(&consumed, 0);
    for (uintptr_t i = 0; i < CONSUMERS; i++)
        CHECK(pthread_create(&ct[i], NULL, consumer, (void *)i) == 0);
    for (uintptr_t i = 0; i < PRODUCERS; i++)
        CHECK(pthread_create(&pt[i], NULL, producer, (void *)i) == 0);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(pt[i], NULL);
    for (int i = 0; i < CONSUMERS; i++)
        pthread_join(ct[i], NULL);
    CHECK_EQ(atomic_load(&consumed), (size_t)PRODUCERS * PER_PRODUCER);
}

static void *noop(void *arg) { return arg; }

int main(void)
{
    check_obmem_is_malloc();
    /* Warm up libc's one-time allocations (stdio, thread start-up). */
    printf("start\n");
    pthread_t t;
    CHECK(pthread_create(&t, NULL, noop, NULL) == 0);
    pthread_join(t, NULL);

    obm_stats s0 = stats_now();
    run_round();
    obm_stats s1 = stats_now();
    CHECK_MSG(abs_diff(s1.bytes_in_use, s0.bytes_in_use) <= 256 * 1024,
              "bytes_in_use %zu before, %zu after %d blocks passed between threads",
              s0.bytes_in_use, s1.bytes_in_use, PRODUCERS * PER_PRODUCER);
    printf("round 1 ok: in use %zu -> %zu, mapped %zu -> %zu\n", s0.bytes_in_use,
           s1.bytes_in_use, s0.bytes_mapped, s1.bytes_mapped);
    for (int round = 2; round <= 3; round++) {
        run_round();
        obm_stats s2 = stats_now();
        CHECK_MSG(abs_diff(s2.bytes_in_use, s0.bytes_in_use) <= 256 * 1024,
                  "round %d: bytes_in_use %zu, started at %zu", round, s2.bytes_in_use,
                  s0.bytes_in_use);
        /* The same workload again must reuse what the first round freed. */
        CHECK_MSG(s2.peak_mapped <= s1.peak_mapped + (16u << 20),
                  "round %d: peak_mapped grew %zu -> %zu: freed memory not reused",
                  round, s1.peak_mapped, s2.peak_mapped);
        printf("round %d ok: in use %zu, mapped %zu, peak %zu\n", round, s2.bytes_in_use,
               s2.bytes_mapped, s2.peak_mapped);
    }
    printf("test_threads_stress: all ok\n");
    return 0;
}
