/*
 * prodcons: one producer thread mallocs blocks and pushes the pointers
 * through a lock-free single-producer/single-consumer ring; one consumer
 * thread pops them, checks their contents and frees them.  Every free is a
 * cross-thread free of memory the other thread allocated, the pattern of
 * pipelines and work queues.
 *
 * The clock runs from the moment both threads are released until the
 * consumer has freed the last block.  One op = one block (malloc on one
 * thread + free on the other); ns_per_op is wall time / blocks.
 *
 * Built with -DCOUNT_ALLOC (build/bench/prodcons-count, for benches/instr.sh)
 * the benchmark's malloc and free calls go through two tiny non-inlined
 * functions, counted_malloc and counted_free, so that callgrind's
 * --toggle-collect can count the instructions spent inside the allocator
 * alone, leaving out the threads' spin-waiting.  Wrapping by name in the
 * program is used because the allocators' own entry points are aliases
 * (malloc = mi_malloc = __libc_malloc, ...) that valgrind may report under
 * any one of their names.
 */
#include "bench_common.h"
#include <pthread.h>
#include <stdatomic.h>

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#else
#define cpu_relax() atomic_signal_fence(memory_order_seq_cst)
#endif

#define CACHELINE 64

#ifdef COUNT_ALLOC
/* noipa: no clones or inlining, so the symbols callgrind sees are exactly
 * these; the empty asm keeps the call from becoming a tail jump */
__attribute__((noinline, noipa)) void *counted_malloc(size_t n)
{
    void *p = malloc(n);
    __asm__ volatile("" : "+r"(p) : : "memory");
    return p;
}
__attribute__((noinline, noipa)) void counted_free(void *p)
{
    free(p);
    __asm__ volatile("" : : : "memory");
}
#define ALLOC(n) counted_malloc(n)
#define FREE(p) counted_free(p)
#else
#define ALLOC(n) malloc(n)
#define FREE(p) free(p)
#endif

typedef struct {
    unsigned char *p;
    size_t size;
} item_t;

static struct {
    _Alignas(CACHELINE) _Atomic size_t head; /* next slot the producer writes */
    _Alignas(CACHELINE) _Atomic size_t tail; /* next slot the consumer reads */
    _Alignas(CACHELINE) _Atomic int go;
    _Alignas(CACHELINE) item_t *ring;
    size_t mask;
    long long blocks, min, max, seed;
} q;

static uint64_t consumer_checksum, consumer_errors;

static void *producer(void *arg)
{
    (void)arg;
    rng_t rng;
    rng_seed(&rng, (uint64_t)q.seed);
    size_t head = 0, tail_cache = 0, cap = q.mask + 1;
    while (!atomic_load_explicit(&q.go, memory_order_acquire))
        cpu_relax();
    for (long long n = 0; n < q.blocks; n++) {
        size_t sz = rng_range(&rng, (size_t)q.min, (size_t)q.max);
        unsigned char *p = ALLOC(sz);
        if (!p)
            oom(sz);
        touch_block(p, sz, (uint64_t)n * 0x9e3779b97f4a7c15ull, 0);
        while (head - tail_cache == cap) {
            tail_cache = atomic_load_explicit(&q.tail, memory_order_acquire);
            if (head - tail_cache == cap)
                cpu_relax();
        }
        q.ring[head & q.mask] = (item_t){p, sz};
        atomic_store_explicit(&q.head, ++head, memory_order_release);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    size_t tail = 0, head_cache = 0;
    uint64_t checksum = 0, errors = 0;
    while (!atomic_load_explicit(&q.go, memory_order_acquire))
        cpu_relax();
    for (long long n = 0; n < q.blocks; n++) {
        while (tail == head_cache) {
            head_cache = atomic_load_explicit(&q.head, memory_order_acquire);
            if (tail == head_cache)
                cpu_relax();
        }
        item_t it = q.ring[tail & q.mask];
        atomic_store_explicit(&q.tail, ++tail, memory_order_release);
        uint64_t tag = (uint64_t)n * 0x9e3779b97f4a7c15ull;
        if (!check_block(it.p, it.size, tag))
            errors++;
        checksum = checksum * 31 + tag + it.size;
        FREE(it.p);
    }
    consumer_checksum = checksum;
    consumer_errors = errors;
    return NULL;
}

int main(int argc, char **argv)
{
    long long ring = 1024;
    q.blocks = 10000000, q.min = 16, q.max = 512, q.seed = 42;
    opt_t opts[] = {
        {"blocks", &q.blocks, "blocks passed from producer to consumer"},
        {"min", &q.min, "smallest block size in bytes"},
        {"max", &q.max, "largest block size in bytes"},
        {"ring", &ring, "ring capacity in pointers (power of two)"},
        {"seed", &q.seed, "RNG seed"},
        {NULL, NULL, NULL},
    };
    parse_opts(argc, argv, opts, "[options]");
    if (q.blocks < 1 || q.min < 1 || q.max < q.min || ring < 2 || (ring & (ring - 1))) {
        fprintf(stderr, "prodcons: bad parameters (ring must be a power of two)\n");
        return 64;
    }
    q.mask = (size_t)ring - 1;
    q.ring = malloc((size_t)ring * sizeof *q.ring);
    if (!q.ring)
        oom((size_t)ring * sizeof *q.ring);

    pthread_t tp, tc;
    if (pthread_create(&tc, NULL, consumer, NULL) || pthread_create(&tp, NULL, producer, NULL)) {
        fprintf(stderr, "prodcons: pthread_create failed\n");
        return 1;
    }
    /* let both threads reach their start line before the clock starts */
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
    uint64_t t0 = now_ns();
    atomic_store_explicit(&q.go, 1, memory_order_release);
    pthread_join(tp, NULL);
    pthread_join(tc, NULL);
    uint64_t t1 = now_ns();
    long rss = peak_rss_kib();
    free(q.ring);

    printf("RESULT bench=prodcons min=%lld max=%lld ring=%lld ops=%lld seed=%lld "
           "ns_per_op=%.2f maxrss_kib=%ld malloc_from=%s errors=%llu checksum=%016llx\n",
           q.min, q.max, ring, q.blocks, q.seed, (double)(t1 - t0) / (double)q.blocks, rss, malloc_from(),
           (unsigned long long)consumer_errors, (unsigned long long)consumer_checksum);
    return consumer_errors ? 2 : 0;
}
