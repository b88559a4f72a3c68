/*
 * fuzz/fuzz_api.c: a libFuzzer target for the whole obmem C API, with a
 * shadow model that checks every result.
 *
 * The input is a sequence of operations (one selector byte, then the
 * operation's argument bytes; missing bytes read as 0). The model mirrors
 * what obmem must do:
 *
 *  - blocks: every live block's family (raw, mem, object domain, malloc
 *    family), requested size, alignment and fill pattern (a seed byte with a
 *    per-block tag at both ends). Contents are verified before each realloc
 *    and free, and the preserved prefix after realloc; alignment, usable
 *    size >= requested, calloc zeroing, NULL/errno for sizes above
 *    PTRDIFF_MAX and overflowing products, EINVAL for bad alignments,
 *    errno preserved by free, the debug hooks' 0xCD fill, statistics deltas;
 *  - weak references (harness-owned, untracked once made) to objects of the
 *    weak-referenceable kinds: cleared when the target dies by count (after
 *    a finalizer that did not resurrect it; callbacks counted) or in a
 *    collection (CPython 3.14's order: those with a callback before the
 *    finalizers, the others only for the objects still garbage after the
 *    resurrection check); obm_weakref_get and obm_weakref_count checked;
 *  - ephemerons (obm_ephemeron_new), objects of the model that stay
 *    tracked, hold their value (slot 0) and weakly their key: a collection
 *    reaches a value only through a reachable ephemeron whose key is
 *    reachable (to a fixpoint, and again in the resurrection check, where
 *    a reachable ephemeron's value counts only if its key is resurrected);
 *    when the key dies (by count: newest first, with the weakrefs'
 *    callbacks; in a collection: before any clear) the value is dropped;
 *    obm_ephemeron_key/value and the EINVAL cases checked;
 *  - immortal objects (obm_immortalize, obm_gc_immortalize_frozen): their
 *    count stays OBM_IMMORTAL_REFCNT, they are never freed and the
 *    collector keeps them and what they reach; each collection's
 *    candidates (the objects examined) and duration are checked;
 *  - objects: every object's kind, reference count, owned references
 *    (4 slots), tracked flag, generation, finalized flag, and the harness's
 *    own references. Decref cascades (with CPython's trashcan at 50 nested
 *    deallocations) and collections (update/subtract refs, move_unreachable,
 *    finalizers, resurrection, clear, DEBUG_SAVEALL) are recomputed by the
 *    model, as is the automatic collection scheduling (count, thresholds,
 *    the 25% long-lived rule). After each object or gc operation the
 *    harness compares the model with obmem through the public API
 *    (obm_refcnt, obm_gc_is_tracked, obm_gc_is_finalized, obm_gc_get_objects
 *    per generation, get_count, get_threshold, get_stats, the garbage list,
 *    freeze count, the callback log) and with what the type callbacks saw
 *    (dealloc exactly once, when the model frees; finalize at most once).
 *
 * Any mismatch prints "obmem fuzz: MISMATCH ..." and aborts. Every input
 * ends by releasing everything it made (checked) and resetting the
 * collector, so inputs are independent.
 *
 * Modes (environment OBMEM_FUZZ_MODE, read once at start):
 *   plain  (default) obmem as linked;
 *   hooks  counting allocator hooks wrap the three domains: every allocator
 *          call the harness makes must reach the hook of the right domain;
 *   debug  obm_setup_debug_hooks() at start: guard bytes, fills, checks.
 * OBMEM_FUZZ_TRACE=1 prints each operation to stderr (for reproducers).
 */
#define _GNU_SOURCE
#include <obmem.h>
#include "fuzz_common.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ------------------------------------------------------------------------ */
/* Calls through volatile pointers: the compiler must not reason about the
 * allocation functions (e.g. fold reads of calloc'd memory to zero). */
static void *(*volatile f_malloc)(size_t) = malloc;
static void *(*volatile f_calloc)(size_t, size_t) = calloc;
static void *(*volatile f_realloc)(void *, size_t) = realloc;
static void (*volatile f_free)(void *) = free;
static void *(*volatile f_reallocarray)(void *, size_t, size_t) = reallocarray;
static int (*volatile f_posix_memalign)(void **, size_t, size_t) = posix_memalign;
static void *(*volatile f_aligned_alloc)(size_t, size_t) = aligned_alloc;
static void *(*volatile f_memalign)(size_t, size_t) = memalign;
static void *(*volatile f_valloc)(size_t) = valloc;
static void *(*volatile f_pvalloc)(size_t) = pvalloc;
static size_t (*volatile f_malloc_usable_size)(void *) = malloc_usable_size;
/* glibc's internal names, which obmem exports too. */
void *__libc_malloc(size_t);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void __libc_free(void *);
void *__libc_memalign(size_t, size_t);
void *__libc_valloc(size_t);
void *__libc_pvalloc(size_t);
int __posix_memalign(void **, size_t, size_t);
static void *(*volatile a_malloc)(size_t) = __libc_malloc;
static void *(*volatile a_calloc)(size_t, size_t) = __libc_calloc;
static void *(*volatile a_realloc)(void *, size_t) = __libc_realloc;
static void (*volatile a_free)(void *) = __libc_free;
static void *(*volatile a_memalign)(size_t, size_t) = __libc_memalign;
static void *(*volatile a_valloc)(size_t) = __libc_valloc;
static void *(*volatile a_pvalloc)(size_t) = __libc_pvalloc;
static int (*volatile a_posix_memalign)(void **, size_t, size_t) = __posix_memalign;
/* Every 4th malloc-family call goes through the __libc_ alias (a counter,
 * so that inputs keep their meaning). */
static unsigned alias_turn;
static int use_alias(void) { return (++alias_turn & 3) == 0; }

/* ------------------------------------------------------------------------ */
/* Reporting */

enum { MODE_PLAIN, MODE_HOOKS, MODE_DEBUG };
static int mode;
static int devnull = -1;
static int quiet_saved = -1; /* fd 2 while it points to /dev/null */
static const char *op_name = "init";
static unsigned long op_index;
static unsigned long input_no;

static void quiet_begin(void) {
    if (quiet_saved >= 0 || devnull < 0)
        return;
    quiet_saved = dup(2);
    if (quiet_saved >= 0)
        dup2(devnull, 2);
}

static void quiet_end(void) {
    if (quiet_saved < 0)
        return;
    dup2(quiet_saved, 2);
    close(quiet_saved);
    quiet_saved = -1;
}

static void fail(const char *fmt, ...) {
    quiet_end();
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    say("obmem fuzz: MISMATCH (mode %s, input %lu, op #%lu %s): %s\n",
        mode == MODE_PLAIN ? "plain" : mode == MODE_HOOKS ? "hooks" : "debug", input_no,
        op_index, op_name, buf);
    abort();
}

/* ------------------------------------------------------------------------ */
/* Input */


#define BUDGET ((size_t)48 << 20) /* bytes of live blocks at once */
#define BIG_ALIGN_SHIFT 26        /* valid alignments above this may fail */

static const size_t edge_sizes[] = {
    0,      1,      8,      15,     16,     17,     31,      32,      33,
    48,     63,     64,     65,     127,    128,    129,     255,     256,
    257,    511,    512,    513,    1023,   1024,   1025,    1152,    2047,
    2048,   2049,   4095,   4096,   4097,   8191,   8192,    8193,    16383,
    16384,  16385,  32768,  65535,  65536,  65537,  114688,  131071,  131072,
    131073, 131088, 135168, 262144, 262145, 1048576, 1048577, (2u << 20) + 1, 4u << 20,
};

static size_t pick_size(In *in) {
    unsigned s = u8(in);
    if (s < 96)
        return u16(in) % 513;
    if (s < 150)
        return u16(in) % 4097;
    if (s < 190)
        return 4097 + u32(in) % (131072 + 64 - 4097);
    if (s < 220)
        return edge_sizes[u8(in) % NELEM(edge_sizes)];
    if (s < 232)
        return 4096 * (size_t)(1 + u8(in) % 64) + u8(in) % 3 - 1;
    if (s < 240)
        return 131073 + u32(in) % (4u << 20);
    return 16 * (size_t)u8(in);
}

/* A size above PTRDIFF_MAX: every allocation of it must fail. */
static size_t pick_huge(In *in) {
    static const size_t t[] = {
        (size_t)PTRDIFF_MAX + 1, SIZE_MAX,          SIZE_MAX - 1,
        SIZE_MAX - 15,           SIZE_MAX - 4095,   SIZE_MAX - 4096,
        SIZE_MAX / 2 + 2,        (size_t)PTRDIFF_MAX + 4096,
    };
    unsigned s = u8(in);
    if (s < 200)
        return t[s % NELEM(t)];
    return ((size_t)1 << 63) | (size_t)u64(in);
}

/* ------------------------------------------------------------------------ */
/* Counting allocator hooks (MODE_HOOKS) */

enum { H_MALLOC, H_CALLOC, H_REALLOC, H_FREE };
typedef struct {
    obm_allocator under;
    int dom;
} HookCtx;
static HookCtx hctx[3];
static atomic_long hcount[3][4];
static long hexpect[3][4];
static atomic_int hcounting;
static int hunchecked; /* an operation whose hook calls are not specified */

static void hnote(HookCtx *h, int what) {
    if (atomic_load_explicit(&hcounting, memory_order_relaxed))
        atomic_fetch_add_explicit(&hcount[h->dom][what], 1, memory_order_relaxed);
}
static void *h_malloc(void *ctx, size_t n) {
    HookCtx *h = ctx;
    hnote(h, H_MALLOC);
    return h->under.malloc(h->under.ctx, n);
}
static void *h_calloc(void *ctx, size_t a, size_t b) {
    HookCtx *h = ctx;
    hnote(h, H_CALLOC);
    return h->under.calloc(h->under.ctx, a, b);
}
static void *h_realloc(void *ctx, void *p, size_t n) {
    HookCtx *h = ctx;
    hnote(h, H_REALLOC);
    return h->under.realloc(h->under.ctx, p, n);
}
static void h_free(void *ctx, void *p) {
    HookCtx *h = ctx;
    hnote(h, H_FREE);
    h->under.free(h->under.ctx, p);
}

static void hook_begin(void) {
    if (mode != MODE_HOOKS)
        return;
    for (int d = 0; d < 3; d++)
        for (int w = 0; w < 4; w++) {
            atomic_store(&hcount[d][w], 0);
            hexpect[d][w] = 0;
        }
    hunchecked = 0;
    atomic_store(&hcounting, 1);
}

static void hook_end(void) {
    if (mode != MODE_HOOKS)
        return;
    atomic_store(&hcounting, 0);
    if (hunchecked)
        return;
    static const char *dn[3] = {"raw", "mem", "obj"};
    static const char *wn[4] = {"malloc", "calloc", "realloc", "free"};
    for (int d = 0; d < 3; d++)
        for (int w = 0; w < 4; w++) {
            long got = atomic_load(&hcount[d][w]);
            CHECK(got == hexpect[d][w], "%s hook %s called %ld times, expected %ld", dn[d],
                  wn[w], got, hexpect[d][w]);
        }
}

/* ------------------------------------------------------------------------ */
/* Allocation families */

enum { F_RAW, F_MEM, F_OBJ, F_LIBC, NFAM };
static const char *fam_name[NFAM] = {"raw", "mem", "object", "malloc"};
static int fam_dom(int f) { return f == F_LIBC ? F_OBJ : f; }
static void hexp(int f, int what) { hexpect[fam_dom(f)][what]++; }

static void *fam_malloc(int f, size_t n) {
    hexp(f, H_MALLOC);
    switch (f) {
    case F_RAW: return obm_raw_malloc(n);
    case F_MEM: return obm_mem_malloc(n);
    case F_OBJ: return obm_object_malloc(n);
    default: return use_alias() ? a_malloc(n) : f_malloc(n);
    }
}

static void *fam_calloc(int f, size_t a, size_t b) {
    hexp(f, H_CALLOC);
    switch (f) {
    case F_RAW: return obm_raw_calloc(a, b);
    case F_MEM: return obm_mem_calloc(a, b);
    case F_OBJ: return obm_object_calloc(a, b);
    default: return use_alias() ? a_calloc(a, b) : f_calloc(a, b);
    }
}

/* glibc's realloc(p, 0) frees p (one free through the hooks). A block of
 * an aligned request above 16 bytes (palign > 16) was made from one hook
 * malloc and is mapped back by obmem, so realloc moves it: a hook malloc,
 * then, if that worked, a hook free. */
static void *fam_realloc(int f, void *p, size_t n, size_t palign) {
    void *q;
    switch (f) {
    case F_RAW: q = obm_raw_realloc(p, n); break;
    case F_MEM: q = obm_mem_realloc(p, n); break;
    case F_OBJ: q = obm_object_realloc(p, n); break;
    default: q = use_alias() ? a_realloc(p, n) : f_realloc(p, n); break;
    }
    if (f == F_LIBC && n == 0 && p) {
        hexp(f, H_FREE);
    } else if (p && palign > 16) {
        hexp(f, H_MALLOC);
        if (q)
            hexp(f, H_FREE);
    } else {
        hexp(f, H_REALLOC);
    }
    return q;
}

static void fam_free(int f, void *p) {
    hexp(f, H_FREE);
    switch (f) {
    case F_RAW: obm_raw_free(p); break;
    case F_MEM: obm_mem_free(p); break;
    case F_OBJ: obm_object_free(p); break;
    default: use_alias() ? a_free(p) : f_free(p); break;
    }
}

/* The malloc family is the object domain: either set of functions may
 * resize or free a block of the other. */
static int fam_alt(int f, unsigned bit) {
    if (bit & 1) {
        if (f == F_OBJ)
            return F_LIBC;
        if (f == F_LIBC)
            return F_OBJ;
    }
    return f;
}

/* ------------------------------------------------------------------------ */
/* Blocks */

typedef struct {
    unsigned char *p;
    size_t size;  /* bytes the model filled (requested, or claimed usable) */
    size_t align; /* alignment promised at allocation (0: none beyond 16) */
    uint32_t id;
    uint8_t fam;
    uint8_t seed;
} Blk;

#define MAXBLK 160
static Blk blk[MAXBLK];
static int nblk;
static size_t live_bytes;
static uint32_t next_blk_id;

static uint64_t blk_tag(uint32_t id) { return (id + 1) * 0x9E3779B97F4A7C15ull ^ 0x0b3e3a11ull; }

static void pat_fill(unsigned char *p, size_t size, uint8_t seed, uint64_t tag) {
    memset(p, seed, size);
    memcpy(p, &tag, size < 8 ? size : 8);
    if (size >= 16)
        memcpy(p + size - 8, &tag, 8);
}

/* Checks bytes [0, len) of a block that pat_fill filled with `size` bytes. */
static void pat_check(const unsigned char *p, size_t len, size_t size, uint8_t seed, uint64_t tag,
                      const char *what) {
    unsigned char t[8];
    memcpy(t, &tag, 8);
    if (len > size)
        len = size;
    for (size_t i = 0; i < len && i < 8; i++)
        CHECK(p[i] == t[i], "%s %p: byte %zu is 0x%02x, expected 0x%02x (size %zu)", what,
              (void *)p, i, p[i], t[i], size);
    size_t mid_end = size >= 16 ? size - 8 : size;
    size_t lim = len < mid_end ? len : mid_end;
    if (lim > 8 && !all_bytes(p, 8, lim, seed))
        for (size_t i = 8; i < lim; i++)
            CHECK(p[i] == seed, "%s %p: byte %zu is 0x%02x, expected 0x%02x (size %zu)", what,
                  (void *)p, i, p[i], seed, size);
    if (size >= 16)
        for (size_t i = size - 8; i < len; i++)
            CHECK(p[i] == t[i - (size - 8)], "%s %p: tail byte %zu is 0x%02x (size %zu)", what,
                  (void *)p, i, p[i], size);
}

static size_t usable_of(int f, void *p) {
    size_t u = obm_usable_size(p);
    if (f == F_OBJ || f == F_LIBC) {
        size_t m = f_malloc_usable_size(p);
        CHECK(m == u, "malloc_usable_size %zu != obm_usable_size %zu for %p", m, u, p);
    }
    return u;
}

/* A fresh block: checks it and records it. `fill`: 0 none expected, 1 zeros
 * (calloc), 2 the debug hooks' 0xCD (malloc under MODE_DEBUG). */
static void blk_add(void *p, size_t size, int f, size_t align, int fill, const char *what) {
    CHECK(p != NULL, "%s(%zu) returned NULL", what, size);
    CHECK(((uintptr_t)p & 15) == 0, "%s(%zu) returned %p, not 16-byte aligned", what, size, p);
    CHECK(align == 0 || ((uintptr_t)p & (align - 1)) == 0, "%s(%zu) returned %p, not aligned to %zu",
          what, size, p, align);
    size_t u = usable_of(f, p);
    CHECK(u >= size, "%s(%zu): usable size %zu < requested", what, size, u);
    for (int i = 0; i < nblk; i++)
        CHECK(blk[i].p != p, "%s(%zu) returned %p, which is live (block %u)", what, size, p,
              blk[i].id);
    if (fill == 1)
        bytes_check(p, 0, size, 0, "calloc'd memory not zero:");
    else if (fill == 2)
        bytes_check(p, 0, size < 65536 ? size : 65536, 0xCD, "debug hooks: new memory not 0xCD:");
    Blk *b = &blk[nblk++];
    b->p = p;
    b->size = size;
    b->align = align;
    b->fam = (uint8_t)f;
    b->id = next_blk_id++;
    b->seed = (uint8_t)(b->id * 37 + 11);
    pat_fill(b->p, b->size, b->seed, blk_tag(b->id));
    live_bytes += size;
}

static void blk_verify(Blk *b, const char *what) {
    pat_check(b->p, b->size, b->size, b->seed, blk_tag(b->id), what);
}

static void blk_remove(int k) {
    live_bytes -= blk[k].size;
    blk[k] = blk[--nblk];
}

/* A block of the object domain (malloc family or obm_object_*), or -1. */
static int obj_domain_blk(unsigned sel) {
    if (nblk == 0)
        return -1;
    for (int d = 0; d < nblk; d++) {
        int k = (int)((sel + (unsigned)d) % (unsigned)nblk);
        if (blk[k].fam == F_OBJ || blk[k].fam == F_LIBC)
            return k;
    }
    return -1;
}

static size_t budget_size(size_t n) {
    if (live_bytes + n > BUDGET)
        return n % 4097;
    return n;
}

/* ------------------------------------------------------------------------ */
/* A worker thread for cross-thread frees and allocations */

enum { W_IDLE, W_REQ, W_DONE };
enum { W_FREE, W_MALLOC, W_REALLOC };
static struct {
    pthread_mutex_t m;
    pthread_cond_t c;
    int state, op, fam;
    void *p;
    size_t n, align;
    void *res;
    int err;
} W = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, W_IDLE, 0, 0, NULL, 0, 0, NULL, 0};
static int worker_started;

static void *worker_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&W.m);
    for (;;) {
        while (W.state != W_REQ)
            pthread_cond_wait(&W.c, &W.m);
        errno = 0;
        switch (W.op) {
        case W_FREE: fam_free(W.fam, W.p); W.res = NULL; break;
        case W_MALLOC: W.res = fam_malloc(W.fam, W.n); break;
        default: W.res = fam_realloc(W.fam, W.p, W.n, W.align); break;
        }
        W.err = errno;
        W.state = W_DONE;
        pthread_cond_broadcast(&W.c);
    }
    return NULL;
}

static void worker_start(void) {
    if (worker_started)
        return;
    pthread_t t;
    if (pthread_create(&t, NULL, worker_main, NULL) == 0) {
        pthread_detach(t);
        worker_started = 1;
    }
}

static void *worker_call(int op, int fam, void *p, size_t n, size_t palign) {
    pthread_mutex_lock(&W.m);
    W.op = op;
    W.fam = fam;
    W.p = p;
    W.n = n;
    W.align = palign;
    W.state = W_REQ;
    pthread_cond_broadcast(&W.c);
    while (W.state != W_DONE)
        pthread_cond_wait(&W.c, &W.m);
    W.state = W_IDLE;
    void *r = W.res;
    errno = W.err;
    pthread_mutex_unlock(&W.m);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Objects */

#define NSLOT 4
typedef struct FObj {
    OBM_OBJECT_HEAD
    obm_object *slot[NSLOT];
    uint32_t idx;
    uint32_t epoch;
    size_t extra;
    unsigned char payload[];
} FObj;

enum {
    K_GC,          /* container */
    K_GC_FIN,      /* container with a finalizer */
    K_GC_RESCUE,   /* container whose finalizer resurrects it */
    K_GC_NOCLEAR,  /* container without clear */
    K_GC_LISTED,   /* container with a reference map, no traverse or clear */
    K_LEAF,        /* non-GC, may still own references */
    K_LEAF_FIN,    /* non-GC with a finalizer */
    K_LEAF_RESCUE, /* non-GC, resurrecting finalizer */
    K_PLAIN,       /* non-GC, no dealloc (owns nothing) */
    NKINDS,        /* the kinds of FObj (op "new") */
    K_EPH = NKINDS /* an ephemeron (obm_ephemeron_new): not an FObj */
};
static const int kind_gc[NKINDS + 1] = {1, 1, 1, 1, 1, 0, 0, 0, 0, 1};
static const int kind_fin[NKINDS + 1] = {0, 1, 1, 0, 0, 0, 1, 1, 0, 0};
static const int kind_rescue[NKINDS + 1] = {0, 0, 1, 0, 0, 0, 0, 1, 0, 0};
static const int kind_clear[NKINDS + 1] = {1, 1, 1, 0, 1, 0, 0, 0, 0, 1};
static int kind_prefix(int k) { return kind_gc[k] || kind_fin[k]; }

#define MAXOBJ 160
typedef struct {
    FObj *o;
    int kind;
    int alive;
    long rc;  /* expected reference count */
    long ext; /* references the harness owns */
    int slot[NSLOT];
    int tracked;
    int gen; /* 0..2, 3 = permanent */
    int fin;
    int gen_unc; /* generation is gen, alt or 0 (trashcan order, see m_destroy) */
    int alt_gen;
    int dep_gen; /* generation when deposited in the trashcan */
    int deposited;
    uint8_t pseed;
    size_t extra;
    int immortal;
    int key; /* K_EPH: the key's index, -1 once cleared; slot[0] is the value */
} MObj;

static MObj mo[MAXOBJ];
static int nobj;
static uint32_t epoch;
/* What the type callbacks saw. */
static int act_freed[MAXOBJ], act_fin[MAXOBJ], act_resc[MAXOBJ];

/* Weak references: the harness owns each (one reference) until it drops it. */
#define MAXWR 48
typedef struct {
    obm_weakref *r;
    int target; /* object index; -1 once cleared */
    int has_cb;
    int alive;
    int cbs; /* callbacks expected so far */
} MWr;
static MWr mw[MAXWR];
static int nwr;
static int act_wcb[MAXWR];
static int wr_ctx[MAXWR];
/* Weak-referenceable kinds (all but the plain one, the non-GC rescuer and
 * ephemerons). */
static int kind_weak(int k) { return k != K_PLAIN && k != K_LEAF_RESCUE && k != K_EPH; }
static int neph; /* ephemerons made by this input */

static int obj_index(obm_object *o, const char *who) {
    CHECK(o != NULL, "%s: NULL object", who);
    if (neph > 0)
        for (int i = 0; i < nobj; i++)
            if (mo[i].kind == K_EPH && mo[i].alive && (obm_object *)mo[i].o == o)
                return i;
    FObj *f = (FObj *)o;
    CHECK(f->epoch == epoch && f->idx < (uint32_t)nobj && mo[f->idx].o == f,
          "%s: unknown object %p (idx %u epoch %u)", who, (void *)o, f->idx, f->epoch);
    return (int)f->idx;
}

static void payload_check(FObj *f, int i, const char *who) {
    if (f->extra != mo[i].extra)
        fail("%s: object %d extra field %zu, expected %zu", who, i, f->extra, mo[i].extra);
    bytes_check(f->payload, 0, f->extra, mo[i].pseed, "object payload");
}

static int f_traverse(obm_object *o, obm_visitproc visit, void *arg) {
    FObj *f = (FObj *)o;
    for (int k = 0; k < NSLOT; k++) {
        /* Objects with an odd index pass their NULL slots too (allowed). */
        if (f->slot[k] || (f->idx & 1)) {
            int r = visit(f->slot[k], arg);
            if (r)
                return r;
        }
    }
    return 0;
}

static int f_clear(obm_object *o) {
    FObj *f = (FObj *)o;
    for (int k = 0; k < NSLOT; k++) {
        obm_object *t = f->slot[k];
        f->slot[k] = NULL;
        obm_xdecref(t);
    }
    return 0;
}

static void f_dealloc(obm_object *o) {
    int i = obj_index(o, "dealloc");
    CHECK(!act_freed[i], "object %d deallocated twice", i);
    CHECK(obm_refcnt(o) == 0, "object %d deallocated with refcount %td", i, obm_refcnt(o));
    CHECK(!obm_gc_is_tracked(o), "object %d deallocated while tracked", i);
    payload_check((FObj *)o, i, "dealloc");
    act_freed[i] = 1;
    f_clear(o);
}

static void f_finalize(obm_object *o) {
    int i = obj_index(o, "finalize");
    CHECK(!act_freed[i], "finalize of freed object %d", i);
    CHECK(act_fin[i] == 0, "object %d finalized twice", i);
    CHECK(obm_gc_is_finalized(o) == 1, "object %d: is_finalized is 0 inside finalize", i);
    CHECK(obm_refcnt(o) >= 1, "object %d finalized with refcount %td", i, obm_refcnt(o));
    act_fin[i]++;
    if (kind_rescue[mo[i].kind]) {
        obm_incref(o);
        act_resc[i]++;
    }
}

#define GCW (OBM_TPFLAGS_HAVE_GC | OBM_TPFLAGS_WEAKREFABLE)
/* The collector reads its slots through the map and clears them itself. */
static const obm_type_refs listed_type = {
    {"FzGcListed", sizeof(FObj), GCW | OBM_TPFLAGS_REF_MAP, NULL, f_dealloc, NULL, NULL},
    OBM_REF_FIELD(FObj, slot[0]) | OBM_REF_FIELD(FObj, slot[1]) | OBM_REF_FIELD(FObj, slot[2]) |
        OBM_REF_FIELD(FObj, slot[3]),
};
static const obm_type *const types[NKINDS] = {
    &(const obm_type){"FzGc", sizeof(FObj), GCW, NULL, f_dealloc, f_traverse, f_clear},
    &(const obm_type){"FzGcFin", sizeof(FObj), GCW, f_finalize, f_dealloc, f_traverse, f_clear},
    &(const obm_type){"FzGcRescue", sizeof(FObj), GCW, f_finalize, f_dealloc, f_traverse, f_clear},
    &(const obm_type){"FzGcNoClear", sizeof(FObj), GCW, NULL, f_dealloc, f_traverse, NULL},
    &listed_type.base,
    &(const obm_type){"FzLeaf", sizeof(FObj), OBM_TPFLAGS_WEAKREFABLE, NULL, f_dealloc, NULL, NULL},
    &(const obm_type){"FzLeafFin", sizeof(FObj), OBM_TPFLAGS_WEAKREFABLE, f_finalize, f_dealloc, NULL, NULL},
    &(const obm_type){"FzLeafRescue", sizeof(FObj), 0, f_finalize, f_dealloc, NULL, NULL},
    &(const obm_type){"FzPlain", sizeof(FObj), 0, NULL, NULL, NULL, NULL},
};
static const char *kind_name(int k) { return k == K_EPH ? "ephemeron" : types[k]->name; }
static const obm_type bad_types[3] = {
    {"FzTooSmall", sizeof(obm_object) - 1, 0, NULL, NULL, NULL, NULL},
    {"FzNoTraverse", sizeof(FObj), OBM_TPFLAGS_HAVE_GC, NULL, f_dealloc, NULL, f_clear},
    {"FzTiny", 0, 0, NULL, NULL, NULL, NULL},
};

/* ------------------------------------------------------------------------ */
/* The collector's model */

static int m_count[3], m_thr[3], m_enabled;
static unsigned m_debug;
static size_t m_pending, m_total;
static obm_gc_gen_stats m_stats[3];
static int m_garbage[MAXOBJ * 2];
static int m_ngarbage;
static int m_depth;
static int m_later[MAXOBJ];
static int m_nlater;
static int m_unc_order; /* the real deallocation order is unknown (list order) */
static int lock_depth;

/* Callbacks: the observer (registered at start, never removed) and up to 7
 * extra registrations of cb_a / cb_b with one of 4 contexts. */
#define MAXCB 7
static int cb_ctx[4];
static struct {
    int who, ctx;
} m_cbs[MAXCB];
static int m_ncbs;
static int obs_ctx;

typedef struct {
    int who, ctx, phase, gen;
    size_t collected, uncollectable, candidates;
} LogE;
#define MAXLOG 512
static LogE act_log[MAXLOG], exp_log[MAXLOG];
static int n_act, n_exp;

static void log_add(LogE *log, int *n, LogE e) {
    if (*n < MAXLOG)
        log[*n] = e;
    (*n)++;
}

static void cb_common(int who, int phase, const obm_gc_info *info, void *ctx) {
    int c = -1;
    if (who == 0)
        CHECK(ctx == &obs_ctx, "observer callback called with ctx %p", ctx);
    else {
        c = (int)((int *)ctx - cb_ctx);
        CHECK(c >= 0 && c < 4, "callback called with unknown ctx %p", ctx);
    }
    CHECK(phase == OBM_GC_START || phase == OBM_GC_STOP, "callback phase %d", phase);
    if (phase == OBM_GC_START)
        CHECK(info->collected == 0 && info->uncollectable == 0 && info->candidates == 0 &&
                  info->duration_ns == 0,
              "START callback with collected %zu uncollectable %zu candidates %zu duration %llu",
              info->collected, info->uncollectable, info->candidates,
              (unsigned long long)info->duration_ns);
    else
        CHECK(info->duration_ns > 0 && info->duration_ns < 60ull * 1000 * 1000 * 1000,
              "STOP callback with duration_ns %llu", (unsigned long long)info->duration_ns);
    LogE e = {who, c, phase, info->generation, info->collected, info->uncollectable,
              info->candidates};
    log_add(act_log, &n_act, e);
    if (who == 0) {
        /* No collection may start inside a collection. */
        ptrdiff_t r = obm_gc_collect(2);
        CHECK(r == 0, "obm_gc_collect inside a callback returned %td", r);
    }
}
static void cb_obs(int phase, const obm_gc_info *info, void *ctx) { cb_common(0, phase, info, ctx); }
static void cb_a(int phase, const obm_gc_info *info, void *ctx) { cb_common(1, phase, info, ctx); }
static void cb_b(int phase, const obm_gc_info *info, void *ctx) { cb_common(2, phase, info, ctx); }
static obm_gc_callback cb_fn(int who) { return who == 1 ? cb_a : cb_b; }

static void exp_cb(int phase, int gen, size_t collected, size_t candidates) {
    LogE e = {0, -1, phase, gen, collected, 0, candidates};
    log_add(exp_log, &n_exp, e);
    for (int i = 0; i < m_ncbs; i++) {
        LogE x = {m_cbs[i].who, m_cbs[i].ctx, phase, gen, collected, 0, candidates};
        log_add(exp_log, &n_exp, x);
    }
}

static int sat_inc(int c) { return c == INT_MAX ? c : c + 1; }

static void m_decref(int i);

/* Ephemerons whose key died, waiting to drop their values (weak.rs's
 * chain: each holds a reference meanwhile). */
static int m_chain[MAXOBJ];
static int m_nchain;

/* Clears the live weak references and ephemerons to object i (counting a
 * callback for the weakrefs with one when `callbacks`); the ephemerons
 * that still hold a value and are not on their way out (count 0: deposited
 * in the trashcan) join m_chain, newest first. */
static void m_clear_weakrefs(int i, int callbacks) {
    for (int w = 0; w < nwr; w++)
        if (mw[w].alive && mw[w].target == i) {
            mw[w].target = -1;
            if (callbacks && mw[w].has_cb)
                mw[w].cbs++;
        }
    for (int e = nobj - 1; e >= 0 && neph > 0; e--)
        if (mo[e].kind == K_EPH && mo[e].alive && mo[e].key == i) {
            mo[e].key = -1;
            if (mo[e].slot[0] >= 0 && mo[e].rc > 0) {
                mo[e].rc++;
                m_chain[m_nchain++] = e;
            }
        }
}

/* Runs m_chain from `base` on: each ephemeron drops its value, then the
 * chain's reference to it (either may free objects, and so push and run
 * more entries above ours). */
static void m_run_chain(int base) {
    int end = m_nchain;
    for (int k = base; k < end; k++) {
        int e = m_chain[k], v = mo[e].slot[0];
        mo[e].slot[0] = -1;
        if (v >= 0)
            m_decref(v);
        m_decref(e);
    }
    m_nchain = base;
}

/* Mirrors object.rs destroy(): finalize once (may resurrect), untrack,
 * dealloc (drops slots 0..3 in order), free. */
static void m_destroy(int i) {
    MObj *m = &mo[i];
    if (kind_fin[m->kind] && !m->fin) {
        m->fin = 1;
        if (kind_rescue[m->kind]) {
            m->rc = 1;
            m->ext++;
            if (m->tracked && m_unc_order) {
                /* Deposited in the trashcan (re-tracked young) or not,
                 * depending on the order of the collector's list. */
                m->gen_unc = 1;
                m->alt_gen = m->deposited ? m->dep_gen : m->gen;
            }
            m->deposited = 0;
            return;
        }
    }
    m->deposited = 0;
    m->tracked = 0;
    /* Weak references and ephemerons: all cleared, then the callbacks (they
     * do nothing the model sees) and the ephemerons' value drops. */
    int base = m_nchain;
    m_clear_weakrefs(i, 1);
    m_run_chain(base);
    /* An ephemeron's dealloc unlinks it from its key, then drops its value. */
    m->key = -1;
    for (int k = 0; k < NSLOT; k++) {
        int t = m->slot[k];
        m->slot[k] = -1;
        if (t >= 0)
            m_decref(t);
    }
    if (kind_gc[m->kind] && m_count[0] > 0)
        m_count[0]--;
    m->alive = 0;
}

static void m_destroy_chain(void) {
    while (m_nlater > 0) {
        int i = m_later[--m_nlater];
        MObj *m = &mo[i];
        if (m->deposited == 2 && kind_fin[m->kind] && !m->fin) {
            m->tracked = 1;
            m->gen = 0;
        }
        m_depth = 1;
        m_destroy(i);
        m_depth = 0;
    }
}

static void m_dealloc(int i) {
    MObj *m = &mo[i];
    if (m_depth >= 50) {
        /* deposit: 1 = was untracked, 2 = was tracked */
        m->deposited = m->tracked ? 2 : 1;
        m->dep_gen = m->gen;
        m->tracked = 0;
        m_later[m_nlater++] = i;
        return;
    }
    m_depth++;
    m_destroy(i);
    m_depth--;
    if (m_depth == 0 && m_nlater > 0)
        m_destroy_chain();
}

static void m_decref(int i) {
    MObj *m = &mo[i];
    if (!m->alive || m->rc <= 0)
        fail("MODEL BUG: decref of object %d (alive %d rc %ld)", i, m->alive, m->rc);
    /* An immortal object's rc counts the references the model knows of;
     * obmem's count does not change and it never dies. */
    if (--m->rc == 0 && !m->immortal)
        m_dealloc(i);
}

/* Whether an ephemeron's key k is alive for a reachability walk over
 * `set`: not cleared, and out of the set or found reachable. */
static int m_key_alive(const int *set, const int *reach, int k) {
    return k >= 0 && (!set[k] || reach[k]);
}

/* The members of `set` that are reachable (reach[i] = 1): held from outside
 * (refs[i] > 0), or referenced by a reachable member, except that an
 * ephemeron's value is reached only once its key is alive, iterated to a
 * fixpoint (docs/GC.md). The `outside` ephemerons (NULL: none), not in the
 * set, hold their values in the same way. */
static void m_reach(const int *set, const long *refs, const int *outside, int *reach) {
    static int queue[MAXOBJ];
    int qh = 0, qt = 0;
    for (int i = 0; i < nobj; i++) {
        reach[i] = set[i] && refs[i] > 0;
        if (reach[i])
            queue[qt++] = i;
    }
    for (;;) {
        while (qh < qt) {
            int j = queue[qh++];
            if (mo[j].kind == K_EPH && !m_key_alive(set, reach, mo[j].key))
                continue; /* its value waits for the key */
            for (int k = 0; k < NSLOT; k++) {
                int t = mo[j].slot[k];
                if (t >= 0 && set[t] && !reach[t]) {
                    reach[t] = 1;
                    queue[qt++] = t;
                }
            }
        }
        /* Ephemerons whose key became alive after they were passed. */
        for (int e = 0; e < nobj && neph > 0; e++) {
            if (mo[e].kind != K_EPH || !mo[e].alive || !(set[e] ? reach[e] : outside && outside[e]))
                continue;
            int v = mo[e].slot[0];
            if (v >= 0 && set[v] && !reach[v] && m_key_alive(set, reach, mo[e].key)) {
                reach[v] = 1;
                queue[qt++] = v;
            }
        }
        if (qh == qt)
            break;
    }
}

/* Mirrors collect.rs collect_main() for generation g. */
static size_t m_collect(int g) {
    static int in_set[MAXOBJ], reach[MAXOBJ], still[MAXOBJ], pend[MAXOBJ];
    static long refs[MAXOBJ];
    exp_cb(OBM_GC_START, g, 0, 0);
    if (g + 1 < 3)
        m_count[g + 1] = sat_inc(m_count[g + 1]);
    for (int i = 0; i <= g; i++)
        m_count[i] = 0;
    int old_gen = g < 2 ? g + 1 : 2;

    for (int i = 0; i < nobj; i++) {
        in_set[i] = mo[i].alive && mo[i].tracked && mo[i].gen <= g;
        refs[i] = mo[i].immortal ? LONG_MAX / 2 : mo[i].rc;
        reach[i] = 0;
    }
    size_t candidates = 0;
    for (int i = 0; i < nobj; i++)
        candidates += (size_t)in_set[i];
    for (int j = 0; j < nobj; j++)
        if (in_set[j])
            for (int k = 0; k < NSLOT; k++)
                if (mo[j].slot[k] >= 0 && in_set[mo[j].slot[k]])
                    refs[mo[j].slot[k]]--;
    m_reach(in_set, refs, NULL, reach);
    size_t survivors = 0;
    int pending_fin = 0;
    for (int i = 0; i < nobj; i++) {
        if (!in_set[i])
            continue;
        if (reach[i]) {
            survivors++;
            mo[i].gen = old_gen;
        } else if (kind_fin[mo[i].kind] && !mo[i].fin)
            pending_fin = 1;
    }
    if (g == 1)
        m_pending += survivors;
    else if (g == 2) {
        m_pending = 0;
        m_total = survivors;
    }

    size_t collected = 0;
    for (int i = 0; i < nobj; i++)
        still[i] = in_set[i] && !reach[i];
    /* Reachable ephemerons whose key is not: for the resurrection check. */
    for (int e = 0; e < nobj; e++)
        pend[e] = mo[e].kind == K_EPH && in_set[e] && reach[e] && mo[e].key >= 0 &&
                  still[mo[e].key];
    /* Weak references with a callback to the garbage: cleared, and (the
     * harness's are reachable) their callbacks run before the finalizers. */
    for (int w = 0; w < nwr; w++)
        if (mw[w].alive && mw[w].has_cb && mw[w].target >= 0 && still[mw[w].target]) {
            mw[w].target = -1;
            mw[w].cbs++;
        }
    if (pending_fin) {
        for (int i = 0; i < nobj; i++)
            if (still[i] && kind_fin[mo[i].kind] && !mo[i].fin) {
                mo[i].fin = 1;
                if (kind_rescue[mo[i].kind]) {
                    mo[i].ext++;
                    mo[i].rc++;
                }
            }
        /* Resurrection: the same analysis on the unreachable set alone. */
        for (int i = 0; i < nobj; i++) {
            refs[i] = mo[i].immortal ? LONG_MAX / 2 : mo[i].rc;
            reach[i] = 0;
        }
        for (int j = 0; j < nobj; j++)
            if (still[j])
                for (int k = 0; k < NSLOT; k++)
                    if (mo[j].slot[k] >= 0 && still[mo[j].slot[k]])
                        refs[mo[j].slot[k]]--;
        /* A pending ephemeron's reference to a value in the set counts
         * only if its key is resurrected. */
        for (int e = 0; e < nobj; e++)
            if (pend[e] && mo[e].slot[0] >= 0 && still[mo[e].slot[0]])
                refs[mo[e].slot[0]]--;
        m_reach(still, refs, pend, reach);
        for (int i = 0; i < nobj; i++)
            if (still[i] && reach[i]) {
                still[i] = 0;
                mo[i].gen = old_gen;
            }
    }
    for (int i = 0; i < nobj; i++)
        collected += (size_t)still[i];
    /* Every other weak reference to the real garbage, before any clear; the
     * ephemerons keyed by it drop their values (in the collector's list
     * order, which the model does not know). */
    m_unc_order = 1;
    int base = m_nchain;
    for (int i = 0; i < nobj; i++)
        if (still[i])
            m_clear_weakrefs(i, 0);
    m_run_chain(base);
    m_unc_order = 0;

    if (m_debug & OBM_GC_DEBUG_SAVEALL) {
        for (int i = 0; i < nobj; i++)
            if (still[i] && mo[i].alive) {
                m_garbage[m_ngarbage++] = i;
                mo[i].rc++;
                mo[i].gen = old_gen;
            }
    } else {
        m_unc_order = 1;
        for (int i = 0; i < nobj; i++) {
            if (!still[i] || !mo[i].alive)
                continue;
            if (kind_clear[mo[i].kind]) {
                mo[i].rc++;
                mo[i].key = -1; /* an ephemeron's clear unlinks it first */
                for (int k = 0; k < NSLOT; k++) {
                    int t = mo[i].slot[k];
                    mo[i].slot[k] = -1;
                    if (t >= 0)
                        m_decref(t);
                }
                m_decref(i);
            }
            if (mo[i].alive)
                mo[i].gen = old_gen;
        }
        m_unc_order = 0;
    }
    m_stats[g].collections++;
    m_stats[g].collected += collected;
    exp_cb(OBM_GC_STOP, g, collected, candidates);
    TRACE("  [collection of generation %d: %zu collected, %zu survivors]\n", g, collected, survivors);
    return collected;
}

static void m_collect_generations(void) {
    for (int g = 2; g >= 0; g--)
        if (m_count[g] > m_thr[g]) {
            if (g == 2 && m_pending < m_total / 4)
                continue;
            m_collect(g);
            return;
        }
}

/* ------------------------------------------------------------------------ */
/* Checking the model against obmem */

static int seen_gen[MAXOBJ];
static int visit_gen;

static int v_gen(obm_object *o, void *arg) {
    (void)arg;
    int i = obj_index(o, "get_objects");
    CHECK(seen_gen[i] == -1, "object %d reported twice by get_objects (gens %d and %d)", i,
          seen_gen[i], visit_gen);
    seen_gen[i] = visit_gen;
    return 0;
}

static void check_model_rc(void) {
    static long calc[MAXOBJ];
    for (int i = 0; i < nobj; i++)
        calc[i] = mo[i].ext;
    for (int j = 0; j < nobj; j++)
        if (mo[j].alive)
            for (int k = 0; k < NSLOT; k++)
                if (mo[j].slot[k] >= 0)
                    calc[mo[j].slot[k]]++;
    for (int g = 0; g < m_ngarbage; g++)
        calc[m_garbage[g]]++;
    for (int i = 0; i < nobj; i++)
        if (mo[i].alive && calc[i] != mo[i].rc)
            fail("MODEL BUG: object %d rc %ld, references %ld", i, mo[i].rc, calc[i]);
}

static void check_cblog(void) {
    CHECK(n_act <= MAXLOG && n_exp <= MAXLOG, "callback log overflow");
    for (int k = 0; k < n_act || k < n_exp; k++) {
        CHECK(k < n_act, "callback log: %d calls, expected %d", n_act, n_exp);
        CHECK(k < n_exp, "callback log: %d calls, expected %d (extra: who %d phase %d gen %d)",
              n_act, n_exp, act_log[k].who, act_log[k].phase, act_log[k].gen);
        LogE *a = &act_log[k], *e = &exp_log[k];
        CHECK(a->who == e->who && a->ctx == e->ctx && a->phase == e->phase && a->gen == e->gen &&
                  a->collected == e->collected && a->uncollectable == e->uncollectable &&
                  a->candidates == e->candidates,
              "callback %d: who %d ctx %d phase %d gen %d collected %zu uncollectable %zu candidates "
              "%zu; expected who %d ctx %d phase %d gen %d collected %zu candidates %zu",
              k, a->who, a->ctx, a->phase, a->gen, a->collected, a->uncollectable, a->candidates,
              e->who, e->ctx, e->phase, e->gen, e->collected, e->candidates);
    }
    n_act = n_exp = 0;
}

/* An ephemeron's key and value, through the accessors. */
static void check_ephemeron(int i) {
    obm_object *e = &mo[i].o->ob_base;
    int k = mo[i].key, v = mo[i].slot[0];
    CHECK(k >= 0 || v < 0, "MODEL BUG: ephemeron %d holds object %d without a key", i, v);
    obm_object *key = obm_ephemeron_key(e), *val = obm_ephemeron_value(e);
    obm_object *want_key = k >= 0 ? &mo[k].o->ob_base : NULL;
    obm_object *want_val = v >= 0 ? &mo[v].o->ob_base : NULL;
    CHECK(key == want_key, "ephemeron %d: key %p, expected %p (object %d)", i, (void *)key,
          (void *)want_key, k);
    CHECK(val == want_val, "ephemeron %d: value %p, expected %p (object %d)", i, (void *)val,
          (void *)want_val, v);
    obm_xdecref(key);
    obm_xdecref(val);
}

static void check_gc(void) {
    if (m_depth || m_nlater || m_nchain)
        fail("MODEL BUG: trashcan depth %d pending %d chain %d", m_depth, m_nlater, m_nchain);
    check_model_rc();
    for (int i = 0; i < nobj; i++) {
        MObj *m = &mo[i];
        CHECK(act_fin[i] == m->fin, "object %d (%s) finalized %d times, expected %d", i,
              kind_name(m->kind), act_fin[i], m->fin);
        CHECK(act_resc[i] == (kind_rescue[m->kind] && m->fin), "object %d rescued %d times", i,
              act_resc[i]);
        if (!m->alive) {
            /* Plain objects and ephemerons have no dealloc of the harness's:
             * their deaths show in what they held. */
            if (m->kind != K_PLAIN && m->kind != K_EPH)
                CHECK(act_freed[i], "object %d (%s) should have been freed", i, kind_name(m->kind));
            continue;
        }
        CHECK(!act_freed[i], "object %d (%s) was freed, expected alive (rc %ld)", i,
              kind_name(m->kind), m->rc);
        obm_object *o = &m->o->ob_base;
        long want_rc = m->immortal ? (long)OBM_IMMORTAL_REFCNT : m->rc;
        CHECK(obm_refcnt(o) == want_rc, "object %d (%s): refcount %td, expected %ld", i,
              kind_name(m->kind), obm_refcnt(o), want_rc);
        CHECK(obm_is_immortal(o) == m->immortal, "object %d: is_immortal %d, expected %d", i,
              obm_is_immortal(o), m->immortal);
        if (kind_weak(m->kind)) {
            size_t nw = 0;
            for (int w = 0; w < nwr; w++)
                nw += mw[w].alive && mw[w].target == i;
            for (int e = 0; e < nobj && neph > 0; e++)
                nw += mo[e].kind == K_EPH && mo[e].alive && mo[e].key == i;
            CHECK(obm_weakref_count(o) == nw, "object %d: %zu weak references, expected %zu", i,
                  obm_weakref_count(o), nw);
        }
        CHECK(obm_gc_is_tracked(o) == m->tracked, "object %d (%s): is_tracked %d, expected %d", i,
              kind_name(m->kind), obm_gc_is_tracked(o), m->tracked);
        CHECK(obm_gc_is_finalized(o) == (kind_prefix(m->kind) && m->fin),
              "object %d (%s): is_finalized %d, expected %d", i, kind_name(m->kind),
              obm_gc_is_finalized(o), m->fin);
        seen_gen[i] = -1;
        if (m->kind == K_EPH) {
            check_ephemeron(i);
            continue;
        }
        for (int k = 0; k < NSLOT; k++) {
            obm_object *want = m->slot[k] >= 0 ? &mo[m->slot[k]].o->ob_base : NULL;
            CHECK(m->o->slot[k] == want, "object %d slot %d is %p, expected %p", i, k,
                  (void *)m->o->slot[k], (void *)want);
        }
        CHECK(m->o->idx == (uint32_t)i && m->o->epoch == epoch, "object %d header fields changed", i);
    }
    for (visit_gen = 0; visit_gen < 3; visit_gen++) {
        int r = obm_gc_get_objects(visit_gen, v_gen, NULL);
        CHECK(r == 0, "obm_gc_get_objects(%d) returned %d", visit_gen, r);
    }
    size_t perm = 0;
    for (int i = 0; i < nobj; i++) {
        MObj *m = &mo[i];
        if (!m->alive)
            continue;
        if (!m->tracked) {
            CHECK(seen_gen[i] == -1, "untracked object %d listed in generation %d", i, seen_gen[i]);
            continue;
        }
        if (m->gen == 3) {
            perm++;
            CHECK(seen_gen[i] == -1, "frozen object %d listed in generation %d", i, seen_gen[i]);
            continue;
        }
        if (m->gen_unc) {
            CHECK(seen_gen[i] == m->gen || seen_gen[i] == m->alt_gen || seen_gen[i] == 0,
                  "object %d (%s) in generation %d, expected %d, %d or 0", i, kind_name(m->kind),
                  seen_gen[i], m->gen, m->alt_gen);
            m->gen = seen_gen[i];
            m->gen_unc = 0;
            continue;
        }
        CHECK(seen_gen[i] == m->gen, "object %d (%s) in generation %d, expected %d", i,
              kind_name(m->kind), seen_gen[i], m->gen);
    }
    CHECK(obm_gc_get_freeze_count() == perm, "freeze count %zu, expected %zu",
          obm_gc_get_freeze_count(), perm);

    int c[3], t[3];
    obm_gc_get_count(c);
    CHECK(c[0] == m_count[0] && c[1] == m_count[1] && c[2] == m_count[2],
          "gc count %d %d %d, expected %d %d %d", c[0], c[1], c[2], m_count[0], m_count[1],
          m_count[2]);
    obm_gc_get_threshold(t);
    CHECK(t[0] == m_thr[0] && t[1] == m_thr[1] && t[2] == m_thr[2],
          "gc threshold %d %d %d, expected %d %d %d", t[0], t[1], t[2], m_thr[0], m_thr[1],
          m_thr[2]);
    CHECK(obm_gc_isenabled() == m_enabled, "isenabled %d, expected %d", obm_gc_isenabled(),
          m_enabled);
    CHECK(obm_gc_get_debug() == m_debug, "debug flags %u, expected %u", obm_gc_get_debug(), m_debug);
    obm_gc_gen_stats st[3];
    obm_gc_get_stats(st);
    for (int g = 0; g < 3; g++)
        CHECK(st[g].collections == m_stats[g].collections && st[g].collected == m_stats[g].collected &&
                  st[g].uncollectable == m_stats[g].uncollectable,
              "gc stats gen %d: %zu collections %zu collected %zu uncollectable, expected %zu %zu %zu",
              g, st[g].collections, st[g].collected, st[g].uncollectable, m_stats[g].collections,
              m_stats[g].collected, m_stats[g].uncollectable);

    CHECK(obm_gc_garbage_count() == (size_t)m_ngarbage, "garbage count %zu, expected %d",
          obm_gc_garbage_count(), m_ngarbage);
    static int gseen[MAXOBJ];
    memset(gseen, 0, sizeof gseen);
    for (int g = 0; g < m_ngarbage; g++)
        gseen[m_garbage[g]]++;
    for (int g = 0; g < m_ngarbage; g++) {
        int i = obj_index(obm_gc_garbage_get((size_t)g), "garbage_get");
        CHECK(gseen[i] > 0, "garbage list holds object %d, not expected there", i);
        gseen[i]--;
    }
    CHECK(obm_gc_garbage_get((size_t)m_ngarbage) == NULL, "garbage_get past the end not NULL");

    for (int w = 0; w < nwr; w++) {
        CHECK(act_wcb[w] == mw[w].cbs, "weakref %d: %d callbacks, expected %d", w, act_wcb[w],
              mw[w].cbs);
        if (!mw[w].alive)
            continue;
        obm_object *got = obm_weakref_get(mw[w].r);
        obm_object *want = mw[w].target >= 0 ? &mo[mw[w].target].o->ob_base : NULL;
        CHECK(got == want, "weakref %d yields %p, expected %p (object %d)", w, (void *)got,
              (void *)want, mw[w].target);
        if (got)
            obm_decref(got);
    }

    check_cblog();
}

/* ------------------------------------------------------------------------ */
/* Object operations (each keeps the model in step) */

static int live_pick(In *in, int need_ext) {
    if (nobj == 0)
        return -1;
    int start = (int)(u8(in) % (unsigned)nobj);
    for (int d = 0; d < nobj; d++) {
        int i = (start + d) % nobj;
        if (mo[i].alive && (!need_ext || mo[i].ext > 0))
            return i;
    }
    return -1;
}

static int obj_new(int kind, size_t extra, int var) {
    if (nobj >= MAXOBJ)
        return -1;
    if (mode == MODE_HOOKS)
        hexpect[F_OBJ][H_MALLOC]++;
    obm_object *o = var ? obm_new_var(types[kind], extra) : obm_new(types[kind]);
    if (!var)
        extra = 0;
    CHECK(o != NULL, "obm_new%s(%s, %zu) returned NULL", var ? "_var" : "", types[kind]->name, extra);
    CHECK(((uintptr_t)o & 15) == 0, "object %p not 16-byte aligned", (void *)o);
    CHECK(obm_refcnt(o) == 1 && o->ob_type == types[kind], "new object: refcount %td type %p",
          obm_refcnt(o), (const void *)o->ob_type);
    CHECK(!obm_gc_is_tracked(o) && !obm_gc_is_finalized(o), "new object tracked or finalized");
    FObj *f = (FObj *)o;
    bytes_check((unsigned char *)f + sizeof(obm_object), 0,
                sizeof(FObj) - sizeof(obm_object) + extra, 0, "new object not zeroed:");
    int i = nobj++;
    MObj *m = &mo[i];
    memset(m, 0, sizeof *m);
    m->o = f;
    m->kind = kind;
    m->alive = 1;
    m->rc = 1;
    m->ext = 1;
    m->key = -1;
    for (int k = 0; k < NSLOT; k++)
        m->slot[k] = -1;
    m->extra = extra;
    m->pseed = (uint8_t)(i * 29 + 3);
    act_freed[i] = act_fin[i] = act_resc[i] = 0;
    f->idx = (uint32_t)i;
    f->epoch = epoch;
    f->extra = extra;
    memset(f->payload, m->pseed, extra);
    return i;
}

static void obj_decref(int i, int x) {
    MObj *m = &mo[i];
    m->ext--;
    if (x)
        obm_xdecref(&m->o->ob_base);
    else
        obm_decref(&m->o->ob_base);
    m_decref(i);
}

static void obj_set_slot(int i, int k, int j) {
    FObj *a = mo[i].o;
    if (j >= 0) {
        obm_incref(&mo[j].o->ob_base);
        mo[j].rc++;
    }
    obm_object *old = a->slot[k];
    a->slot[k] = j >= 0 ? &mo[j].o->ob_base : NULL;
    int oldi = mo[i].slot[k];
    mo[i].slot[k] = j;
    obm_xdecref(old);
    if (oldi >= 0)
        m_decref(oldi);
}

/* An ephemeron's value cannot be dropped but by its key's death. */
static void obj_clear_slots(int i) {
    if (mo[i].kind == K_EPH)
        return;
    for (int k = 0; k < NSLOT && mo[i].alive; k++)
        if (mo[i].slot[k] >= 0)
            obj_set_slot(i, k, -1);
}

static void obj_track(int i) {
    obm_gc_track(&mo[i].o->ob_base);
    MObj *m = &mo[i];
    if (!kind_gc[m->kind] || m->tracked)
        return;
    m_count[0] = sat_inc(m_count[0]);
    if (m_count[0] > m_thr[0] && m_thr[0] != 0 && m_enabled)
        m_collect_generations();
    if (!m->tracked) {
        m->tracked = 1;
        m->gen = 0;
    }
    check_cblog();
}

static ptrdiff_t gc_collect(int g) {
    ptrdiff_t r = obm_gc_collect(g);
    if (g < 0 || g > 2) {
        CHECK(r == -1, "obm_gc_collect(%d) returned %td, expected -1", g, r);
        return r;
    }
    size_t want = m_collect(g);
    check_cblog();
    CHECK(r == (ptrdiff_t)want, "obm_gc_collect(%d) returned %td, expected %zu", g, r, want);
    return r;
}

static void gc_garbage_clear(void) {
    obm_gc_garbage_clear();
    int n = m_ngarbage;
    m_ngarbage = 0;
    m_unc_order = 1;
    for (int g = 0; g < n; g++)
        m_decref(m_garbage[g]);
    m_unc_order = 0;
}

/* Visitors for the introspection functions */
static struct {
    int calls, stop_at, stop_val, incref;
    int order[MAXOBJ * NSLOT + 8];
} V;

static int v_intro(obm_object *o, void *arg) {
    CHECK(arg == &V, "visitor arg %p", arg);
    int i = obj_index(o, "introspection visitor");
    if (V.calls < (int)NELEM(V.order))
        V.order[V.calls] = i;
    V.calls++;
    if (V.calls == 1) {
        /* No collection runs during get_objects, get_referrers or
         * get_referents (the last fixed in 91d4980, found here). */
        ptrdiff_t r = obm_gc_collect(0);
        CHECK(r == 0, "obm_gc_collect inside a walk returned %td", r);
    }
    if (V.incref) {
        obm_incref(o);
        mo[i].ext++;
        mo[i].rc++;
    }
    return V.calls == V.stop_at ? V.stop_val : 0;
}

static void v_reset(In *in) {
    unsigned s = u8(in);
    V.calls = 0;
    V.stop_at = (s & 7) < 5 ? 0 : (int)(1 + (s >> 3) % 8);
    V.stop_val = (int)(s >> 4) - 3;
    if (V.stop_val == 0)
        V.stop_val = 42;
    V.incref = (u8(in) & 7) == 0;
}

/* Expected result of a walk that would make `total` visits. */
static void v_expect(int r, int total, const char *what) {
    if (V.stop_at && total >= V.stop_at) {
        CHECK(r == V.stop_val && V.calls == V.stop_at, "%s: returned %d after %d calls, expected %d after %d",
              what, r, V.calls, V.stop_val, V.stop_at);
    } else {
        CHECK(r == 0 && V.calls == total, "%s: returned %d after %d calls, expected 0 after %d", what,
              r, V.calls, total);
    }
}

/* ------------------------------------------------------------------------ */
/* Operations */

typedef void (*OpFn)(In *in);

static int pick_fam(In *in) { return (int)(u8(in) % NFAM); }

static void op_malloc(In *in) {
    int f = pick_fam(in);
    size_t n = budget_size(pick_size(in));
    if (nblk >= MAXBLK)
        return;
    TRACE("  %s malloc(%zu)\n", fam_name[f], n);
    errno = 0;
    void *p = fam_malloc(f, n);
    blk_add(p, n, f, 0, mode == MODE_DEBUG ? 2 : 0, "malloc");
}

static void op_calloc(In *in) {
    int f = pick_fam(in);
    size_t n = budget_size(pick_size(in));
    size_t el = 1 + u8(in) % 16;
    if (nblk >= MAXBLK)
        return;
    size_t ne = n / el;
    TRACE("  %s calloc(%zu, %zu)\n", fam_name[f], ne, el);
    void *p = fam_calloc(f, ne, el);
    blk_add(p, ne * el, f, 0, 1, "calloc");
}

static void op_realloc(In *in) {
    unsigned sel = u8(in);
    size_t n = pick_size(in);
    if (nblk == 0 || sel % 8 == 0) {
        /* realloc(NULL, n) is malloc(n) */
        int f = (int)(sel / 8 % NFAM);
        n = budget_size(n);
        if (nblk >= MAXBLK)
            return;
        TRACE("  %s realloc(NULL, %zu)\n", fam_name[f], n);
        void *p = fam_realloc(f, NULL, n, 0);
        blk_add(p, n, f, 0, mode == MODE_DEBUG ? 2 : 0, "realloc(NULL)");
        return;
    }
    int k = (int)(sel / 8 % (unsigned)nblk);
    Blk *b = &blk[k];
    int f = fam_alt(b->fam, u8(in));
    if (n > b->size && live_bytes + (n - b->size) > BUDGET)
        n = n % 4097;
    TRACE("  %s realloc(block %u %p size %zu, %zu)\n", fam_name[f], b->id, (void *)b->p, b->size, n);
    blk_verify(b, "block before realloc");
    errno = 0;
    unsigned char *q = fam_realloc(f, b->p, n, b->align);
    if (f == F_LIBC && n == 0) {
        CHECK(q == NULL, "realloc(p, 0) returned %p, expected NULL (p freed)", (void *)q);
        blk_remove(k);
        return;
    }
    CHECK(q != NULL, "%s realloc(%p, %zu) returned NULL (errno %d)", fam_name[f], (void *)b->p, n,
          errno);
    size_t keep = b->size < n ? b->size : n;
    pat_check(q, keep, b->size, b->seed, blk_tag(b->id), "realloc lost contents:");
    if (mode == MODE_DEBUG && n > b->size)
        bytes_check(q, b->size, n < b->size + 65536 ? n : b->size + 65536, 0xCD,
                    "debug hooks: grown part not 0xCD:");
    CHECK(((uintptr_t)q & 15) == 0, "realloc returned %p, not 16-byte aligned", (void *)q);
    for (int i = 0; i < nblk; i++)
        CHECK(i == k || blk[i].p != q, "realloc returned %p, which is live (block %u)", (void *)q,
              blk[i].id);
    size_t u = usable_of(f, q);
    CHECK(u >= n, "realloc(%zu): usable size %zu", n, u);
    live_bytes = live_bytes - b->size + n;
    b->p = q;
    b->size = n;
    b->align = 0;
    b->fam = (uint8_t)f;
    pat_fill(b->p, b->size, b->seed, blk_tag(b->id));
}

static void op_free(In *in) {
    unsigned sel = u8(in);
    if (nblk == 0 || sel == 255) {
        int f = (int)(sel % NFAM);
        errno = 4321;
        fam_free(f, NULL);
        if (f == F_LIBC)
            CHECK(errno == 4321, "free(NULL) changed errno to %d", errno);
        return;
    }
    int k = (int)(sel % (unsigned)nblk);
    Blk *b = &blk[k];
    int f = fam_alt(b->fam, u8(in));
    TRACE("  %s free(block %u %p size %zu)\n", fam_name[f], b->id, (void *)b->p, b->size);
    blk_verify(b, "block before free");
    errno = 4321;
    fam_free(f, b->p);
    if (f == F_LIBC)
        CHECK(errno == 4321, "free changed errno to %d", errno);
    blk_remove(k);
}

static size_t pick_align(In *in) {
    unsigned s = u8(in);
    if (s < 200)
        return (size_t)1 << (s % 22);
    if (s < 230)
        return (size_t)1 << (u8(in) % 64);
    return u16(in);
}

static int is_pow2(size_t a) { return a && !(a & (a - 1)); }

static void op_aligned(In *in) {
    unsigned fn = u8(in) % 5;
    size_t align = pick_align(in);
    size_t n = budget_size(pick_size(in));
    if (nblk >= MAXBLK)
        return;
    int dbg = mode == MODE_DEBUG ? 2 : 0;
    int big = align > ((size_t)1 << BIG_ALIGN_SHIFT);
    /* In a hooked domain an aligned request is one hook malloc when it
     * succeeds, none when its arguments are refused; a failure for lack of
     * memory may or may not have reached the hook. */
    errno = 0;
    switch (fn) {
    case 0: {
        TRACE("  posix_memalign(%zu, %zu)\n", align, n);
        void *sentinel = (void *)(uintptr_t)0x5a5a5a50;
        void *p = sentinel;
        int r = (use_alias() ? a_posix_memalign : f_posix_memalign)(&p, align, n);
        if (!is_pow2(align) || align % sizeof(void *)) {
            CHECK(r == EINVAL && p == sentinel, "posix_memalign(align %zu): returned %d, out %p", align,
                  r, p);
            return;
        }
        if (big && r == ENOMEM) {
            CHECK(p == sentinel, "failed posix_memalign changed *out");
            hunchecked = 1;
            return;
        }
        CHECK(r == 0, "posix_memalign(%zu, %zu) returned %d", align, n, r);
        hexp(F_LIBC, H_MALLOC);
        blk_add(p, n, F_LIBC, align, dbg, "posix_memalign");
        return;
    }
    case 1: {
        TRACE("  aligned_alloc(%zu, %zu)\n", align, n);
        void *p = f_aligned_alloc(align, n);
        if (!is_pow2(align)) {
            CHECK(p == NULL && errno == EINVAL, "aligned_alloc(%zu): %p errno %d", align, p, errno);
            return;
        }
        if (big && p == NULL) {
            CHECK(errno == ENOMEM, "aligned_alloc failed with errno %d", errno);
            hunchecked = 1;
            return;
        }
        hexp(F_LIBC, H_MALLOC);
        blk_add(p, n, F_LIBC, align, dbg, "aligned_alloc");
        return;
    }
    case 2: {
        TRACE("  memalign(%zu, %zu)\n", align, n);
        void *p = (use_alias() ? a_memalign : f_memalign)(align, n);
        if (align > SIZE_MAX / 2 + 1) {
            CHECK(p == NULL && errno == EINVAL, "memalign(%zu): %p errno %d", align, p, errno);
            return;
        }
        size_t eff = align <= 16 ? 16 : align;
        while (!is_pow2(eff))
            eff += eff & -eff;
        if (eff > ((size_t)1 << BIG_ALIGN_SHIFT) && p == NULL) {
            CHECK(errno == ENOMEM, "memalign failed with errno %d", errno);
            hunchecked = 1;
            return;
        }
        hexp(F_LIBC, H_MALLOC);
        blk_add(p, n, F_LIBC, eff, dbg, "memalign");
        return;
    }
    case 3: {
        TRACE("  valloc(%zu)\n", n);
        void *p = (use_alias() ? a_valloc : f_valloc)(n);
        hexp(F_LIBC, H_MALLOC);
        blk_add(p, n, F_LIBC, 4096, dbg, "valloc");
        return;
    }
    default: {
        TRACE("  pvalloc(%zu)\n", n);
        size_t want = n == 0 ? 4096 : (n + 4095) & ~(size_t)4095;
        void *p = (use_alias() ? a_pvalloc : f_pvalloc)(n);
        CHECK(p != NULL, "pvalloc(%zu) returned NULL", n);
        size_t u = usable_of(F_LIBC, p);
        CHECK(u >= want, "pvalloc(%zu): usable size %zu < %zu", n, u, want);
        hexp(F_LIBC, H_MALLOC);
        blk_add(p, n, F_LIBC, 4096, dbg, "pvalloc");
        return;
    }
    }
}

static void op_usable(In *in) {
    if (nblk == 0) {
        CHECK(obm_usable_size(NULL) == 0 && f_malloc_usable_size(NULL) == 0,
              "usable size of NULL not 0");
        return;
    }
    unsigned sel = u8(in);
    int k = (int)(sel % (unsigned)nblk);
    Blk *b = &blk[k];
    size_t u = usable_of(b->fam, b->p);
    CHECK(u >= b->size, "usable size %zu < %zu", u, b->size);
    if ((sel & 0x80) && u > b->size && live_bytes + (u - b->size) <= BUDGET) {
        /* Writing up to the usable size is legal. */
        blk_verify(b, "block before claiming its usable size");
        live_bytes += u - b->size;
        b->size = u;
        pat_fill(b->p, b->size, b->seed, blk_tag(b->id));
    }
}

static void op_reallocarray(In *in) {
    unsigned sel = u8(in);
    size_t n = pick_size(in);
    size_t el = 1 + u8(in) % 64;
    int k = sel % 4 ? obj_domain_blk(sel) : -1;
    if (k < 0 && nblk >= MAXBLK)
        return;
    hexp(F_LIBC, H_REALLOC);
    if (k < 0) {
        n = budget_size(n);
        void *p = f_reallocarray(NULL, n / el, el);
        blk_add(p, n / el * el, F_LIBC, 0, mode == MODE_DEBUG ? 2 : 0, "reallocarray(NULL)");
        return;
    }
    Blk *b = &blk[k];
    if (n > b->size && live_bytes + (n - b->size) > BUDGET)
        n = n % 4097;
    size_t ne = n / el, nn = ne * el;
    blk_verify(b, "block before reallocarray");
    if (nn == 0) {
        hexpect[F_OBJ][H_REALLOC]--;
        hexp(F_LIBC, H_FREE);
    } else if (b->align > 16) {
        /* moved: a hook malloc and a hook free (see fam_realloc) */
        hexpect[F_OBJ][H_REALLOC]--;
        hexp(F_LIBC, H_MALLOC);
        hexp(F_LIBC, H_FREE);
    }
    unsigned char *q = f_reallocarray(b->p, ne, el);
    if (nn == 0) {
        CHECK(q == NULL, "reallocarray(p, %zu, %zu) returned %p, expected NULL", ne, el, (void *)q);
        blk_remove(k);
        return;
    }
    CHECK(q != NULL, "reallocarray(%zu, %zu) returned NULL", ne, el);
    size_t keep = b->size < nn ? b->size : nn;
    pat_check(q, keep, b->size, b->seed, blk_tag(b->id), "reallocarray lost contents:");
    CHECK(((uintptr_t)q & 15) == 0 && usable_of(F_LIBC, q) >= nn, "reallocarray result %p", (void *)q);
    live_bytes = live_bytes - b->size + nn;
    b->p = q;
    b->size = nn;
    b->align = 0;
    b->fam = F_LIBC;
    pat_fill(b->p, b->size, b->seed, blk_tag(b->id));
}

/* Requests that must fail: sizes above PTRDIFF_MAX, overflowing products,
 * bad alignments. */
static void op_overflow(In *in) {
    unsigned w = u8(in) % 10;
    int f = pick_fam(in);
    size_t h = pick_huge(in);
    int lib = f == F_LIBC;
    errno = 0;
    switch (w) {
    case 0: {
        TRACE("  %s malloc(huge %zu)\n", fam_name[f], h);
        void *p = fam_malloc(f, h);
        CHECK(p == NULL, "%s malloc(%zu) returned %p", fam_name[f], h, p);
        CHECK(!lib || errno == ENOMEM, "malloc(%zu): errno %d", h, errno);
        break;
    }
    case 1: {
        /* a product that overflows, or lands above PTRDIFF_MAX */
        size_t a = (size_t)2 + u32(in) % 1000000, b = h / a + 1 + u8(in);
        if (u8(in) & 1) {
            size_t t = a;
            a = b;
            b = t;
        }
        TRACE("  %s calloc(%zu, %zu)\n", fam_name[f], a, b);
        void *p = fam_calloc(f, a, b);
        CHECK(p == NULL, "%s calloc(%zu, %zu) returned %p", fam_name[f], a, b, p);
        CHECK(!lib || errno == ENOMEM, "calloc overflow: errno %d", errno);
        break;
    }
    case 2: {
        int k = nblk ? (int)(u8(in) % (unsigned)nblk) : -1;
        void *old = k >= 0 ? blk[k].p : NULL;
        if (k >= 0)
            f = fam_alt(blk[k].fam, u8(in)), lib = f == F_LIBC;
        TRACE("  %s realloc(%p, huge %zu)\n", fam_name[f], old, h);
        void *p = fam_realloc(f, old, h, k >= 0 ? blk[k].align : 0);
        CHECK(p == NULL, "%s realloc(%p, %zu) returned %p", fam_name[f], old, h, p);
        CHECK(!lib || errno == ENOMEM, "realloc(huge): errno %d", errno);
        if (k >= 0)
            blk_verify(&blk[k], "block after a failed realloc");
        break;
    }
    case 3: {
        int k = obj_domain_blk(u8(in));
        void *old = k >= 0 ? blk[k].p : NULL;
        size_t a = (size_t)2 + u16(in), b = SIZE_MAX / a + 1 + u8(in);
        TRACE("  reallocarray(%p, %zu, %zu)\n", old, a, b);
        hunchecked = 1;
        void *p = f_reallocarray(old, a, b);
        CHECK(p == NULL && errno == ENOMEM, "reallocarray(%p, %zu, %zu): %p errno %d", old, a, b, p,
              errno);
        if (k >= 0)
            blk_verify(&blk[k], "block after a failed reallocarray");
        break;
    }
    case 4: {
        size_t al = (size_t)16 << (u8(in) % 12);
        void *sentinel = (void *)(uintptr_t)0x5a5a5a50, *p = sentinel;
        TRACE("  posix_memalign(%zu, huge %zu)\n", al, h);
        hunchecked = 1;
        int r = f_posix_memalign(&p, al, h);
        CHECK(r == ENOMEM && p == sentinel, "posix_memalign(%zu, %zu): %d, out %p", al, h, r, p);
        break;
    }
    case 5: {
        size_t al = (size_t)16 << (u8(in) % 12);
        hunchecked = 1;
        void *p = (u8(in) & 1) ? f_aligned_alloc(al, h) : f_memalign(al, h);
        CHECK(p == NULL && errno == ENOMEM, "aligned_alloc/memalign(%zu, %zu): %p errno %d", al, h, p,
              errno);
        break;
    }
    case 6: {
        hunchecked = 1;
        int pv = u8(in) & 1;
        void *p = pv ? f_pvalloc(h) : f_valloc(h);
        CHECK(p == NULL && errno == ENOMEM, "%s(%zu): %p errno %d", pv ? "pvalloc" : "valloc", h, p,
              errno);
        break;
    }
    case 7: {
        /* posix_memalign: not a power of two, or not a multiple of sizeof(void *) */
        static const size_t bad[] = {0, 1, 2, 4, 3, 12, 24, 48, 4097, SIZE_MAX, ((size_t)1 << 63) + 8};
        size_t al = (u8(in) & 1) ? bad[u8(in) % NELEM(bad)] : (size_t)u16(in) * 8 + 8;
        if (is_pow2(al) && al % sizeof(void *) == 0)
            al += 8 * (al > 8);
        if (is_pow2(al) && al % sizeof(void *) == 0)
            al = 24;
        size_t n = pick_size(in) % 4097;
        void *sentinel = (void *)(uintptr_t)0x5a5a5a50, *p = sentinel;
        TRACE("  posix_memalign(bad %zu, %zu)\n", al, n);
        hunchecked = 1;
        int r = f_posix_memalign(&p, al, n);
        CHECK(r == EINVAL && p == sentinel, "posix_memalign(align %zu): %d, out %p", al, r, p);
        break;
    }
    case 8: {
        /* aligned_alloc: not a power of two */
        size_t al = (size_t)u16(in) * 2 + 3;
        if (u8(in) & 1)
            al = 0;
        hunchecked = 1;
        void *p = f_aligned_alloc(al, 64);
        CHECK(p == NULL && errno == EINVAL, "aligned_alloc(%zu): %p errno %d", al, p, errno);
        break;
    }
    default: {
        /* memalign: above SIZE_MAX/2 + 1 */
        size_t al = SIZE_MAX / 2 + 2 + u32(in);
        hunchecked = 1;
        void *p = f_memalign(al, 64);
        CHECK(p == NULL && errno == EINVAL, "memalign(%zu): %p errno %d", al, p, errno);
        break;
    }
    }
}

static void stats_sane(const obm_stats *s) {
    CHECK(s->num_classes == OBM_NUM_CLASSES, "num_classes %zu", s->num_classes);
    size_t sum = s->large_bytes;
    for (int c = 0; c < OBM_NUM_CLASSES; c++) {
        const obm_class_stats *cs = &s->classes[c];
        CHECK(cs->block_size % 16 == 0 && cs->block_size > 0, "class %d block size %zu", c,
              cs->block_size);
        CHECK(c == 0 || cs->block_size > s->classes[c - 1].block_size, "class sizes not increasing");
        CHECK(cs->allocations >= cs->blocks_in_use, "class %d: %zu allocations < %zu in use", c,
              cs->allocations, cs->blocks_in_use);
        sum += cs->blocks_in_use * cs->block_size;
    }
    CHECK(sum == s->bytes_in_use, "bytes_in_use %zu, classes and large blocks add up to %zu",
          s->bytes_in_use, sum);
    CHECK(s->arenas_in_use == s->arenas_allocated - s->arenas_freed,
          "arenas in use %zu != allocated %zu - freed %zu", s->arenas_in_use, s->arenas_allocated,
          s->arenas_freed);
    CHECK(s->peak_mapped >= s->bytes_mapped, "peak_mapped %zu < mapped %zu", s->peak_mapped,
          s->bytes_mapped);
    CHECK(s->arenas_peak >= s->arenas_in_use, "arenas_peak < in use");
    CHECK(s->large_allocations >= s->large_blocks, "large_allocations < large_blocks");
    CHECK(s->heaps >= 1, "no heaps");
}

/* Statistics around one malloc and one free in this thread. */
static void op_stats_delta(In *in) {
    static obm_stats s0, s1;
    int f = pick_fam(in);
    size_t n = budget_size(pick_size(in));
    if (mode == MODE_DEBUG || nblk >= MAXBLK)
        return;
    obm_get_stats(&s0);
    stats_sane(&s0);
    void *p = fam_malloc(f, n);
    obm_get_stats(&s1);
    stats_sane(&s1);
    CHECK(p != NULL, "malloc(%zu) NULL", n);
    size_t u = obm_usable_size(p);
    size_t maxclass = s0.classes[OBM_NUM_CLASSES - 1].block_size;
    int changed = -1;
    for (int c = 0; c < OBM_NUM_CLASSES; c++) {
        long da = (long)(s1.classes[c].allocations - s0.classes[c].allocations);
        long du = (long)(s1.classes[c].blocks_in_use - s0.classes[c].blocks_in_use);
        if (da || du) {
            CHECK(changed < 0 && da == 1 && du == 1,
                  "malloc(%zu): class %d allocations +%ld in use +%ld", n, c, da, du);
            changed = c;
        }
    }
    if (n <= maxclass) {
        CHECK(changed >= 0, "malloc(%zu): no class counted it", n);
        CHECK(s1.classes[changed].block_size == u && u >= n,
              "malloc(%zu): class of %zu bytes, usable %zu", n, s1.classes[changed].block_size, u);
        CHECK(s1.large_blocks == s0.large_blocks, "small malloc changed large_blocks");
    } else {
        CHECK(changed < 0, "large malloc(%zu) counted in class %d", n, changed);
        CHECK(s1.large_blocks == s0.large_blocks + 1 &&
                  s1.large_allocations == s0.large_allocations + 1 &&
                  s1.large_bytes == s0.large_bytes + u,
              "large malloc(%zu): large blocks %zu->%zu allocs %zu->%zu bytes %zu->%zu (usable %zu)",
              n, s0.large_blocks, s1.large_blocks, s0.large_allocations, s1.large_allocations,
              s0.large_bytes, s1.large_bytes, u);
    }
    CHECK(s1.bytes_in_use == s0.bytes_in_use + u, "malloc(%zu): bytes_in_use %zu -> %zu (usable %zu)",
          n, s0.bytes_in_use, s1.bytes_in_use, u);
    if (u8(in) & 1) {
        blk_add(p, n, f, 0, 0, "malloc");
        return;
    }
    fam_free(f, p);
    obm_get_stats(&s0);
    stats_sane(&s0);
    CHECK(s0.bytes_in_use == s1.bytes_in_use - u, "free: bytes_in_use %zu -> %zu (usable %zu)",
          s1.bytes_in_use, s0.bytes_in_use, u);
    if (changed >= 0)
        CHECK(s0.classes[changed].blocks_in_use == s1.classes[changed].blocks_in_use - 1,
              "free: class %d in use %zu -> %zu", changed, s1.classes[changed].blocks_in_use,
              s0.classes[changed].blocks_in_use);
    else
        CHECK(s0.large_blocks == s1.large_blocks - 1 && s0.large_bytes == s1.large_bytes - u,
              "free of a large block: large blocks %zu -> %zu", s1.large_blocks, s0.large_blocks);
}

static void op_stats(In *in) {
    static obm_stats s;
    unsigned w = u8(in);
    obm_get_stats(&s);
    stats_sane(&s);
    if (w & 1)
        obm_print_stats((w & 2) ? -1 : devnull);
}

struct te {
    int f, cnt;
    size_t n;
    void *out[8];
};

static void *te_body(void *arg) {
    struct te *t = arg;
    for (int i = 0; i < t->cnt; i++)
        t->out[i] = fam_malloc(t->f, t->n + (size_t)i);
    return NULL;
}

static void op_remote(In *in) {
    unsigned w = u8(in) % 4;
    hunchecked |= w == 3;
    switch (w) {
    case 0: { /* another thread frees one of our blocks */
        if (!nblk)
            return;
        int k = (int)(u8(in) % (unsigned)nblk);
        int f = fam_alt(blk[k].fam, u8(in));
        TRACE("  remote %s free(block %u)\n", fam_name[f], blk[k].id);
        blk_verify(&blk[k], "block before a remote free");
        worker_call(W_FREE, f, blk[k].p, 0, 0);
        blk_remove(k);
        return;
    }
    case 1: { /* another thread allocates a block we free later */
        int f = pick_fam(in);
        size_t n = budget_size(pick_size(in));
        if (nblk >= MAXBLK)
            return;
        TRACE("  remote %s malloc(%zu)\n", fam_name[f], n);
        void *p = worker_call(W_MALLOC, f, NULL, n, 0);
        blk_add(p, n, f, 0, mode == MODE_DEBUG ? 2 : 0, "remote malloc");
        return;
    }
    case 2: { /* another thread resizes one of our blocks */
        if (!nblk)
            return;
        int k = (int)(u8(in) % (unsigned)nblk);
        Blk *b = &blk[k];
        int f = fam_alt(b->fam, u8(in));
        size_t n = pick_size(in);
        if (n > b->size && live_bytes + (n - b->size) > BUDGET)
            n %= 4097;
        if (n == 0)
            n = 1;
        TRACE("  remote %s realloc(block %u, %zu)\n", fam_name[f], b->id, n);
        blk_verify(b, "block before a remote realloc");
        unsigned char *q = worker_call(W_REALLOC, f, b->p, n, b->align);
        CHECK(q != NULL, "remote realloc(%zu) returned NULL", n);
        size_t keep = b->size < n ? b->size : n;
        pat_check(q, keep, b->size, b->seed, blk_tag(b->id), "remote realloc lost contents:");
        CHECK(usable_of(f, q) >= n, "remote realloc usable size");
        live_bytes = live_bytes - b->size + n;
        b->p = q;
        b->size = n;
        b->align = 0;
        b->fam = (uint8_t)f;
        pat_fill(b->p, b->size, b->seed, blk_tag(b->id));
        return;
    }
    default: { /* a short-lived thread allocates blocks and exits */
        static int per_input;
        static unsigned long per_input_no;
        if (per_input_no != input_no)
            per_input_no = input_no, per_input = 0;
        if (per_input++ >= 2)
            return;
        int f = pick_fam(in);
        int cnt = 1 + (int)(u8(in) % 8);
        size_t n = pick_size(in) % 4097;
        if (nblk + cnt > MAXBLK)
            return;
        struct te t = {f, cnt, n, {0}};
        pthread_t th;
        TRACE("  thread allocates %d x %s(%zu) and exits\n", cnt, fam_name[f], n);
        if (pthread_create(&th, NULL, te_body, &t) != 0)
            return;
        pthread_join(th, NULL);
        for (int i = 0; i < cnt; i++)
            blk_add(t.out[i], n + (size_t)i, f, 0, mode == MODE_DEBUG ? 2 : 0, "exited thread's malloc");
        return;
    }
    }
}

static void op_getalloc(In *in) {
    int d = (int)(u8(in) % 3);
    unsigned w = u8(in);
    obm_allocator a;
    memset(&a, 0, sizeof a);
    obm_get_allocator((obm_domain)d, &a);
    CHECK(a.malloc && a.calloc && a.realloc && a.free, "obm_get_allocator(%d): a NULL function", d);
    if (mode == MODE_HOOKS)
        CHECK(a.ctx == &hctx[d] && a.malloc == h_malloc && a.free == h_free,
              "obm_get_allocator(%d) does not return the installed hooks", d);
    if (w & 1) {
        /* An incomplete table is refused (with a message) and changes nothing. */
        obm_allocator bad = a, now;
        if (w & 2)
            bad.free = NULL;
        else
            bad.malloc = NULL;
        quiet_begin();
        obm_set_allocator((obm_domain)d, &bad);
        quiet_end();
        obm_get_allocator((obm_domain)d, &now);
        CHECK(memcmp(&now, &a, sizeof a) == 0, "obm_set_allocator accepted an incomplete table");
        return;
    }
    /* Allocate through the table itself: a block of domain d. */
    size_t n = budget_size(pick_size(in));
    if (nblk >= MAXBLK)
        return;
    hexpect[d][H_MALLOC]++;
    void *p = a.malloc(a.ctx, n);
    blk_add(p, n, d, 0, mode == MODE_DEBUG ? 2 : 0, "allocator table malloc");
}

static void op_verify_blocks(In *in) {
    (void)in;
    for (int k = 0; k < nblk; k++)
        blk_verify(&blk[k], "block");
}

/* --- objects --- */

static int pick_kind(In *in) { return (int)(u8(in) % NKINDS); }

static size_t pick_extra(In *in) {
    unsigned s = u8(in);
    if (s < 128)
        return 0;
    if (s < 220)
        return u16(in) % 600;
    if (s < 250)
        return u16(in) % 20000;
    return 131072 + u16(in);
}

static void op_new(In *in) {
    int kind = pick_kind(in);
    size_t extra = pick_extra(in);
    int var = extra != 0 || (u8(in) & 1);
    int i = obj_new(kind, extra, var);
    TRACE("  new %s extra %zu -> object %d\n", types[kind]->name, extra, i);
}

static void op_new_bad(In *in) {
    unsigned w = u8(in) % 4;
    quiet_begin();
    obm_object *o = w == 3 ? obm_new(NULL) : obm_new_var(&bad_types[w], u8(in));
    quiet_end();
    CHECK(o == NULL, "obm_new with a bad type (%u) returned %p", w, (void *)o);
}

static void op_incref(In *in) {
    int i = live_pick(in, 0);
    unsigned w = u8(in);
    if (i < 0) {
        obm_xincref(NULL);
        obm_xdecref(NULL);
        CHECK(obm_refcnt(NULL) == 0, "obm_refcnt(NULL) != 0");
        return;
    }
    TRACE("  incref %d\n", i);
    if (w & 1)
        obm_xincref(&mo[i].o->ob_base);
    else
        obm_incref(&mo[i].o->ob_base);
    mo[i].ext++;
    mo[i].rc++;
}

static void op_decref(In *in) {
    int i = live_pick(in, 1);
    unsigned w = u8(in);
    if (i < 0)
        return;
    TRACE("  decref %d (rc %ld)\n", i, mo[i].rc);
    obj_decref(i, w & 1);
}

static void op_set_slot(In *in) {
    int i = live_pick(in, 0);
    unsigned k = u8(in) % NSLOT;
    unsigned w = u8(in);
    int j = (w & 7) == 0 ? -1 : live_pick(in, 0);
    if (i < 0 || mo[i].kind == K_PLAIN || mo[i].kind == K_EPH)
        return;
    TRACE("  object %d slot %u = %d\n", i, k, j);
    obj_set_slot(i, (int)k, j);
}

static void op_clear_slots(In *in) {
    int i = live_pick(in, 0);
    if (i < 0)
        return;
    TRACE("  clear slots of %d\n", i);
    obj_clear_slots(i);
}

static void op_track(In *in) {
    int i = live_pick(in, 1);
    if (i < 0)
        return;
    TRACE("  track %d (%s)\n", i, kind_name(mo[i].kind));
    if (mode == MODE_DEBUG && mo[i].tracked)
        return; /* a misuse the debug hooks report */
    if (!kind_gc[mo[i].kind]) {
        quiet_begin(); /* reported and ignored */
        obj_track(i);
        quiet_end();
        return;
    }
    obj_track(i);
}

static void op_untrack(In *in) {
    int i = live_pick(in, 0);
    if (i < 0)
        return;
    TRACE("  untrack %d\n", i);
    obm_gc_untrack(&mo[i].o->ob_base);
    mo[i].tracked = 0;
}

static void op_collect(In *in) {
    unsigned s = u8(in);
    int g = s < 240 ? (int)(s % 3) : s < 250 ? 3 : s < 253 ? -1 : (int)(s * 1000);
    TRACE("  collect(%d)\n", g);
    gc_collect(g);
}

static void op_enable(In *in) {
    unsigned w = u8(in) % 3;
    if (w == 0) {
        obm_gc_enable();
        m_enabled = 1;
    } else if (w == 1) {
        obm_gc_disable();
        m_enabled = 0;
    }
}

static int pick_threshold(In *in) {
    static const int t[] = {0, 1, 2, 3, 4, 5, 7, 10, 25, 700, -1, INT_MAX, INT_MIN};
    return t[u8(in) % NELEM(t)];
}

static void op_threshold(In *in) {
    int t0 = pick_threshold(in), t1 = pick_threshold(in), t2 = pick_threshold(in);
    TRACE("  set_threshold(%d, %d, %d)\n", t0, t1, t2);
    obm_gc_set_threshold(t0, t1, t2);
    m_thr[0] = t0;
    m_thr[1] = t1;
    m_thr[2] = t2;
}

static void op_freeze(In *in) {
    unsigned w = u8(in) & 1;
    TRACE("  %s\n", w ? "freeze" : "unfreeze");
    if (w) {
        obm_gc_freeze();
        for (int i = 0; i < nobj; i++)
            if (mo[i].alive && mo[i].tracked)
                mo[i].gen = 3;
        m_count[0] = 0;
    } else {
        obm_gc_unfreeze();
        for (int i = 0; i < nobj; i++)
            if (mo[i].alive && mo[i].tracked && mo[i].gen == 3)
                mo[i].gen = 2;
    }
}

static void op_set_debug(In *in) {
    static const unsigned f[] = {0, OBM_GC_DEBUG_SAVEALL, OBM_GC_DEBUG_UNCOLLECTABLE,
                                 OBM_GC_DEBUG_LEAK, OBM_GC_DEBUG_STATS, OBM_GC_DEBUG_STATS | OBM_GC_DEBUG_SAVEALL,
                                 OBM_GC_DEBUG_COLLECTABLE, 64, 0x80000000u};
    unsigned v = f[u8(in) % NELEM(f)];
    TRACE("  set_debug(%u)\n", v);
    obm_gc_set_debug(v);
    m_debug = v;
}

static void op_garbage(In *in) {
    unsigned w = u8(in) % 3;
    if (w == 0) {
        TRACE("  garbage_clear (%d)\n", m_ngarbage);
        gc_garbage_clear();
    } else {
        size_t i = w == 1 ? (size_t)u8(in) : SIZE_MAX - u8(in);
        obm_object *o = obm_gc_garbage_get(i);
        CHECK((o != NULL) == (i < (size_t)m_ngarbage), "garbage_get(%zu) = %p with %d entries", i,
              (void *)o, m_ngarbage);
    }
}

static void op_callback(In *in) {
    unsigned w = u8(in);
    int who = 1 + (int)((w >> 1) & 1);
    int ctx = (int)((w >> 2) & 3);
    if ((w & 0xF0) == 0xF0) {
        int r = obm_gc_callback_add(NULL, &cb_ctx[0]);
        CHECK(r == -1, "obm_gc_callback_add(NULL) returned %d", r);
        return;
    }
    if (w & 1) {
        if (m_ncbs >= MAXCB)
            return;
        TRACE("  callback_add(%d, %d)\n", who, ctx);
        int r = obm_gc_callback_add(cb_fn(who), &cb_ctx[ctx]);
        CHECK(r == 0, "obm_gc_callback_add returned %d", r);
        m_cbs[m_ncbs].who = who;
        m_cbs[m_ncbs].ctx = ctx;
        m_ncbs++;
    } else {
        TRACE("  callback_remove(%d, %d)\n", who, ctx);
        int r = obm_gc_callback_remove(cb_fn(who), &cb_ctx[ctx]);
        int found = -1;
        for (int i = 0; i < m_ncbs; i++)
            if (m_cbs[i].who == who && m_cbs[i].ctx == ctx) {
                found = i;
                break;
            }
        CHECK(r == (found >= 0 ? 0 : -1), "obm_gc_callback_remove returned %d, expected %d", r,
              found >= 0 ? 0 : -1);
        if (found >= 0) {
            for (int i = found; i + 1 < m_ncbs; i++)
                m_cbs[i] = m_cbs[i + 1];
            m_ncbs--;
        }
    }
}

static void op_get_objects(In *in) {
    unsigned s = u8(in);
    int g = s < 200 ? (int)(s % 4) - 1 : s < 250 ? 3 : -2;
    v_reset(in);
    if ((s & 0x0F) == 0x0F) {
        int r = obm_gc_get_objects(0, NULL, NULL);
        CHECK(r == -1, "get_objects with a NULL visitor returned %d", r);
        return;
    }
    int r = obm_gc_get_objects(g, v_intro, &V);
    if (g < -1 || g > 2) {
        CHECK(r == -1 && V.calls == 0, "get_objects(%d) returned %d", g, r);
        return;
    }
    int total = 0;
    for (int i = 0; i < nobj; i++)
        if (mo[i].alive && mo[i].tracked && mo[i].gen != 3 && (g == -1 || mo[i].gen == g))
            total++;
    v_expect(r, total, "get_objects");
    int lim = V.calls < (int)NELEM(V.order) ? V.calls : (int)NELEM(V.order);
    for (int k = 0; k < lim; k++) {
        MObj *m = &mo[V.order[k]];
        CHECK(m->tracked && m->gen != 3 && (g == -1 || m->gen == g),
              "get_objects(%d) visited object %d of generation %d", g, V.order[k], m->gen);
    }
}

static void op_get_referents(In *in) {
    int i = live_pick(in, 0);
    v_reset(in);
    if (i < 0) {
        CHECK(obm_gc_get_referents(NULL, v_intro, &V) == 0, "get_referents(NULL) not 0");
        return;
    }
    obm_object *o = &mo[i].o->ob_base;
    if ((u8(in) & 15) == 0) {
        CHECK(obm_gc_get_referents(o, NULL, NULL) == -1, "get_referents NULL visitor not -1");
        return;
    }
    int want[NSLOT], total = 0;
    if (kind_gc[mo[i].kind])
        for (int k = 0; k < NSLOT; k++)
            if (mo[i].slot[k] >= 0)
                want[total++] = mo[i].slot[k];
    int r = obm_gc_get_referents(o, v_intro, &V);
    v_expect(r, total, "get_referents");
    for (int k = 0; k < V.calls; k++)
        CHECK(V.order[k] == want[k], "get_referents of %d: visit %d is %d, expected %d", i, k,
              V.order[k], want[k]);
}

static void op_get_referrers(In *in) {
    int i = live_pick(in, 0);
    v_reset(in);
    if (i < 0)
        return;
    obm_object *o = &mo[i].o->ob_base;
    if ((u8(in) & 15) == 0) {
        CHECK(obm_gc_get_referrers(o, NULL, NULL) == -1, "get_referrers NULL visitor not -1");
        return;
    }
    static int want[MAXOBJ];
    int total = 0;
    for (int j = 0; j < nobj; j++) {
        want[j] = 0;
        if (!mo[j].alive || !mo[j].tracked || mo[j].gen == 3)
            continue;
        for (int k = 0; k < NSLOT; k++)
            if (mo[j].slot[k] == i)
                want[j] = 1;
        total += want[j];
    }
    int r = obm_gc_get_referrers(o, v_intro, &V);
    v_expect(r, total, "get_referrers");
    int lim = V.calls < (int)NELEM(V.order) ? V.calls : (int)NELEM(V.order);
    for (int k = 0; k < lim; k++) {
        CHECK(want[V.order[k]] == 1, "get_referrers(%d) visited %d (not a referrer, or twice)", i,
              V.order[k]);
        want[V.order[k]] = 2;
    }
}

static void op_lock(In *in) {
    unsigned w = u8(in) & 1;
    if (w && lock_depth < 8) {
        obm_lock();
        lock_depth++;
    } else if (!w && lock_depth > 0) {
        obm_unlock();
        lock_depth--;
    }
}

static void op_verify_obj(In *in) {
    int i = live_pick(in, 0);
    if (i >= 0 && mo[i].kind != K_EPH)
        payload_check(mo[i].o, i, "verify");
}

/* Weak references, immortal objects */

static void w_callback(obm_weakref *r, void *ctx) {
    int w = (int)((int *)ctx - wr_ctx);
    CHECK(w >= 0 && w < nwr && (mw[w].r == r || mw[w].r == NULL), "weakref callback with ctx %p ref %p", ctx, (void *)r);
    CHECK(obm_weakref_get(r) == NULL, "weakref %d not cleared in its callback", w);
    CHECK(obm_refcnt((obm_object *)r) >= 1, "weakref %d not held during its callback", w);
    act_wcb[w]++;
}

static void wr_drop(int w) {
    TRACE("  drop weakref %d\n", w);
    obm_decref((obm_object *)mw[w].r);
    mw[w].alive = 0;
    /* A weakref is a GC object: its death counts like one. */
    if (m_count[0] > 0)
        m_count[0]--;
}

static void op_weakref(In *in) {
    unsigned w = u8(in);
    if ((w & 3) == 3 && nwr > 0) {
        int k = (int)(u8(in) % (unsigned)nwr);
        if (mw[k].alive)
            wr_drop(k);
        return;
    }
    int i = live_pick(in, 0);
    if (i < 0 || nwr >= MAXWR) {
        errno = 0;
        CHECK(obm_weakref_new(NULL, NULL, NULL) == NULL && errno == EINVAL,
              "obm_weakref_new(NULL) did not fail with EINVAL");
        return;
    }
    int has_cb = (w >> 2) & 1;
    obm_object *o = &mo[i].o->ob_base;
    if (!kind_weak(mo[i].kind)) {
        errno = 0;
        CHECK(obm_weakref_new(o, w_callback, NULL) == NULL && errno == EINVAL,
              "obm_weakref_new of a %s object did not fail with EINVAL", kind_name(mo[i].kind));
        return;
    }
    int k = nwr++;
    TRACE("  weakref %d -> object %d%s\n", k, i, has_cb ? " with a callback" : "");
    mw[k] = (MWr){NULL, i, has_cb, 1, 0};
    act_wcb[k] = 0;
    /* Only a weakref with a callback is tracked. Registered before the
     * call: tracking it may run a collection. */
    if (has_cb)
        m_count[0] = sat_inc(m_count[0]);
    obm_weakref *r = obm_weakref_new(o, has_cb ? w_callback : NULL, &wr_ctx[k]);
    CHECK(r != NULL, "obm_weakref_new returned NULL");
    mw[k].r = r;
    CHECK(obm_gc_is_tracked((obm_object *)r) == has_cb, "a new weakref %s a callback is %stracked",
          has_cb ? "with" : "without", has_cb ? "not " : "");
    CHECK(obm_refcnt((obm_object *)r) == 1, "a new weakref has refcount %td",
          obm_refcnt((obm_object *)r));
    if (has_cb && m_count[0] > m_thr[0] && m_thr[0] != 0 && m_enabled)
        m_collect_generations();
    /* The harness keeps its weakrefs out of the collector's lists (they
     * would show up in get_objects); untracked, they count as reachable. */
    obm_gc_untrack((obm_object *)r);
    check_cblog();
}

/* Immortal ephemerons are left out: one whose key is immortal too would
 * keep its value forever, which the end of an input cannot release. */
static void op_immortal(In *in) {
    unsigned w = u8(in);
    if ((w & 7) == 7) {
        for (int i = 0; i < nobj; i++)
            if (mo[i].alive && mo[i].tracked && mo[i].gen == 3 && mo[i].kind == K_EPH)
                return;
        size_t want = 0;
        for (int i = 0; i < nobj; i++)
            if (mo[i].alive && mo[i].tracked && mo[i].gen == 3) {
                mo[i].immortal = 1;
                want++;
            }
        size_t got = obm_gc_immortalize_frozen();
        TRACE("  immortalize_frozen -> %zu\n", got);
        CHECK(got == want, "obm_gc_immortalize_frozen returned %zu, expected %zu", got, want);
        return;
    }
    int i = live_pick(in, 0);
    if (i >= 0 && mo[i].kind == K_EPH)
        return;
    if (i < 0) {
        obm_immortalize(NULL);
        CHECK(obm_is_immortal(NULL) == 0, "obm_is_immortal(NULL) != 0");
        return;
    }
    TRACE("  immortalize %d\n", i);
    obm_immortalize(&mo[i].o->ob_base);
    mo[i].immortal = 1;
}

/* Ephemerons (args: w; the key; the value unless w & 3 == 0, which makes
 * it NULL; w & 0xF0 == 0xF0 checks the EINVAL cases instead). Each is
 * an object of the model (K_EPH: slot 0 holds the value, `key` the key),
 * owned by the harness and left tracked, so that it can be garbage, be
 * another ephemeron's value (chains) and be referenced by objects. */
static void op_ephemeron(In *in) {
    unsigned w = u8(in);
    int i = live_pick(in, 0);
    int j = (w & 3) == 0 ? -1 : live_pick(in, 0);
    obm_object *key = i >= 0 ? &mo[i].o->ob_base : NULL;
    obm_object *val = j >= 0 ? &mo[j].o->ob_base : NULL;
    if ((w & 0xF0) == 0xF0 || i < 0 || !kind_weak(mo[i].kind)) {
        errno = 0;
        CHECK(obm_ephemeron_new(NULL, val) == NULL && errno == EINVAL,
              "obm_ephemeron_new(NULL, value) did not fail with EINVAL");
        errno = 0;
        CHECK(obm_ephemeron_key(NULL) == NULL && errno == EINVAL &&
                  obm_ephemeron_value(NULL) == NULL,
              "obm_ephemeron_key/value(NULL) did not fail with EINVAL");
        if (i < 0 || nobj >= MAXOBJ)
            return;
        if (!kind_weak(mo[i].kind)) {
            errno = 0;
            quiet_begin(); /* the debug hooks may report the bad key */
            obm_object *e = obm_ephemeron_new(key, val);
            quiet_end();
            CHECK(e == NULL && errno == EINVAL,
                  "obm_ephemeron_new with a %s key did not fail with EINVAL", kind_name(mo[i].kind));
        }
        if (mo[i].kind != K_EPH) {
            errno = 0;
            CHECK(obm_ephemeron_key(key) == NULL && errno == EINVAL,
                  "obm_ephemeron_key of a %s object did not fail with EINVAL", kind_name(mo[i].kind));
            errno = 0;
            CHECK(obm_ephemeron_value(key) == NULL && errno == EINVAL,
                  "obm_ephemeron_value of a %s object did not fail with EINVAL",
                  kind_name(mo[i].kind));
        }
        return;
    }
    if (nobj >= MAXOBJ)
        return;
    int k = nobj++;
    neph++;
    TRACE("  ephemeron %d: key %d value %d\n", k, i, j);
    MObj *m = &mo[k];
    memset(m, 0, sizeof *m);
    m->kind = K_EPH;
    m->alive = 1;
    m->rc = m->ext = 1;
    m->key = i;
    for (int s = 0; s < NSLOT; s++)
        m->slot[s] = -1;
    m->slot[0] = j;
    if (j >= 0)
        mo[j].rc++;
    act_freed[k] = act_fin[k] = act_resc[k] = 0;
    obm_object *e = obm_ephemeron_new(key, val);
    CHECK(e != NULL, "obm_ephemeron_new returned NULL");
    m->o = (FObj *)e;
    CHECK(obm_refcnt(e) == 1 && obm_gc_is_tracked(e) == 1,
          "a new ephemeron has refcount %td, tracked %d", obm_refcnt(e), obm_gc_is_tracked(e));
    /* obm_ephemeron_new tracks it: the count, maybe a collection. */
    m_count[0] = sat_inc(m_count[0]);
    if (m_count[0] > m_thr[0] && m_thr[0] != 0 && m_enabled)
        m_collect_generations();
    m->tracked = 1;
    m->gen = 0;
    check_cblog();
}

/* Builds a chain or ring of new objects in one operation (deep structures
 * for the trashcan, big cycles for the collector). */
static void op_chain(In *in) {
    unsigned kinds = u8(in);
    int len = 1 + (int)(u8(in) % 80);
    unsigned fl = u8(in);
    int ring = fl & 1, track = fl & 2, keep_head = fl & 4, reverse = fl & 8, slot = (int)((fl >> 4) & 3);
    int first = nobj;
    TRACE("  chain of %d (kinds %u flags %u)\n", len, kinds, fl);
    for (int t = 0; t < len; t++) {
        int kind = (kinds >> ((t % 4) * 2)) & 3; /* K_GC..K_GC_NOCLEAR */
        if (fl & 0x40)
            kind = (t % 3 == 2) ? K_LEAF + (int)((kinds >> (t % 8)) % 3) : kind;
        if (obj_new(kind, 0, 0) < 0)
            break;
    }
    int made = nobj - first;
    for (int t = 0; t + 1 < made; t++)
        obj_set_slot(first + t, slot, first + t + 1);
    if (ring && made > 0)
        obj_set_slot(first + made - 1, slot, first);
    if (track)
        for (int t = 0; t < made; t++)
            if (kind_gc[mo[first + t].kind])
                obj_track(first + t);
    for (int u = 0; u < made; u++) {
        int t = reverse ? made - 1 - u : u;
        if (keep_head && t == 0)
            continue;
        if (mo[first + t].alive && mo[first + t].ext > 0)
            obj_decref(first + t, 0);
    }
}

/* ------------------------------------------------------------------------ */
/* Dispatch */

enum { CAT_ALLOC, CAT_OBJ };
static const struct {
    const char *name;
    OpFn fn;
    int cat;
} ops[] = {
    {"malloc", op_malloc, CAT_ALLOC},
    {"calloc", op_calloc, CAT_ALLOC},
    {"realloc", op_realloc, CAT_ALLOC},
    {"free", op_free, CAT_ALLOC},
    {"aligned", op_aligned, CAT_ALLOC},
    {"usable", op_usable, CAT_ALLOC},
    {"reallocarray", op_reallocarray, CAT_ALLOC},
    {"overflow", op_overflow, CAT_ALLOC},
    {"stats_delta", op_stats_delta, CAT_ALLOC},
    {"stats", op_stats, CAT_ALLOC},
    {"remote", op_remote, CAT_ALLOC},
    {"getalloc", op_getalloc, CAT_ALLOC},
    {"verify_blocks", op_verify_blocks, CAT_ALLOC},
    {"new", op_new, CAT_OBJ},
    {"new_bad", op_new_bad, CAT_OBJ},
    {"incref", op_incref, CAT_OBJ},
    {"decref", op_decref, CAT_OBJ},
    {"set_slot", op_set_slot, CAT_OBJ},
    {"clear_slots", op_clear_slots, CAT_OBJ},
    {"track", op_track, CAT_OBJ},
    {"untrack", op_untrack, CAT_OBJ},
    {"collect", op_collect, CAT_OBJ},
    {"enable", op_enable, CAT_OBJ},
    {"threshold", op_threshold, CAT_OBJ},
    {"freeze", op_freeze, CAT_OBJ},
    {"set_debug", op_set_debug, CAT_OBJ},
    {"garbage", op_garbage, CAT_OBJ},
    {"callback", op_callback, CAT_OBJ},
    {"get_objects", op_get_objects, CAT_OBJ},
    {"get_referents", op_get_referents, CAT_OBJ},
    {"get_referrers", op_get_referrers, CAT_OBJ},
    {"lock", op_lock, CAT_OBJ},
    {"verify_obj", op_verify_obj, CAT_OBJ},
    {"chain", op_chain, CAT_OBJ},
    {"weakref", op_weakref, CAT_OBJ},
    {"immortal", op_immortal, CAT_OBJ},
    {"ephemeron", op_ephemeron, CAT_OBJ},
};
#define NOPS ((int)NELEM(ops))

static void run_op(int k, In *in) {
    op_name = ops[k].name;
    TRACE("op #%lu %s\n", op_index, op_name);
    /* The collector's DEBUG_STATS / DEBUG_COLLECTABLE lines go to /dev/null. */
    int noisy = ops[k].cat == CAT_OBJ && (m_debug & (OBM_GC_DEBUG_STATS | OBM_GC_DEBUG_COLLECTABLE));
    if (noisy)
        quiet_begin();
    if (ops[k].cat == CAT_ALLOC)
        hook_begin();
    ops[k].fn(in);
    if (ops[k].cat == CAT_ALLOC)
        hook_end();
    if (noisy)
        quiet_end();
    if (ops[k].cat == CAT_OBJ)
        check_gc();
}

/* ------------------------------------------------------------------------ */
/* Start and end of an input */

static void begin_input(void) {
    input_no++;
    epoch = (uint32_t)input_no * 2654435761u | 1;
    op_index = 0;
    nobj = nblk = nwr = neph = 0;
    live_bytes = 0;
    m_ngarbage = m_ncbs = 0;
    m_depth = m_nlater = m_unc_order = 0;
    n_act = n_exp = 0;
    lock_depth = 0;
    alias_turn = 0;
    obm_gc_set_threshold(700, 10, 10);
    obm_gc_enable();
    obm_gc_set_debug(0);
    m_thr[0] = 700;
    m_thr[1] = m_thr[2] = 10;
    m_enabled = 1;
    m_debug = 0;
    m_pending = m_total = 0; /* the previous input ended with a full collection of nothing */
    obm_gc_get_count(m_count);
    CHECK(m_count[0] == 0 && m_count[1] == 0 && m_count[2] == 0, "gc count %d %d %d at the start",
          m_count[0], m_count[1], m_count[2]);
    obm_gc_get_stats(m_stats);
    CHECK(obm_gc_get_freeze_count() == 0 && obm_gc_garbage_count() == 0,
          "frozen or garbage objects left at the start");
}

static int count_visit(obm_object *o, void *arg) {
    (void)o;
    (*(int *)arg)++;
    return 0;
}

static void end_input(void) {
    op_name = "cleanup";
    while (lock_depth > 0) {
        obm_unlock();
        lock_depth--;
    }
    if (m_debug & (OBM_GC_DEBUG_STATS | OBM_GC_DEBUG_COLLECTABLE))
        quiet_begin();
    obm_gc_unfreeze();
    for (int i = 0; i < nobj; i++)
        if (mo[i].alive && mo[i].tracked && mo[i].gen == 3)
            mo[i].gen = 2;
    obm_gc_set_debug(0);
    m_debug = 0;
    quiet_end();
    while (m_ncbs > 0) {
        m_ncbs--;
        CHECK(obm_gc_callback_remove(cb_fn(m_cbs[m_ncbs].who), &cb_ctx[m_cbs[m_ncbs].ctx]) == 0,
              "callback_remove at cleanup");
    }
    check_gc();
    /* Weak references first (each drop counts a freed GC object). */
    for (int w = 0; w < nwr; w++)
        if (mw[w].alive)
            wr_drop(w);
    /* Immortal objects stay (leaked by design): they drop what they own and
     * leave the collector. */
    for (int i = 0; i < nobj; i++)
        if (mo[i].alive && mo[i].immortal) {
            obj_clear_slots(i);
            while (mo[i].ext > 0)
                obj_decref(i, 0);
            obm_gc_untrack(&mo[i].o->ob_base);
            mo[i].tracked = 0;
        }
    check_gc();
    for (int pass = 0;; pass++) {
        gc_garbage_clear();
        check_gc();
        for (int i = 0; i < nobj; i++)
            if (mo[i].alive)
                obj_clear_slots(i);
        check_gc();
        for (int i = 0; i < nobj; i++)
            while (mo[i].alive && mo[i].ext > 0)
                obj_decref(i, 0);
        check_gc();
        gc_collect(2);
        check_gc();
        int alive = 0;
        for (int i = 0; i < nobj; i++)
            alive += mo[i].alive && !mo[i].immortal;
        if (!alive)
            break;
        CHECK(pass < 4, "%d objects still alive after cleanup", alive);
    }
    int left = 0;
    CHECK(obm_gc_get_objects(-1, count_visit, &left) == 0 && left == 0,
          "%d objects still tracked after cleanup", left);
    op_name = "cleanup-blocks";
    hook_begin();
    while (nblk > 0) {
        blk_verify(&blk[nblk - 1], "block at cleanup");
        fam_free(blk[nblk - 1].fam, blk[nblk - 1].p);
        blk_remove(nblk - 1);
    }
    hook_end();
    /* Reset the collector: counts and long-lived totals back to 0. */
    obm_gc_set_threshold(700, 10, 10);
    obm_gc_enable();
    n_act = n_exp = 0;
    obm_gc_collect(2);
    n_act = 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *m = getenv("OBMEM_FUZZ_MODE");
    const char *om = getenv("OBMEM_MALLOC");
    if (m && strcmp(m, "hooks") == 0)
        mode = MODE_HOOKS;
    else if ((m && strcmp(m, "debug") == 0) ||
             (om && (strcmp(om, "debug") == 0 || strcmp(om, "pymalloc_debug") == 0)))
        mode = MODE_DEBUG;
    else
        mode = MODE_PLAIN;
    trace_on = getenv("OBMEM_FUZZ_TRACE") != NULL;
    devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (mode == MODE_HOOKS) {
        for (int d = 0; d < 3; d++) {
            hctx[d].dom = d;
            obm_get_allocator((obm_domain)d, &hctx[d].under);
            obm_allocator a = {&hctx[d], h_malloc, h_calloc, h_realloc, h_free};
            obm_set_allocator((obm_domain)d, &a);
        }
    } else if (mode == MODE_DEBUG) {
        obm_setup_debug_hooks();
    }
    if (obm_gc_callback_add(cb_obs, &obs_ctx) != 0) {
        say("obmem fuzz: cannot register the gc callback\n");
        abort();
    }
    worker_start();
    obm_gc_collect(2);
    n_act = 0;
    return 0;
}

#define MAXOPS 3000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    In in = {data, size, 0};
    begin_input();
    while (in.i < in.n && op_index < MAXOPS) {
        int k = (int)(u8(&in) % (unsigned)NOPS);
        run_op(k, &in);
        op_index++;
    }
    end_input();
    return 0;
}
