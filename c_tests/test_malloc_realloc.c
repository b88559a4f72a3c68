/*
 * realloc and reallocarray (docs/API.md 2.1):
 * - grow and shrink keep the content, across small -> medium -> large ->
 *   small, with and without neighbours that force a move;
 * - realloc(NULL, n) is malloc(n); realloc(p, 0) frees p and returns NULL
 *   (checked through obm_get_stats: a loop of them does not leak);
 * - realloc(p, SIZE_MAX) and above PTRDIFF_MAX fail with NULL/ENOMEM and
 *   leave p valid with its content;
 * - reallocarray: works like realloc(p, n * m); overflow fails with ENOMEM
 *   and leaves p valid;
 * - a buffer grown by small steps through the pool classes gets room to
 *   grow when it moves, so it moves a few times, not once per class; a
 *   big step gets the class it asks for;
 * - a random realloc stress with content checks.
 */
#include "test_util.h"

/* Passing p through opaque_ptr keeps GCC's -Wuse-after-free quiet where we
 * legitimately use p after a failed realloc. */
#define REALLOC(p, n) realloc(opaque_ptr(p), opaque_size(n))

static void test_chain(int with_neighbours)
{
    static const size_t chain[] = {
        1, 10, 16, 17, 100, 512, 513, 600, 2000, 4096, 60000, 131072, 131073, 200000,
        1u << 20, 3u << 20, 10u << 20, 2u << 20, 150000, 131072, 5000, 600, 100, 1,
        300000, 40, 9u << 20, 9u << 20, (9u << 20) + 1, 17, 17, 0x20000 - 1, 0x20000 + 1, 8};
    size_t req = 1;
    uint64_t seed = 1;
    unsigned char *p = malloc(opaque_size(req));
    CHECK_NOT_NULL(p);
    fill_pattern(p, malloc_usable_size(p), seed);
    void *neigh[sizeof chain / sizeof chain[0]];
    size_t nn = 0;
    for (size_t i = 0; i < sizeof chain / sizeof chain[0]; i++) {
        size_t n = chain[i];
        if (with_neighbours) {
            neigh[nn] = malloc(opaque_size(req));
            CHECK_NOT_NULL(neigh[nn]);
            nn++;
        }
        unsigned char *q = REALLOC(p, n);
        CHECK_MSG(q != NULL, "realloc(%zu -> %zu) failed", req, n);
        CHECK_ALIGNED(q, 16);
        size_t u = malloc_usable_size(q);
        CHECK_MSG(u >= n, "realloc to %zu: usable %zu", n, u);
        CHECK_EQ(obm_usable_size(q), u);
        size_t keep = req < n ? req : n;
        size_t bad = find_pattern_mismatch(q, keep, seed);
        CHECK_MSG(bad == (size_t)-1, "realloc %zu -> %zu lost content at byte %zu", req, n, bad);
        seed++;
        fill_pattern(q, u, seed); /* writing up to the usable size is legal */
        p = q;
        req = n;
    }
    CHECK_PATTERN(p, req, seed);
    free(p);
    for (size_t i = 0; i < nn; i++)
        free(neigh[i]);
}

static void test_realloc_null_and_zero(void)
{
    for (size_t n = 0; n < 3000; n += 7) {
        void *p = realloc(opaque_ptr(NULL), opaque_size(n));
        CHECK_NOT_NULL(p);
        CHECK_USABLE(n, malloc_usable_size(p));
        free(p);
    }
    void *big = realloc(opaque_ptr(NULL), opaque_size(500000));
    CHECK_NOT_NULL(big);
    CHECK_USABLE(500000, malloc_usable_size(big));
    free(big);

    /* realloc(p, 0) returns NULL and frees p: a loop of them keeps
     * bytes_in_use flat (leaking would add >= 100000 * 640 bytes). */
    for (int i = 0; i < 100; i++) {
        void *p = malloc(opaque_size(600));
        CHECK(REALLOC(p, 0) == NULL);
    }
    obm_stats before = stats_now();
    long ci = stats_class_index(&before, 640);
    CHECK_MSG(ci >= 0, "no size class of 640 bytes in obm_get_stats");
    static const size_t sizes[] = {1, 600, 5000, 200000};
    for (int i = 0; i < 100000; i++) {
        size_t n = sizes[i % 4];
        if (n > 131072 && i % 100 != 0)
            continue;
        void *p = malloc(opaque_size(n));
        CHECK_NOT_NULL(p);
        dirty(p, 1, n);
        void *q = REALLOC(p, 0);
        CHECK_MSG(q == NULL, "realloc(p, 0) returned %p, expected NULL (glibc)", q);
    }
    obm_stats after = stats_now();
    CHECK_MSG(abs_diff(after.bytes_in_use, before.bytes_in_use) < 64 * 1024,
              "bytes_in_use %zu -> %zu after 100000 realloc(p, 0)", before.bytes_in_use,
              after.bytes_in_use);
    CHECK_MSG(abs_diff(after.classes[ci].blocks_in_use, before.classes[ci].blocks_in_use) < 100,
              "640-byte class blocks_in_use %zu -> %zu after realloc(p, 0) of 25000 of them",
              before.classes[ci].blocks_in_use, after.classes[ci].blocks_in_use);
    CHECK_LE(after.large_blocks, before.large_blocks);
    printf("realloc(NULL, n) / realloc(p, 0) ok\n");
}

static void test_realloc_failure(void)
{
    static const size_t sizes[] = {1, 100, 600, 4096, 100000, 131072, 131073, 1u << 20};
    static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 4095, (size_t)PTRDIFF_MAX + 1,
                                  (size_t)PTRDIFF_MAX, SIZE_MAX / 2 + 4096};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = malloc(opaque_size(sizes[i]));
        CHECK_NOT_NULL(p);
        fill_pattern(p, sizes[i], i);
        for (size_t h = 0; h < sizeof huge / sizeof huge[0]; h++) {
            errno = 0;
            void *q = REALLOC(p, huge[h]);
            CHECK_MSG(q == NULL, "realloc(%zu-byte block, %zu) = %p, expected NULL", sizes[i],
                      huge[h], q);
            CHECK_MSG(errno == ENOMEM, "realloc(p, %zu): errno %d, expected ENOMEM", huge[h],
                      errno);
            CHECK_PATTERN(p, sizes[i], i);
            CHECK_GE(malloc_usable_size(p), sizes[i]);
        }
        /* p is still valid: it can grow, and be freed. */
        unsigned char *q = REALLOC(p, sizes[i] * 2);
        CHECK_NOT_NULL(q);
        CHECK_PATTERN(q, sizes[i], i);
        free(q);
    }
    printf("realloc failure keeps the block ok\n");
}

static void test_reallocarray(void)
{
    unsigned char *p = reallocarray(opaque_ptr(NULL), opaque_size(10), opaque_size(10));
    CHECK_NOT_NULL(p);
    CHECK_GE(malloc_usable_size(p), 100);
    fill_pattern(p, 100, 77);
    p = reallocarray(opaque_ptr(p), opaque_size(1000), opaque_size(300)); /* 300000: large */
    CHECK_NOT_NULL(p);
    CHECK_GE(malloc_usable_size(p), 300000);
    CHECK_PATTERN(p, 100, 77);
    fill_pattern(p, 300000, 78);
    p = reallocarray(opaque_ptr(p), opaque_size(7), opaque_size(9));
    CHECK_NOT_NULL(p);
    CHECK_PATTERN(p, 63, 78);

    struct { size_t n, m; } ov[] = {
        {SIZE_MAX, 2}, {2, SIZE_MAX}, {(size_t)1 << 32, (size_t)1 << 32}, {SIZE_MAX / 3 + 1, 3},
    };
    for (size_t i = 0; i < sizeof ov / sizeof ov[0]; i++) {
        errno = 0;
        void *q = reallocarray(opaque_ptr(p), opaque_size(ov[i].n), opaque_size(ov[i].m));
        CHECK_MSG(q == NULL, "reallocarray(p, %zu, %zu) = %p, expected NULL", ov[i].n, ov[i].m, q);
        CHECK_MSG(errno == ENOMEM, "reallocarray overflow: errno %d, expected ENOMEM", errno);
        CHECK_PATTERN(p, 63, 78);
    }
    errno = 0;
    CHECK(reallocarray(opaque_ptr(NULL), opaque_size(SIZE_MAX), 2) == NULL);
    CHECK_EQ(errno, ENOMEM);
    /* No overflow, but above PTRDIFF_MAX. */
    errno = 0;
    CHECK(reallocarray(opaque_ptr(p), opaque_size((size_t)PTRDIFF_MAX / 2 + 1), 2) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK_PATTERN(p, 63, 78);
    free(p);
    printf("reallocarray ok\n");
}

/* Buffers grown in turn (so that none can grow in place by chance) from
 * 600 B to 128 KiB by 64-byte steps pass through 62 pool classes. */
static void test_step_growth(void)
{
    enum { N = 8, STEP = 64 };
    size_t start = 600, end = 128 * 1024;
    unsigned char *p[N];
    int moves = 0;
    for (int i = 0; i < N; i++) {
        p[i] = malloc(opaque_size(start));
        CHECK_NOT_NULL(p[i]);
        memset(p[i], 30 + i, start);
    }
    for (size_t n = start + STEP; n <= end; n += STEP) {
        for (int i = 0; i < N; i++) {
            unsigned char *q = REALLOC(p[i], n);
            CHECK_NOT_NULL(q);
            CHECK_GE(malloc_usable_size(q), n);
            moves += q != p[i];
            p[i] = q;
            memset(q + n - STEP, 30 + i, STEP);
        }
    }
    printf("  %d buffers grown from %zu B to %zu B by %d B steps: %d moves\n", N, start, end,
           STEP, moves);
    for (int i = 0; i < N; i++)
        for (size_t off = 0; off < end; off += 61)
            CHECK_EQ(p[i][off], 30 + i);
    /* Once per class without room (about 60 a buffer); with a quarter as
     * much again at each move, about 25. */
    CHECK_LE(moves, N * 32);
    /* A buffer doubled gets the class of what it asks for (classes are at
     * most an eighth apart), not room on top. */
    size_t n = 3000;
    unsigned char *q = REALLOC(p[0], n);
    CHECK_NOT_NULL(q);
    size_t u = malloc_usable_size(q);
    q = REALLOC(q, 2 * u);
    CHECK_NOT_NULL(q);
    CHECK_GE(malloc_usable_size(q), 2 * u);
    CHECK_LE(malloc_usable_size(q), 2 * u + 2 * u / 8);
    for (size_t off = 0; off < n; off += 61)
        CHECK_EQ(q[off], 30);
    free(q);
    for (int i = 1; i < N; i++)
        free(p[i]);
    printf("step growth ok\n");
}

static void test_random_stress(void)
{
    enum { SLOTS = 1500, OPS = 200000 };
    static unsigned char *blk[SLOTS];
    static size_t len[SLOTS];
    static uint64_t sd[SLOTS];
    uint64_t rng = 987654321;
    for (int op = 0; op < OPS; op++) {
        uint64_t r = rng_next(&rng);
        int s = (int)(r % SLOTS);
        size_t n;
        switch ((r >> 16) % 16) {
        case 0: n = 0; break;
        case 1: n = 131072 + (r >> 32) % 400000; break;
        case 2: case 3: n = 512 + (r >> 32) % 20000; break;
        case 4: n = 20000 + (r >> 32) % 111073; break;
        default: n = (r >> 32) % 600; break;
        }
        if (n > 131072 && (r >> 20) % 8 != 0)
            n = (r >> 40) % 900;
        unsigned char *q = REALLOC(blk[s], n);
        if (n == 0 && blk[s] != NULL) {
            CHECK_MSG(q == NULL, "realloc(p, 0) returned %p", (void *)q);
            blk[s] = NULL;
            len[s] = 0;
            continue;
        }
        CHECK_MSG(q != NULL, "realloc(%p, %zu) failed", (void *)blk[s], n);
        CHECK_ALIGNED(q, 16);
        size_t keep = len[s] < n ? len[s] : n;
        size_t bad = find_pattern_mismatch(q, keep, sd[s]);
        CHECK_MSG(bad == (size_t)-1, "op %d: realloc %zu -> %zu lost byte %zu", op, len[s], n,
                  bad);
        sd[s] = r;
        fill_pattern(q, n, sd[s]);
        blk[s] = q;
        len[s] = n;
    }
    for (int s = 0; s < SLOTS; s++)
        free(blk[s]);
    printf("random realloc stress ok\n");
}

int main(void)
{
    check_obmem_is_malloc();
    test_chain(0);
    test_chain(1);
    printf("realloc chains ok\n");
    test_realloc_null_and_zero();
    test_realloc_failure();
    test_reallocarray();
    test_step_growth();
    test_random_stress();
    printf("test_malloc_realloc: all ok\n");
    return 0;
}
