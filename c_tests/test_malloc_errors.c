/*
 * Allocation failure (docs/API.md 2.1): NULL with errno = ENOMEM for malloc of
 * SIZE_MAX, PTRDIFF_MAX + 1 (above PTRDIFF_MAX always fails), PTRDIFF_MAX and
 * other sizes that cannot be mapped; failures change nothing (stats, later
 * allocations work); a big but possible request (1 GiB) succeeds and is
 * usable at both ends.
 */
#include "test_util.h"

int main(void)
{
    check_obmem_is_malloc();
    void *keep = malloc(opaque_size(1000));
    CHECK_NOT_NULL(keep);
    fill_pattern(keep, 1000, 5);

    obm_stats before = stats_now();
    static const size_t huge[] = {
        SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 63, SIZE_MAX - 64, SIZE_MAX - 4095, SIZE_MAX - 4096,
        (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX + 4096, (size_t)PTRDIFF_MAX,
        (size_t)PTRDIFF_MAX - 63, (size_t)PTRDIFF_MAX - 4095, (size_t)1 << 62, (size_t)1 << 60,
        (size_t)1 << 56, (size_t)1 << 50,
    };
    for (int rep = 0; rep < 3; rep++) {
        for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
            errno = 0;
            void *p = malloc(opaque_size(huge[i]));
            CHECK_MSG(p == NULL, "malloc(%zu) = %p, expected NULL", huge[i], p);
            CHECK_MSG(errno == ENOMEM, "malloc(%zu): errno %d, expected ENOMEM", huge[i], errno);
        }
    }
    obm_stats after = stats_now();
    CHECK_EQ(after.bytes_in_use, before.bytes_in_use);
    CHECK_EQ(after.large_blocks, before.large_blocks);
    CHECK_LE(after.bytes_mapped, before.bytes_mapped + (1u << 20));
    printf("malloc failures ok\n");

    /* Everything still works. */
    CHECK_PATTERN(keep, 1000, 5);
    for (size_t n = 0; n < 300000; n = n * 2 + 1) {
        void *p = malloc(opaque_size(n));
        CHECK_NOT_NULL(p);
        CHECK_USABLE(n, malloc_usable_size(p));
        dirty(p, 3, n);
        free(p);
    }

    /* 1 GiB is possible here: it succeeds and both ends are writable. */
    size_t g = (size_t)1 << 30;
    unsigned char *big = malloc(opaque_size(g));
    CHECK_MSG(big != NULL, "malloc(1 GiB) failed, errno %d", errno);
    CHECK_ALIGNED(big, 16);
    CHECK_USABLE(g, malloc_usable_size(big));
    big[0] = 1;
    big[g / 2] = 2;
    big[malloc_usable_size(big) - 1] = 3;
    escape(big);
    CHECK(big[0] == 1 && big[g / 2] == 2 && big[malloc_usable_size(big) - 1] == 3);
    obm_stats with_big = stats_now();
    CHECK_GE(with_big.bytes_mapped, before.bytes_mapped + g);
    CHECK_GE(with_big.large_blocks, before.large_blocks + 1);
    CHECK_GE(with_big.large_bytes, before.large_bytes + g);
    CHECK_GE(with_big.peak_mapped, with_big.bytes_mapped);
    free(big);
    obm_stats end = stats_now();
    /* A 1 GiB block is above any cache limit: its mapping is given back. */
    CHECK_MSG(end.bytes_mapped < with_big.bytes_mapped - g / 2,
              "bytes_mapped %zu with the 1 GiB block, %zu after freeing it", with_big.bytes_mapped,
              end.bytes_mapped);
    CHECK_GE(end.peak_mapped, with_big.bytes_mapped);
    CHECK_EQ(end.large_blocks, before.large_blocks);
    free(keep);
    printf("test_malloc_errors: all ok\n");
    return 0;
}
