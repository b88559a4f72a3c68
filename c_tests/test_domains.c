/*
 * The three allocation domains (docs/API.md 2.2): obm_raw_*, obm_mem_*,
 * obm_object_*, and obm_usable_size.
 * For each domain: malloc/calloc/realloc/free; malloc(0), calloc(0, x) and
 * realloc(p, 0) return unique non-NULL pointers that can be freed;
 * realloc(NULL, n) allocates; content is kept across small -> medium ->
 * large -> small; every block is 16-byte aligned; obm_usable_size >= request
 * and writable; calloc zeroes reused memory; failures (SIZE_MAX, calloc
 * overflow, realloc to SIZE_MAX) return NULL and leave the old block valid;
 * free(NULL) does nothing. The mem and object domains are pymalloc: 600
 * bytes -> a 640-byte block, visible in obm_get_stats. The drop-in malloc
 * family *is* the object domain: blocks cross between malloc/free and
 * obm_object_malloc/obm_object_free.
 */
#include "test_util.h"

typedef struct {
    const char *name;
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void (*free)(void *);
    int pymalloc; /* served from obmem's size classes */
} domain;

static domain domains[] = {
    {"raw", obm_raw_malloc, obm_raw_calloc, obm_raw_realloc, obm_raw_free, 0},
    {"mem", obm_mem_malloc, obm_mem_calloc, obm_mem_realloc, obm_mem_free, 1},
    {"object", obm_object_malloc, obm_object_calloc, obm_object_realloc, obm_object_free, 1},
};

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static void check_unique(void **p, size_t n, const char *what, const char *dom)
{
    void **s = malloc(n * sizeof *s);
    CHECK_NOT_NULL(s);
    memcpy(s, p, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_ptr);
    for (size_t i = 0; i < n; i++) {
        CHECK_MSG(s[i] != NULL, "%s %s returned NULL", dom, what);
        CHECK_MSG(i == 0 || s[i] != s[i - 1], "%s %s returned %p twice", dom, what, s[i]);
    }
    free(s);
}

static void test_domain(const domain *d)
{
    enum { N = 3000 };
    static void *p[N];

    /* malloc(0): unique, non-NULL, aligned, freeable. */
    for (int i = 0; i < N; i++) {
        p[i] = d->malloc(opaque_size(0));
        CHECK_MSG(p[i] != NULL, "obm_%s_malloc(0) returned NULL", d->name);
        CHECK_ALIGNED(p[i], 16);
    }
    check_unique(p, N, "malloc(0)", d->name);
    for (int i = 0; i < N; i++)
        d->free(p[i]);

    /* calloc(0, x), calloc(x, 0). */
    for (int i = 0; i < N; i++) {
        p[i] = i % 2 ? d->calloc(opaque_size(0), 8) : d->calloc(8, opaque_size(0));
        CHECK_MSG(p[i] != NULL, "obm_%s_calloc with a zero returned NULL", d->name);
    }
    check_unique(p, N, "calloc(0, x)", d->name);
    for (int i = 0; i < N; i++)
        d->free(p[i]);

    /* realloc(p, 0): unique non-NULL (CPython semantics), freeable. */
    for (int i = 0; i < N; i++) {
        void *q = d->malloc(opaque_size((size_t)i % 700 + 1));
        CHECK_NOT_NULL(q);
        dirty(q, 0x11, (size_t)i % 700 + 1);
        p[i] = d->realloc(opaque_ptr(q), opaque_size(0));
        CHECK_MSG(p[i] != NULL, "obm_%s_realloc(p, 0) returned NULL", d->name);
        CHECK_ALIGNED(p[i], 16);
    }
    check_unique(p, N, "realloc(p, 0)", d->name);
    for (int i = 0; i < N; i++)
        d->free(p[i]);
    /* realloc(p, 0) of a large block, then of that again. */
    void *lg = d->malloc(opaque_size(500000));
    CHECK_NOT_NULL(lg);
    lg = d->realloc(opaque_ptr(lg), opaque_size(0));
    CHECK_NOT_NULL(lg);
    lg = d->realloc(opaque_ptr(lg), opaque_size(0));
    CHECK_NOT_NULL(lg);
    d->free(lg);

    /* realloc(NULL, n). */
    for (size_t n = 0; n < 300000; n = n * 3 + 1) {
        void *q = d->realloc(opaque_ptr(NULL), opaque_size(n));
        CHECK_MSG(q != NULL, "obm_%s_realloc(NULL, %zu) returned NULL", d->name, n);
        CHECK_GE(obm_usable_size(q), n);
        dirty(q, 0x22, obm_usable_size(q));
        d->free(q);
    }

    /* Sizes, alignment, usable size, no overlap. */
    uint64_t rng = 777;
    static size_t sz[N];
    for (int i = 0; i < N; i++) {
        uint64_t r = rng_next(&rng);
        size_t n = i % 100 == 0 ? 131073 + (r >> 40) % 200000 : (r >> 32) % (i % 3 ? 600 : 20000);
        p[i] = d->malloc(opaque_size(n));
        CHECK_MSG(p[i] != NULL, "obm_%s_malloc(%zu) failed", d->name, n);
        CHECK_ALIGNED(p[i], 16);
        sz[i] = obm_usable_size(p[i]);
        CHECK_MSG(sz[i] >= n, "obm_%s_malloc(%zu): usable %zu", d->name, n, sz[i]);
        if (d->pymalloc)
            CHECK_MSG(usable_matches(n, sz[i]), "obm_%s_malloc(%zu): usable %zu, expected %zu",
                      d->name, n, sz[i], expected_usable(n));
        fill_pattern(p[i], sz[i], (uint64_t)i);
    }
    for (int i = 0; i < N; i++)
        CHECK_PATTERN(p[i], sz[i], (uint64_t)i);
    for (int i = 0; i < N; i++)
        d->free(p[i]);

    /* calloc zeroes, also reused memory. */
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 500; i++) {
            size_t n = (size_t)(i * 131) % 9000 + (i == 7 ? 300000 : 0);
            p[i] = d->malloc(opaque_size(n));
            CHECK_NOT_NULL(p[i]);
            dirty(p[i], 0xCC, n);
        }
        for (int i = 0; i < 500; i++)
            d->free(p[i]);
        for (int i = 0; i < 500; i++) {
            size_t n = (size_t)(i * 131) % 9000 + (i == 7 ? 300000 : 0);
            p[i] = d->calloc(opaque_size(n), 1);
            CHECK_NOT_NULL(p[i]);
            CHECK_ZERO(p[i], n);
        }
        for (int i = 0; i < 500; i++)
            d->free(p[i]);
    }

    /* realloc chain keeps the content. */
    static const size_t chain[] = {1, 16, 100, 512, 600, 4096, 70000, 131072, 131073, 400000,
                                   2u << 20, 300000, 100000, 1000, 17, 3};
    size_t req = 5;
    unsigned char *b = d->malloc(opaque_size(req));
    CHECK_NOT_NULL(b);
    fill_pattern(b, req, 0);
    for (size_t i = 0; i < sizeof chain / sizeof chain[0]; i++) {
        unsigned char *q = d->realloc(opaque_ptr(b), opaque_size(chain[i]));
        CHECK_MSG(q != NULL, "obm_%s_realloc(%zu -> %zu) failed", d->name, req, chain[i]);
        CHECK_ALIGNED(q, 16);
        CHECK_GE(obm_usable_size(q), chain[i]);
        CHECK_PATTERN(q, req < chain[i] ? req : chain[i], i);
        fill_pattern(q, chain[i], i + 1);
        b = q;
        req = chain[i];
    }

    /* Failures: NULL, the old block untouched. */
    CHECK(d->malloc(opaque_size(SIZE_MAX)) == NULL);
    CHECK(d->malloc(opaque_size((size_t)PTRDIFF_MAX + 1)) == NULL);
    CHECK(d->calloc(opaque_size(SIZE_MAX), 2) == NULL);
    CHECK(d->calloc(opaque_size((size_t)1 << 33), opaque_size((size_t)1 << 33)) == NULL);
    CHECK(d->realloc(opaque_ptr(b), opaque_size(SIZE_MAX)) == NULL);
    CHECK(d->realloc(opaque_ptr(b), opaque_size((size_t)PTRDIFF_MAX + 1)) == NULL);
    CHECK_PATTERN(b, req, sizeof chain / sizeof chain[0]);
    d->free(b);

    /* free(NULL) does nothing. */
    for (int i = 0; i < 100; i++)
        d->free(opaque_ptr(NULL));
    printf("domain %s ok\n", d->name);
}

static void test_pymalloc_stats(const domain *d)
{
    obm_stats b = stats_now();
    long ci = stats_class_index(&b, 640);
    CHECK(ci >= 0);
    void *p[500];
    for (int i = 0; i < 500; i++) {
        p[i] = d->malloc(opaque_size(600));
        CHECK_NOT_NULL(p[i]);
        CHECK_EQ(obm_usable_size(p[i]), 640);
    }
    obm_stats a = stats_now();
    CHECK_MSG(a.classes[ci].blocks_in_use >= b.classes[ci].blocks_in_use + 500,
              "obm_%s_malloc(600) x 500: 640-byte class blocks in use %zu -> %zu", d->name,
              b.classes[ci].blocks_in_use, a.classes[ci].blocks_in_use);
    CHECK_GE(a.bytes_in_use, b.bytes_in_use + 500 * 600);
    for (int i = 0; i < 500; i++)
        d->free(p[i]);
    obm_stats c = stats_now();
    CHECK_EQ(c.classes[ci].blocks_in_use, b.classes[ci].blocks_in_use);
    CHECK_LE(abs_diff(c.bytes_in_use, b.bytes_in_use), 4096);
}

/* The drop-in family is the object domain. */
static void test_dropin_is_object_domain(void)
{
    for (int i = 0; i < 2000; i++) {
        size_t n = (size_t)i * 61 % 3000 + (i % 500 == 0 ? 250000 : 0);
        unsigned char *a = malloc(opaque_size(n));
        CHECK_NOT_NULL(a);
        CHECK_EQ(obm_usable_size(a), malloc_usable_size(a));
        fill_pattern(a, n, (uint64_t)i);
        a = obm_object_realloc(opaque_ptr(a), opaque_size(n + 50));
        CHECK_NOT_NULL(a);
        CHECK_PATTERN(a, n, (uint64_t)i);
        obm_object_free(a);

        unsigned char *o = obm_object_malloc(opaque_size(n));
        CHECK_NOT_NULL(o);
        CHECK_EQ(malloc_usable_size(o), obm_usable_size(o));
        fill_pattern(o, n, (uint64_t)i);
        o = realloc(opaque_ptr(o), opaque_size(n + 50));
        CHECK_NOT_NULL(o);
        CHECK_PATTERN(o, n, (uint64_t)i);
        free(o);
    }
    printf("malloc family == object domain ok\n");
}

int main(void)
{
    check_obmem_is_malloc();
    for (size_t i = 0; i < sizeof domains / sizeof domains[0]; i++)
        test_domain(&domains[i]);
    for (size_t i = 0; i < sizeof domains / sizeof domains[0]; i++)
        if (domains[i].pymalloc)
            test_pymalloc_stats(&domains[i]);
    printf("pymalloc domains in stats ok\n");
    test_dropin_is_object_domain();
    printf("test_domains: all ok\n");
    return 0;
}
