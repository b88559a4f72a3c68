/* A hook installed after this thread has freed blocks of another thread
 * still sees every later free of such blocks. The freeing thread keeps a
 * cache of the other heaps' pools it freed into, and only the cache's
 * misses test whether hooks are installed; installing a hook must empty
 * that cache (heap::force_slow_paths), or the frees of the second half
 * below would bypass the hook. The blocks come from a second thread that
 * stays alive until the end, so that its heap is not taken over. */
#include "test_util.h"
#include <obmem.h>
#include <pthread.h>

#define N 4000

static void *blocks[N];
static pthread_barrier_t allocated, done;

typedef struct {
    obm_allocator inner;
    size_t free;
} counter;

static void *c_malloc(void *ctx, size_t n) { counter *c = ctx; return c->inner.malloc(c->inner.ctx, n); }
static void *c_calloc(void *ctx, size_t a, size_t b) { counter *c = ctx; return c->inner.calloc(c->inner.ctx, a, b); }
static void *c_realloc(void *ctx, void *p, size_t n) { counter *c = ctx; return c->inner.realloc(c->inner.ctx, p, n); }
static void c_free(void *ctx, void *p) { counter *c = ctx; c->free++; c->inner.free(c->inner.ctx, p); }

static void *producer(void *arg)
{
    (void)arg;
    for (int i = 0; i < N; i++) {
        blocks[i] = obm_mem_malloc(16 + (size_t)(i % 8) * 16);
        CHECK_NOT_NULL(blocks[i]);
    }
    pthread_barrier_wait(&allocated);
    pthread_barrier_wait(&done);
    return NULL;
}

int main(void)
{
    pthread_t t;
    CHECK_EQ(pthread_barrier_init(&allocated, NULL, 2), 0);
    CHECK_EQ(pthread_barrier_init(&done, NULL, 2), 0);
    CHECK_EQ(pthread_create(&t, NULL, producer, NULL), 0);
    pthread_barrier_wait(&allocated);

    /* Remote frees without a hook: they fill this thread's cache. */
    for (int i = 0; i < N / 2; i++)
        obm_mem_free(blocks[i]);

    static counter c;
    obm_get_allocator(OBM_DOMAIN_MEM, &c.inner);
    obm_allocator hook = {&c, c_malloc, c_calloc, c_realloc, c_free};
    obm_set_allocator(OBM_DOMAIN_MEM, &hook);

    /* The same pools, now through the hook. */
    for (int i = N / 2; i < N; i++)
        obm_mem_free(blocks[i]);
    CHECK_EQ(c.free, (size_t)(N - N / 2));

    pthread_barrier_wait(&done);
    CHECK_EQ(pthread_join(t, NULL), 0);
    printf("  %d remote frees after the hook was installed, all seen by it\n", N - N / 2);
    return 0;
}
