/*
 * Aligned allocation (docs/API.md 2.1): posix_memalign, aligned_alloc, memalign,
 * valloc, pvalloc.
 * - posix_memalign for every power of two 8 .. 1 MiB and many sizes (0,
 *   small, medium, large): result aligned, usable >= size, writable to the
 *   usable size, freeable with free, resizable with realloc (content kept);
 * - invalid alignments (0, 3, 24, 4 = not a multiple of sizeof(void*), 12,
 *   40, 3 << 20) return EINVAL and leave *out untouched;
 * - a huge size returns ENOMEM and leaves *out untouched;
 * - aligned_alloc and memalign for the same grid;
 * - valloc is page aligned; pvalloc is page aligned with the size rounded up
 *   to a whole page (the usable size covers it);
 * - many aligned blocks live at once don't overlap.
 */
#include "test_util.h"

static const size_t sizes[] = {0, 1, 8, 16, 17, 100, 512, 600, 4000, 4096, 5000,
                               65536, 131072, 131073, 300000, 1u << 20, (1u << 20) + 1};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static void check_block(void *p, size_t align, size_t n, const char *fn)
{
    CHECK_MSG(p != NULL, "%s(align %zu, size %zu) failed, errno %d", fn, align, n, errno);
    CHECK_MSG((uintptr_t)p % align == 0, "%s(align %zu, size %zu) = %p misaligned", fn, align,
              n, p);
    CHECK_MSG((uintptr_t)p % 16 == 0, "%s: %p not 16-byte aligned", fn, p);
    size_t u = malloc_usable_size(p);
    /* A zero-byte block is still a block of its own, inside its mapping:
     * at least one usable byte (as glibc), which fill_pattern writes. */
    CHECK_MSG(u >= (n ? n : 1), "%s(align %zu, size %zu): usable %zu", fn, align, n, u);
    CHECK_EQ(obm_usable_size(p), u);
    fill_pattern(p, u, align ^ n);
}

static void test_posix_memalign(void)
{
    for (size_t align = 8; align <= (1u << 20); align <<= 1) {
        void *live[NSIZES];
        size_t use[NSIZES];
        for (size_t i = 0; i < NSIZES; i++) {
            void *p = (void *)0x1;
            int rc = posix_memalign(&p, opaque_size(align), opaque_size(sizes[i]));
            CHECK_MSG(rc == 0, "posix_memalign(align %zu, size %zu) = %d", align, sizes[i], rc);
            check_block(p, align, sizes[i], "posix_memalign");
            live[i] = p;
            use[i] = malloc_usable_size(p);
        }
        /* All live at once: no block overwrote another. */
        for (size_t i = 0; i < NSIZES; i++)
            CHECK_PATTERN(live[i], use[i], align ^ sizes[i]);
        /* realloc keeps the content of an aligned block. */
        for (size_t i = 0; i < NSIZES; i += 3) {
            size_t n = sizes[i] * 2 + 10;
            size_t keep = use[i] < n ? use[i] : n;
            unsigned char *q = realloc(opaque_ptr(live[i]), opaque_size(n));
            CHECK_NOT_NULL(q);
            CHECK_PATTERN(q, keep < sizes[i] ? keep : sizes[i], align ^ sizes[i]);
            live[i] = q;
        }
        for (size_t i = 0; i < NSIZES; i++)
            free(live[i]);
    }
    printf("posix_memalign ok\n");

    /* Invalid alignments: EINVAL, *out untouched. */
    static const size_t bad[] = {0, 1, 2, 3, 4, 12, 24, 40, 48, 3u << 20, 1000,
                                 ((size_t)1 << 63) + 8, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (size_t s = 0; s < 3; s++) {
            size_t n = s == 0 ? 16 : s == 1 ? 1000 : 200000;
            void *sentinel = (void *)(uintptr_t)0xDEADBEEF;
            void *p = sentinel;
            int rc = posix_memalign(&p, opaque_size(bad[i]), opaque_size(n));
            CHECK_MSG(rc == EINVAL, "posix_memalign(align %zu, size %zu) = %d, expected EINVAL",
                      bad[i], n, rc);
            CHECK_MSG(p == sentinel, "posix_memalign(align %zu) changed *out to %p", bad[i], p);
        }
    }
    /* Out of memory: ENOMEM, *out untouched. */
    static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX + 1};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        void *sentinel = (void *)(uintptr_t)0xDEADBEEF;
        void *p = sentinel;
        int rc = posix_memalign(&p, opaque_size(64), opaque_size(huge[i]));
        CHECK_MSG(rc == ENOMEM, "posix_memalign(64, %zu) = %d, expected ENOMEM", huge[i], rc);
        CHECK(p == sentinel);
        p = sentinel;
        rc = posix_memalign(&p, opaque_size(1u << 20), opaque_size(huge[i]));
        CHECK_MSG(rc == ENOMEM, "posix_memalign(1 MiB, %zu) = %d, expected ENOMEM", huge[i], rc);
        CHECK(p == sentinel);
    }
    printf("posix_memalign errors ok\n");
}

static void test_aligned_alloc_memalign(void)
{
    for (size_t align = 1; align <= (1u << 20); align <<= 1) {
        for (size_t i = 0; i < NSIZES; i++) {
            size_t n = sizes[i];
            if (align >= 8) {
                /* C17: aligned_alloc with a supported alignment; glibc accepts
                 * any size, not only multiples of the alignment. */
                void *p = aligned_alloc(opaque_size(align), opaque_size(n));
                check_block(p, align, n, "aligned_alloc");
                CHECK_PATTERN(p, malloc_usable_size(p), align ^ n);
                free(p);
            }
            void *q = memalign(opaque_size(align), opaque_size(n));
            check_block(q, align, n, "memalign");
            CHECK_PATTERN(q, malloc_usable_size(q), align ^ n);
            free(q);
        }
    }
    /* A huge aligned request fails with NULL and ENOMEM. */
    errno = 0;
    CHECK(aligned_alloc(opaque_size(4096), opaque_size(SIZE_MAX - 8191)) == NULL);
    CHECK_EQ(errno, ENOMEM);
    errno = 0;
    CHECK(memalign(opaque_size(64), opaque_size((size_t)PTRDIFF_MAX + 1)) == NULL);
    CHECK_EQ(errno, ENOMEM);
    printf("aligned_alloc / memalign ok\n");
}

static void test_valloc_pvalloc(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    static const size_t vs[] = {1, 100, 4095, 4096, 4097, 10000, 131072, 200000, 1u << 20};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        void *p = valloc(opaque_size(vs[i]));
        check_block(p, page, vs[i], "valloc");
        void *q = pvalloc(opaque_size(vs[i]));
        check_block(q, page, round_up(vs[i], page), "pvalloc");
        CHECK_PATTERN(p, malloc_usable_size(p), page ^ vs[i]);
        free(p);
        free(q);
    }
    void *z = pvalloc(opaque_size(0));
    CHECK_NOT_NULL(z);
    CHECK_ALIGNED(z, page);
    free(z);
    z = valloc(opaque_size(0));
    CHECK_NOT_NULL(z);
    CHECK_ALIGNED(z, page);
    free(z);
    errno = 0;
    CHECK(valloc(opaque_size(SIZE_MAX - 100)) == NULL);
    CHECK_EQ(errno, ENOMEM);
    errno = 0;
    CHECK(pvalloc(opaque_size(SIZE_MAX - 100)) == NULL);
    CHECK_EQ(errno, ENOMEM);
    printf("valloc / pvalloc ok\n");
}

/* Many aligned blocks of mixed alignments alive together, interleaved with
 * plain mallocs: no overlap, and all freed correctly (stats back). */
static void test_many_aligned(void)
{
    enum { N = 6000 };
    static void *p[N];
    static size_t u[N];
    obm_stats before = stats_now();
    uint64_t rng = 42;
    for (int i = 0; i < N; i++) {
        uint64_t r = rng_next(&rng);
        size_t align = (size_t)1 << (3 + r % 11); /* 8 .. 8 KiB */
        size_t n = (r >> 20) % (i % 10 == 0 ? 40000 : 700);
        if (i % 3 == 0) {
            p[i] = malloc(opaque_size(n));
            align = 16;
        } else if (posix_memalign(&p[i], align, opaque_size(n)) != 0) {
            FAIL("posix_memalign(%zu, %zu) failed", align, n);
        }
        check_block(p[i], align, n, "mixed");
        u[i] = malloc_usable_size(p[i]);
        fill_pattern(p[i], u[i], (uint64_t)i);
    }
    for (int i = 0; i < N; i++)
        CHECK_PATTERN(p[i], u[i], (uint64_t)i);
    for (int i = 0; i < N; i++)
        free(p[i]);
    obm_stats after = stats_now();
    CHECK_MSG(abs_diff(after.bytes_in_use, before.bytes_in_use) < 64 * 1024,
              "bytes_in_use %zu before, %zu after freeing all aligned blocks", before.bytes_in_use,
              after.bytes_in_use);
    printf("many aligned blocks ok\n");
}

int main(void)
{
    check_obmem_is_malloc();
    test_posix_memalign();
    test_aligned_alloc_memalign();
    test_valloc_pvalloc();
    test_many_aligned();
    printf("test_malloc_align: all ok\n");
    return 0;
}
