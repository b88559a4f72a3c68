/*
 * fault_mmap: OBMEM_FAIL_MMAP at every mapping site of obmem.
 *
 * The program is its own driver. Without arguments it runs each scenario
 * as a child (re-executed, so obmem reads OBMEM_FAIL_MMAP at start-up, and
 * with address-space randomisation off, so that every run of a scenario
 * maps the same addresses in the same order):
 *
 *   1. with OBMEM_FAIL_MMAP=trace: every operation must succeed, and the
 *      trace (`obmem: mmap #K SITE BYTES`, with the `@@ op` markers the
 *      scenario prints before each operation) tells which mapping call
 *      each operation makes: its global number K and its number among the
 *      calls of its site;
 *   2. with a failure injected exactly there (SITE:N, SITE:N:C, K, K:C):
 *      the operation must fail cleanly (NULL and ENOMEM; realloc leaves the
 *      old block and its contents intact; posix_memalign returns ENOMEM),
 *      or degrade to its fallback (a single arena instead of a batch, a
 *      copy instead of an mremap), the statistics and the process's own
 *      virtual size must agree that nothing leaked, and with a window
 *      (N:C) the same operation must work again afterwards.
 *
 * Then a sweep: a workload that uses every allocation function, several
 * threads and realloc across the small/medium/large boundaries runs once
 * with OBMEM_FAIL_MMAP=K:1 and once with K for every mapping call K it
 * makes (also under OBMEM_MALLOC=debug): each run must end with status 0,
 * every failure must be NULL+ENOMEM, a single failed mapping call may make
 * at most one call fail, and the statistics must come back to the
 * baseline when everything is freed.
 *
 * `fault_mmap SCENARIO MODE` runs one scenario in the current process
 * (the environment must already hold the OBMEM_FAIL_MMAP value the mode
 * expects); FAULTS_FULL=1 sweeps every K under the debug hooks as well
 * (the default takes every eighth).
 */
#include "fault_util.h"

#include <stdatomic.h>

static const char *mode = "ok";
/* Parameters the driver learns from a trace and passes as key=value. */
static int nholders = 19;            /* threads that fill the first heap slab */
static size_t batch_bytes = 4 << 20; /* one arena batch */
static int is_mode(const char *m) { return strcmp(mode, m) == 0; }

#define EXPECT_ENOMEM(call_is_null)                                          \
    do {                                                                     \
        CHECK_MSG((call_is_null), "expected a failure");                     \
        CHECK_MSG(errno == ENOMEM, "errno %d (%s), expected ENOMEM", errno,  \
                  strerror(errno));                                          \
    } while (0)

/* Prints "name=value" lines the driver reads back. */
static void report_kv(const char *k, size_t v)
{
    char buf[128];
    int n = snprintf(buf, sizeof buf, "kv %s=%zu\n", k, v);
    if (write(2, buf, (size_t)n) < 0)
        _exit(3);
}

static long kv_get(const char *out, const char *k)
{
    char want[96];
    snprintf(want, sizeof want, "kv %s=", k);
    const char *s = strstr(out, want);
    return s ? strtol(s + strlen(want), NULL, 10) : -1;
}

/* ======================================================================
 * Scenario "arenas": small blocks until a new arena batch is needed.
 * Modes: ok, fail (no more arenas: NULL), one (the batch fails, the
 * single-arena fallback serves), two (batch and single fail: exactly one
 * NULL, then the next batch works).
 * ====================================================================== */

enum { FILL = 40000, BS = 256, UNIT_BLOCKS = 16384 / BS };
static void *blk[FILL + 16];

static void scen_arenas(void)
{
    void *w = malloc(opaque_size(24)); /* the heap and the first arena batch */
    CHECK_NOT_NULL(w);
    obm_stats base = stats_now();
    size_t n = 0, nulls = 0, at_null = 0;
    mark("fill");
    while (n < FILL) {
        errno = 0;
        void *p = malloc(opaque_size(BS));
        if (!p) {
            CHECK_MSG(errno == ENOMEM, "errno %d", errno);
            if (nulls++ == 0)
                at_null = n;
            if (is_mode("fail") || is_mode("failall"))
                break;
            CHECK_MSG(nulls < 3, "%zu NULLs at %zu blocks", nulls, n);
            continue;
        }
        *(size_t *)p = n;
        blk[n++] = p;
    }
    mark("after-fill");
    obm_stats st = stats_now();
    report_kv("blocks", n);
    report_kv("nulls", nulls);
    CHECK_EQ(class_in_use(&st, BS), class_in_use(&base, BS) + n);
    size_t grown = st.bytes_mapped - base.bytes_mapped;
    report_kv("mapped_growth", grown);
    if (is_mode("ok")) {
        CHECK_EQ(nulls, 0);
        CHECK_EQ(grown % batch_bytes, 0); /* whole batches */
    } else if (is_mode("one")) {
        /* The 4 MiB batch failed, one 256 KiB arena was mapped instead. */
        CHECK_EQ(nulls, 0);
        CHECK_EQ(grown % batch_bytes, 256 * KiB);
    } else if (is_mode("two")) {
        CHECK_EQ(nulls, 1);
        report_kv("at_null", at_null);
    } else if (is_mode("fail") || is_mode("failall")) {
        CHECK_EQ(nulls, 1);
        /* The first batch: arenas of 15 one-unit pools of 64 blocks of 256 B
         * (less what the warm-up's class took). */
        size_t cap = batch_bytes / (256 * KiB) * 15 * 64;
        CHECK_MSG(n >= cap - 2 * 64 && n < cap, "%zu blocks before the failure, %zu fit", n,
                  cap);
        CHECK_EQ(grown, 0);
        size_t vm0 = vm_bytes();
        /* Everything that needs a new pool fails too, also other classes,
         * and through every entry point. */
        errno = 0;
        EXPECT_ENOMEM(malloc(opaque_size(BS)) == NULL);
        errno = 0;
        EXPECT_ENOMEM(malloc(opaque_size(5000)) == NULL);
        errno = 0;
        EXPECT_ENOMEM(calloc(1, opaque_size(100000)) == NULL);
        errno = 0;
        EXPECT_ENOMEM(obm_raw_malloc(opaque_size(3000)) == NULL);
        void *q = (void *)&q;
        CHECK_EQ(posix_memalign(&q, 64, opaque_size(BS)), ENOMEM);
        CHECK(q == (void *)&q);
        fill_pattern(blk[0], BS, 77);
        errno = 0;
        EXPECT_ENOMEM(realloc(opaque_ptr(blk[0]), opaque_size(3000)) == NULL);
        CHECK_PATTERN(blk[0], BS, 77);
        CHECK_EQ(malloc_usable_size(blk[0]), BS);
        /* Large blocks map at another site: unaffected when only the
         * arenas site fails ("fail"), failing too when every call does. */
        size_t big_map = 0;
        errno = 0;
        void *big = malloc(opaque_size(MiB));
        if (is_mode("failall")) {
            EXPECT_ENOMEM(big == NULL);
        } else {
            CHECK_NOT_NULL(big);
            dirty(big, 1, MiB);
            free(big);
            /* This thread allocates large blocks, so it keeps the span in
             * its own cache for reuse, counted as the block's pages. */
            big_map = round_up(MiB + 64, 4096);
        }
        /* Nothing but the region the large block's span came from. */
        if (big_map)
            CHECK_GE(vm_bytes() - vm0, MiB + 4096);
        else
            CHECK_EQ(vm_bytes(), vm0);
        /* Freed blocks serve again, without any mapping. */
        for (size_t i = 0; i < n; i += 2)
            free(blk[i]);
        for (size_t i = 0; i < n; i += 2) {
            blk[i] = malloc(opaque_size(BS));
            CHECK_NOT_NULL(blk[i]);
        }
        for (size_t i = 0; i < n; i++)
            free(blk[i]);
        /* Empty pools and arenas went back: other classes get pools. */
        void *m = malloc(opaque_size(5000));
        CHECK_NOT_NULL(m);
        free(m);
        /* All of it again (less the two units of the pool the 5120-byte
         * class keeps as its empty head: pools hold at least 4 blocks),
         * then nothing more: still nothing is mapped. */
        size_t again = 0;
        for (;;) {
            errno = 0;
            void *b = malloc(opaque_size(BS));
            if (!b) {
                CHECK_MSG(errno == ENOMEM, "errno %d", errno);
                break;
            }
            CHECK_LT(again, n);
            blk[again++] = b;
        }
        CHECK_MSG(again + 2 * UNIT_BLOCKS >= n, "only %zu of %zu blocks again", again, n);
        n = again;
        st = stats_now();
        CHECK_EQ(st.bytes_mapped, base.bytes_mapped + big_map);
    }
    for (size_t i = 0; i < n; i++)
        free(blk[i]);
    free(w);
    st = stats_now();
    CHECK_EQ(small_in_use(&st), small_in_use(&base) - 1);
    CHECK_EQ(st.large_blocks, base.large_blocks);
}

/* ======================================================================
 * Scenario "large": a large block when its mapping fails.
 * Modes: ok, fail (every large mapping fails), one (only the first).
 * ====================================================================== */

static void scen_large(void)
{
    void *w = malloc(opaque_size(24));
    CHECK_NOT_NULL(w);
    unsigned char *s = malloc(opaque_size(100));
    CHECK_NOT_NULL(s);
    fill_pattern(s, 100, 5);
    obm_stats base = stats_now();
    size_t vm0 = vm_bytes();
    mark("big");
    errno = 0;
    void *p = malloc(opaque_size(MiB));
    if (is_mode("ok")) {
        CHECK_NOT_NULL(p);
    } else {
        EXPECT_ENOMEM(p == NULL);
        if (is_mode("one")) {
            p = malloc(opaque_size(MiB)); /* the next mapping works */
            CHECK_NOT_NULL(p);
        }
    }
    if (is_mode("fail")) {
        /* Every entry point that needs a large mapping fails cleanly. */
        errno = 0;
        EXPECT_ENOMEM(calloc(1, opaque_size(2 * MiB)) == NULL);
        errno = 0;
        EXPECT_ENOMEM(calloc(opaque_size(1000), 1000) == NULL);
        void *q = (void *)&q;
        CHECK_EQ(posix_memalign(&q, 4096, opaque_size(MiB)), ENOMEM);
        CHECK(q == (void *)&q);
        CHECK_EQ(posix_memalign(&q, MiB, opaque_size(100)), ENOMEM); /* alignment > 16 KiB */
        CHECK(q == (void *)&q);
        errno = 0;
        EXPECT_ENOMEM(aligned_alloc(256 * KiB, opaque_size(256 * KiB)) == NULL);
        errno = 0;
        EXPECT_ENOMEM(memalign(64, opaque_size(300000)) == NULL);
        errno = 0;
        EXPECT_ENOMEM(valloc(opaque_size(200000)) == NULL);
        errno = 0;
        EXPECT_ENOMEM(reallocarray(NULL, opaque_size(1000), 1000) == NULL);
        errno = 0;
        EXPECT_ENOMEM(obm_raw_malloc(opaque_size(MiB)) == NULL);
        EXPECT_ENOMEM(obm_mem_calloc(opaque_size(MiB), 1) == NULL);
        EXPECT_ENOMEM(obm_object_realloc(NULL, opaque_size(MiB)) == NULL);
        /* realloc of a small block to a large size: NULL, the block intact. */
        errno = 0;
        EXPECT_ENOMEM(realloc(opaque_ptr(s), opaque_size(500000)) == NULL);
        CHECK_PATTERN(s, 100, 5);
        CHECK_EQ(malloc_usable_size(s), 112);
        errno = 0;
        EXPECT_ENOMEM(obm_object_realloc(opaque_ptr(s), opaque_size(500000)) == NULL);
        CHECK_PATTERN(s, 100, 5);
        /* Small and medium blocks come from the arenas: unaffected. */
        void *m = malloc(opaque_size(100000));
        CHECK_NOT_NULL(m);
        free(m);
        obm_stats st = stats_now();
        CHECK_EQ(st.large_blocks, base.large_blocks);
        CHECK_EQ(st.large_bytes, base.large_bytes);
        CHECK_EQ(st.large_allocations, base.large_allocations);
        CHECK_EQ(st.bytes_mapped, base.bytes_mapped);
        CHECK_EQ(vm_bytes(), vm0); /* no mapping was left behind */
    } else {
        dirty(p, 0x5a, MiB);
        obm_stats st = stats_now();
        CHECK_EQ(st.large_blocks, base.large_blocks + 1);
        CHECK_EQ(st.bytes_mapped - base.bytes_mapped, MiB + 4096);
        /* The block is a span of the region its mapping call reserved:
         * address space, counted as mapped only for the block's pages. */
        CHECK_GE(vm_bytes() - vm0, MiB + 4096);
        free(p);
    }
    free(s);
    free(w);
}

/* ======================================================================
 * Scenario "cache": a freed large block's span is reused without a mapping
 * call, while mappings fail; a block above the span limit (32 MiB) needs a
 * mapping of its own.
 * Modes: ok, fail (every large mapping after the marker fails).
 * ====================================================================== */

static void scen_cache(void)
{
    size_t n = 3 * MiB;
    unsigned char *c1 = malloc(opaque_size(n));
    CHECK_NOT_NULL(c1);
    dirty(c1, 0x77, n);
    free(c1);
    mark("cached");
    unsigned char *a = malloc(opaque_size(n));
    CHECK_NOT_NULL(a);          /* the freed span: no mapping */
    CHECK(a == c1);
    errno = 0;
    unsigned char *b = malloc(opaque_size(40 * MiB));
    if (is_mode("fail")) {
        EXPECT_ENOMEM(b == NULL);
    } else {
        CHECK_NOT_NULL(b);
        free(b);
    }
    free(a);
    unsigned char *z = calloc(1, opaque_size(n)); /* the freed, dirty span, zeroed */
    CHECK_NOT_NULL(z);
    if (is_mode("fail"))
        CHECK(z == c1);
    CHECK_ZERO(z, n);
    free(z);
}

/* ======================================================================
 * Scenario "grow": realloc of a large block with free pages after it,
 * which mremap grows in place.
 * Modes: ok (in place), grow (large-grow fails: the block moves),
 * none (grow, move and the fallback allocation fail: NULL, block intact,
 * then a retry works), never (every later mapping fails: NULL twice).
 * ====================================================================== */

static void scen_grow(void)
{
    /* A small block first: the heap, its arenas and the arena-map leaf of
     * this part of the address space are mapped now, not between a and b,
     * where they would keep b from growing into a's pages. */
    void *warm = malloc(16);
    CHECK_NOT_NULL(warm);
    /* Blocks above the span limit (32 MiB) have mappings of their own. */
    void *a = malloc(opaque_size(48 * MiB));
    CHECK_NOT_NULL(a);
    size_t n0 = 33 * MiB, n1 = 40 * MiB;
    unsigned char *b = malloc(opaque_size(n0));
    CHECK_NOT_NULL(b);
    fill_pattern(b, n0, 11);
    free(a); /* unmapped: the pages after b are free */
    obm_stats base = stats_now();
    size_t vm0 = vm_bytes(), u0 = malloc_usable_size(b);
    mark("grow");
    errno = 0;
    unsigned char *q = realloc(opaque_ptr(b), opaque_size(n1));
    mark("after-grow");
    if (is_mode("ok")) {
        CHECK_MSG(q == b, "not grown in place: %p -> %p", (void *)b, (void *)q);
    } else if (is_mode("grow")) {
        CHECK_NOT_NULL(q);
        CHECK_MSG(q != b, "grown in place although large-grow failed");
    } else {
        EXPECT_ENOMEM(q == NULL);
        CHECK_PATTERN(b, n0, 11);
        CHECK_EQ(malloc_usable_size(b), u0);
        obm_stats st = stats_now();
        CHECK_EQ(st.large_blocks, base.large_blocks);
        CHECK_EQ(st.large_bytes, base.large_bytes);
        CHECK_EQ(st.bytes_mapped, base.bytes_mapped);
        CHECK_EQ(vm_bytes(), vm0);
        mark("retry");
        errno = 0;
        q = realloc(opaque_ptr(b), opaque_size(n1));
        if (is_mode("never")) {
            EXPECT_ENOMEM(q == NULL);
            CHECK_PATTERN(b, n0, 11);
            free(b);
            return;
        }
        CHECK_MSG(q == b, "the retry did not grow in place");
    }
    CHECK_PATTERN(q, n0, 11);
    CHECK_GE(malloc_usable_size(q), n1);
    dirty(q + n0, 0x42, n1 - n0);
    obm_stats st = stats_now();
    CHECK_EQ(st.large_blocks, base.large_blocks);
    CHECK_EQ(st.large_bytes, base.large_bytes + (n1 - n0));
    /* The old mapping moved (mremap) or was grown: nothing else is mapped. */
    CHECK_EQ(st.bytes_mapped, base.bytes_mapped + (n1 - n0));
    CHECK_EQ(vm_bytes() - vm0, n1 - n0);
    /* Shrinking stays in place and gives the tail back. */
    unsigned char *r = realloc(opaque_ptr(q), opaque_size(300000));
    CHECK(r == q);
    CHECK_PATTERN(r, 300000, 11);
    free(r);
    free(warm);
}

/* ======================================================================
 * Scenario "move": realloc of a large block whose next pages are taken
 * (by a guard page of ours), so it moves with mremap to a new reservation.
 * Modes: ok, map (the reservation fails: allocate-copy-free), remap (the
 * mremap fails: the reservation is dropped, allocate-copy-free), none
 * (grow, reservation and the fallback fail: NULL, block intact).
 * ====================================================================== */

static void scen_move(void)
{
    /* Above the span limit (32 MiB): a mapping of its own. */
    size_t n0 = 33 * MiB, n1 = 40 * MiB;
    unsigned char *b = malloc(opaque_size(n0));
    CHECK_NOT_NULL(b);
    fill_pattern(b, n0, 13);
    size_t u0 = malloc_usable_size(b);
    unsigned char *end = b + u0;
    CHECK_EQ((uintptr_t)end % 4096, 0);
    void *g = mmap(end, 64 * KiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                   -1, 0);
    CHECK_MSG(g == end || (g == MAP_FAILED && errno == EEXIST), "guard at %p: %p errno %d",
              (void *)end, g, errno);
    obm_stats base = stats_now();
    size_t vm0 = vm_bytes();
    mark("move");
    errno = 0;
    unsigned char *q = realloc(opaque_ptr(b), opaque_size(n1));
    mark("after-move");
    obm_stats st = stats_now();
    long dmapped = (long)st.bytes_mapped - (long)base.bytes_mapped;
    long dvm = (long)vm_bytes() - (long)vm0;
    /* The process's address space grew exactly by what obmem counts. */
    CHECK_MSG(dvm == dmapped, "vm grew %ld, mapped %ld", dvm, dmapped);
    long map0 = (long)(u0 + 64), map1 = (long)round_up(n1 + 64, 4096);
    if (is_mode("none")) {
        EXPECT_ENOMEM(q == NULL);
        CHECK_PATTERN(b, n0, 13);
        CHECK_EQ(malloc_usable_size(b), u0);
        CHECK_EQ(dmapped, 0);
        CHECK_EQ(st.large_blocks, base.large_blocks);
        free(b);
        return;
    }
    CHECK_NOT_NULL(q);
    CHECK(q != b);
    CHECK_PATTERN(q, n0, 13);
    CHECK_GE(malloc_usable_size(q), n1);
    /* The pages moved, or were copied and the old mapping unmapped. */
    CHECK_EQ(dmapped, map1 - map0);
    CHECK_EQ(st.large_blocks, base.large_blocks);
    dirty(q + n0, 1, n1 - n0);
    free(q);
    if (g == end)
        munmap(g, 64 * KiB);
}

/* ======================================================================
 * Scenario "leaf": a large block in a 16 GiB region of the address space
 * the arena map has no leaf for yet (our 17 GiB reservation pushes every
 * later mapping past the current leaf).
 * Modes: ok, fail (every arena-map call fails from there), one (only the
 * first).
 * ====================================================================== */

static void scen_leaf(void)
{
    void *w = malloc(opaque_size(24));
    CHECK_NOT_NULL(w);
    void *res = mmap(NULL, 17 * GiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK_MSG(res != MAP_FAILED, "reserving 17 GiB: %s", strerror(errno));
    obm_stats base = stats_now();
    size_t vm0 = vm_bytes();
    mark("leaf");
    errno = 0;
    void *p = malloc(opaque_size(2 * MiB));
    if (is_mode("ok")) {
        CHECK_NOT_NULL(p);
        CHECK_MSG(((uintptr_t)p >> 34) != ((uintptr_t)w >> 34),
                  "%p and %p share a leaf: the scenario does not test a new leaf", p, w);
    } else {
        EXPECT_ENOMEM(p == NULL);
        obm_stats st = stats_now();
        CHECK_EQ(st.bytes_mapped, base.bytes_mapped);
        CHECK_EQ(st.large_blocks, base.large_blocks);
        CHECK_EQ(vm_bytes(), vm0); /* the block's mapping was given back */
        if (is_mode("one")) {
            p = malloc(opaque_size(2 * MiB));
            CHECK_NOT_NULL(p);
        }
    }
    if (p) {
        dirty(p, 3, 2 * MiB);
        obm_stats st = stats_now();
        /* The block and the new 64 KiB leaf. */
        CHECK_EQ(st.bytes_mapped - base.bytes_mapped, round_up(2 * MiB + 64, 4096) + 64 * KiB);
        free(p);
    }
    /* Small blocks until a new arena batch is mapped, also in the new region. */
    mark("arenas");
    size_t n = 0, nulls = 0;
    while (n < FILL) {
        errno = 0;
        void *b = malloc(opaque_size(BS));
        if (!b) {
            CHECK_MSG(errno == ENOMEM, "errno %d", errno);
            nulls++;
            break;
        }
        blk[n++] = b;
    }
    report_kv("blocks", n);
    if (is_mode("fail"))
        CHECK_EQ(nulls, 1); /* batch and single arena both failed to register */
    else
        CHECK_EQ(nulls, 0);
    for (size_t i = 0; i < n; i++)
        free(blk[i]);
    free(w);
    obm_stats st = stats_now();
    CHECK_EQ(small_in_use(&st), small_in_use(&base) - 1);
    munmap(res, 17 * GiB);
}

/* ======================================================================
 * Scenario "slab": with the first slab of heaps full (the main thread and
 * `nholders` threads alive, a number the "probe" mode's trace tells), one
 * more thread needs a new slab.
 * Modes: ok, fail (no heap for it: its small allocations fail, large ones
 * and frees work), one (its first allocation fails, the second works).
 * ====================================================================== */

enum { MAX_HOLDERS = 256 };
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int ready, release_holders;

static void *holder(void *arg)
{
    (void)arg;
    void *p = malloc(opaque_size(100));
    CHECK_NOT_NULL(p);
    pthread_mutex_lock(&mu);
    ready++;
    pthread_cond_broadcast(&cv);
    while (!release_holders)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    free(p);
    return NULL;
}

struct t21 {
    void *gift;     /* a block of the main thread's heap, freed here */
    void *a, *a2, *b, *large;
    int ea, eb, pm;
};

static void *thread21(void *arg)
{
    struct t21 *t = arg;
    errno = 0;
    t->a = malloc(opaque_size(100));
    t->ea = errno;
    errno = 0;
    t->b = calloc(1, opaque_size(100));
    t->eb = errno;
    void *q = NULL;
    t->pm = posix_memalign(&q, 64, opaque_size(100));
    if (t->pm == 0)
        free(q);
    t->large = malloc(opaque_size(MiB)); /* no heap needed */
    if (t->large)
        dirty(t->large, 9, MiB);
    free(t->large);
    free(t->gift); /* a remote free from a thread without a heap */
    t->a2 = malloc(opaque_size(100));
    free(t->a);
    free(t->b);
    free(t->a2);
    return NULL;
}

static int small_works_in_thread_result;
static void *small_works(void *arg)
{
    (void)arg;
    void *p = malloc(opaque_size(100));
    small_works_in_thread_result = p != NULL;
    free(p);
    return NULL;
}

static void wait_ready(int n)
{
    pthread_mutex_lock(&mu);
    while (ready < n)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static void release_all(uthread *th, int n)
{
    pthread_mutex_lock(&mu);
    release_holders = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < n; i++)
        uthread_join(&th[i]);
}

static uthread holders[MAX_HOLDERS];

/* Mode "probe": threads one by one, a marker before each, so that the
 * trace shows which one needed the second slab of heaps. */
static void scen_slab_probe(void)
{
    void *w = malloc(opaque_size(24));
    CHECK_NOT_NULL(w);
    int n = 0;
    for (; n < 64; n++) {
        char name[32];
        snprintf(name, sizeof name, "holder %d", n + 1);
        mark(name);
        CHECK(uthread_create(&holders[n], holder, NULL) == 0);
        wait_ready(n + 1);
    }
    release_all(holders, n);
    free(w);
}

static void scen_slab(void)
{
    if (is_mode("probe")) {
        scen_slab_probe();
        return;
    }
    void *w = malloc(opaque_size(24));
    CHECK_NOT_NULL(w);
    obm_stats base0 = stats_now();
    CHECK(nholders > 0 && nholders < MAX_HOLDERS);
    for (int i = 0; i < nholders; i++)
        CHECK(uthread_create(&holders[i], holder, NULL) == 0);
    wait_ready(nholders);
    obm_stats base = stats_now();
    CHECK_EQ(base.heaps, (size_t)nholders + 1); /* one slab, full */
    struct t21 t = {0};
    t.gift = malloc(opaque_size(300));
    CHECK_NOT_NULL(t.gift);
    mark("t21");
    uthread x;
    CHECK(uthread_create(&x, thread21, &t) == 0);
    uthread_join(&x);
    mark("after-t21");
    CHECK_NOT_NULL(t.large);
    if (is_mode("ok")) {
        CHECK(t.a && t.b && t.pm == 0 && t.a2);
    } else {
        CHECK_MSG(t.a == NULL && t.ea == ENOMEM, "a %p errno %d", t.a, t.ea);
        if (is_mode("fail")) {
            CHECK_MSG(t.b == NULL && t.eb == ENOMEM, "b %p errno %d", t.b, t.eb);
            CHECK_EQ(t.pm, ENOMEM);
            CHECK(t.a2 == NULL);
        } else {
            CHECK(t.b && t.pm == 0 && t.a2);
        }
    }
    release_all(holders, nholders);
    /* A new thread adopts an abandoned heap: no mapping needed. */
    mark("t22");
    CHECK(uthread_create(&x, small_works, NULL) == 0);
    uthread_join(&x);
    CHECK(small_works_in_thread_result);
    free(w);
    obm_stats st = stats_now();
    CHECK_EQ(st.heaps, (size_t)nholders + (is_mode("fail") ? 1u : 2u));
    CHECK_EQ(small_in_use(&st), small_in_use(&base0) - 1);
    CHECK_EQ(st.large_blocks, base.large_blocks);
}

/* ======================================================================
 * Scenario "debug": the debug hooks' record table cannot grow
 * (OBMEM_MALLOC=debug). Modes: ok, fail, one.
 * ====================================================================== */

enum { DEBUG_BLOCKS = 100000 };
static void *dblk[DEBUG_BLOCKS];

static void scen_debug(void)
{
    CHECK(debug_hooks_on());
    obm_stats base = stats_now();
    size_t vm0 = vm_bytes();
    size_t n = 0, nulls = 0;
    mark("many");
    for (size_t i = 0; i < DEBUG_BLOCKS; i++) {
        errno = 0;
        void *p = malloc(opaque_size(32));
        if (!p) {
            CHECK_MSG(errno == ENOMEM, "errno %d", errno);
            nulls++;
            continue;
        }
        fill_pattern(p, 32, n);
        dblk[n++] = p;
    }
    mark("after-many");
    report_kv("blocks", n);
    report_kv("nulls", nulls);
    obm_stats st = stats_now();
    /* One block underneath per debug block: a failed record insert gave
     * its block back. */
    CHECK_EQ(small_in_use(&st) - small_in_use(&base), n);
    if (is_mode("ok")) {
        CHECK_EQ(nulls, 0);
        /* The record table's mappings are counted as mapped, like the rest
         * (growing it maps the new table before unmapping the old). */
        CHECK_EQ(vm_bytes() - vm0, st.bytes_mapped - base.bytes_mapped);
    } else if (is_mode("one"))
        CHECK_EQ(nulls, 1);
    else {
        CHECK_GE(nulls, 1);
        /* realloc always moves a debug block: when the new record does
         * not fit, NULL and the old block intact. */
        size_t rnull = 0;
        for (size_t i = 0; i < 3000 && i < n; i++) {
            errno = 0;
            void *r = realloc(opaque_ptr(dblk[i]), opaque_size(48));
            if (!r) {
                CHECK_MSG(errno == ENOMEM, "errno %d", errno);
                CHECK_PATTERN(dblk[i], 32, i);
                CHECK_EQ(malloc_usable_size(dblk[i]), 32);
                rnull++;
            } else {
                CHECK_PATTERN(r, 32, i);
                dblk[i] = r;
            }
        }
        report_kv("realloc_nulls", rnull);
        CHECK_GE(rnull, 1);
    }
    for (size_t i = 0; i < n; i++)
        free(dblk[i]); /* the guards are checked */
}

/* ======================================================================
 * Sweep workload: every function, threads, tolerant of failures.
 * Modes: ok (nothing may fail), all (every call from K on fails), one
 * (only call K fails: at most one operation may fail, and a second round
 * must succeed entirely).
 * ====================================================================== */

enum { SLOTS = 1200 };
typedef struct {
    unsigned char *p;
    size_t n;
    uint64_t seed;
} slot_t;
static slot_t slots[SLOTS];
static atomic_long failures;
static int strict; /* nothing may fail */

static void note_failure(int err, const char *what)
{
    CHECK_MSG(err == ENOMEM, "%s failed with errno %d (%s)", what, err, strerror(err));
    CHECK_MSG(!strict, "%s failed in a phase that must succeed", what);
    atomic_fetch_add(&failures, 1);
}

static size_t check_len(size_t n) { return n < 256 ? n : 256; }

static void put(slot_t *s, unsigned char *p, size_t n, uint64_t seed)
{
    s->p = p;
    s->n = n;
    s->seed = seed;
    fill_pattern(p, check_len(n), seed);
    if (n >= 512)
        fill_pattern(p + n - 64, 64, seed + 1);
}

static void verify(const slot_t *s)
{
    CHECK_PATTERN(s->p, check_len(s->n), s->seed);
    if (s->n >= 512)
        CHECK_PATTERN(s->p + s->n - 64, 64, s->seed + 1);
}

static void drop(slot_t *s)
{
    if (s->p) {
        verify(s);
        free(s->p);
        s->p = NULL;
    }
}

static size_t pick_size(uint64_t r)
{
    unsigned k = (unsigned)(r % 64);
    if (k == 0)
        return 131073 + (r >> 8) % (3 * MiB); /* large */
    if (k < 6)
        return 513 + (r >> 8) % 131072; /* medium */
    return (r >> 8) % 520;
}

struct worker_arg {
    slot_t *mine; /* blocks this thread allocates */
    slot_t *theirs; /* blocks of the main thread it frees */
    int n;
};

static void *sweep_worker(void *arg)
{
    struct worker_arg *w = arg;
    uint64_t rng = 0xabcdef + (uint64_t)(uintptr_t)w->mine;
    for (int i = 0; i < w->n; i++)
        drop(&w->theirs[i]);
    for (int i = 0; i < w->n; i++) {
        uint64_t r = rng_next(&rng);
        size_t n = pick_size(r);
        errno = 0;
        unsigned char *p = malloc(opaque_size(n));
        if (!p) {
            note_failure(errno, "malloc in a thread");
            continue;
        }
        put(&w->mine[i], p, n, r);
    }
    return NULL;
}

static void sweep_round(uint64_t seed)
{
    uint64_t rng = seed;
    /* malloc / calloc of every kind of size */
    for (int i = 0; i < SLOTS; i++) {
        uint64_t r = rng_next(&rng);
        size_t n = pick_size(r);
        errno = 0;
        unsigned char *p = (r >> 60) & 1 ? calloc(1, opaque_size(n)) : malloc(opaque_size(n));
        if (!p) {
            note_failure(errno, (r >> 60) & 1 ? "calloc" : "malloc");
            continue;
        }
        if ((r >> 60) & 1)
            CHECK_ZERO(p, n < 4096 ? n : 4096);
        put(&slots[i], p, n, r);
    }
    /* realloc across the boundaries */
    for (int i = 0; i < SLOTS; i += 3) {
        slot_t *s = &slots[i];
        if (!s->p)
            continue;
        uint64_t r = rng_next(&rng);
        size_t n = pick_size(r) + 1;
        verify(s);
        errno = 0;
        unsigned char *q = realloc(opaque_ptr(s->p), opaque_size(n));
        if (!q) {
            note_failure(errno, "realloc");
            verify(s); /* untouched */
            continue;
        }
        size_t keep = s->n < n ? s->n : n;
        CHECK_PATTERN(q, check_len(keep), s->seed);
        put(s, q, n, r);
    }
    /* aligned allocation */
    static const size_t aligns[] = {32, 64, 256, 4096, 16384, 65536, 262144, 1048576};
    for (int i = 1; i < SLOTS; i += 7) {
        slot_t *s = &slots[i];
        drop(s);
        uint64_t r = rng_next(&rng);
        size_t a = aligns[r % 16 < 14 ? r % 6 : 6 + r % 2], n = pick_size(r >> 3) + 1;
        void *p = NULL;
        int rc;
        switch ((r >> 40) % 3) {
        case 0:
            rc = posix_memalign(&p, a, opaque_size(n));
            break;
        case 1:
            errno = 0;
            p = aligned_alloc(a, opaque_size(round_up(n, a)));
            rc = p ? 0 : errno;
            break;
        default:
            errno = 0;
            p = memalign(a, opaque_size(n));
            rc = p ? 0 : errno;
            break;
        }
        if (rc != 0) {
            note_failure(rc, "aligned allocation");
            continue;
        }
        CHECK_ALIGNED(p, a);
        put(s, p, n, r);
    }
    /* threads: each frees a part of our blocks and allocates its own */
    enum { NT = 3, PER = 200 };
    static slot_t mine[NT][PER];
    struct worker_arg wa[NT];
    uthread th[NT];
    int started[NT] = {0};
    for (int t = 0; t < NT; t++) {
        memset(mine[t], 0, sizeof mine[t]);
        wa[t] = (struct worker_arg){mine[t], &slots[t * PER], PER};
        int rc = uthread_create(&th[t], sweep_worker, &wa[t]);
        if (rc != 0) {
            /* glibc allocates the thread's DTV with calloc */
            note_failure(rc == EAGAIN ? ENOMEM : rc, "pthread_create");
            continue;
        }
        started[t] = 1;
    }
    for (int t = 0; t < NT; t++)
        if (started[t])
            uthread_join(&th[t]);
    /* the threads' blocks are freed here, into abandoned heaps */
    for (int t = 0; t < NT; t++)
        for (int i = 0; i < PER; i++)
            drop(&mine[t][i]);
    for (int i = 0; i < SLOTS; i++)
        drop(&slots[i]);
}

static void scen_sweep(void)
{
    int debug = debug_hooks_on();
    obm_stats base = stats_now();
    /* In mode "one" the failing call lands in round 1 or (if threads made
     * this run map a little less than the trace run) early in round 2;
     * round 3 must not see a failure at all. */
    for (int round = 1; round <= 3; round++) {
        char name[16];
        snprintf(name, sizeof name, "round%d", round);
        mark(name);
        strict = is_mode("ok") || round == 3;
        sweep_round(0x5eed + (uint64_t)round);
        obm_stats st = stats_now();
        long f = atomic_load(&failures);
        if (is_mode("one"))
            CHECK_MSG(f <= 1, "one failed mapping call made %ld calls fail", f);
        if (!debug) {
            /* Everything allocated was freed: back to the baseline. */
            CHECK_EQ(small_in_use(&st), small_in_use(&base));
            CHECK_EQ(st.large_blocks, base.large_blocks);
            CHECK_EQ(st.large_bytes, base.large_bytes);
        }
        if (is_mode("all"))
            break; /* nothing can recover */
    }
    report_kv("failures", (size_t)atomic_load(&failures));
}

/* ======================================================================
 * The driver.
 * ====================================================================== */

static int failures_total;
static int runs_total;

static void child_env(char *buf, size_t n, const char *fail)
{
    snprintf(buf, n, "OBMEM_FAIL_MMAP=%s", fail);
}

/* Runs `scen mode` with OBMEM_FAIL_MMAP=fail (and the debug hooks if
 * `debug`); returns the result (the caller frees out). Counts and prints
 * a failure unless `quiet_ok` and it passed. */
static char param[64]; /* key=value for the scenario, or empty */

static int run_case(const char *scen, const char *m, const char *fail, int debug, run_result *r,
                    int verbose)
{
    char e1[128];
    child_env(e1, sizeof e1, fail);
    const char *env[] = {e1, debug ? "OBMEM_MALLOC=debug" : NULL, NULL};
    const char *args[] = {scen, m, param[0] ? param : NULL, NULL};
    run_self(args, env, 1, 60, r);
    runs_total++;
    int ok = run_ok(r);
    if (!ok || verbose) {
        char buf[64];
        printf("  %-6s %-7s %-22s%s%s%s %s (%.2fs)\n", scen, m, fail, debug ? " +debug" : "",
               param[0] ? " " : "", param, ok ? "ok" : describe_status(r->status, buf, sizeof buf),
               r->secs);
    }
    if (!ok) {
        failures_total++;
        dump_tail(r, 3000);
    }
    return ok;
}

static void check_case(const char *scen, const char *m, const char *fail, int debug)
{
    run_result r;
    run_case(scen, m, fail, debug, &r, 1);
    free(r.out);
}

/* Runs the trace of `scen`; returns its output (to free) or NULL. */
static char *trace_of(const char *scen, int debug)
{
    run_result r;
    if (!run_case(scen, "ok", "trace", debug, &r, 1)) {
        free(r.out);
        return NULL;
    }
    return r.out;
}

static void drive_fail(const char *what)
{
    printf("  FAIL: %s\n", what);
    failures_total++;
}

static void drive_arenas(void)
{
    char *t = trace_of("arenas", 0);
    if (!t)
        return;
    trace_call c;
    if (!trace_find(t, "fill", "arenas", 1, 1, &c)) {
        drive_fail("arenas: no arena batch mapped while filling");
        free(t);
        return;
    }
    printf("  arenas: the fill maps batch #%ld of its site (call #%ld, %zu bytes)\n", c.site_idx,
           c.global, c.bytes);
    /* map_aligned over-maps by one arena to align the batch */
    snprintf(param, sizeof param, "batch=%zu", c.bytes - 256 * KiB);
    char f[64];
    snprintf(f, sizeof f, "arenas:%ld", c.site_idx);
    run_result r;
    if (run_case("arenas", "fail", f, 0, &r, 1))
        printf("    %ld blocks of 256 B fitted before the failure\n", kv_get(r.out, "blocks"));
    free(r.out);
    snprintf(f, sizeof f, "arenas:%ld:1", c.site_idx);
    check_case("arenas", "one", f, 0);
    snprintf(f, sizeof f, "arenas:%ld:2", c.site_idx);
    check_case("arenas", "two", f, 0);
    /* The same by global call numbers. */
    snprintf(f, sizeof f, "%ld", c.global);
    check_case("arenas", "failall", f, 0);
    snprintf(f, sizeof f, "%ld:1", c.global);
    check_case("arenas", "one", f, 0);
    param[0] = '\0';
    free(t);
}

/* For a scenario whose trace must show `site` right after `marker`:
 * returns 1 and the call in *c. */
static int find_or_fail(const char *t, const char *scen, const char *marker, const char *site,
                        int nth, trace_call *c)
{
    if (trace_find(t, marker, site, nth, 1, c))
        return 1;
    char msg[256];
    snprintf(msg, sizeof msg, "%s: trace has no %s call #%d after '@@ %s'", scen, site, nth,
             marker);
    drive_fail(msg);
    return 0;
}

static void drive_large(void)
{
    char *t = trace_of("large", 0);
    trace_call c;
    if (t && find_or_fail(t, "large", "big", "large", 1, &c)) {
        char f[64];
        snprintf(f, sizeof f, "large:%ld", c.site_idx);
        check_case("large", "fail", f, 0);
        snprintf(f, sizeof f, "large:%ld:1", c.site_idx);
        check_case("large", "one", f, 0);
    }
    free(t);
    t = trace_of("cache", 0);
    if (t && find_or_fail(t, "cache", "cached", "large", 1, &c)) {
        if (trace_count(t, "cached", "large") != 1)
            drive_fail("cache: the cached block was mapped again");
        char f[64];
        snprintf(f, sizeof f, "large:%ld", c.site_idx);
        check_case("cache", "fail", f, 0);
    }
    free(t);
}

static void drive_grow(void)
{
    char *t = trace_of("grow", 0);
    trace_call c;
    if (t && find_or_fail(t, "grow", "grow", "large-grow", 1, &c)) {
        if (trace_count(t, "grow", NULL) != 1)
            drive_fail("grow: growing in place made more than one mapping call");
        char f[64];
        snprintf(f, sizeof f, "large-grow:%ld", c.site_idx);
        check_case("grow", "grow", f, 0);
        /* grow, the move's reservation, the fallback allocation */
        snprintf(f, sizeof f, "%ld:3", c.global);
        check_case("grow", "none", f, 0);
        snprintf(f, sizeof f, "%ld", c.global);
        check_case("grow", "never", f, 0);
    }
    free(t);
}

static void drive_move(void)
{
    char *t = trace_of("move", 0);
    trace_call g, m1, m2;
    if (t && find_or_fail(t, "move", "move", "large-grow", 1, &g) &&
        find_or_fail(t, "move", "move", "large-move", 1, &m1) &&
        find_or_fail(t, "move", "move", "large-move", 2, &m2)) {
        if (trace_count(t, "move", NULL) != 3)
            drive_fail("move: expected exactly grow, reserve, remap");
        char f[64];
        snprintf(f, sizeof f, "large-move:%ld:1", m1.site_idx);
        check_case("move", "map", f, 0);
        snprintf(f, sizeof f, "large-move:%ld:1", m2.site_idx);
        check_case("move", "remap", f, 0);
        snprintf(f, sizeof f, "%ld:3", g.global);
        check_case("move", "none", f, 0);
    }
    free(t);
}

static void drive_leaf(void)
{
    char *t = trace_of("leaf", 0);
    trace_call c;
    if (t && find_or_fail(t, "leaf", "leaf", "arena-map", 1, &c)) {
        char f[64];
        snprintf(f, sizeof f, "arena-map:%ld", c.site_idx);
        check_case("leaf", "fail", f, 0);
        snprintf(f, sizeof f, "arena-map:%ld:1", c.site_idx);
        check_case("leaf", "one", f, 0);
    }
    free(t);
}

/* The marker line ("@@ NAME") last seen before the nth call of `site`. */
static int marker_before(const char *out, const char *site, int nth, char *name, size_t n)
{
    int seen = 0;
    name[0] = '\0';
    for (const char *line = out; line && *line;) {
        char s[64];
        long k;
        size_t b;
        if (strncmp(line, "@@ ", 3) == 0) {
            const char *end = strchr(line, '\n');
            size_t len = end ? (size_t)(end - line - 3) : strlen(line + 3);
            snprintf(name, n, "%.*s", (int)len, line + 3);
        } else if (sscanf(line, "obmem: mmap #%ld %63s %zu", &k, s, &b) == 3 &&
                   strcmp(s, site) == 0 && ++seen == nth) {
            return 1;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return 0;
}

static void drive_slab(void)
{
    /* How many threads fill the first slab of heaps (with the main thread)? */
    run_result pr;
    if (!run_case("slab", "probe", "trace", 0, &pr, 1)) {
        free(pr.out);
        return;
    }
    char name[64];
    int k = 0;
    if (!marker_before(pr.out, "heap-slab", 2, name, sizeof name) ||
        sscanf(name, "holder %d", &k) != 1 || k < 2) {
        drive_fail("slab: the trace shows no second slab of heaps within 64 threads");
        free(pr.out);
        return;
    }
    free(pr.out);
    printf("  slab: a slab holds %d heaps (the main thread's and %d others)\n", k, k - 1);
    snprintf(param, sizeof param, "holders=%d", k - 1);
    char *t = trace_of("slab", 0);
    trace_call c;
    if (t && find_or_fail(t, "slab", "t21", "heap-slab", 1, &c)) {
        if (trace_count(t, "t22", NULL) != 0)
            drive_fail("slab: the thread after the holders mapped memory (no adoption?)");
        char f[64];
        snprintf(f, sizeof f, "heap-slab:%ld", c.site_idx);
        check_case("slab", "fail", f, 0);
        snprintf(f, sizeof f, "heap-slab:%ld:1", c.site_idx);
        check_case("slab", "one", f, 0);
    }
    param[0] = '\0';
    free(t);
}

static void drive_debug(void)
{
    char *t = trace_of("debug", 1);
    if (!t)
        return;
    int n = trace_count(t, "many", "debug-table");
    trace_call c;
    if (n < 2 || !trace_find(t, "many", "debug-table", n, 1, &c)) {
        drive_fail("debug: the record table did not grow while allocating");
    } else {
        printf("  debug: %d table mappings while allocating; failing the last (#%ld, %zu bytes)\n",
               n, c.site_idx, c.bytes);
        char f[64];
        snprintf(f, sizeof f, "debug-table:%ld", c.site_idx);
        run_result r;
        if (run_case("debug", "fail", f, 1, &r, 1))
            printf("    %ld blocks, %ld NULLs, %ld reallocs failed\n", kv_get(r.out, "blocks"),
                   kv_get(r.out, "nulls"), kv_get(r.out, "realloc_nulls"));
        free(r.out);
        snprintf(f, sizeof f, "debug-table:%ld:1", c.site_idx);
        check_case("debug", "one", f, 1);
    }
    free(t);
}

static void drive_sweep(int debug, int step)
{
    char *t = trace_of("sweep", debug);
    if (!t)
        return;
    /* Every mapping call up to the end of round 1 (round 2 maps less:
     * the large cache and the arenas are warm by then). */
    trace_call r2;
    if (!trace_find(t, "round2", NULL, 1, 0, &r2)) {
        drive_fail("sweep: no mapping call after round 1");
        free(t);
        return;
    }
    int total = (int)r2.global - 1;
    int per_site[8] = {0};
    static const char *sites[] = {"arenas", "large", "large-grow", "large-move",
                                  "arena-map", "heap-slab", "debug-table"};
    for (int s = 0; s < 7; s++)
        per_site[s] = trace_count(t, "round1", sites[s]);
    printf("  sweep%s: %d mapping calls in round 1 (", debug ? "+debug" : "", total);
    for (int s = 0; s < 7; s++)
        if (per_site[s])
            printf(" %s %d", sites[s], per_site[s]);
    printf(" ); failing each %s\n", step == 1 ? "one" : "eighth one");
    free(t);
    int bad = 0, runs = 0;
    long fail_sum = 0;
    double t0 = now_sec();
    for (int k = 1; k <= total + 1; k += step) {
        for (int once = 0; once < 2; once++) {
            char f[64];
            if (once)
                snprintf(f, sizeof f, "%d:1", k);
            else
                snprintf(f, sizeof f, "%d", k);
            run_result r;
            runs++;
            if (!run_case("sweep", once ? "one" : "all", f, debug, &r, 0))
                bad++;
            else
                fail_sum += kv_get(r.out, "failures");
            free(r.out);
            if (bad >= 5)
                break;
        }
        if (bad >= 5) {
            printf("  sweep: stopping after 5 failures\n");
            break;
        }
    }
    printf("  sweep%s: %d runs, %d failed, %ld failed calls reported, %.1fs\n",
           debug ? "+debug" : "", runs, bad, fail_sum, now_sec() - t0);
}

typedef void (*scen_fn)(void);
static const struct {
    const char *name;
    scen_fn fn;
} scenarios[] = {
    {"arenas", scen_arenas}, {"large", scen_large}, {"cache", scen_cache},
    {"grow", scen_grow},     {"move", scen_move},   {"leaf", scen_leaf},
    {"slab", scen_slab},     {"debug", scen_debug}, {"sweep", scen_sweep},
};

int main(int argc, char **argv)
{
    if (argc >= 3) {
        mode = argv[2];
        for (int i = 3; i < argc; i++) {
            if (sscanf(argv[i], "holders=%d", &nholders) == 1)
                continue;
            if (sscanf(argv[i], "batch=%zu", &batch_bytes) == 1)
                continue;
            FAIL("unknown parameter %s", argv[i]);
        }
        for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++)
            if (strcmp(argv[1], scenarios[i].name) == 0) {
                if (!aslr_off())
                    fprintf(stderr, "note: address-space randomisation is on\n");
                scenarios[i].fn();
                return 0;
            }
        FAIL("unknown scenario %s", argv[1]);
    }
    check_obmem_is_malloc();
    const char *full = getenv("FAULTS_FULL");
    int step = full && *full == '1' ? 1 : 8;
    double t0 = now_sec();
    const char *only = argc == 2 ? argv[1] : NULL;
#define WANT(n) (!only || strcmp(only, n) == 0)
    if (WANT("arenas"))
        drive_arenas();
    if (WANT("large"))
        drive_large();
    if (WANT("grow"))
        drive_grow();
    if (WANT("move"))
        drive_move();
    if (WANT("leaf"))
        drive_leaf();
    if (WANT("slab"))
        drive_slab();
    if (WANT("debug"))
        drive_debug();
    if (WANT("sweep")) {
        drive_sweep(0, 1);
        drive_sweep(1, step);
    }
    printf("fault_mmap: %d child runs, %d failed, %.1fs\n", runs_total, failures_total,
           now_sec() - t0);
    return failures_total != 0;
}
