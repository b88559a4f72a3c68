/*
 * fault_rlimit: real out-of-memory under a low RLIMIT_AS.
 *
 * Each case runs in a forked child whose address space is limited to its
 * current size plus HEADROOM (192 MiB). The child allocates with one
 * function and one size until it gets NULL, and checks:
 *   - the failure is NULL with errno ENOMEM (posix_memalign: returns
 *     ENOMEM and leaves *out alone), with no crash;
 *   - a fair share of the headroom was obtained before (the blocks are
 *     chained through their own first words, so the test needs no array);
 *   - the statistics count exactly the blocks it holds (per class, or
 *     large blocks), and bytes mapped stays under the limit;
 *   - after freeing every other block, the same allocation succeeds again
 *     for at least that many blocks, with the address space left over
 *     taken by another mapping (the freed memory alone serves again);
 *   - after freeing everything, the statistics are back to the baseline.
 * realloc: a block grown step by step until NULL stays intact; many small
 * blocks reallocated to large sizes until NULL stay intact.
 * Cross-class: memory freed by one size class serves another class and
 * large blocks (how much comes back is measured: the arena reserve keeps
 * up to 64 MiB of address space, which counts against RLIMIT_AS).
 * Threads: blocks of threads that exhausted memory and exited are freed
 * by the main thread, and the memory serves the main thread again.
 */
#include "fault_util.h"

static size_t headroom = 192 * MiB;
static size_t limit_bytes;

typedef struct node {
    struct node *next;
    uint64_t tag;
} node;

enum kind { K_MALLOC, K_CALLOC, K_MEMALIGN, K_ALIGNED_ALLOC, K_RAW, K_MEM_CALLOC, K_OBJ_REALLOC };
static const char *kind_name[] = {"malloc", "calloc", "posix_memalign", "aligned_alloc",
                                  "obm_raw_malloc", "obm_mem_calloc", "obm_object_realloc"};

static void set_limit(void)
{
    limit_bytes = vm_bytes() + headroom;
    struct rlimit rl = {limit_bytes, limit_bytes};
    if (setrlimit(RLIMIT_AS, &rl) != 0)
        FAIL("setrlimit: %s", strerror(errno));
}

/* One allocation; NULL on failure with the error in *err. */
static void *alloc1(enum kind k, size_t n, size_t align, int *err)
{
    void *p = NULL;
    errno = 0;
    switch (k) {
    case K_MALLOC:
        p = malloc(opaque_size(n));
        break;
    case K_CALLOC:
        p = calloc(opaque_size(n), 1);
        break;
    case K_MEMALIGN: {
        void *sentinel = (void *)&p;
        void *q = sentinel;
        int rc = posix_memalign(&q, align, opaque_size(n));
        if (rc != 0) {
            CHECK_MSG(q == sentinel, "posix_memalign changed *out on failure");
            *err = rc;
            return NULL;
        }
        p = q;
        break;
    }
    case K_ALIGNED_ALLOC:
        p = aligned_alloc(align, opaque_size(n));
        break;
    case K_RAW:
        p = obm_raw_malloc(opaque_size(n));
        break;
    case K_MEM_CALLOC:
        p = obm_mem_calloc(1, opaque_size(n));
        break;
    case K_OBJ_REALLOC:
        p = obm_object_realloc(NULL, opaque_size(n));
        break;
    }
    *err = errno;
    return p;
}

static void free1(enum kind k, void *p)
{
    if (k == K_RAW)
        obm_raw_free(p);
    else if (k == K_MEM_CALLOC)
        obm_mem_free(p);
    else if (k == K_OBJ_REALLOC)
        obm_object_free(p);
    else
        free(p);
}

/* Allocates until failure, chaining the blocks; returns the count. */
static size_t exhaust(enum kind k, size_t n, size_t align, node **head, uint64_t salt)
{
    size_t count = 0;
    for (;;) {
        int err = 0;
        node *p = alloc1(k, n, align, &err);
        if (!p) {
            CHECK_MSG(err == ENOMEM, "%s(%zu) failed with %d (%s), not ENOMEM", kind_name[k], n,
                      err, strerror(err));
            break;
        }
        if (align)
            CHECK_ALIGNED(p, align);
        if (k == K_CALLOC || k == K_MEM_CALLOC)
            CHECK_ZERO(p, n < 4096 ? n : 4096);
        p->next = *head;
        p->tag = (uint64_t)(uintptr_t)p ^ salt;
        if (n >= 4096) /* touch every page, as a program would */
            for (size_t off = 4096; off < n; off += 4096)
                ((unsigned char *)p)[off] = (unsigned char)off;
        *head = p;
        count++;
    }
    return count;
}

/* Frees every other block (keep = 1) or all (keep = 0); checks the tags. */
static size_t release(enum kind k, node **head, uint64_t salt, int every_other)
{
    size_t freed = 0, i = 0;
    node **pp = head;
    while (*pp) {
        node *p = *pp;
        CHECK_MSG(p->tag == ((uint64_t)(uintptr_t)p ^ salt), "block %p was overwritten", (void *)p);
        if (!every_other || (i++ & 1)) {
            *pp = p->next;
            free1(k, p);
            freed++;
        } else {
            pp = &p->next;
        }
    }
    return freed;
}

static int is_large(size_t n, size_t align) { return n > 128 * KiB || align > 16 * KiB; }

/* The usable size a block of this request has (for the per-class count). */
static size_t class_of_block(void *p) { return malloc_usable_size(p); }

static void one_case(enum kind k, size_t n, size_t align, int min_pct)
{
    /* warm up: the heap exists before the baseline */
    void *w = malloc(opaque_size(32));
    CHECK_NOT_NULL(w);
    free(w);
    obm_stats base = stats_now();
    set_limit();
    node *head = NULL;
    double t0 = now_sec();
    size_t count = exhaust(k, n, align, &head, 0x1234);
    double secs = now_sec() - t0;
    CHECK_GT(count, 0);
    size_t bytes = count * (head ? malloc_usable_size(head) : n);
    obm_stats st = stats_now();
    CHECK_LE(st.bytes_mapped, limit_bytes);
    /* obmem gave up only when the address space was used up. */
    size_t grew = st.bytes_mapped - base.bytes_mapped;
    CHECK_MSG(grew >= headroom / 100 * 85, "gave up with %zu bytes more mapped (headroom %zu)",
              grew, headroom);
    if (is_large(n, align)) {
        CHECK_EQ(st.large_blocks, base.large_blocks + count);
    } else {
        size_t bs = class_of_block(head);
        CHECK_EQ(class_in_use(&st, bs), class_in_use(&base, bs) + count);
    }
    printf("  %-18s %8zu align %7zu: %8zu blocks, %6.1f MiB = %3.0f%% of the headroom "
           "(mapped %5.1f MiB more), %.2fs\n",
           kind_name[k], n, align, count, mib(bytes), 100.0 * (double)bytes / (double)headroom,
           mib(grew), secs);
    /* A fair share of the headroom came as blocks. Less than all of it:
     * obmem's own mappings take some, and the layout costs some (see the
     * cases' min_pct: a pool takes whole 16 KiB units and an arena has 15
     * to give (the 20480-byte class: 5 units for 4 blocks, 3 pools per
     * arena, all of it); a
     * 131072-byte pool takes 8 units, one per arena (50%); a block aligned
     * to more than 16 KiB is a large block whose header sits `align`
     * bytes before it, so a 1000-byte block aligned to 64 KiB maps 68 KiB
     * (6%), and one aligned to 1 MiB has its header one arena back). */
    CHECK_MSG(bytes >= headroom / 100 * (size_t)min_pct, "only %zu bytes of %zu", bytes,
              headroom);
    /* The limit is still in force: a second try fails the same way. */
    int err = 0;
    void *again = alloc1(k, n, align, &err);
    if (again) {
        /* a block freed by the kernel race is impossible here: nothing freed */
        FAIL("%s(%zu) succeeded right after failing", kind_name[k], n);
    }
    CHECK_EQ(err, ENOMEM);
    /* Take what address space is left, so that the blocks below fit in
     * the freed memory alone: a block's mapping needs no more room than
     * it keeps, whatever the first exhaustion happened to leave. */
    size_t left = limit_bytes > vm_bytes() ? limit_bytes - vm_bytes() : 0;
    void *filler = left ? mmap(NULL, left, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : NULL;
    CHECK_MSG(filler != MAP_FAILED, "mapping the %zu bytes left: %s", left, strerror(errno));
    /* Free every other block: as many fit again. */
    size_t freed = release(k, &head, 0x1234, 1);
    node *head2 = NULL;
    size_t count2 = exhaust(k, n, align, &head2, 0x5678);
    CHECK_MSG(count2 >= freed, "freed %zu blocks, then only %zu fitted again", freed, count2);
    release(k, &head2, 0x5678, 0);
    release(k, &head, 0x1234, 0);
    if (filler)
        munmap(filler, left);
    st = stats_now();
    CHECK_EQ(small_in_use(&st), small_in_use(&base));
    CHECK_EQ(st.large_blocks, base.large_blocks);
    fflush(stdout);
    _exit(0);
}

/* realloc: one block grown step by step until NULL, intact; then many
 * small blocks moved to large sizes until NULL, intact. */
static void realloc_case(void)
{
    set_limit();
    size_t n = 64 * KiB, step = 1 * MiB + 12345;
    unsigned char *p = malloc(opaque_size(n));
    CHECK_NOT_NULL(p);
    fill_pattern(p, n, 1);
    p[n - 1] = (unsigned char)(n - 1);
    size_t grown = 0;
    for (;;) {
        size_t m = n + step;
        errno = 0;
        unsigned char *q = realloc(opaque_ptr(p), opaque_size(m));
        if (!q) {
            CHECK_EQ(errno, ENOMEM);
            CHECK_PATTERN(p, 32 * KiB, 1);
            CHECK_EQ(p[n - 1], (unsigned char)(n - 1));
            CHECK_GE(malloc_usable_size(p), n);
            break;
        }
        CHECK_PATTERN(q, 32 * KiB, 1); /* the head keeps its pattern */
        CHECK_EQ(q[n - 1], (unsigned char)(n - 1));
        for (size_t off = n; off < m; off += 4096) /* touch the new pages */
            q[off] = (unsigned char)off;
        q[m - 1] = (unsigned char)(m - 1);
        p = q;
        n = m;
        grown++;
    }
    printf("  realloc growth: %zu steps to %.1f MiB before ENOMEM\n", grown, mib(n));
    CHECK_GE(n, headroom / 3);
    free(p);

    enum { MANY = 4000 };
    static unsigned char *b[MANY];
    for (int i = 0; i < MANY; i++) {
        b[i] = malloc(opaque_size(200));
        CHECK_NOT_NULL(b[i]);
        fill_pattern(b[i], 200, (uint64_t)i);
    }
    int moved = 0, failed = 0;
    for (int i = 0; i < MANY && failed < 20; i++) {
        size_t m = 300 * KiB + (size_t)i * 4096;
        errno = 0;
        unsigned char *q = realloc(opaque_ptr(b[i]), opaque_size(m));
        if (!q) {
            CHECK_EQ(errno, ENOMEM);
            CHECK_PATTERN(b[i], 200, (uint64_t)i);
            failed++;
            continue;
        }
        CHECK_PATTERN(q, 200, (uint64_t)i);
        dirty(q + 200, 7, m - 200);
        b[i] = q;
        moved++;
    }
    printf("  realloc small -> large: %d moved, then %d failures with the blocks intact\n", moved,
           failed);
    CHECK_GT(failed, 0);
    for (int i = 0; i < MANY; i++) {
        if (malloc_usable_size(b[i]) < 300 * KiB)
            CHECK_PATTERN(b[i], 200, (uint64_t)i);
        free(b[i]);
    }
    fflush(stdout);
    _exit(0);
}

/* Memory freed by one class serves others and large blocks. */
static void cross_case(void)
{
    void *w = malloc(opaque_size(32));
    free(w);
    obm_stats base = stats_now();
    set_limit();
    struct {
        size_t n;
    } seq[] = {{64}, {5000}, {MiB}, {640}, {64}};
    size_t first = 0;
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        node *head = NULL;
        size_t count = exhaust(K_MALLOC, seq[i].n, 0, &head, i);
        size_t bytes = count * malloc_usable_size(head);
        obm_stats st = stats_now();
        printf("  cross: %7zu-byte blocks: %6.1f MiB (mapped %.1f MiB, %zu arenas in use)\n",
               seq[i].n, mib(bytes), mib(st.bytes_mapped), st.arenas_in_use);
        if (i == 0)
            first = bytes;
        else if (seq[i].n <= 128 * KiB)
            /* another class gets (nearly) all of it again */
            CHECK_MSG(bytes >= first * 8 / 10, "%zu bytes after %zu", bytes, first);
        else
            /* large blocks do not get the arena reserve's 64 MiB of
             * address space, nor the heap's spare arenas */
            CHECK_MSG(bytes + 64 * MiB + 8 * MiB >= first * 9 / 10, "%zu bytes after %zu",
                      bytes, first);
        release(K_MALLOC, &head, i, 0);
    }
    obm_stats st = stats_now();
    CHECK_EQ(small_in_use(&st), small_in_use(&base));
    CHECK_EQ(st.large_blocks, base.large_blocks);
    fflush(stdout);
    _exit(0);
}

/* Threads exhaust memory and exit; the main thread frees their blocks. */
enum { NTH = 4 };
static node *thead[NTH];
static size_t tcount[NTH];

static int threads_ready;

static void *exhaust_thread(void *arg)
{
    int i = (int)(uintptr_t)arg;
    /* One block each before any thread exhausts memory: otherwise a thread
     * scheduled late on a loaded machine finds nothing left. */
    node *first = malloc(128 + 16 * (size_t)i);
    CHECK_NOT_NULL(first);
    first->next = NULL;
    first->tag = (uint64_t)(uintptr_t)first ^ (uint64_t)i;
    thead[i] = first;
    __atomic_add_fetch(&threads_ready, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&threads_ready, __ATOMIC_SEQ_CST) < NTH)
        sched_yield();
    tcount[i] = 1 + exhaust(K_MALLOC, 128 + 16 * (size_t)i, 0, &thead[i], (uint64_t)i);
    return NULL;
}

static void threads_case(void)
{
    void *w = malloc(opaque_size(32));
    free(w);
    obm_stats base = stats_now();
    uthread th[NTH];
    set_limit();
    for (int i = 0; i < NTH; i++)
        CHECK_EQ(uthread_create(&th[i], exhaust_thread, (void *)(uintptr_t)i), 0);
    size_t total = 0;
    for (int i = 0; i < NTH; i++) {
        uthread_join(&th[i]);
        CHECK_GT(tcount[i], 0);
        total += tcount[i] * malloc_usable_size(thead[i]);
    }
    obm_stats st = stats_now();
    CHECK_LE(st.bytes_mapped, limit_bytes);
    for (int i = 0; i < NTH; i++)
        release(K_MALLOC, &thead[i], (uint64_t)i, 0);
    st = stats_now();
    CHECK_EQ(small_in_use(&st), small_in_use(&base));
    node *head = NULL;
    size_t count = exhaust(K_MALLOC, 128, 0, &head, 99);
    size_t bytes = count * 128;
    printf("  threads: 4 exiting threads got %.1f MiB; after the main thread freed it, it got "
           "%.1f MiB\n",
           mib(total), mib(bytes));
    CHECK_MSG(bytes >= total * 8 / 10, "%zu after %zu", bytes, total);
    release(K_MALLOC, &head, 99, 0);
    fflush(stdout);
    _exit(0);
}

static int bad;

static void run(const char *what, void (*fn)(void *), void *arg)
{
    child_result r;
    double t0 = now_sec();
    run_in_child(fn, arg, &r);
    fputs(r.out, stdout);
    printf("    (%s: %.2fs)\n", what, now_sec() - t0);
    char buf[64];
    if (!(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)) {
        printf("  FAIL %s: %s\n", what, describe_status(r.status, buf, sizeof buf));
        bad++;
    }
}

struct case_arg {
    enum kind k;
    size_t n, align;
    int min_pct;
};
static void case_tramp(void *a)
{
    struct case_arg *c = a;
    one_case(c->k, c->n, c->align, c->min_pct ? c->min_pct : 80);
}
static void realloc_tramp(void *a) { (void)a; realloc_case(); }
static void cross_tramp(void *a) { (void)a; cross_case(); }
static void threads_tramp(void *a) { (void)a; threads_case(); }

int main(void)
{
    check_obmem_is_malloc();
    double t0 = now_sec();
    struct case_arg cases[] = {
        {K_MALLOC, 16, 0, 0},           {K_MALLOC, 512, 0, 0},
        {K_MALLOC, 20000, 0, 80},       {K_MALLOC, 131072, 0, 45},
        {K_MALLOC, 300000, 0, 0},       {K_MALLOC, 8 * MiB, 0, 0},
        {K_CALLOC, 100, 0, 0},          {K_CALLOC, MiB, 0, 0},
        {K_MEMALIGN, 100, 64, 0},       {K_MEMALIGN, 5000, 4096, 0},
        {K_MEMALIGN, 1000, 65536, 5},   {K_MEMALIGN, 200000, MiB, 38},
        {K_ALIGNED_ALLOC, 768, 256, 0}, {K_RAW, 3000, 0, 0},
        {K_MEM_CALLOC, 40000, 0, 0},    {K_OBJ_REALLOC, 250000, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "%s(%zu)", kind_name[cases[i].k], cases[i].n);
        run(what, case_tramp, &cases[i]);
    }
    run("realloc", realloc_tramp, NULL);
    run("cross", cross_tramp, NULL);
    run("threads", threads_tramp, NULL);
    printf("summary: fault_rlimit %s, %.1fs\n", bad ? "FAILED" : "ok", now_sec() - t0);
    return bad != 0;
}
