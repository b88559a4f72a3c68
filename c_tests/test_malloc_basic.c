/*
 * malloc / free / malloc_usable_size / obm_usable_size basics (docs/API.md 2.1):
 * - the program really got obmem's malloc (linking -lobmem replaces it);
 * - the exact usable size of every size class, every size 0..4096 and a
 *   sample up to 128 KiB, and of large (mapped) blocks;
 * - writing a block up to malloc_usable_size is legal: thousands of live
 *   blocks filled to their usable size keep their content (no overlap);
 * - every block is 16-byte aligned;
 * - malloc(0) returns unique non-NULL pointers; free(NULL) does nothing;
 *   malloc_usable_size(NULL) == obm_usable_size(NULL) == 0;
 * - free preserves errno;
 * - freed memory is reused (a malloc/free loop does not grow bytes_mapped).
 */
#include "test_util.h"

static void test_usable_sizes(void)
{
    /* Every size up to 4096, then a sample across the medium range. */
    for (size_t n = 0; n <= 4096; n++) {
        void *p = malloc(opaque_size(n));
        CHECK_NOT_NULL(p);
        CHECK_ALIGNED(p, 16);
        size_t u = malloc_usable_size(p);
        CHECK_USABLE(n, u);
        CHECK_EQ(obm_usable_size(p), u);
        dirty(p, 0xA5, u); /* writing up to the usable size is legal */
        free(p);
    }
    for (size_t n = 4097; n <= T_MEDIUM_MAX + 8192; n += 997) {
        void *p = malloc(opaque_size(n));
        CHECK_NOT_NULL(p);
        CHECK_ALIGNED(p, 16);
        size_t u = malloc_usable_size(p);
        CHECK_USABLE(n, u);
        CHECK_EQ(obm_usable_size(p), u);
        dirty(p, 0x5A, u);
        free(p);
    }
    /* Every class boundary: size == class and class + 1. */
    for (size_t i = 0; i < T_NUM_CLASSES; i++) {
        size_t cs = expected_class_size(i);
        for (size_t n = cs - 1; n <= cs + 1; n++) {
            void *p = malloc(opaque_size(n));
            CHECK_NOT_NULL(p);
            size_t u = malloc_usable_size(p);
            CHECK_USABLE(n, u);
            free(p);
        }
    }
    /* Large blocks: mapping of n + 64 rounded to pages, minus the header. */
    static const size_t large[] = {T_MEDIUM_MAX + 1, 131072 + 4096 - 64, 131072 + 4096 - 63,
                                   200000, 1 << 20, (1 << 20) + 1, 5u << 20, 33u << 20};
    for (size_t i = 0; i < sizeof large / sizeof large[0]; i++) {
        size_t n = large[i];
        void *p = malloc(opaque_size(n));
        CHECK_NOT_NULL(p);
        CHECK_ALIGNED(p, 16);
        size_t u = malloc_usable_size(p);
        CHECK_USABLE(n, u);
        CHECK_EQ(obm_usable_size(p), u);
        fill_pattern(p, u, n);
        CHECK_PATTERN(p, u, n);
        free(p);
    }
    printf("usable sizes ok\n");
}

/* Many live blocks of many sizes, each filled to its usable size with its own
 * pattern, checked after all are allocated: any overlap breaks a pattern. */
static void test_no_overlap(void)
{
    enum { N = 20000 };
    static void *blk[N];
    static size_t sz[N];
    uint64_t rng = 12345;
    for (int i = 0; i < N; i++) {
        uint64_t r = rng_next(&rng);
        size_t n;
        switch (r % 8) {
        case 0: n = r >> 40 & 15; break;           /* tiny, incl. 0 */
        case 1: case 2: case 3: n = (r >> 32) % 513; break;
        case 4: case 5: n = 513 + (r >> 32) % 8000; break;
        case 6: n = 8192 + (r >> 32) % 60000; break;
        default: n = (i % 50 == 0) ? 131073 + (r >> 32) % 300000 : (r >> 32) % 2048; break;
        }
        blk[i] = malloc(opaque_size(n));
        CHECK_NOT_NULL(blk[i]);
        CHECK_ALIGNED(blk[i], 16);
        sz[i] = malloc_usable_size(blk[i]);
        CHECK_GE(sz[i], n);
        CHECK_GE(sz[i], 1);
        fill_pattern(blk[i], sz[i], (uint64_t)i);
    }
    for (int i = 0; i < N; i++)
        CHECK_PATTERN(blk[i], sz[i], (uint64_t)i);
    /* Free every other one, allocate again into the holes, check all. */
    for (int i = 0; i < N; i += 2)
        free(blk[i]);
    for (int i = 0; i < N; i += 2) {
        size_t n = (size_t)(i * 37) % 3000;
        blk[i] = malloc(opaque_size(n));
        CHECK_NOT_NULL(blk[i]);
        sz[i] = malloc_usable_size(blk[i]);
        CHECK_GE(sz[i], n);
        fill_pattern(blk[i], sz[i], (uint64_t)i + 1000000);
    }
    for (int i = 0; i < N; i++)
        CHECK_PATTERN(blk[i], sz[i], (uint64_t)i + (i % 2 == 0 ? 1000000 : 0));
    for (int i = 0; i < N; i++)
        free(blk[i]);
    printf("no overlap ok\n");
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static void test_malloc_zero(void)
{
    enum { N = 10000 };
    static void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = malloc(opaque_size(0));
        CHECK_MSG(p[i] != NULL, "malloc(0) #%d returned NULL", i);
        CHECK_ALIGNED(p[i], 16);
    }
    static void *s[N];
    memcpy(s, p, sizeof s);
    qsort(s, N, sizeof s[0], cmp_ptr);
    for (int i = 1; i < N; i++)
        CHECK_MSG(s[i] != s[i - 1], "malloc(0) returned %p twice", s[i]);
    for (int i = 0; i < N; i++)
        free(p[i]);
    /* glibc: malloc_usable_size(NULL) is 0; obm_usable_size too (header). */
    CHECK_EQ(malloc_usable_size(opaque_ptr(NULL)), 0);
    CHECK_EQ(obm_usable_size(opaque_ptr(NULL)), 0);
    /* free(NULL) does nothing, many times. */
    for (int i = 0; i < 1000; i++)
        free(opaque_ptr(NULL));
    printf("malloc(0) / free(NULL) ok\n");
}

static void test_free_keeps_errno(void)
{
    static const size_t sizes[] = {1, 100, 600, 4096, 100000, 300000, 4u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = malloc(opaque_size(sizes[i]));
        CHECK_NOT_NULL(p);
        dirty(p, 1, sizes[i]);
        errno = 1234;
        free(p);
        CHECK_MSG(errno == 1234, "free of a %zu-byte block changed errno to %d", sizes[i], errno);
    }
    errno = 4321;
    free(opaque_ptr(NULL));
    CHECK_EQ(errno, 4321);
    /* A large block freed when the allocator gives memory back. */
    void *many[64];
    for (int i = 0; i < 64; i++) {
        many[i] = malloc(opaque_size(1u << 20));
        CHECK_NOT_NULL(many[i]);
    }
    for (int i = 0; i < 64; i++) {
        errno = 1234;
        free(many[i]);
        CHECK_EQ(errno, 1234);
    }
    /* malloc success does not need to preserve errno, but must not fail. */
    printf("free preserves errno ok\n");
}

/* A loop of malloc/free of the same sizes must reuse memory. */
static void test_reuse(void)
{
    for (int round = 0; round < 3; round++) {
        void *p[1000];
        for (int i = 0; i < 1000; i++) {
            p[i] = malloc(opaque_size((size_t)(i % 40) * 100 + 1));
            CHECK_NOT_NULL(p[i]);
        }
        for (int i = 0; i < 1000; i++)
            free(p[i]);
    }
    obm_stats before = stats_now();
    for (int round = 0; round < 200; round++) {
        void *p[1000];
        for (int i = 0; i < 1000; i++) {
            p[i] = malloc(opaque_size((size_t)(i % 40) * 100 + 1));
            CHECK_NOT_NULL(p[i]);
            dirty(p[i], round, 16);
        }
        for (int i = 0; i < 1000; i++)
            free(p[i]);
        void *big = malloc(opaque_size(3u << 20));
        CHECK_NOT_NULL(big);
        dirty(big, 1, 3u << 20);
        free(big);
    }
    obm_stats after = stats_now();
    /* 200 rounds allocate ~400 MB in total; reuse keeps the mapping flat. */
    CHECK_MSG(after.bytes_mapped <= before.bytes_mapped + (8u << 20),
              "bytes_mapped grew from %zu to %zu in a malloc/free loop", before.bytes_mapped,
              after.bytes_mapped);
    CHECK_LE(abs_diff(after.bytes_in_use, before.bytes_in_use), 64 * 1024);
    printf("reuse ok\n");
}

int main(void)
{
    check_obmem_is_malloc();
    test_usable_sizes();
    test_no_overlap();
    test_malloc_zero();
    test_free_keeps_errno();
    test_reuse();
    printf("test_malloc_basic: all ok\n");
    return 0;
}
