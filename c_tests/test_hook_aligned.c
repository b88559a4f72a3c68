/* A user's hook on the object domain sees the drop-in aligned allocations
 * (posix_memalign, aligned_alloc, memalign, valloc, pvalloc) as well as
 * their frees: each aligned block costs the hook exactly one malloc, and
 * its free reaches the hook with the very pointer the hook's malloc
 * returned. The blocks are aligned, usable to their full size, resizable
 * with realloc, and malloc_usable_size knows them. Also run under
 * OBMEM_MALLOC=debug, where the hook wraps the debug hooks. */
#include "test_util.h"
#include <malloc.h>

#define MAXLIVE 4096

typedef struct {
    obm_allocator inner;
    /* volatile: gcc assumes the malloc family leaves globals alone */
    volatile size_t mallocs, frees, reallocs;
    void *live[MAXLIVE]; /* what the hook's malloc returned, not yet freed */
} tracer;

static tracer T;

static void remember(void *p) {
    for (int i = 0; i < MAXLIVE; i++)
        if (!T.live[i]) {
            T.live[i] = p;
            return;
        }
    CHECK_MSG(0, "tracer full");
}

/* Forgets p; 0 if the hook never returned it. */
static int forget(void *p) {
    for (int i = 0; i < MAXLIVE; i++)
        if (T.live[i] == p) {
            T.live[i] = NULL;
            return 1;
        }
    return 0;
}

static int n_live(void) {
    int n = 0;
    for (int i = 0; i < MAXLIVE; i++)
        n += T.live[i] != NULL;
    return n;
}

static void *t_malloc(void *ctx, size_t n) {
    (void)ctx;
    void *p = T.inner.malloc(T.inner.ctx, n);
    T.mallocs++;
    if (p)
        remember(p);
    return p;
}
static void *t_calloc(void *ctx, size_t a, size_t b) {
    (void)ctx;
    void *p = T.inner.calloc(T.inner.ctx, a, b);
    T.mallocs++;
    if (p)
        remember(p);
    return p;
}
static void *t_realloc(void *ctx, void *p, size_t n) {
    (void)ctx;
    T.reallocs++;
    if (p)
        CHECK_MSG(forget(p), "realloc of %p, which the hook never returned", p);
    void *q = T.inner.realloc(T.inner.ctx, p, n);
    if (q)
        remember(q);
    else if (p)
        remember(p);
    return q;
}
static void t_free(void *ctx, void *p) {
    (void)ctx;
    if (!p)
        return;
    T.frees++;
    CHECK_MSG(forget(p), "free of %p, which the hook never returned", p);
    T.inner.free(T.inner.ctx, p);
}

static void fill_and_check(unsigned char *p, size_t n, unsigned char v) {
    memset(p, v, n);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(p[i], v);
}

static void test_each_aligned_function(void) {
    size_t aligns[] = {32, 64, 256, 4096, 65536, 1 << 20};
    size_t sizes[] = {1, 24, 100, 5000, 200000};
    for (size_t a = 0; a < sizeof aligns / sizeof *aligns; a++)
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
            size_t al = aligns[a], n = sizes[s];
            size_t m0 = T.mallocs, f0 = T.frees;
            void *p = NULL;
            CHECK_EQ(posix_memalign(&p, al, n), 0);
            CHECK_NOT_NULL(p);
            CHECK_EQ((uintptr_t)p % al, 0);
            CHECK_EQ(T.mallocs, m0 + 1);
            CHECK_GE(malloc_usable_size(p), n);
            fill_and_check(p, malloc_usable_size(p), 0x5A);
            free(p);
            CHECK_EQ(T.frees, f0 + 1);

            void *q = aligned_alloc(al, n);
            CHECK_NOT_NULL(q);
            CHECK_EQ((uintptr_t)q % al, 0);
            void *r = memalign(al, n);
            CHECK_NOT_NULL(r);
            CHECK_EQ((uintptr_t)r % al, 0);
            CHECK_EQ(T.mallocs, m0 + 3);
            fill_and_check(q, n, 1);
            fill_and_check(r, n, 2);
            free(r);
            free(q);
            CHECK_EQ(T.frees, f0 + 3);
        }
    void *v = valloc(100), *pv = pvalloc(5000);
    CHECK(v && pv && (uintptr_t)v % 4096 == 0 && (uintptr_t)pv % 4096 == 0);
    CHECK_GE(malloc_usable_size(pv), 8192);
    free(v);
    free(pv);
}

/* realloc of an aligned block keeps its bytes; the old block's free and
 * the new block's malloc both go through the hook. */
static void test_realloc_of_aligned(void) {
    unsigned char *p = NULL;
    CHECK_EQ(posix_memalign((void **)&p, 4096, 300), 0);
    for (int i = 0; i < 300; i++)
        p[i] = (unsigned char)i;
    unsigned char *q = realloc(p, 100000);
    CHECK_NOT_NULL(q);
    for (int i = 0; i < 300; i++)
        CHECK_EQ(q[i], (unsigned char)i);
    q = realloc(q, 10);
    CHECK_NOT_NULL(q);
    for (int i = 0; i < 10; i++)
        CHECK_EQ(q[i], (unsigned char)i);
    free(q);
}

int main(void) {
    obm_get_allocator(OBM_DOMAIN_OBJ, &T.inner);
    obm_allocator hook = {&T, t_malloc, t_calloc, t_realloc, t_free};
    obm_set_allocator(OBM_DOMAIN_OBJ, &hook);
    int live0 = n_live();

    test_each_aligned_function();
    test_realloc_of_aligned();

    /* Everything the tests allocated went back through the hook. */
    CHECK_EQ(n_live(), live0);
    CHECK_GT(T.mallocs, 60);
    obm_set_allocator(OBM_DOMAIN_OBJ, &T.inner);
    printf("hook saw %zu mallocs, %zu reallocs, %zu frees\n", (size_t)T.mallocs, (size_t)T.reallocs,
           (size_t)T.frees);
    return 0;
}
