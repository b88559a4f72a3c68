/* Large blocks as spans of reserved regions (src/large/region.rs): freed
 * spans keep their pages for the purge delay and serve later blocks, split
 * and merged as the requests need.
 * - reuse: a second round of large blocks, of other sizes, after the first
 *   was freed takes under a tenth of the first round's page faults, and
 *   bytes_kept grows by exactly the freed spans (64 KiB granules);
 * - split_merge: smaller blocks come out of a freed span, disjoint and
 *   with their usable sizes; freed neighbours merge to serve a bigger
 *   block at the same address; realloc grows into the free granules after
 *   a block and gives back its last granules, in place;
 * - dirty_first: a block goes where granules kept their pages, not to a
 *   tighter run whose pages went back, and takes no page faults there;
 * - step_growth: 16 buffers grown in turn by 4 KiB steps (so that most
 *   cannot grow in place) move a logarithmic number of times, keeping
 *   their contents; a block doubled gets no room beyond its request;
 * - room_refused: when the room cannot be mapped, realloc still succeeds
 *   with the size asked, errno untouched;
 * - trim: freed blocks keep their pages up to the peak of live large
 *   bytes; obm_trim gives every kept page back (RSS and bytes_kept fall,
 *   bytes_purged grows by what it returns);
 * - expiry: with OBMEM_PURGE_DELAY_MS=200, kept pages go back once the
 *   delay has passed, at the next large allocation;
 * - delay_zero: with OBMEM_PURGE_DELAY_MS=0, a freed span's pages go back
 *   at once;
 * - page_sizes: blocks of spans under 2 MiB lie in mappings of small pages
 *   (MADV_NOHUGEPAGE, the `nh` flag in /proc/self/smaps), so that 300
 *   blocks of 200 KB written at both ends take a few pages each, not the
 *   2 MiB huge pages around them; a block of 4 MiB ends in a mapping that
 *   asks for huge pages (`hg`);
 * - cached: a span of at most 1 MiB freed by a thread without a heap (so
 *   without a cache of its own) serves the next block of its size whole
 *   from the regions' cache, the last freed first, without a page fault;
 *   a block grows in place over a cached span after it; a second free of
 *   a block whose span is cached is reported; obm_trim gives cached spans
 *   back;
 * - thread_cache: the same from a thread's own cache of the spans it freed
 *   (blocks of up to 1 MiB), with exact statistics; cached spans go back
 *   to their regions to merge for a block of another size, when their
 *   thread exits, and at obm_trim;
 *   a thread that has allocated no large block keeps none it frees;
 *   thread_cache_expiry: after the purge delay, with their pages;
 *   thread_cache_miss: a block of another size takes the smallest larger
 *   cached span, and the others stay cached;
 * - over_budget: when freed spans would take the kept bytes over their
 *   budget, the older kept granules go back, and the span just freed
 *   serves the next block of its size without faults;
 * - many: 4,000 live blocks of 129-600 KB, a random one replaced 20,000
 *   times (a region cut into thousands of free runs, whose bins hold
 *   more runs than a search looks at): every block keeps its contents,
 *   none overlaps another, each has at least its size;
 * - double_free (delay 0 and a long delay): still reported as a double
 *   free, from the header (long delay) or from the region's record of
 *   where freed blocks started (delay 0: the header went with its page).
 * Each case runs in a fresh process (the delay is read when the library is
 * loaded; RSS and faults are per process). */
#include "test_util.h"

#include <pthread.h>
#include <semaphore.h>

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)
#define GRANULE (64 * KiB)

static size_t span_bytes(size_t n) { return (n + 64 + GRANULE - 1) / GRANULE * GRANULE; }

static void touch(unsigned char *p, size_t n, unsigned char v)
{
    for (size_t off = 0; off < n; off += 4096)
        p[off] = v;
    p[n - 1] = v;
}

/* A large block of `n` bytes filled with pattern `v`, written and read
 * back: a write just before free could be dropped. */
static unsigned char *written_block(size_t n, int v)
{
    unsigned char *p = malloc(opaque_size(n));
    CHECK_NOT_NULL(p);
    fill_pattern(p, n, v);
    CHECK_PATTERN(p, n, v);
    return p;
}

/* ---- reuse ----------------------------------------------------------------- */

static void case_reuse(void)
{
    enum { N = 8 };
    static const size_t first[N] = {3 * MiB, 9 * MiB, 5 * MiB + 123, 7 * MiB,
                                    4 * MiB, 6 * MiB, 8 * MiB + 4567, 3 * MiB + 999};
    /* Other sizes, as many bytes or fewer: split and merged from the first
     * round's spans. */
    static const size_t second[N] = {9 * MiB, 2 * MiB, 6 * MiB, 4 * MiB + 77,
                                      11 * MiB, 5 * MiB, 3 * MiB, 4 * MiB};
    unsigned char *p[N];
    /* Live, never touched: the recent demand stays high enough for every
     * freed span to be kept (the peak of live large bytes, LARGE_KEEP_MIN
     * in src/config.rs). */
    void *ballast = malloc(opaque_size(24 * MiB));
    CHECK_NOT_NULL(ballast);
    long f0 = minor_faults();
    size_t spans = 0;
    for (int i = 0; i < N; i++) {
        p[i] = malloc(opaque_size(first[i]));
        CHECK_NOT_NULL(p[i]);
        touch(p[i], first[i], 1);
        spans += span_bytes(first[i]);
    }
    long f1 = minor_faults();
    obm_stats before, after;
    obm_get_stats(&before);
    for (int i = 0; i < N; i++)
        free(p[i]);
    obm_get_stats(&after);
    CHECK_EQ(after.bytes_kept - before.bytes_kept, spans);
    CHECK_GE(after.large_cached, 1);
    CHECK_GE(after.large_cached_bytes, spans);
    long f2 = minor_faults();
    for (int i = 0; i < N; i++) {
        p[i] = calloc(1, opaque_size(second[i]));
        CHECK_NOT_NULL(p[i]);
        CHECK_ZERO(p[i], 4096);
        CHECK_ZERO(p[i] + second[i] - 4096, 4096);
        touch(p[i], second[i], 2);
    }
    long f3 = minor_faults();
    for (int i = 0; i < N; i++) {
        CHECK_EQ(p[i][0], 2);
        CHECK_EQ(p[i][second[i] - 1], 2);
        free(p[i]);
    }
    free(ballast);
    printf("  reuse: first round %ld minor faults, second round %ld (%.1f MiB kept between)\n",
           f1 - f0, f3 - f2, (double)spans / MiB);
    CHECK_MSG(f3 - f2 <= (f1 - f0) / 10, "second round: %ld faults, first %ld", f3 - f2,
              f1 - f0);
}

/* ---- split and merge --------------------------------------------------------- */

static void case_split_merge(void)
{
    unsigned char *a = malloc(opaque_size(8 * MiB));
    unsigned char *b = malloc(opaque_size(8 * MiB));
    CHECK_NOT_NULL(a);
    CHECK_NOT_NULL(b);
    CHECK_EQ((uintptr_t)a % GRANULE, 64);
    /* The first spans of a fresh region, one after the other. */
    CHECK_EQ((uintptr_t)b, (uintptr_t)a + span_bytes(8 * MiB));
    fill_pattern(b, 8 * MiB, 2);
    free(a);
    /* The freed span is the tightest fit: split in two, in order. */
    size_t nc = 2 * MiB, nd = 3 * MiB + 100;
    unsigned char *c = malloc(opaque_size(nc));
    unsigned char *d = malloc(opaque_size(nd));
    CHECK(c == a);
    CHECK_EQ((uintptr_t)d, (uintptr_t)c + span_bytes(nc));
    CHECK_USABLE(nc, malloc_usable_size(c));
    CHECK_LT(malloc_usable_size(c) - nc, 4096);
    CHECK_LT(malloc_usable_size(d) - nd, 4096);
    fill_pattern(c, nc, 3);
    fill_pattern(d, nd, 4);
    CHECK_PATTERN(c, nc, 3);
    CHECK_PATTERN(b, 8 * MiB, 2);
    /* Freed neighbours merge: a block bigger than any of them fits there. */
    free(c);
    free(d);
    free(b);
    unsigned char *e = malloc(opaque_size(15 * MiB));
    CHECK(e == a);
    fill_pattern(e, 15 * MiB, 5);
    free(e);
    /* realloc grows into the free granules after the block, in place... */
    unsigned char *p = malloc(opaque_size(MiB));
    CHECK(p == a);
    fill_pattern(p, MiB, 6);
    unsigned char *q = realloc(opaque_ptr(p), opaque_size(5 * MiB));
    CHECK(q == p);
    CHECK_PATTERN(q, MiB, 6);
    CHECK_USABLE(5 * MiB, malloc_usable_size(q));
    memset(q + MiB, 7, 4 * MiB);
    /* ...and shrinking gives its last granules back, which serve the next
     * block. */
    q = realloc(opaque_ptr(q), opaque_size(500000));
    CHECK(q == p);
    CHECK_PATTERN(q, 500000, 6);
    unsigned char *r = malloc(opaque_size(MiB));
    CHECK_EQ((uintptr_t)r, (uintptr_t)q + span_bytes(500000));
    free(r);
    free(q);
    printf("  split_merge: spans split, merged, grown and shrunk in place\n");
}

/* ---- where blocks go, and how they grow ------------------------------------- */

static void case_dirty_first(void)
{
    /* a, b, x, c, d one after the other in a fresh region (of small pages:
     * every span under 2 MiB); a, x and d stay live, so b and c are runs of
     * their own once freed. */
    size_t n1 = 512 * KiB, n3 = 3 * n1;
    unsigned char *a = malloc(opaque_size(n1)), *b = malloc(opaque_size(n1));
    unsigned char *x = malloc(opaque_size(n1)), *c = malloc(opaque_size(n3));
    unsigned char *d = malloc(opaque_size(n1));
    CHECK(a && b && x && c && d);
    CHECK_EQ((uintptr_t)c, (uintptr_t)x + span_bytes(n1));
    memset(b, 1, n1);
    memset(c, 2, n3);
    /* b's run, a tight fit for a block of n1, gives its pages back; c's,
     * three times too big, keeps them. (Addresses compared after the
     * frees, as integers.) */
    uintptr_t b_at = (uintptr_t)b, c_at = (uintptr_t)c;
    free(opaque_ptr(b));
    obm_trim();
    free(opaque_ptr(c));
    long f0 = minor_faults();
    unsigned char *p = malloc(opaque_size(n1));
    CHECK_NOT_NULL(p);
    memset(p, 3, n1);
    long faults = minor_faults() - f0;
    uintptr_t at = (uintptr_t)p;
    int in_c = at >= c_at && at + n1 <= c_at + n3;
    printf("  dirty_first: a 512 KiB block took %s, with %ld minor faults\n",
           in_c ? "kept granules" : at == b_at ? "the clean run" : "other granules", faults);
    CHECK_MSG(in_c, "the block went to %#lx, not into the kept run at %#lx",
              (unsigned long)at, (unsigned long)c_at);
    CHECK_LT(faults, (long)(n1 / 4096 / 10));
    free(p);
    free(a);
    free(x);
    free(d);
}

static void case_step_growth(void)
{
    enum { N = 16, STEP = 4096 };
    size_t start = 128 * KiB, end = 2 * MiB;
    unsigned char *p[N];
    int moves = 0;
    for (int i = 0; i < N; i++) {
        p[i] = malloc(opaque_size(start));
        CHECK_NOT_NULL(p[i]);
        fill_pattern(p[i], start, (unsigned char)(10 + i));
    }
    for (size_t n = start + STEP; n <= end; n += STEP) {
        for (int i = 0; i < N; i++) {
            unsigned char *q = realloc(opaque_ptr(p[i]), opaque_size(n));
            CHECK_NOT_NULL(q);
            moves += q != p[i];
            p[i] = q;
            memset(q + n - STEP, 20 + i, STEP);
        }
    }
    printf("  step_growth: %d buffers grown in turn from 128 KiB to 2 MiB by 4 KiB steps: "
           "%d moves\n",
           N, moves);
    for (int i = 0; i < N; i++) {
        CHECK_PATTERN(p[i], start, (unsigned char)(10 + i));
        for (size_t off = start; off < end; off += 777)
            CHECK_EQ(p[i][off], 20 + i);
        CHECK_GE(malloc_usable_size(p[i]), end);
    }
    /* Once per granule crossed (about 30 a buffer) without room; with
     * half the size again at each move, about 8. */
    CHECK_LE(moves, N * 12);
    /* A block doubled (a big step) gets what it asks for. */
    unsigned char *q = realloc(opaque_ptr(p[0]), opaque_size(2 * end));
    CHECK_NOT_NULL(q);
    CHECK_PATTERN(q, start, 10);
    CHECK_USABLE(2 * end, malloc_usable_size(q));
    CHECK_LT(malloc_usable_size(q) - 2 * end, 4096);
    free(q);
    for (int i = 1; i < N; i++)
        free(p[i]);
}

/* With OBMEM_FAIL_MMAP=large:1:1 the first region cannot be reserved: the
 * room realloc asks for is refused, and realloc still gives what was asked. */
static void case_room_refused(void)
{
    size_t old = 127 * KiB, n = 130 * KiB;
    unsigned char *p = malloc(opaque_size(old));
    CHECK_NOT_NULL(p);
    fill_pattern(p, old, 7);
    errno = 0;
    unsigned char *q = realloc(opaque_ptr(p), opaque_size(n));
    int e = errno;
    CHECK_NOT_NULL(q);
    CHECK_EQ(e, 0);
    CHECK_PATTERN(q, old, 7);
    CHECK_USABLE(n, malloc_usable_size(q));
    CHECK_LT(malloc_usable_size(q) - n, 4096);
    free(q);
    printf("  room_refused: realloc got its %zu bytes without the room\n", n);
}

/* ---- trim ------------------------------------------------------------------- */

static void case_trim(void)
{
    enum { N = 16 };
    unsigned char *p[N];
    size_t rss0 = rss_bytes();
    for (int i = 0; i < N; i++) {
        p[i] = malloc(opaque_size(4 * MiB + (size_t)i * 4096));
        CHECK_NOT_NULL(p[i]);
        memset(p[i], 1, 4 * MiB);
    }
    for (int i = 0; i < N; i++)
        free(p[i]);
    size_t rss_freed = rss_bytes();
    obm_stats before, after;
    obm_get_stats(&before);
    size_t given = obm_trim();
    obm_get_stats(&after);
    size_t rss_trimmed = rss_bytes();
    printf("  trim: RSS %.1f MiB at the start, %.1f after the frees, %.1f after obm_trim, "
           "which gave back %.1f MiB\n",
           (double)rss0 / MiB, (double)rss_freed / MiB, (double)rss_trimmed / MiB,
           (double)given / MiB);
    /* Kept, the delay being long: up to the 64 MiB peak of live bytes
     * (the bound on what is kept, which counts whole granules: 15 of the
     * 16 spans). */
    CHECK_GE(rss_freed, rss0 + 56 * MiB);
    CHECK_GE(given, 56 * MiB);
    CHECK_LE(rss_trimmed, rss0 + 4 * MiB);
    CHECK_LE(after.bytes_kept, 1 * MiB);
    CHECK_EQ(after.large_cached_bytes, 0);
    CHECK_GE(after.bytes_purged - before.bytes_purged, given);
}

/* ---- the delay ---------------------------------------------------------------- */


static void case_expiry(void)
{
    enum { N = 8 };
    unsigned char *p[N];
    size_t rss0 = rss_bytes();
    for (int i = 0; i < N; i++) {
        p[i] = malloc(opaque_size(4 * MiB));
        CHECK_NOT_NULL(p[i]);
        memset(p[i], 1, 4 * MiB);
    }
    double t0 = now_sec();
    for (int i = 0; i < N; i++)
        free(p[i]);
    size_t rss_freed = rss_bytes();
    double freeing = now_sec() - t0;
    usleep(400 * 1000);
    /* The next large allocation looks at the clock. */
    free(opaque_ptr(malloc(opaque_size(200000))));
    size_t rss = rss_bytes();
    obm_stats st;
    obm_get_stats(&st);
    printf("  expiry: RSS %.1f MiB at the start, %.1f after the frees, %.1f 0.4 s later\n",
           (double)rss0 / MiB, (double)rss_freed / MiB, (double)rss / MiB);
    if (freeing < 0.1)
        CHECK_GE(rss_freed, rss0 + 26 * MiB); /* 7 of the 8 spans: the peak kept */
    CHECK_LE(rss, rss0 + 4 * MiB);
    CHECK_LE(st.large_cached_bytes, 512 * KiB); /* the 200000-byte block's span */
}

static void case_delay_zero(void)
{
    size_t rss0 = rss_bytes();
    obm_stats before, after;
    obm_get_stats(&before);
    unsigned char *p = malloc(opaque_size(24 * MiB));
    CHECK_NOT_NULL(p);
    memset(p, 1, 24 * MiB);
    size_t rss_live = rss_bytes();
    free(opaque_ptr(p));
    size_t rss = rss_bytes();
    obm_get_stats(&after);
    printf("  delay_zero: RSS %.1f MiB at the start, %.1f with the block, %.1f after free\n",
           (double)rss0 / MiB, (double)rss_live / MiB, (double)rss / MiB);
    CHECK_GE(rss_live, rss0 + 22 * MiB);
    /* What stays: the region's bookkeeping (in its first 256 KiB; up to
     * its first huge page, 2 MiB, should khugepaged fill it in). */
    CHECK_LE(rss, rss0 + 3 * MiB);
    CHECK_EQ(after.bytes_kept, before.bytes_kept);
    CHECK_GE(after.bytes_purged - before.bytes_purged, 24 * MiB);
}

static void case_double_free(void)
{
    unsigned char *p = malloc(opaque_size(5 * MiB));
    CHECK_NOT_NULL(p);
    memset(p, 1, 5 * MiB);
    void *again = opaque_ptr(p); /* the same pointer, hidden from GCC */
    free(p);
    free(again); /* reported: abort */
}

/* ---- page_sizes --------------------------------------------------------------- */

static void case_page_sizes(void)
{
    enum { N = 300 };
    static unsigned char *p[N];
    size_t rss0 = rss_bytes();
    for (size_t i = 0; i < N; i++) {
        p[i] = malloc(200 * KiB);
        CHECK_NOT_NULL(p[i]);
        p[i][0] = 1;
        p[i][200 * KiB - 1] = 1;
    }
    size_t grown = rss_bytes() - rss0;
    printf("  %d blocks of 200 KB written at both ends: RSS +%.1f MiB\n", N,
           (double)grown / MiB);
    /* Two pages a block, and the page tables: under 4 MiB. In huge pages,
     * the 60 MB the blocks span. */
    CHECK_LE(grown, 8 * MiB);
    for (size_t i = 0; i < N; i += N - 1) {
        const char *flags = smaps_vmflags_of(p[i], NULL);
        CHECK_MSG(flags != NULL, "block %p not in /proc/self/smaps", (void *)p[i]);
        CHECK_MSG(strstr(flags, " nh") && !strstr(flags, " hg"),
                  "block %zu of 200 KB in a mapping with flags %s", i, flags);
    }
    unsigned char *big = malloc(4 * MiB);
    CHECK_NOT_NULL(big);
    /* Its end: the first 2 MiB of a region, its bookkeeping's, stay in
     * small pages. */
    const char *flags = smaps_vmflags_of(big + 4 * MiB - 1, NULL);
    CHECK_MSG(flags != NULL && strstr(flags, " hg"), "a block of 4 MiB in a mapping with flags %s",
              flags ? flags : "(none)");
    free(big);
    for (size_t i = 0; i < N; i++)
        free(p[i]);
}

/* ---- cached ------------------------------------------------------------------- */

/* A thread that only frees has no heap, so no cache of its own: the
 * blocks it frees go to the regions (and their cache). */
static void *free_block(void *p)
{
    free(p);
    return NULL;
}

static void free_in_other_thread(void *p)
{
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, free_block, p), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
}

/* Two blocks of 3 granules side by side; the second freed by `release`;
 * the first grown in place over it to 6 granules, contents kept. */
static unsigned char *grow_over_freed_neighbour(void (*release)(void *))
{
    unsigned char *x = malloc(opaque_size(3 * GRANULE - 64));
    unsigned char *y = malloc(opaque_size(3 * GRANULE - 64));
    CHECK_EQ((uintptr_t)y, (uintptr_t)x + 3 * GRANULE);
    fill_pattern(x, 3 * GRANULE - 64, 5);
    release(y);
    unsigned char *z = realloc(opaque_ptr(x), opaque_size(6 * GRANULE - 64));
    CHECK(z == x);
    CHECK_PATTERN(z, 3 * GRANULE - 64, 5);
    memset(z, 6, 6 * GRANULE - 64);
    return z;
}

static void case_cached(void)
{
    const size_t n = 200 * 1000; /* 4 granules with the header */
    unsigned char *a = malloc(opaque_size(n));
    unsigned char *b = malloc(opaque_size(n));
    CHECK_NOT_NULL(a);
    CHECK_NOT_NULL(b);
    /* Written and read back: a write just before free could be dropped. */
    fill_pattern(a, n, 1);
    fill_pattern(b, n, 2);
    CHECK_PATTERN(a, n, 1);
    CHECK_PATTERN(b, n, 2);
    free_in_other_thread(a);
    free_in_other_thread(b);
    /* The last freed first, its pages still resident. */
    long f0 = minor_faults();
    unsigned char *c = malloc(opaque_size(n));
    unsigned char *d = malloc(opaque_size(n - 1000)); /* the same span size */
    CHECK(c == b);
    CHECK(d == a);
    memset(c, 3, n);
    memset(d, 4, n - 1000);
    CHECK_EQ(minor_faults() - f0, 0);
    /* A block grows in place over the cached span after it: the first
     * spans of a fresh region lie one after the other. */
    unsigned char *z = grow_over_freed_neighbour(free_in_other_thread);
    /* Everything kept goes back with obm_trim, cached spans too. */
    free_in_other_thread(c);
    free_in_other_thread(d);
    struct obm_stats st;
    obm_get_stats(&st);
    CHECK(st.bytes_kept >= 8 * GRANULE);
    obm_trim();
    obm_get_stats(&st);
    CHECK_LT(st.bytes_kept, GRANULE);
    free(z);
    printf("  cached: spans reused whole without faults, grown over, trimmed\n");
}

/* A block freed twice by `release` while its span is cached: aborts. */
static void free_cached_twice(void (*release)(void *))
{
    unsigned char *p = written_block(300 * 1000, 1);
    void *again = opaque_ptr(p);
    release(p);
    release(again); /* reported: abort */
}

/* In the regions' cache: freed by a thread without a heap. */
static void case_cached_double_free(void) { free_cached_twice(free_in_other_thread); }

/* ---- thread_cache ---------------------------------------------------------- */

/* The calling thread's heap (which holds its cache of freed spans) is
 * made by its first small block. */
static void make_heap(void)
{
    void *p = malloc(opaque_size(16));
    CHECK_NOT_NULL(p);
    free(opaque_ptr(p));
}

struct handoff {
    void *block;
    sem_t freed, done;
};

static void *free_one_and_exit(void *arg)
{
    make_heap();
    unsigned char *p = written_block(300 * 1000, 7);
    *(uintptr_t *)arg = (uintptr_t)p;
    free(p); /* into this thread's cache, until it exits */
    return NULL;
}

/* A thread with a heap that frees a large block it did not allocate, and
 * has allocated none: the block goes back to the regions, where its
 * allocator finds it, not to the freeing thread's cache. */
static void *free_and_wait(void *arg)
{
    struct handoff *h = arg;
    make_heap();
    free(h->block);
    sem_post(&h->freed);
    sem_wait(&h->done);
    return NULL;
}

/* A block of `n` bytes, written with `v`, lands at `at`, whose pages are
 * resident: the regions' bookkeeping may take a page or two the first
 * time their free runs change this way. */
static unsigned char *alloc_at_resident(uintptr_t at, size_t n, int v)
{
    long f0 = minor_faults();
    unsigned char *p = malloc(opaque_size(n));
    CHECK((uintptr_t)p == at);
    memset(p, v, n);
    CHECK_LE(minor_faults() - f0, 4);
    return p;
}

static void case_thread_cache(void)
{
    make_heap();
    struct obm_stats base0, base, st;
    obm_get_stats(&base0);
    /* A block of another size that finds no place all dirty takes the
     * cached spans back to their regions first: two freed neighbours
     * merge to serve a block of both their sizes, without faults. (First:
     * the first spans of a fresh region lie one after the other.) */
    unsigned char *u = malloc(opaque_size(3 * GRANULE - 64));
    unsigned char *v = malloc(opaque_size(3 * GRANULE - 64));
    CHECK_EQ((uintptr_t)v, (uintptr_t)u + 3 * GRANULE);
    /* Written and read back: a write just before free could be dropped. */
    fill_pattern(u, 3 * GRANULE - 64, 1);
    fill_pattern(v, 3 * GRANULE - 64, 2);
    CHECK_PATTERN(u, 3 * GRANULE - 64, 1);
    CHECK_PATTERN(v, 3 * GRANULE - 64, 2);
    uintptr_t at_u = (uintptr_t)u;
    free(u);
    free(v);
    unsigned char *w = alloc_at_resident(at_u, 6 * GRANULE - 64 - 8192, 3);
    obm_get_stats(&base);
    CHECK_EQ(base.large_blocks, base0.large_blocks + 1);

    /* The span of a block the thread freed serves its next block of the
     * same granules, header and pages as they were. */
    const size_t n = 250 * 1000, n2 = 200 * 1000; /* 4 granules each */
    unsigned char *a = written_block(n, 1);
    free(a);
    obm_get_stats(&st);
    CHECK_EQ(st.large_blocks, base.large_blocks);
    CHECK_EQ(st.large_bytes, base.large_bytes);
    CHECK_EQ(st.large_cached, base.large_cached + 1);
    /* counted at its block's pages */
    CHECK_EQ(st.large_cached_bytes, base.large_cached_bytes + (n + 64 + 4095) / 4096 * 4096);
    long f0 = minor_faults();
    unsigned char *b = malloc(opaque_size(n2));
    CHECK(b == a);
    memset(b, 2, n2);
    CHECK_EQ(minor_faults() - f0, 0);
    CHECK_EQ(malloc_usable_size(b), (n2 + 64 + 4095) / 4096 * 4096 - 64);
    obm_get_stats(&st);
    CHECK_EQ(st.large_blocks, base.large_blocks + 1);
    CHECK_EQ(st.large_bytes, base.large_bytes + malloc_usable_size(b));
    CHECK_EQ(st.large_allocations, base.large_allocations + 2);
    /* Mapped: the pages of the block, not of the one freed into its span. */
    CHECK_EQ(st.bytes_mapped, base.bytes_mapped + (n2 + 64 + 4095) / 4096 * 4096);
    CHECK_EQ(st.large_cached, base.large_cached);

    /* A block grows in place over a span after it in the thread's cache. */
    unsigned char *z = grow_over_freed_neighbour(free);

    /* A thread that allocates no large block keeps none it frees. */
    struct handoff h = {.block = malloc(opaque_size(n))};
    CHECK_NOT_NULL(h.block);
    fill_pattern(h.block, n, 8);
    CHECK_PATTERN(h.block, n, 8);
    uintptr_t handed = (uintptr_t)h.block;
    CHECK_EQ(sem_init(&h.freed, 0, 0), 0);
    CHECK_EQ(sem_init(&h.done, 0, 0), 0);
    pthread_t helper;
    CHECK_EQ(pthread_create(&helper, NULL, free_and_wait, &h), 0);
    CHECK_EQ(sem_wait(&h.freed), 0);
    unsigned char *back = malloc(opaque_size(n));
    CHECK((uintptr_t)back == handed);
    sem_post(&h.done);
    CHECK_EQ(pthread_join(helper, NULL), 0);
    free(back);

    /* A thread's cached spans go back to their regions when it exits: the
     * next block of that size takes the same pages. */
    pthread_t t;
    uintptr_t freed = 0;
    CHECK_EQ(pthread_create(&t, NULL, free_one_and_exit, &freed), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
    obm_get_stats(&st);
    CHECK_EQ(st.large_blocks, base.large_blocks + 2); /* b, z, and w */
    f0 = minor_faults();
    unsigned char *q = malloc(opaque_size(300 * 1000));
    CHECK((uintptr_t)q == freed);
    memset(q, 4, 300 * 1000);
    CHECK_EQ(minor_faults() - f0, 0);

    /* obm_trim gives the thread's cached spans back too. */
    free(q);
    free(b);
    free(z);
    free(w);
    obm_get_stats(&st);
    CHECK_EQ(st.large_blocks, base0.large_blocks);
    CHECK_EQ(st.large_bytes, base0.large_bytes);
    /* u v w a b x y, the handed block and its successor, the thread's, q */
    CHECK_EQ(st.large_allocations, base0.large_allocations + 11);
    CHECK(st.large_cached > base0.large_cached);
    obm_trim();
    obm_get_stats(&st);
    CHECK_EQ(st.large_cached, 0);
    CHECK_LT(st.bytes_kept, GRANULE);
    CHECK_EQ(st.large_blocks, base0.large_blocks);
    CHECK_EQ(st.large_bytes, base0.large_bytes);

    /* The largest block cached: a buffer of exactly 1 MiB, 17 granules
     * with its header. In the cache its span counts its block's pages (in
     * its region, it would count 17 granules whole). */
    unsigned char *m = written_block(MiB, 5);
    free(m);
    obm_get_stats(&st);
    CHECK_EQ(st.large_cached, 1);
    CHECK_EQ(st.large_cached_bytes, MiB + 4096);
    f0 = minor_faults();
    unsigned char *m2 = malloc(opaque_size(MiB));
    CHECK(m2 == m);
    memset(m2, 6, MiB);
    CHECK_EQ(minor_faults() - f0, 0);
    free(m2);
    printf("  thread_cache: spans reused by their thread, grown over, merged, "
           "returned at exit, trimmed; 1 MiB buffers too\n");
}

/* A block of a span size the thread's cache lacks, with no place all
 * dirty in the regions: the smallest larger cached span goes back and
 * serves it, and the other cached spans stay cached (counted at their
 * blocks' pages, not as granules of their region), for the next blocks of
 * their size. */
static void case_thread_cache_miss(void)
{
    make_heap();
    /* Blocks of 3, 5 and 3 granules, live blocks between them. */
    const size_t n3 = 3 * GRANULE - 64 - 8192, n5 = 5 * GRANULE - 64 - 8192;
    unsigned char *a = malloc(opaque_size(n3));
    void *x1 = malloc(opaque_size(n3));
    unsigned char *b = malloc(opaque_size(n5));
    void *x2 = malloc(opaque_size(n3));
    unsigned char *c = malloc(opaque_size(n3));
    CHECK(a && x1 && b && x2 && c);
    fill_pattern(a, n3, 1);
    fill_pattern(b, n5, 2);
    fill_pattern(c, n3, 3);
    CHECK_PATTERN(a, n3, 1);
    CHECK_PATTERN(b, n5, 2);
    CHECK_PATTERN(c, n3, 3);
    struct obm_stats base, st;
    obm_get_stats(&base);
    uintptr_t at_b = (uintptr_t)b;
    free(a);
    free(b);
    free(c);
    obm_get_stats(&st);
    CHECK_EQ(st.large_cached, base.large_cached + 3);
    /* 4 granules: b's span, the larger one, serves it. */
    unsigned char *d = alloc_at_resident(at_b, 4 * GRANULE - 64 - 8192, 4);
    /* Kept: a and c at their blocks' pages, b's last granule whole. */
    obm_get_stats(&st);
    CHECK_EQ(st.large_cached_bytes,
             base.large_cached_bytes + 2 * (3 * GRANULE - 8192) + GRANULE);
    /* a and c still serve the next blocks of their size, the last freed
     * first. */
    long f0 = minor_faults();
    unsigned char *e = malloc(opaque_size(n3)), *f = malloc(opaque_size(n3));
    CHECK(e == c);
    CHECK(f == a);
    memset(e, 5, n3);
    memset(f, 6, n3);
    CHECK_EQ(minor_faults() - f0, 0);
    free(d);
    free(e);
    free(f);
    free(x1);
    free(x2);
    printf("  thread_cache_miss: the larger span served, the others stayed cached\n");
}

/* A thread's cached span goes back once it has waited the purge delay. */
static void case_thread_cache_expiry(void)
{
    make_heap();
    unsigned char *a = written_block(500 * 1000, 1);
    size_t rss_held = rss_bytes();
    free(a);
    struct obm_stats st, before;
    obm_get_stats(&before);
    CHECK_EQ(before.large_cached, 1);
    usleep(400 * 1000);
    /* A large block of another span size: the thread's cache misses, and
     * finds its span expired. */
    void *b = malloc(opaque_size(700 * 1000));
    CHECK_NOT_NULL(b);
    obm_get_stats(&st);
    CHECK_EQ(st.large_cached, 0);
    /* Its pages went back to the OS: 123 pages with its header. */
    CHECK_GE(st.bytes_purged, before.bytes_purged + 123 * 4096);
    CHECK_MSG(rss_bytes() + 256 * KiB < rss_held, "RSS %zu, %zu with the block", rss_bytes(),
              rss_held);
    free(b);
    printf("  thread_cache_expiry: the span went back after the delay\n");
}

/* In the thread's own cache. */
static void case_thread_cached_double_free(void) { free_cached_twice(free); }

/* ---- over_budget ------------------------------------------------------------ */

/* Kept pages over their budget (the most live large bytes lately, here 9
 * MiB): the older kept granules go back, not the span just freed, which
 * then serves the next block of its size without faults. */
static void case_over_budget(void)
{
    unsigned char *a = malloc(opaque_size(6 * MiB));
    unsigned char *s = malloc(opaque_size(2 * MiB)); /* keeps a's granules apart */
    CHECK_NOT_NULL(a);
    CHECK_NOT_NULL(s);
    fill_pattern(a, 6 * MiB, 1);
    CHECK_PATTERN(a, 6 * MiB, 1);
    free(a); /* 6 MiB kept */
    unsigned char *b = malloc(opaque_size(7 * MiB)); /* too big for a's place */
    CHECK_NOT_NULL(b);
    fill_pattern(b, 7 * MiB, 2);
    CHECK_PATTERN(b, 7 * MiB, 2);
    uintptr_t b_at = (uintptr_t)b;
    free(b); /* 13 MiB kept would pass the 9 MiB budget */
    struct obm_stats st;
    obm_get_stats(&st);
    CHECK_MSG(st.bytes_kept >= 7 * MiB && st.bytes_kept <= 9 * MiB + GRANULE,
              "%zu bytes kept", st.bytes_kept);
    long f0 = minor_faults();
    unsigned char *c = malloc(opaque_size(7 * MiB));
    CHECK((uintptr_t)c == b_at);
    memset(c, 3, 7 * MiB);
    CHECK_LE(minor_faults() - f0, 8);
    free(c);
    free(s);
    printf("  over_budget: the older kept pages went back, %zu MiB kept\n", st.bytes_kept / MiB);
}

/* ---- many ------------------------------------------------------------------ */

static unsigned long long rng_state = 0x9e3779b97f4a7c15ull;
static size_t rnd(size_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (size_t)(rng_state % n);
}

static int by_address(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return (x > y) - (x < y);
}

static void case_many(void)
{
    enum { LIVE = 4000, OPS = 20000 };
    static unsigned char *p[LIVE];
    static size_t size[LIVE];
    static uintptr_t ends[LIVE][2];
    for (size_t i = 0; i < LIVE; i++) {
        size[i] = 129 * 1024 + rnd(472 * 1024);
        p[i] = malloc(size[i]);
        CHECK(p[i] != NULL);
        p[i][0] = p[i][size[i] - 1] = (unsigned char)i;
    }
    for (size_t op = 0; op < OPS; op++) {
        size_t i = rnd(LIVE);
        CHECK_MSG(p[i][0] == (unsigned char)i && p[i][size[i] - 1] == (unsigned char)i,
                  "op %zu: block %zu lost its contents", op, i);
        free(p[i]);
        size[i] = 129 * 1024 + rnd(472 * 1024);
        p[i] = malloc(size[i]);
        CHECK(p[i] != NULL);
        CHECK(malloc_usable_size(p[i]) >= size[i]);
        p[i][0] = p[i][size[i] - 1] = (unsigned char)i;
    }
    for (size_t i = 0; i < LIVE; i++) {
        ends[i][0] = (uintptr_t)p[i];
        ends[i][1] = (uintptr_t)p[i] + malloc_usable_size(p[i]);
    }
    qsort(ends, LIVE, sizeof ends[0], by_address);
    for (size_t i = 1; i < LIVE; i++)
        CHECK_MSG(ends[i - 1][1] <= ends[i][0], "blocks at %#lx and %#lx overlap",
                  (unsigned long)ends[i - 1][0], (unsigned long)ends[i][0]);
    for (size_t i = 0; i < LIVE; i++) {
        CHECK(p[i][0] == (unsigned char)i && p[i][size[i] - 1] == (unsigned char)i);
        free(p[i]);
    }
    printf("  many: %d live blocks, %d replaced, contents kept, none overlapping\n", LIVE, OPS);
}

static void child(const char *mode)
{
    if (strcmp(mode, "reuse") == 0)
        case_reuse();
    else if (strcmp(mode, "split_merge") == 0)
        case_split_merge();
    else if (strcmp(mode, "dirty_first") == 0)
        case_dirty_first();
    else if (strcmp(mode, "step_growth") == 0)
        case_step_growth();
    else if (strcmp(mode, "room_refused") == 0)
        case_room_refused();
    else if (strcmp(mode, "trim") == 0)
        case_trim();
    else if (strcmp(mode, "expiry") == 0)
        case_expiry();
    else if (strcmp(mode, "delay_zero") == 0)
        case_delay_zero();
    else if (strcmp(mode, "page_sizes") == 0)
        case_page_sizes();
    else if (strcmp(mode, "double_free") == 0)
        case_double_free();
    else if (strcmp(mode, "many") == 0)
        case_many();
    else if (strcmp(mode, "cached") == 0)
        case_cached();
    else if (strcmp(mode, "cached_double_free") == 0)
        case_cached_double_free();
    else if (strcmp(mode, "over_budget") == 0)
        case_over_budget();
    else if (strcmp(mode, "thread_cache") == 0)
        case_thread_cache();
    else if (strcmp(mode, "thread_cache_expiry") == 0)
        case_thread_cache_expiry();
    else if (strcmp(mode, "thread_cache_miss") == 0)
        case_thread_cache_miss();
    else if (strcmp(mode, "thread_cached_double_free") == 0)
        case_thread_cached_double_free();
    else
        FAIL("unknown mode %s", mode);
}

static void expect_double_free(const char *mode, const char *delay)
{
    spawn_result r;
    spawn_self(mode, (const char *const[]){delay, NULL}, &r);
    CHECK_MSG(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT, "%s: status %d", delay,
              r.status);
    CHECK_MSG(strstr(r.err, "free(): double free of") != NULL, "%s: stderr:\n%s", delay, r.err);
    printf("  double free reported (%s, %s)\n", mode, delay);
}

int main(int argc, char **argv)
{
    if (run_as_child(argc, argv, child))
        return 0;
    check_obmem_is_malloc();
    if (debug_hooks_on()) {
        printf("test_large_spans: skipped under the debug hooks\n");
        return 0;
    }
    const char *long_delay = "OBMEM_PURGE_DELAY_MS=60000";
    spawn_self_ok("reuse", (const char *const[]){long_delay, NULL});
    spawn_self_ok("split_merge", (const char *const[]){long_delay, NULL});
    spawn_self_ok("dirty_first", (const char *const[]){long_delay, NULL});
    spawn_self_ok("step_growth", (const char *const[]){long_delay, NULL});
    spawn_self_ok("room_refused", (const char *const[]){"OBMEM_FAIL_MMAP=large:1:1", NULL});
    spawn_self_ok("trim", (const char *const[]){long_delay, NULL});
    spawn_self_ok("expiry", (const char *const[]){"OBMEM_PURGE_DELAY_MS=200", NULL});
    spawn_self_ok("delay_zero", (const char *const[]){"OBMEM_PURGE_DELAY_MS=0", NULL});
    spawn_self_ok("page_sizes", (const char *const[]){NULL});
    spawn_self_ok("many", (const char *const[]){NULL});
    spawn_self_ok("cached", (const char *const[]){long_delay, NULL});
    expect_double_free("double_free", "OBMEM_PURGE_DELAY_MS=0");
    expect_double_free("double_free", long_delay);
    expect_double_free("cached_double_free", long_delay);
    spawn_self_ok("over_budget", (const char *const[]){long_delay, NULL});
    spawn_self_ok("thread_cache", (const char *const[]){long_delay, NULL});
    spawn_self_ok("thread_cache_expiry", (const char *const[]){"OBMEM_PURGE_DELAY_MS=200", NULL});
    spawn_self_ok("thread_cache_miss", (const char *const[]){long_delay, NULL});
    expect_double_free("thread_cached_double_free", long_delay);
    printf("test_large_spans: all ok\n");
    return 0;
}
