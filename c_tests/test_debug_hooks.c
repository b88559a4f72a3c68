/*
 * The debug hooks (docs/API.md 2.3, 2.4), installed with obm_setup_debug_hooks().
 *
 * Detections: each misuse runs in a forked child that installs the hooks,
 * prints "ADDR <%p> SIZE <n>" for the block involved, and misuses it; the
 * child must die of SIGABRT, and its stderr must have the report line
 * "obmem: debug hooks: <error> (block <addr>)" plus the requested size, the
 * serial number and the bad byte. Errors: buffer overrun and underrun (small,
 * medium, large and over-aligned blocks), write after free (found when the
 * block leaves the quarantine), double free, free and realloc through the
 * wrong domain, a pointer 16 bytes before a block, a pointer obmem never
 * returned, realloc and malloc_usable_size of a freed block; for objects:
 * tracking a tracked object, incref of a freed object, and two threads in
 * the object functions at once without obm_lock.
 *
 * Correct use stays silent: fills (0xCD new, zeros from calloc, 0xDD freed),
 * usable size = request, blocks allocated before the hooks freed, resized
 * and sized correctly, realloc keeps contents, aligned allocations, four
 * threads freeing each other's blocks (and a fork meanwhile), objects and collections with the
 * lock held, a counting wrapper installed over the hooks.
 */
#include "test_util.h"

#include <pthread.h>

/* The misuses below are deliberate, and GCC sees some of them. */
#pragma GCC diagnostic ignored "-Wuse-after-free"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"

/* ---- detections ---------------------------------------------------------- */

typedef struct {
    const char *name;
    void (*misuse)(void);
    const char *error;  /* the report's error name */
    int shows_size;     /* the report names the block's size */
} detection;

/* The block the misuse is about, printed for the parent to check. */
static void announce(const void *p, size_t n)
{
    printf("ADDR <%p> SIZE <%zu>\n", p, n);
    fflush(stdout);
}

static void overrun_small(void)
{
    char *p = malloc(opaque_size(24));
    announce(p, 24);
    ((volatile char *)p)[24] = 'A';
    free(p);
}

static void overrun_medium(void)
{
    char *p = obm_mem_malloc(opaque_size(5000));
    announce(p, 5000);
    ((volatile char *)p)[5002] = 'A';
    obm_mem_free(p);
}

static void overrun_large(void)
{
    char *p = malloc(opaque_size(300000));
    announce(p, 300000);
    ((volatile char *)p)[300000] = 'A';
    p = realloc(p, opaque_size(400000)); /* realloc checks too */
}

static void overrun_aligned(void)
{
    void *v = NULL;
    CHECK(posix_memalign(&v, 256, 100) == 0);
    char *p = v;
    CHECK_ALIGNED(p, 256);
    announce(p, 100);
    ((volatile char *)p)[103] = 'A';
    free(p);
}

static void underrun(void)
{
    char *p = obm_raw_malloc(opaque_size(40));
    announce(p, 40);
    ((volatile char *)p)[-1] = 'A';
    obm_raw_free(p);
}

static void underrun_header(void)
{
    /* Deeper: the size copy at the start of the front bytes. */
    char *p = malloc(opaque_size(64));
    announce(p, 64);
    ((volatile char *)p)[-16] ^= 1;
    free(p);
}

static void write_after_free(void)
{
    char *p = malloc(opaque_size(40));
    announce(p, 40);
    free(p);
    ((volatile char *)p)[3] = 'A';
    /* Push the block out of the quarantine (4096 blocks). */
    for (int i = 0; i < 10000; i++)
        free(opaque_ptr(malloc(opaque_size(16))));
    FAIL("write after free was not reported");
}

static void double_free(void)
{
    char *p = malloc(opaque_size(50));
    announce(p, 50);
    free(p);
    free(opaque_ptr(p));
}

static void wrong_domain_free(void)
{
    char *p = obm_raw_malloc(opaque_size(32));
    announce(p, 32);
    obm_object_free(p);
}

static void wrong_domain_malloc_family(void)
{
    char *p = obm_mem_malloc(opaque_size(32));
    announce(p, 32);
    free(p);
}

static void wrong_domain_realloc(void)
{
    char *p = obm_object_malloc(opaque_size(32));
    announce(p, 32);
    p = obm_raw_realloc(p, 64);
}

static void before_header(void)
{
    char *p = malloc(opaque_size(32));
    announce(p, 32);
    free(opaque_ptr(p - 16));
}

static char not_ours[64] __attribute__((aligned(16)));
static void never_returned(void)
{
    announce(not_ours + 16, 0);
    free(opaque_ptr(not_ours + 16));
}

static void realloc_freed(void)
{
    char *p = malloc(opaque_size(70));
    announce(p, 70);
    free(p);
    p = realloc(opaque_ptr(p), 100);
}

static void usable_size_freed(void)
{
    char *p = malloc(opaque_size(70));
    announce(p, 70);
    free(p);
    printf("%zu\n", malloc_usable_size(opaque_ptr(p)));
}

/* A GC object with two references. */
typedef struct {
    OBM_OBJECT_HEAD
    obm_object *a, *b;
} gpair;
static long pair_deallocs;
static int pair_traverse(obm_object *o, obm_visitproc visit, void *arg)
{
    gpair *p = (gpair *)o;
    int r = p->a ? visit(p->a, arg) : 0;
    return r ? r : p->b ? visit(p->b, arg) : 0;
}
static int pair_clear(obm_object *o)
{
    gpair *p = (gpair *)o;
    obm_object *a = p->a, *b = p->b;
    p->a = p->b = NULL;
    obm_xdecref(a);
    obm_xdecref(b);
    return 0;
}
static void pair_dealloc(obm_object *o)
{
    pair_deallocs++;
    pair_clear(o);
}
static obm_type pair_type = {"pair", sizeof(gpair), OBM_TPFLAGS_HAVE_GC, NULL, pair_dealloc,
                             pair_traverse, pair_clear};
static obm_type plain_type = {"plain", sizeof(obm_object), 0, NULL, NULL, NULL, NULL};

static void double_track(void)
{
    obm_object *o = obm_new(&pair_type);
    announce(o, 0);
    obm_gc_track(o);
    obm_gc_track(o);
}

static void incref_freed(void)
{
    obm_object *o = obm_new(&plain_type);
    announce(o, 0);
    obm_decref(o);
    obm_incref(opaque_ptr(o));
}

static pthread_barrier_t racers_ready;
static void *racer(void *arg)
{
    (void)arg;
    obm_object *o = obm_new(&plain_type);
    pthread_barrier_wait(&racers_ready);
    for (long i = 0; i < 200000000L; i++) {
        obm_incref(o);
        obm_decref(o);
    }
    return NULL;
}

static void concurrent_without_lock(void)
{
    announce(NULL, 0);
    pthread_t t[2];
    pthread_barrier_init(&racers_ready, NULL, 2);
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&t[i], NULL, racer, NULL) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    FAIL("two threads in obm_incref/obm_decref without obm_lock were not reported");
}

static const detection detections[] = {
    {"overrun of a small block", overrun_small, "buffer overrun", 1},
    {"overrun of a medium block (mem domain)", overrun_medium, "buffer overrun", 1},
    {"overrun of a large block, found by realloc", overrun_large, "buffer overrun", 1},
    {"overrun of a 256-aligned block", overrun_aligned, "buffer overrun", 1},
    {"underrun by one byte (raw domain)", underrun, "buffer underrun", 1},
    {"underrun into the size copy", underrun_header, "buffer underrun", 1},
    {"write after free", write_after_free, "write after free", 1},
    {"double free", double_free, "double free", 1},
    {"raw block freed through the object domain", wrong_domain_free,
     "free through the wrong domain", 1},
    {"mem block freed with free()", wrong_domain_malloc_family, "free through the wrong domain", 1},
    {"object block resized through the raw domain", wrong_domain_realloc,
     "free through the wrong domain", 1},
    {"free of p - 16", before_header, "free of a pointer obmem never returned", 1},
    {"realloc of a freed block", realloc_freed, "use after free", 1},
    {"malloc_usable_size of a freed block", usable_size_freed, "use after free", 1},
    {"tracking a tracked object", double_track, "already tracked", 0},
    {"incref of a freed object", incref_freed, "use of a freed object", 0},
    {"two threads without obm_lock", concurrent_without_lock, "concurrent use", 0},
};

static void detection_child(void *arg)
{
    const detection *d = arg;
    obm_setup_debug_hooks();
    d->misuse();
    FAIL("%s: the misuse returned", d->name);
}

static void check_detection(const detection *d)
{
    child_result r;
    run_in_child(detection_child, (void *)d, &r);
    char st[64];
    CHECK_MSG(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT,
              "%s: child ended with %s, expected SIGABRT; output:\n%s", d->name,
              describe_status(r.status, st, sizeof st), r.out);
    char addr[64] = "", size[32] = "";
    const char *a = strstr(r.out, "ADDR <");
    CHECK_MSG(a && sscanf(a, "ADDR <%63[^>]> SIZE <%31[^>]>", addr, size) == 2,
              "%s: no ADDR line:\n%s", d->name, r.out);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "obmem: ");
    int named = strcmp(addr, "(nil)") != 0;
    CHECK_MSG(has_line(r.out, prefix, d->error, named ? addr : NULL),
              "%s: no line 'obmem: ...%s...%s':\n%s", d->name, d->error, named ? addr : "",
              r.out);
    if (d->shows_size) {
        char sz[64];
        snprintf(sz, sizeof sz, "%s bytes requested", size);
        CHECK_MSG(has_line(r.out, "    the block: ", sz, "serial "),
                  "%s: the report does not give size %s and serial:\n%s", d->name, size, r.out);
        CHECK_MSG(has_line(r.out, "    ", "data begins:", NULL) || strcmp(size, "0") == 0,
                  "%s: the report does not show the data:\n%s", d->name, r.out);
    }
    printf("detected: %s\n", d->name);
}

/* The reports name the bad byte and its value. */
static void check_bad_byte_shown(void)
{
    child_result r;
    run_in_child(detection_child, (void *)&detections[0], &r);
    CHECK_MSG(has_line(r.out, "    found ", "(offset 24 of a 24-byte block) is 0x41", "0xfd"),
              "overrun report does not name the bad byte:\n%s", r.out);
    run_in_child(detection_child, (void *)&detections[6], &r);
    CHECK_MSG(has_line(r.out, "    found ", "(offset 3) is 0x41", "0xdd"),
              "write-after-free report does not name the bad byte:\n%s", r.out);
    printf("bad bytes shown\n");
}

/* A pointer obmem never returned is passed on to the allocator underneath,
 * which reports it as such. */
static void check_foreign_pointer(void)
{
    static const detection d = {"free of a static array", never_returned, "invalid pointer", 0};
    child_result r;
    run_in_child(detection_child, (void *)&d, &r);
    CHECK_MSG(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT &&
                  has_line(r.out, "obmem: ", "never returned", NULL),
              "free of a static array under the debug hooks:\n%s", r.out);
    printf("detected: %s\n", d.name);
}

/* ---- correct use --------------------------------------------------------- */

static size_t count_byte(const unsigned char *p, size_t n, unsigned char v)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += p[i] == v;
    return k;
}

typedef struct {
    void **slots;
    int id;
} worker_arg;

#define WORKERS 4
#define SLOTS 512
static void *slots[WORKERS][SLOTS];

/* Each worker frees what the previous one allocated, with patterns. */
static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint64_t seed = 1234 + (uint64_t)id;
    for (int round = 0; round < 2000; round++) {
        int other = (id + 1) % WORKERS;
        int i = (int)(rng_next(&seed) % SLOTS);
        void *p = __atomic_exchange_n(&slots[other][i], NULL, __ATOMIC_ACQ_REL);
        if (p) {
            size_t n = malloc_usable_size(p);
            CHECK_PATTERN(p, n, n);
            free(p);
        }
        size_t n = rng_next(&seed) % 3000;
        void *q = malloc(n);
        CHECK_NOT_NULL(q);
        fill_pattern(q, n, n);
        q = __atomic_exchange_n(&slots[id][i], q, __ATOMIC_ACQ_REL);
        if (q) {
            size_t m = malloc_usable_size(q);
            CHECK_PATTERN(q, m, m);
            free(q);
        }
    }
    return NULL;
}

static long wrapped_calls;
static obm_allocator under;
static void *w_malloc(void *ctx, size_t n) { (void)ctx; wrapped_calls++; return under.malloc(under.ctx, n); }
static void *w_calloc(void *ctx, size_t a, size_t b) { (void)ctx; wrapped_calls++; return under.calloc(under.ctx, a, b); }
static void *w_realloc(void *ctx, void *p, size_t n) { (void)ctx; wrapped_calls++; return under.realloc(under.ctx, p, n); }
static void w_free(void *ctx, void *p) { (void)ctx; wrapped_calls++; under.free(under.ctx, p); }

static void correct_use(void *unused)
{
    (void)unused;
    /* Blocks from before the hooks. */
    unsigned char *old_small = malloc(opaque_size(100));
    unsigned char *old_large = malloc(opaque_size(200000));
    unsigned char *old_raw = obm_raw_malloc(opaque_size(300));
    CHECK(old_small && old_large && old_raw);
    fill_pattern(old_small, 100, 1);
    fill_pattern(old_large, 200000, 2);
    obm_setup_debug_hooks();
    obm_setup_debug_hooks(); /* a second call does nothing */

    CHECK_EQ(malloc_usable_size(old_small), 112);
    CHECK_EQ(obm_usable_size(old_raw), 304);
    old_small = realloc(old_small, 5000);
    CHECK_NOT_NULL(old_small);
    CHECK_PATTERN(old_small, 100, 1);
    CHECK_PATTERN(old_large, 200000, 2);
    free(old_small);
    free(old_large);
    obm_raw_free(old_raw);

    /* Fills and sizes. */
    for (size_t n = 0; n < 5000; n += 37) {
        unsigned char *p = malloc(opaque_size(n));
        CHECK_NOT_NULL(p);
        CHECK_ALIGNED(p, 16);
        CHECK_EQ(malloc_usable_size(p), n);
        CHECK_EQ(count_byte(p, n, 0xCD), n);
        free(p);
        CHECK_EQ(count_byte(p, n, 0xDD), n); /* quarantined: still mapped */
        unsigned char *c = calloc(1, opaque_size(n));
        CHECK_NOT_NULL(c);
        CHECK_ZERO(c, n);
        free(c);
    }
    CHECK(calloc(opaque_size(SIZE_MAX / 2), 3) == NULL && errno == ENOMEM);
    CHECK(malloc(opaque_size(SIZE_MAX / 2)) == NULL && errno == ENOMEM);

    /* Domains, zero-size requests and realloc chains keep contents. */
    void *r = obm_raw_malloc(0), *m = obm_mem_malloc(0), *o = obm_object_malloc(0);
    CHECK(r && m && o && r != m && m != o);
    for (size_t n = 1; n < 300000; n = n * 3 + 1) {
        size_t keep = obm_usable_size(r);
        fill_pattern(r, keep, 7);
        r = obm_raw_realloc(r, n);
        CHECK_NOT_NULL(r);
        CHECK_PATTERN(r, keep < n ? keep : n, 7);
        CHECK_EQ(obm_usable_size(r), n);
    }
    m = obm_mem_realloc(m, 0);
    CHECK_NOT_NULL(m);
    obm_raw_free(r);
    obm_mem_free(m);
    obm_object_free(o);

    /* Aligned allocations through every entry. */
    for (size_t al = 16; al <= 65536; al *= 4) {
        void *a = NULL;
        CHECK(posix_memalign(&a, al, 1000) == 0);
        CHECK_ALIGNED(a, al);
        CHECK_EQ(malloc_usable_size(a), 1000);
        memset(a, 1, 1000);
        free(a);
        a = aligned_alloc(al, 3 * al);
        CHECK_NOT_NULL(a);
        CHECK_ALIGNED(a, al);
        free(a);
        a = memalign(al, 10);
        CHECK_ALIGNED(a, al);
        free(a);
    }
    void *v = valloc(100);
    CHECK_ALIGNED(v, 4096);
    free(v);

    /* Threads freeing each other's blocks. */
    pthread_t t[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
    /* Fork while they run: the child's allocator (and the hooks' locks) work. */
    for (int k = 0; k < 3; k++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            for (int i = 0; i < 2000; i++) {
                size_t n = (size_t)i * 37 % 3000;
                unsigned char *q = malloc(n);
                if (!q || count_byte(q, n, 0xCD) != n)
                    _exit(3);
                free(q);
            }
            _exit(0);
        }
        int st;
        CHECK(waitpid(pid, &st, 0) == pid);
        CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "forked child: status 0x%x", st);
    }
    for (int i = 0; i < WORKERS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < WORKERS; i++)
        for (int j = 0; j < SLOTS; j++)
            free(slots[i][j]);

    /* Objects and collections, with the lock held as threads must. */
    obm_lock();
    pair_deallocs = 0;
    for (int i = 0; i < 1000; i++) {
        gpair *a = (gpair *)obm_new(&pair_type), *b = (gpair *)obm_new(&pair_type);
        CHECK(a && b);
        a->a = (obm_object *)b;
        obm_incref((obm_object *)b);
        b->a = (obm_object *)a;
        obm_incref((obm_object *)a);
        obm_gc_track((obm_object *)a);
        obm_gc_track((obm_object *)b);
        obm_gc_untrack((obm_object *)b);
        obm_gc_untrack((obm_object *)b); /* twice is allowed, as in CPython */
        obm_gc_track((obm_object *)b);
        obm_decref((obm_object *)a);
        obm_decref((obm_object *)b);
    }
    obm_gc_collect(2);
    CHECK_EQ(pair_deallocs, 2000);
    obm_unlock();

    /* A counting wrapper over the hooks sees each call and forwards. */
    obm_get_allocator(OBM_DOMAIN_MEM, &under);
    obm_allocator w = {NULL, w_malloc, w_calloc, w_realloc, w_free};
    obm_set_allocator(OBM_DOMAIN_MEM, &w);
    void *x = obm_mem_malloc(10);
    x = obm_mem_realloc(x, 20);
    obm_mem_free(x);
    obm_mem_free(obm_mem_calloc(2, 2));
    CHECK_EQ(wrapped_calls, 5);
    obm_set_allocator(OBM_DOMAIN_MEM, &under);
}

int main(void)
{
    for (size_t i = 0; i < sizeof detections / sizeof detections[0]; i++)
        check_detection(&detections[i]);
    check_bad_byte_shown();
    check_foreign_pointer();

    child_result r;
    run_in_child(correct_use, NULL, &r);
    char st[64];
    CHECK_MSG(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0,
              "correct program under the debug hooks: %s\n%s",
              describe_status(r.status, st, sizeof st), r.out);
    CHECK_MSG(strstr(r.out, "obmem") == NULL, "correct program printed:\n%s", r.out);
    printf("correct program runs clean\n");
    return 0;
}
