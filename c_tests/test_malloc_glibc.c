/*
 * glibc's malloc surface beyond the malloc family (README "glibc's malloc
 * surface"): mallinfo2, mallinfo, malloc_stats and mallopt are obmem's.
 * - mallinfo2 reports obm_stats' figures: uordblks is the bytes in small
 *   blocks, growing by exactly 640000 for 1000 blocks of 600 bytes (640-byte
 *   class) and back after free; a 1 MiB block adds one to hblks and its
 *   usable size to hblkhd; arena == uordblks + fordblks; keepcost is
 *   bytes_kept; no fastbins; mallinfo gives the same figures as ints;
 * - malloc_stats prints obmem's table ("obmem statistics") to stderr, not
 *   glibc's "Arena 0:";
 * - mallopt returns what glibc 2.36 returns: 1, or 0 for M_MXFAST outside
 *   0..160; unknown parameters give 1.
 */
#include "test_util.h"

#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

static void check_consistent(const struct mallinfo2 *m, const obm_stats *st)
{
    CHECK_EQ(m->arena, m->uordblks + m->fordblks);
    CHECK_EQ(m->uordblks, st->bytes_in_use - st->large_bytes);
    CHECK_EQ(m->hblks, st->large_blocks);
    CHECK_EQ(m->hblkhd, st->large_bytes);
    CHECK_EQ(m->arena + m->hblkhd, st->bytes_mapped);
    CHECK_EQ(m->usmblks, st->peak_mapped);
    CHECK_EQ(m->keepcost, st->bytes_kept);
    CHECK_EQ(m->smblks, 0);
    CHECK_EQ(m->fsmblks, 0);
    size_t free_blocks = 0;
    for (size_t i = 0; i < st->num_classes; i++)
        free_blocks += st->classes[i].blocks_free;
    CHECK_EQ(m->ordblks, free_blocks);
}

static void test_mallinfo2(void)
{
    struct mallinfo2 before = mallinfo2();
    obm_stats st = stats_now();
    check_consistent(&before, &st);

    enum { N = 1000 };
    static void *blocks[N];
    for (int i = 0; i < N; i++) {
        blocks[i] = malloc(opaque_size(600));
        CHECK_NOT_NULL(blocks[i]);
    }
    struct mallinfo2 during = mallinfo2();
    st = stats_now();
    check_consistent(&during, &st);
    CHECK_EQ(during.uordblks - before.uordblks, (size_t)N * 640);
    CHECK_GE(during.arena, during.uordblks);

    void *big = malloc(opaque_size(1 << 20));
    CHECK_NOT_NULL(big);
    struct mallinfo2 with_big = mallinfo2();
    CHECK_EQ(with_big.hblks, during.hblks + 1);
    CHECK_EQ(with_big.hblkhd - during.hblkhd, malloc_usable_size(big));
    CHECK_EQ(with_big.uordblks, during.uordblks);
    CHECK_GE(with_big.usmblks, with_big.arena + with_big.hblkhd);

    /* mallinfo: the same figures as ints (all small here). */
    struct mallinfo old = mallinfo();
    struct mallinfo2 now = mallinfo2();
    CHECK_EQ((size_t)old.uordblks, now.uordblks);
    CHECK_EQ((size_t)old.hblks, now.hblks);
    CHECK_EQ((size_t)old.hblkhd, now.hblkhd);
    CHECK_EQ((size_t)old.arena, now.arena);

    free(big);
    for (int i = 0; i < N; i++)
        free(blocks[i]);
    struct mallinfo2 after = mallinfo2();
    st = stats_now();
    check_consistent(&after, &st);
    CHECK_EQ(after.uordblks, before.uordblks);
    CHECK_EQ(after.hblks, before.hblks);
    /* The freed blocks are free blocks of their pools (or the pools left). */
    CHECK_GE(after.fordblks, after.ordblks * 16);
}

static void print_stats(void *arg)
{
    (void)arg;
    void *p = malloc(opaque_size(600));
    malloc_stats();
    free(p);
}

static void test_malloc_stats(void)
{
    child_result r;
    run_in_child(print_stats, NULL, &r);
    CHECK_MSG(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "child: %s", r.out);
    CHECK_MSG(strstr(r.out, "obmem statistics (pid ") != NULL, "malloc_stats printed: %s", r.out);
    CHECK_MSG(strstr(r.out, "bytes in use") != NULL, "malloc_stats printed: %s", r.out);
    CHECK_MSG(strstr(r.out, "Arena 0:") == NULL, "glibc's malloc_stats ran: %s", r.out);
}

static void test_mallopt(void)
{
    CHECK_EQ(mallopt(M_MXFAST, 0), 1);
    CHECK_EQ(mallopt(M_MXFAST, 160), 1);
    CHECK_EQ(mallopt(M_MXFAST, 161), 0);
    CHECK_EQ(mallopt(M_MXFAST, -1), 0);
    CHECK_EQ(mallopt(M_MMAP_THRESHOLD, 1 << 20), 1);
    CHECK_EQ(mallopt(M_MMAP_THRESHOLD, 32 << 20), 1);
    CHECK_EQ(mallopt(M_MMAP_THRESHOLD, 64 << 20), 1);
    CHECK_EQ(mallopt(M_TRIM_THRESHOLD, 128 << 10), 1);
    CHECK_EQ(mallopt(M_TOP_PAD, 0), 1);
    CHECK_EQ(mallopt(M_MMAP_MAX, 0), 1);
    CHECK_EQ(mallopt(M_CHECK_ACTION, 3), 1);
    CHECK_EQ(mallopt(M_PERTURB, 0xAB), 1);
    CHECK_EQ(mallopt(M_ARENA_TEST, 0), 1);
    CHECK_EQ(mallopt(M_ARENA_MAX, 1), 1);
    CHECK_EQ(mallopt(12345, 1), 1);

    /* Accepted, but obmem keeps its own rules: blocks up to 128 KiB stay in
     * pools, newly allocated memory is not perturbed. */
    size_t large_before = stats_now().large_blocks;
    void *p = malloc(opaque_size(100 << 10));
    CHECK_NOT_NULL(p);
    CHECK_EQ(stats_now().large_blocks, large_before);
    free(p);
}

int main(void)
{
    check_obmem_is_malloc();
    test_mallinfo2();
    test_malloc_stats();
    test_mallopt();
    return 0;
}
