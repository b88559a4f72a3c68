/*
 * calloc (docs/API.md 2.1): memory is zeroed up to the usable size, also when it is
 * reused memory (fill, free, calloc again) for small, medium and large
 * blocks; calloc(0, n) / calloc(n, 0) give unique pointers; an overflowing
 * product fails with NULL and ENOMEM.
 */
#include "test_util.h"

static void check_calloc_zero_after_reuse(size_t nelem, size_t elsize, int rounds)
{
    size_t n = nelem * elsize;
    for (int r = 0; r < rounds; r++) {
        /* Dirty many blocks of this size (so reuse is likely), free them. */
        void *d[64];
        for (int i = 0; i < 64; i++) {
            d[i] = malloc(opaque_size(n));
            CHECK_NOT_NULL(d[i]);
            dirty(d[i], 0xEE, malloc_usable_size(d[i]));
        }
        for (int i = 0; i < 64; i++)
            free(d[i]);
        void *z[64];
        for (int i = 0; i < 64; i++) {
            z[i] = calloc(opaque_size(nelem), opaque_size(elsize));
            CHECK_NOT_NULL(z[i]);
            CHECK_ALIGNED(z[i], 16);
            size_t u = malloc_usable_size(z[i]);
            CHECK_GE(u, n);
            /* glibc zeroes the whole chunk; the contract is the requested
             * bytes, but the usable tail must be writable. */
            CHECK_ZERO(z[i], n);
            dirty(z[i], 0x77, u);
        }
        for (int i = 0; i < 64; i++)
            free(z[i]);
    }
}

int main(void)
{
    check_obmem_is_malloc();

    static const size_t sizes[] = {1, 8, 16, 24, 100, 512, 513, 600, 1000, 4096, 5000,
                                   65536, 131072, 131073, 200000, 1u << 20, 3u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int rounds = sizes[i] > 131072 ? 3 : 10;
        check_calloc_zero_after_reuse(sizes[i], 1, rounds);
        if (sizes[i] % 4 == 0)
            check_calloc_zero_after_reuse(sizes[i] / 4, 4, 2);
    }
    printf("calloc zeroes reused memory ok\n");

    /* Interleaved: a block freed just before calloc of the same class. */
    for (int i = 0; i < 20000; i++) {
        size_t n = (size_t)(i * 7919) % 3000 + 1;
        unsigned char *p = malloc(opaque_size(n));
        CHECK_NOT_NULL(p);
        dirty(p, 0xFF, n);
        free(p);
        unsigned char *q = calloc(1, opaque_size(n));
        CHECK_NOT_NULL(q);
        CHECK_ZERO(q, n);
        free(q);
    }
    printf("interleaved calloc ok\n");

    /* calloc(0, n), calloc(n, 0), calloc(0, 0): unique and freeable. */
    void *a = calloc(opaque_size(0), 10), *b = calloc(10, opaque_size(0)),
         *c = calloc(opaque_size(0), opaque_size(0));
    CHECK_NOT_NULL(a);
    CHECK_NOT_NULL(b);
    CHECK_NOT_NULL(c);
    CHECK(a != b && b != c && a != c);
    free(a);
    free(b);
    free(c);

    /* Overflow of nelem * elsize. */
    struct { size_t n, e; } ov[] = {
        {SIZE_MAX, 2}, {2, SIZE_MAX}, {(SIZE_MAX >> 1) + 1, 2}, {(size_t)1 << 32, (size_t)1 << 32},
        {SIZE_MAX, SIZE_MAX}, {((size_t)1 << 62) + 1, 4},
    };
    for (size_t i = 0; i < sizeof ov / sizeof ov[0]; i++) {
        errno = 0;
        void *p = calloc(opaque_size(ov[i].n), opaque_size(ov[i].e));
        CHECK_MSG(p == NULL, "calloc(%zu, %zu) = %p, expected NULL", ov[i].n, ov[i].e, p);
        CHECK_MSG(errno == ENOMEM, "calloc(%zu, %zu): errno %d, expected ENOMEM", ov[i].n,
                  ov[i].e, errno);
    }
    /* No overflow but larger than PTRDIFF_MAX. */
    errno = 0;
    CHECK(calloc(opaque_size((size_t)PTRDIFF_MAX / 2 + 1), 2) == NULL);
    CHECK_EQ(errno, ENOMEM);
    /* The allocator is still fine afterwards. */
    void *p = calloc(100, 100);
    CHECK_NOT_NULL(p);
    CHECK_ZERO(p, 10000);
    free(p);
    printf("calloc overflow ok\n");
    printf("test_malloc_calloc: all ok\n");
    return 0;
}
