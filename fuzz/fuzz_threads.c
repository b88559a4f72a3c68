/*
 * fuzz/fuzz_threads.c: a libFuzzer target for obmem's cross-thread paths:
 * remote frees, frees into the heaps of exited threads, adoption of
 * abandoned heaps, cross-thread realloc, statistics read while other
 * threads allocate.
 *
 * An input is decoded, before anything runs, into a script: K = 2..4 worker
 * slots, a list of operations each tagged with the slot that runs it, cut
 * into phases by barrier operations. In a phase every worker runs its own
 * operations, either all at once ("concurrent": real races) or one operation
 * at a time in the order of the input ("sequenced": a token passed from
 * thread to thread, deterministic, so that libFuzzer sees stable coverage of
 * the cross-thread paths). Operations: every allocation function (malloc
 * family, aligned allocation, the three obm_* domains) with tiny, small,
 * medium and large sizes, free and realloc of the slot's blocks, sending
 * blocks to another slot through a lock-free single-producer ring and
 * receiving them there (free, realloc, keep or forward), bursts, statistics
 * and thread exit: the worker starts its successor, which continues the
 * slot's script with its blocks, and exits.
 *
 * Each block carries a tag pattern; a block is checked before each free,
 * realloc and send, on receipt, and at every quiescent point. A table of
 * live addresses catches a block handed out twice the moment it happens.
 * At each barrier (every worker parked, exited threads joined) the main
 * thread checks every live block (pattern, usable size, alignment), that no
 * two overlap, and the statistics: blocks and bytes in use at least the
 * baseline plus the live blocks (remote frees into live heaps may still be
 * counted), the number of heaps bounded (exited threads' heaps are
 * adopted). At the end of an input every thread has been joined and every
 * block freed, and the per-class blocks in use, large blocks and bytes in
 * use must be back to the baseline taken at the start (obm_get_stats drains
 * the abandoned heaps and the caller's heap).
 *
 * Modes (OBMEM_FUZZ_MODE): plain (default), debug (obm_setup_debug_hooks at
 * start; statistics are then only checked for consistency: the quarantine
 * delays frees). OBMEM_FUZZ_TRACE=1 prints each operation;
 * OBMEM_FUZZ_SEQUENCED=1 runs every phase sequenced (deterministic: for
 * reproducing a failure, and for corpus merges, whose coverage must not
 * depend on the interleaving).
 *
 * Built with -fsanitize=thread (`make fuzz-tsan`), the malloc family is
 * ThreadSanitizer's own, so the harness uses the obm_* domains only; obmem's
 * calls are hidden from TSan (it is not instrumented and its
 * synchronisation is invisible) and each block's pages are released before
 * a free and acquired after an allocation, so TSan checks the harness's own
 * synchronisation and reports two threads using one block unordered.
 */
#define _GNU_SOURCE
#include <obmem.h>
#include "fuzz_common.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
extern const char *const fuzz_target_name;
const char *const fuzz_target_name = "threads"; /* for replay.c */

#if defined(__SANITIZE_THREAD__)
#define FZ_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FZ_TSAN 1
#endif
#endif

#ifdef FZ_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);
/* obmem is not instrumented: TSan must not see its memcpy/memset or treat
 * its mmaps as writes by the mapping thread. */
#define OBM_IN() __tsan_ignore_thread_begin()
#define OBM_OUT() __tsan_ignore_thread_end()
#define HAVE_LIBC 0 /* malloc & co are TSan's */
#else
#define OBM_IN() ((void)0)
#define OBM_OUT() ((void)0)
#define HAVE_LIBC 1
#endif

/* ------------------------------------------------------------------------ */
/* Calls through volatile pointers: the compiler must not reason about the
 * allocation functions. */
static void *(*volatile f_malloc)(size_t) = malloc;
static void *(*volatile f_calloc)(size_t, size_t) = calloc;
static void *(*volatile f_realloc)(void *, size_t) = realloc;
static void (*volatile f_free)(void *) = free;
static int (*volatile f_posix_memalign)(void **, size_t, size_t) = posix_memalign;
static void *(*volatile f_aligned_alloc)(size_t, size_t) = aligned_alloc;
static void *(*volatile f_memalign)(size_t, size_t) = memalign;
static size_t (*volatile f_malloc_usable_size)(void *) = malloc_usable_size;

/* ------------------------------------------------------------------------ */
/* Reporting */

enum { MODE_PLAIN, MODE_DEBUG };
static int mode;
static int force_seq; /* OBMEM_FUZZ_SEQUENCED=1: every phase sequenced */
static int devnull = -1;
static unsigned long input_no;
static __thread int cur_slot = -1; /* -1: the main thread */
static __thread int cur_op = -1;
static __thread const char *cur_name = "init";

static void fail(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char who[32];
    if (cur_slot < 0)
        snprintf(who, sizeof who, "main");
    else
        snprintf(who, sizeof who, "slot %d", cur_slot);
    say("obmem fuzz: MISMATCH (mode threads%s, input %lu, %s, op #%d %s): %s\n",
        mode == MODE_DEBUG ? "-debug" : "", input_no, who, cur_op, cur_name, buf);
    abort();
}


/* ------------------------------------------------------------------------ */
/* Limits */

#define MAXW 4             /* worker slots */
#define MAXOPS 1200        /* operations per input */
#define MAXPHASE 24        /* phases per input */
#define MAXEXIT 8          /* thread exits per input */
#define MAXALLOC 12000     /* allocations per input (the live-address table) */
#define LOCALMAX 128       /* blocks a slot holds */
#define RINGCAP 32         /* blocks in flight from one slot to another */
#define BURSTMAX 32        /* blocks of one burst */
#define BUDGET ((size_t)32 << 20) /* bytes of live blocks at once */
#define NSTACK (MAXW + MAXEXIT + 2)
#define STACK_SIZE ((size_t)512 << 10)
#define MAIN_SLOT MAXW     /* id space of blocks the main thread allocates */

/* ------------------------------------------------------------------------ */
/* ThreadSanitizer annotations: a block's pages are released before it is
 * freed and acquired after it is allocated, so obmem's reuse of memory
 * (invisible to TSan) orders the old user's accesses before the new one's. */

#define PAGE 4096
static void tsan_pages(void *p, size_t n, int acquire) {
#ifdef FZ_TSAN
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(PAGE - 1);
    uintptr_t e = (uintptr_t)p + (n ? n : 1);
    for (; a < e; a += PAGE) {
        if (acquire)
            __tsan_acquire((void *)a);
        else
            __tsan_release((void *)a);
    }
#else
    (void)p;
    (void)n;
    (void)acquire;
#endif
}

/* ------------------------------------------------------------------------ */
/* Allocation families */

enum { F_RAW, F_MEM, F_OBJ, F_LIBC, NFAM };
static const char *fam_name[NFAM] = {"raw", "mem", "object", "malloc"};

static int fam_fix(int f) { return !HAVE_LIBC && f == F_LIBC ? F_OBJ : f; }

static void *fam_malloc(int f, size_t n) {
    void *p;
    OBM_IN();
    switch (fam_fix(f)) {
    case F_RAW: p = obm_raw_malloc(n); break;
    case F_MEM: p = obm_mem_malloc(n); break;
    case F_OBJ: p = obm_object_malloc(n); break;
    default: p = f_malloc(n); break;
    }
    OBM_OUT();
    return p;
}

static void *fam_calloc(int f, size_t a, size_t b) {
    void *p;
    OBM_IN();
    switch (fam_fix(f)) {
    case F_RAW: p = obm_raw_calloc(a, b); break;
    case F_MEM: p = obm_mem_calloc(a, b); break;
    case F_OBJ: p = obm_object_calloc(a, b); break;
    default: p = f_calloc(a, b); break;
    }
    OBM_OUT();
    return p;
}

static void *fam_realloc(int f, void *p, size_t n) {
    void *q;
    OBM_IN();
    switch (fam_fix(f)) {
    case F_RAW: q = obm_raw_realloc(p, n); break;
    case F_MEM: q = obm_mem_realloc(p, n); break;
    case F_OBJ: q = obm_object_realloc(p, n); break;
    default: q = f_realloc(p, n); break;
    }
    OBM_OUT();
    return q;
}

static void fam_free(int f, void *p) {
    OBM_IN();
    switch (fam_fix(f)) {
    case F_RAW: obm_raw_free(p); break;
    case F_MEM: obm_mem_free(p); break;
    case F_OBJ: obm_object_free(p); break;
    default: f_free(p); break;
    }
    OBM_OUT();
}

/* The malloc family is the object domain: either set of functions may
 * resize or free a block of the other. */
static int fam_alt(int f, unsigned bit) {
    if ((bit & 1) && HAVE_LIBC) {
        if (f == F_OBJ)
            return F_LIBC;
        if (f == F_LIBC)
            return F_OBJ;
    }
    return f;
}

static size_t usable_of(int f, void *p) {
    OBM_IN();
    size_t u = obm_usable_size(p);
    size_t m = u;
    if (HAVE_LIBC && (f == F_OBJ || f == F_LIBC))
        m = f_malloc_usable_size(p);
    OBM_OUT();
    CHECK(m == u, "malloc_usable_size %zu != obm_usable_size %zu for %p", m, u, p);
    return u;
}

static void get_stats(obm_stats *s) {
    OBM_IN();
    obm_get_stats(s);
    OBM_OUT();
}

/* ------------------------------------------------------------------------ */
/* Blocks and their patterns */

typedef struct {
    unsigned char *p;
    size_t size;     /* bytes the pattern covers (requested) */
    uint32_t id;     /* slot << 24 | serial */
    uint8_t fam;
    uint8_t seed;
    uint8_t align_log; /* promised alignment (0: 16) */
    uint8_t unused;
} Blk;

static uint64_t blk_tag(const Blk *b) {
    return ((uint64_t)b->id + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)input_no << 40 ^ b->seed;
}

static void pat_fill(unsigned char *p, size_t size, uint8_t seed, uint64_t tag) {
    memset(p, seed, size);
    memcpy(p, &tag, size < 8 ? size : 8);
    if (size >= 16)
        memcpy(p + size - 8, &tag, 8);
}

/* Checks bytes [0, len) of a block that pat_fill filled with `size` bytes. */
static void pat_check(const unsigned char *p, size_t len, size_t size, uint8_t seed, uint64_t tag,
                      uint32_t id, const char *what) {
    unsigned char t[8];
    memcpy(t, &tag, 8);
    if (len > size)
        len = size;
    for (size_t i = 0; i < len && i < 8; i++)
        CHECK(p[i] == t[i], "%s %p (block %#x, size %zu): byte %zu is 0x%02x, expected 0x%02x",
              what, (void *)p, id, size, i, p[i], t[i]);
    size_t mid_end = size >= 16 ? size - 8 : size;
    size_t lim = len < mid_end ? len : mid_end;
    if (lim > 8 && !all_bytes(p, 8, lim, seed))
        for (size_t i = 8; i < lim; i++)
            CHECK(p[i] == seed, "%s %p (block %#x, size %zu): byte %zu is 0x%02x, expected 0x%02x",
                  what, (void *)p, id, size, i, p[i], seed);
    if (size >= 16)
        for (size_t i = size - 8; i < len; i++)
            CHECK(p[i] == t[i - (size - 8)], "%s %p (block %#x, size %zu): tail byte %zu is 0x%02x",
                  what, (void *)p, id, size, i, p[i]);
}

static void blk_verify(const Blk *b, const char *what) {
    pat_check(b->p, b->size, b->size, b->seed, blk_tag(b), b->id, what);
}

/* ------------------------------------------------------------------------ */
/* Live addresses: an open-addressing set without reuse of deleted slots, so
 * that an address being inserted is always found before the first empty
 * slot of its chain, even when two threads insert it at once. Reset at the
 * start of each input. */

#define HSIZE 32768
#define TOMB ((uintptr_t)1)
static _Atomic uintptr_t live_set[HSIZE];

static size_t hash_p(uintptr_t p) { return (size_t)((p >> 4) * 0x9E3779B97F4A7C15ull >> 49); }

static void live_add(void *p, const char *what) {
    uintptr_t k = (uintptr_t)p;
    size_t i = hash_p(k);
    for (size_t n = 0; n < HSIZE; n++, i = (i + 1) & (HSIZE - 1)) {
        uintptr_t cur = atomic_load_explicit(&live_set[i], memory_order_acquire);
        for (;;) {
            CHECK(cur != k, "%s returned %p, which is a live block", what, p);
            if (cur != 0)
                break;
            if (atomic_compare_exchange_strong(&live_set[i], &cur, k))
                return;
        }
    }
    fail("HARNESS: live-address table full");
}

static void live_del(void *p) {
    uintptr_t k = (uintptr_t)p;
    size_t i = hash_p(k);
    for (size_t n = 0; n < HSIZE; n++, i = (i + 1) & (HSIZE - 1)) {
        uintptr_t cur = atomic_load_explicit(&live_set[i], memory_order_acquire);
        if (cur == k) {
            atomic_store_explicit(&live_set[i], TOMB, memory_order_release);
            return;
        }
        if (cur == 0)
            break;
    }
    fail("MODEL BUG: block %p is not in the live-address table", p);
}

static int live_has(void *p) {
    uintptr_t k = (uintptr_t)p;
    size_t i = hash_p(k);
    for (size_t n = 0; n < HSIZE; n++, i = (i + 1) & (HSIZE - 1)) {
        uintptr_t cur = atomic_load_explicit(&live_set[i], memory_order_acquire);
        if (cur == k)
            return 1;
        if (cur == 0)
            return 0;
    }
    return 0;
}

static size_t live_count(void) {
    size_t n = 0;
    for (size_t i = 0; i < HSIZE; i++) {
        uintptr_t cur = atomic_load_explicit(&live_set[i], memory_order_relaxed);
        n += cur != 0 && cur != TOMB;
    }
    return n;
}

/* ------------------------------------------------------------------------ */
/* The script */

enum {
    OP_ALLOC,   /* a: fam | 4 calloc | 8 realloc(NULL); b: calloc divisor; n: size */
    OP_ALIGNED, /* a: function; b: log2 alignment; n: size */
    OP_FREE,    /* a: block; b: other family */
    OP_REALLOC, /* a: block; b: other family; n: size */
    OP_SEND,    /* a: block; b: destination; c: count */
    OP_RECV,    /* a: source; b: count; c: action; d: other family; n: realloc size */
    OP_TOUCH,   /* a: block (255: verify all); b: new seed */
    OP_STATS,   /* a: what */
    OP_EXIT,    /* the thread exits, a successor takes over the slot */
    OP_BURST,   /* a: fam; b: count; c: action; d: destination; n: size */
    OP_YIELD,   /* a: how */
    OP_BARRIER, /* a: next phase's schedule; b: main's action; c: slots; d: count; n: size */
    NKINDS
};
static const char *kind_name[NKINDS] = {"alloc", "aligned", "free", "realloc", "send",  "recv",
                                        "touch", "stats",   "exit", "burst",   "yield", "barrier"};
/* The selector byte: bits 0-1 the slot, bits 2-7 (64 values) the kind. */
static const uint8_t kind_of[64] = {
    OP_ALLOC,   OP_ALLOC,   OP_ALLOC,   OP_ALLOC,   OP_ALLOC,   OP_ALLOC,   OP_ALLOC,   OP_ALLOC,
    OP_ALLOC,   OP_ALLOC,   OP_ALIGNED, OP_ALIGNED, OP_ALIGNED, OP_ALIGNED, OP_FREE,    OP_FREE,
    OP_FREE,    OP_FREE,    OP_FREE,    OP_FREE,    OP_FREE,    OP_FREE,    OP_REALLOC, OP_REALLOC,
    OP_REALLOC, OP_REALLOC, OP_REALLOC, OP_REALLOC, OP_SEND,    OP_SEND,    OP_SEND,    OP_SEND,
    OP_SEND,    OP_SEND,    OP_SEND,    OP_SEND,    OP_RECV,    OP_RECV,    OP_RECV,    OP_RECV,
    OP_RECV,    OP_RECV,    OP_RECV,    OP_RECV,    OP_TOUCH,   OP_TOUCH,   OP_TOUCH,   OP_STATS,
    OP_STATS,   OP_STATS,   OP_EXIT,    OP_EXIT,    OP_EXIT,    OP_BURST,   OP_BURST,   OP_BURST,
    OP_BURST,   OP_BURST,   OP_YIELD,   OP_YIELD,   OP_BARRIER, OP_BARRIER, OP_BARRIER, OP_BARRIER,
};

typedef struct {
    uint8_t t, kind, a, b, c, d;
    uint32_t n;
} Op;

typedef struct {
    int start, end; /* ops[start, end) */
    int seq;        /* sequenced: one operation at a time, in input order */
    /* what the main thread does at the barrier that ends the phase */
    uint8_t act, x, y, cnt;
    uint32_t n;
} Phase;

static Op ops[MAXOPS];
static int nops;
static Phase phases[MAXPHASE];
static int nphases;
static int K;
static int cleanup_mode;


static const uint32_t edge_sizes[] = {
    0,      1,      8,      15,     16,     17,     31,      32,     33,     48,
    63,     64,     65,     127,    128,    129,    255,     256,    257,    511,
    512,    513,    1023,   1024,   1025,   2047,   2048,    2049,   4095,   4096,
    4097,   8192,   16383,  16384,  16385,  32768,  65536,   114688, 131071, 131072,
    131073, 131088, 262144, 262145, 1048576, 1048577,
};

/* tiny, small (<= 512), up to 4 KiB, medium (<= 128 KiB), edges, large. */
static uint32_t pick_size(In *in) {
    unsigned s = u8(in);
    if (s < 30)
        return u8(in) % 17;
    if (s < 100)
        return u16(in) % 513;
    if (s < 140)
        return u16(in) % 4097;
    if (s < 190)
        return 4097 + u32(in) % (131072 + 64 - 4097);
    if (s < 236)
        return edge_sizes[u8(in) % NELEM(edge_sizes)];
    if (s < 255)
        return 131073 + u32(in) % (1u << 20);
    return 131073 + u32(in) % (4u << 20);
}

static void decode(const uint8_t *data, size_t size) {
    In in = {data, size, 0};
    K = 2 + (int)(u8(&in) % 3);
    unsigned flags = u8(&in);
    cleanup_mode = (int)(flags & 3);
    nops = 0;
    nphases = 1;
    memset(&phases[0], 0, sizeof phases[0]);
    phases[0].seq = (flags >> 2) & 1;
    int exits = 0, allocs = 0;
    while (in.i < in.n && nops < MAXOPS) {
        unsigned sel = u8(&in);
        Op o = {(uint8_t)((sel & 3) % (unsigned)K), kind_of[sel >> 2], 0, 0, 0, 0, 0};
        switch (o.kind) {
        case OP_ALLOC:
            o.a = (uint8_t)u8(&in);
            o.b = (uint8_t)u8(&in);
            o.n = pick_size(&in);
            allocs++;
            break;
        case OP_ALIGNED:
            o.a = (uint8_t)u8(&in);
            o.b = (uint8_t)u8(&in);
            o.n = pick_size(&in);
            allocs++;
            break;
        case OP_FREE:
            o.a = (uint8_t)u8(&in);
            o.b = (uint8_t)u8(&in);
            break;
        case OP_REALLOC:
            o.a = (uint8_t)u8(&in);
            o.b = (uint8_t)u8(&in);
            o.n = pick_size(&in);
            allocs++;
            break;
        case OP_SEND:
            o.a = (uint8_t)u8(&in);
            o.b = (uint8_t)u8(&in);
            o.c = (uint8_t)u8(&in);
            break;
        case OP_RECV:
            o.a = (uint8_t)u8(&in);
            o.b = (uint8_t)u8(&in);
            o.c = (uint8_t)u8(&in);
            o.d = (uint8_t)u8(&in);
            o.n = pick_size(&in);
            allocs += 8;
            break;
        case OP_TOUCH:
            o.a = (uint8_t)u8(&in);
            o.b = (uint8_t)u8(&in);
            break;
        case OP_STATS:
        case OP_YIELD:
            o.a = (uint8_t)u8(&in);
            break;
        case OP_EXIT:
            if (exits >= MAXEXIT)
                o.kind = OP_YIELD;
            exits++;
            break;
        case OP_BURST:
            o.a = (uint8_t)u8(&in);
            o.b = (uint8_t)u8(&in);
            o.c = (uint8_t)u8(&in);
            o.d = (uint8_t)u8(&in);
            o.n = pick_size(&in);
            allocs += 1 + o.b % BURSTMAX;
            break;
        default: { /* OP_BARRIER */
            Phase *ph = &phases[nphases - 1];
            unsigned sched = u8(&in);
            ph->act = (uint8_t)u8(&in);
            ph->x = (uint8_t)u8(&in);
            ph->cnt = (uint8_t)u8(&in);
            ph->n = pick_size(&in);
            ph->end = nops;
            allocs += 8;
            if (nphases < MAXPHASE) {
                Phase *nx = &phases[nphases++];
                memset(nx, 0, sizeof *nx);
                nx->start = nx->end = nops;
                nx->seq = sched & 1;
            }
            continue;
        }
        }
        if (allocs > MAXALLOC)
            break;
        ops[nops++] = o;
    }
    phases[nphases - 1].end = nops;
    if (force_seq)
        for (int i = 0; i < nphases; i++)
            phases[i].seq = 1;
}

/* ------------------------------------------------------------------------ */
/* Slots, rings and threads */

typedef struct {
    Blk b[RINGCAP];
    _Atomic unsigned head; /* written by the producer */
    _Atomic unsigned tail; /* written by the consumer */
} Ring;
static Ring ring[MAXW][MAXW]; /* [from][to] */

typedef struct {
    Blk blk[LOCALMAX];
    int n;
    uint32_t serial;
    sem_t go;   /* a phase starts (or the input ends) */
    sem_t turn; /* sequenced phases: this slot's next operation may run */
    pthread_t th;
    void *stack;
    /* Where a successor continues, and the predecessor it joins (sequenced
     * phases) before running. Written before pthread_create. */
    int res_phase, res_op;
    pthread_t pred;
    void *pred_stack;
    int pred_join;
} Slot;
static Slot S[MAXW];
static Blk main_blk[MAXW * (LOCALMAX + MAXW * RINGCAP)];
static int main_n;
static uint32_t main_serial;

static sem_t arrive;
static atomic_int g_phase;
static atomic_int g_finish;
static _Atomic size_t live_bytes;

static pthread_mutex_t zlock = PTHREAD_MUTEX_INITIALIZER;
static void *stacks[NSTACK];
static int nstacks;
static struct {
    pthread_t th;
    void *stack;
} zombies[MAXEXIT + MAXW];
static int nzombies;

/* sem_wait is never restarted after a signal handler (libFuzzer's SIGALRM
 * for -timeout), whatever SA_RESTART says. */
static void sem_take(sem_t *sem) {
    int e = errno;
    while (sem_wait(sem) != 0)
        CHECK(errno == EINTR, "HARNESS: sem_wait failed (errno %d)", errno);
    errno = e;
}

static void *stack_get(void) {
    pthread_mutex_lock(&zlock);
    void *s = nstacks > 0 ? stacks[--nstacks] : NULL;
    pthread_mutex_unlock(&zlock);
    return s;
}

static void stack_put(void *s) {
    pthread_mutex_lock(&zlock);
    if (nstacks >= NSTACK) {
        pthread_mutex_unlock(&zlock);
        fail("HARNESS: stack returned twice");
    }
    stacks[nstacks++] = s;
    pthread_mutex_unlock(&zlock);
}

static void *worker(void *arg);

/* A thread for slot t on one of the harness's stacks: glibc frees the TLS
 * vector of a thread with a user stack when it is joined, while it caches
 * its own stacks with their TLS vector, which would stay counted in the
 * statistics. */
static int spawn(int t, void *stack) {
    pthread_attr_t a;
    pthread_t th;
    if (pthread_attr_init(&a) != 0)
        return -1;
    int r = pthread_attr_setstack(&a, stack, STACK_SIZE);
    if (r == 0)
        r = pthread_create(&th, &a, worker, (void *)(intptr_t)t);
    pthread_attr_destroy(&a);
    return r;
}

static void join_zombies(void) {
    pthread_mutex_lock(&zlock);
    while (nzombies > 0) {
        nzombies--;
        pthread_t th = zombies[nzombies].th;
        void *st = zombies[nzombies].stack;
        pthread_mutex_unlock(&zlock);
        CHECK(pthread_join(th, NULL) == 0, "pthread_join of an exited worker failed");
        stack_put(st);
        pthread_mutex_lock(&zlock);
    }
    pthread_mutex_unlock(&zlock);
}

static int ring_push(int from, int to, const Blk *b) {
    Ring *r = &ring[from][to];
    unsigned h = atomic_load_explicit(&r->head, memory_order_relaxed);
    unsigned tl = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (h - tl >= RINGCAP)
        return 0;
    r->b[h % RINGCAP] = *b;
    atomic_store_explicit(&r->head, h + 1, memory_order_release);
    return 1;
}

static int ring_pop(int from, int to, Blk *out) {
    Ring *r = &ring[from][to];
    unsigned tl = atomic_load_explicit(&r->tail, memory_order_relaxed);
    unsigned h = atomic_load_explicit(&r->head, memory_order_acquire);
    if (tl == h)
        return 0;
    *out = r->b[tl % RINGCAP];
    atomic_store_explicit(&r->tail, tl + 1, memory_order_release);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Block operations (any thread; `owner` is the slot the block's id names) */

static size_t budget(size_t n) {
    size_t cur = atomic_fetch_add(&live_bytes, n) + n;
    if (cur > BUDGET) {
        atomic_fetch_sub(&live_bytes, n);
        n %= 4097;
        atomic_fetch_add(&live_bytes, n);
    }
    return n;
}

static void unbudget(size_t n) { atomic_fetch_sub(&live_bytes, n); }

static uint32_t new_id(int slot) {
    uint32_t s = slot == MAIN_SLOT ? main_serial++ : S[slot].serial++;
    return (uint32_t)slot << 24 | (s & 0xFFFFFF);
}

/* A fresh block: checked, registered, filled. `fill`: 0 nothing expected,
 * 1 zeros (calloc), 2 the debug hooks' 0xCD. The size is already budgeted. */
static Blk blk_new(int slot, void *p, size_t n, int f, unsigned align_log, int fill,
                   const char *what) {
    CHECK(p != NULL, "%s %s(%zu) returned NULL (errno %d)", fam_name[f], what, n, errno);
    live_add(p, what);
    tsan_pages(p, n, 1);
    CHECK(((uintptr_t)p & 15) == 0, "%s(%zu) returned %p, not 16-byte aligned", what, n, p);
    CHECK(((uintptr_t)p & (((uintptr_t)1 << align_log) - 1)) == 0,
          "%s(%zu) returned %p, not aligned to %zu", what, n, p, (size_t)1 << align_log);
    size_t u = usable_of(f, p);
    CHECK(u >= n, "%s(%zu): usable size %zu < requested", what, n, u);
    if (fill == 1)
        bytes_check(p, 0, n, 0, "calloc'd memory not zero:");
    else if (fill == 2)
        bytes_check(p, 0, n < 65536 ? n : 65536, 0xCD, "debug hooks: new memory not 0xCD:");
    Blk b = {p, n, new_id(slot), (uint8_t)f, 0, (uint8_t)align_log, 0};
    b.seed = (uint8_t)(b.id * 37 + 11);
    pat_fill(b.p, b.size, b.seed, blk_tag(&b));
    return b;
}

static void blk_free(Blk *b, unsigned alt, const char *what) {
    int f = fam_alt(b->fam, alt);
    TRACE("  [%d] %s free(block %#x %p size %zu)\n", cur_slot, fam_name[f], b->id, (void *)b->p,
          b->size);
    blk_verify(b, what);
    live_del(b->p);
    tsan_pages(b->p, b->size, 0);
    errno = 4321;
    fam_free(f, b->p);
    if (f == F_LIBC)
        CHECK(errno == 4321, "free changed errno to %d", errno);
    unbudget(b->size);
}

/* Resizes *b to n bytes in this thread; 0 if realloc(p, 0) freed it. */
static int blk_realloc(Blk *b, size_t n, unsigned alt, const char *what) {
    int f = fam_alt(b->fam, alt);
    if (n > b->size)
        n = b->size + budget(n - b->size);
    TRACE("  [%d] %s realloc(block %#x %p size %zu, %zu)\n", cur_slot, fam_name[f], b->id,
          (void *)b->p, b->size, n);
    blk_verify(b, what);
    live_del(b->p);
    tsan_pages(b->p, b->size, 0);
    errno = 0;
    unsigned char *q = fam_realloc(f, b->p, n);
    if (f == F_LIBC && n == 0) {
        CHECK(q == NULL, "realloc(p, 0) returned %p, expected NULL (p freed)", (void *)q);
        unbudget(b->size);
        return 0;
    }
    CHECK(q != NULL, "%s realloc(%p, %zu) returned NULL (errno %d)", fam_name[f], (void *)b->p, n,
          errno);
    live_add(q, "realloc");
    tsan_pages(q, n, 1);
    size_t keep = b->size < n ? b->size : n;
    pat_check(q, keep, b->size, b->seed, blk_tag(b), b->id, "realloc lost contents:");
    if (mode == MODE_DEBUG && n > b->size)
        bytes_check(q, b->size, n < b->size + 65536 ? n : b->size + 65536, 0xCD,
                    "debug hooks: grown part not 0xCD:");
    CHECK(((uintptr_t)q & 15) == 0, "realloc returned %p, not 16-byte aligned", (void *)q);
    size_t u = usable_of(f, q);
    CHECK(u >= n, "realloc(%zu): usable size %zu", n, u);
    if (n < b->size)
        unbudget(b->size - n);
    b->p = q;
    b->size = n;
    b->align_log = 0;
    b->fam = (uint8_t)f;
    b->seed = (uint8_t)(b->seed * 5 + 1);
    pat_fill(b->p, b->size, b->seed, blk_tag(b));
    return 1;
}

static void local_add(int t, const Blk *b) {
    Slot *s = &S[t];
    if (s->n < LOCALMAX)
        s->blk[s->n++] = *b;
    else {
        Blk c = *b;
        blk_free(&c, 0, "block freed for lack of room");
    }
}

static void local_remove(int t, int k) {
    Slot *s = &S[t];
    s->blk[k] = s->blk[--s->n];
}

/* ------------------------------------------------------------------------ */
/* Worker operations */

static int other_slot(int t, unsigned v) {
    return (t + 1 + (int)(v % (unsigned)(K - 1))) % K;
}

static int dbg_fill(void) { return mode == MODE_DEBUG ? 2 : 0; }

static void w_alloc(int t, const Op *o) {
    if (S[t].n >= LOCALMAX)
        return;
    int f = fam_fix(o->a & 3);
    size_t n = budget(o->n);
    void *p;
    int fill = dbg_fill();
    const char *what = "malloc";
    errno = 0;
    if (o->a & 4) {
        size_t el = 1 + o->b % 16, ne = n / el;
        unbudget(n - ne * el);
        n = ne * el;
        what = "calloc";
        fill = 1;
        p = fam_calloc(f, ne, el);
    } else if (o->a & 8) {
        what = "realloc(NULL)";
        p = fam_realloc(f, NULL, n);
    } else {
        p = fam_malloc(f, n);
    }
    TRACE("  [%d] %s %s(%zu) = %p\n", t, fam_name[f], what, n, p);
    Blk b = blk_new(t, p, n, f, 0, fill, what);
    local_add(t, &b);
}

static void w_aligned(int t, const Op *o) {
    if (S[t].n >= LOCALMAX)
        return;
    unsigned lg = 5 + o->b % 12; /* 32 .. 64 KiB */
    if (o->b >= 250)
        lg = 17 + o->b % 5; /* 128 KiB .. 2 MiB */
    size_t align = (size_t)1 << lg;
    size_t n = budget(o->n);
    void *p = NULL;
    const char *what;
    if (!HAVE_LIBC) {
        /* TSan's memalign would not be obmem's. */
        what = "object malloc";
        lg = 0;
        p = fam_malloc(F_OBJ, n);
        Blk b = blk_new(t, p, n, F_OBJ, 0, dbg_fill(), what);
        local_add(t, &b);
        return;
    }
    errno = 0;
    switch (o->a % 3) {
    case 0: {
        what = "posix_memalign";
        int r = f_posix_memalign(&p, align, n);
        CHECK(r == 0, "posix_memalign(%zu, %zu) returned %d", align, n, r);
        break;
    }
    case 1:
        what = "aligned_alloc";
        p = f_aligned_alloc(align, n);
        break;
    default:
        what = "memalign";
        p = f_memalign(align, n);
        break;
    }
    TRACE("  [%d] %s(%zu, %zu) = %p\n", t, what, align, n, p);
    Blk b = blk_new(t, p, n, F_LIBC, lg, dbg_fill(), what);
    local_add(t, &b);
}

static void w_free(int t, const Op *o) {
    Slot *s = &S[t];
    if (s->n == 0) {
        int f = o->b % NFAM;
        errno = 4321;
        fam_free(f, NULL);
        if (fam_fix(f) == F_LIBC)
            CHECK(errno == 4321, "free(NULL) changed errno to %d", errno);
        return;
    }
    int k = (int)(o->a % (unsigned)s->n);
    blk_free(&s->blk[k], o->b, "block before free");
    local_remove(t, k);
}

static void w_realloc(int t, const Op *o) {
    Slot *s = &S[t];
    if (s->n == 0)
        return;
    int k = (int)(o->a % (unsigned)s->n);
    if (!blk_realloc(&s->blk[k], o->n, o->b, "block before realloc"))
        local_remove(t, k);
}

static void w_send(int t, const Op *o) {
    Slot *s = &S[t];
    int to = other_slot(t, o->b);
    int cnt = 1 + o->c % 8;
    for (int j = 0; j < cnt && s->n > 0; j++) {
        int k = (int)((o->a + (unsigned)j) % (unsigned)s->n);
        blk_verify(&s->blk[k], "block before send");
        if (!ring_push(t, to, &s->blk[k]))
            break;
        TRACE("  [%d] send block %#x %p to %d\n", t, s->blk[k].id, (void *)s->blk[k].p, to);
        local_remove(t, k);
    }
}

/* What a received block becomes: freed here, resized here, kept, or passed
 * on to a third slot. */
static void w_recv(int t, const Op *o) {
    int from = other_slot(t, o->a);
    int cnt = 1 + o->b % 8;
    for (int j = 0; j < cnt; j++) {
        Blk b;
        if (!ring_pop(from, t, &b))
            break;
        TRACE("  [%d] recv block %#x %p from %d\n", t, b.id, (void *)b.p, from);
        blk_verify(&b, "received block");
        size_t u = usable_of(b.fam, b.p);
        CHECK(u >= b.size, "received block %#x: usable size %zu < %zu", b.id, u, b.size);
        switch ((o->c >> (2 * (j & 3))) & 3) {
        case 0: blk_free(&b, o->d >> j, "received block before free"); break;
        case 1:
            if (blk_realloc(&b, o->n, o->d >> j, "received block before realloc"))
                local_add(t, &b);
            break;
        case 2: local_add(t, &b); break;
        default: {
            int to = other_slot(t, o->d + (unsigned)j);
            if (to == from || !ring_push(t, to, &b))
                local_add(t, &b);
            break;
        }
        }
    }
}

static void w_touch(int t, const Op *o) {
    Slot *s = &S[t];
    if (s->n == 0)
        return;
    if (o->a == 255) {
        for (int k = 0; k < s->n; k++)
            blk_verify(&s->blk[k], "block");
        return;
    }
    Blk *b = &s->blk[o->a % (unsigned)s->n];
    blk_verify(b, "block before rewriting");
    b->seed = (uint8_t)o->b;
    pat_fill(b->p, b->size, b->seed, blk_tag(b));
}

/* Statistics while other threads allocate: consistent by construction, and
 * obm_get_stats drains abandoned heaps and this thread's remote frees. */
static void stats_concurrent(const obm_stats *s) {
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
}

static void w_stats(int t, const Op *o) {
    static __thread obm_stats st;
    Slot *s = &S[t];
    if (o->a & 1) {
        get_stats(&st);
        stats_concurrent(&st);
    }
    if ((o->a & 0x70) == 0x70) {
        OBM_IN();
        obm_print_stats(devnull);
        OBM_OUT();
    }
    if (o->a & 2)
        for (int k = 0; k < s->n; k++) {
            size_t u = usable_of(s->blk[k].fam, s->blk[k].p);
            CHECK(u >= s->blk[k].size, "usable size %zu < %zu", u, s->blk[k].size);
        }
}

/* Many blocks of one size at once: the fast paths, pools filling up and
 * emptying, a stream of remote frees when they are all sent. */
static void w_burst(int t, const Op *o) {
    Blk tmp[BURSTMAX];
    int f = fam_fix(o->a & 3), cnt = 1 + o->b % BURSTMAX;
    size_t n = o->n; /* small unless asked: up to 16 KiB, else 128 KiB */
    if (n > 16384 && !(o->a & 4))
        n %= 16385;
    if (n > 131072)
        n %= 131073;
    TRACE("  [%d] burst %d x %s(%zu)\n", t, cnt, fam_name[f], n);
    for (int j = 0; j < cnt; j++) {
        size_t m = budget(n);
        errno = 0;
        void *p = fam_malloc(f, m);
        tmp[j] = blk_new(t, p, m, f, 0, dbg_fill(), "burst malloc");
    }
    int to = other_slot(t, o->d);
    switch (o->c & 3) {
    case 0:
        for (int j = 0; j < cnt; j++)
            blk_free(&tmp[j], o->c >> 2, "burst block");
        break;
    case 1:
        for (int j = cnt - 1; j >= 0; j--)
            blk_free(&tmp[j], o->c >> 2, "burst block");
        break;
    case 2:
        for (int j = 0; j < cnt; j++)
            if (!ring_push(t, to, &tmp[j]))
                blk_free(&tmp[j], 0, "burst block");
        break;
    default:
        for (int j = 0; j < cnt; j++)
            local_add(t, &tmp[j]);
        break;
    }
}

static void w_yield(const Op *o) {
    if (o->a & 1) {
        sched_yield();
        return;
    }
    for (volatile unsigned i = 0; i < (o->a >> 1) * 64u; i++)
        ;
}

/* ------------------------------------------------------------------------ */
/* The worker loop */

static void pass_turn(int ph, int i) {
    if (phases[ph].seq && i + 1 < phases[ph].end)
        sem_post(&S[ops[i + 1].t].turn);
}

/* Thread exit: start the successor, which continues at op i + 1 with this
 * slot's blocks and rings, and return. In a sequenced phase the successor
 * joins this thread first (its heap is then abandoned before the successor
 * allocates) and passes the turn on; otherwise the main thread joins it at
 * the barrier and the successor runs at once. 1 if the thread must exit. */
static int w_exit(int t, int ph, int i) {
    Slot *s = &S[t];
    void *st = stack_get();
    if (!st)
        return 0;
    void *mine = s->stack;
    int seq = phases[ph].seq;
    s->res_phase = ph;
    s->res_op = i + 1;
    s->pred = pthread_self();
    s->pred_stack = mine;
    s->pred_join = seq;
    s->stack = st;
    if (!seq) {
        /* Registered before the successor exists: it may exit too. */
        pthread_mutex_lock(&zlock);
        zombies[nzombies].th = pthread_self();
        zombies[nzombies].stack = mine;
        nzombies++;
        pthread_mutex_unlock(&zlock);
    }
    TRACE("  [%d] thread exits, successor continues at op #%d\n", t, i + 1);
    if (spawn(t, st) != 0) {
        if (!seq) {
            pthread_mutex_lock(&zlock);
            nzombies--;
            pthread_mutex_unlock(&zlock);
        }
        s->stack = mine;
        s->res_phase = -1;
        s->pred_join = 0;
        stack_put(st);
        return 0;
    }
    return 1;
}

/* Runs slot t's operations of phase ph from op `from`; 1 if the thread
 * exited (a successor took over). */
static int run_phase(int t, int ph, int from) {
    int seq = phases[ph].seq;
    for (int i = from; i < phases[ph].end; i++) {
        const Op *o = &ops[i];
        if (o->t != t)
            continue;
        if (seq)
            sem_take(&S[t].turn);
        cur_op = i;
        cur_name = kind_name[o->kind];
        TRACE("[%d] op #%d %s\n", t, i, cur_name);
        switch (o->kind) {
        case OP_ALLOC: w_alloc(t, o); break;
        case OP_ALIGNED: w_aligned(t, o); break;
        case OP_FREE: w_free(t, o); break;
        case OP_REALLOC: w_realloc(t, o); break;
        case OP_SEND: w_send(t, o); break;
        case OP_RECV: w_recv(t, o); break;
        case OP_TOUCH: w_touch(t, o); break;
        case OP_STATS: w_stats(t, o); break;
        case OP_BURST: w_burst(t, o); break;
        case OP_YIELD: w_yield(o); break;
        case OP_EXIT:
            if (w_exit(t, ph, i))
                return 1;
            break;
        default: break;
        }
        pass_turn(ph, i);
    }
    return 0;
}

/* The end of the input: by cleanup_mode, the worker frees all its blocks,
 * none (the main thread frees them after the thread is gone), or every
 * other one. */
static void worker_finish(int t) {
    Slot *s = &S[t];
    cur_name = "cleanup";
    cur_op = -1;
    if (cleanup_mode == 1)
        return;
    for (int k = s->n - 1; k >= 0; k--) {
        if (cleanup_mode == 2 && (k & 1))
            continue;
        blk_free(&s->blk[k], (unsigned)k, "block at cleanup");
        local_remove(t, k);
    }
}

static void *worker(void *arg) {
    int t = (int)(intptr_t)arg;
    Slot *s = &S[t];
    cur_slot = t;
    s->th = pthread_self();
    int ph = s->res_phase, from = s->res_op;
    s->res_phase = -1;
    if (ph >= 0 && s->pred_join) {
        s->pred_join = 0;
        CHECK(pthread_join(s->pred, NULL) == 0, "pthread_join of the predecessor failed");
        stack_put(s->pred_stack);
        pass_turn(ph, from - 1);
    }
    for (;;) {
        if (ph < 0) {
            sem_take(&s->go);
            if (atomic_load(&g_finish))
                break;
            ph = atomic_load(&g_phase);
            from = phases[ph].start;
        }
        if (run_phase(t, ph, from))
            return NULL;
        ph = -1;
        sem_post(&arrive);
    }
    worker_finish(t);
    sem_post(&arrive);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Checks at quiescent points (main thread, every worker parked) */

static obm_stats base, now;
static size_t heaps_start;

static void stats_sane(const obm_stats *s) {
    stats_concurrent(s);
    CHECK(s->arenas_in_use == s->arenas_allocated - s->arenas_freed,
          "arenas in use %zu != allocated %zu - freed %zu", s->arenas_in_use, s->arenas_allocated,
          s->arenas_freed);
    CHECK(s->peak_mapped >= s->bytes_mapped, "peak_mapped %zu < mapped %zu", s->peak_mapped,
          s->bytes_mapped);
    CHECK(s->arenas_peak >= s->arenas_in_use, "arenas_peak < in use");
    CHECK(s->large_allocations >= s->large_blocks, "large_allocations < large_blocks");
    /* Exited threads' heaps are adopted: at most one per thread alive at
     * once (workers, exited ones not yet joined) beyond those at start. */
    CHECK(s->heaps <= heaps_start + MAXW + MAXEXIT + 2, "%zu heaps (%zu at start)", s->heaps,
          heaps_start);
}

static size_t total_blocks(const obm_stats *s) {
    size_t n = s->large_blocks;
    for (int c = 0; c < OBM_NUM_CLASSES; c++)
        n += s->classes[c].blocks_in_use;
    return n;
}

static const Blk *chk[MAXW * (LOCALMAX + MAXW * RINGCAP) + 8];
static size_t chk_u[NELEM(chk)];

static int by_addr(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)(*(const Blk *const *)a)->p, y = (uintptr_t)(*(const Blk *const *)b)->p;
    return x < y ? -1 : x > y;
}

static void check_quiescent(const char *when) {
    cur_name = when;
    size_t n = 0;
    for (int t = 0; t < K; t++)
        for (int k = 0; k < S[t].n; k++)
            chk[n++] = &S[t].blk[k];
    for (int a = 0; a < K; a++)
        for (int b = 0; b < K; b++) {
            Ring *r = &ring[a][b];
            unsigned h = atomic_load(&r->head), tl = atomic_load(&r->tail);
            CHECK(h - tl <= RINGCAP, "MODEL BUG: ring %d->%d head %u tail %u", a, b, h, tl);
            for (unsigned j = tl; j != h; j++)
                chk[n++] = &r->b[j % RINGCAP];
        }
    for (int k = 0; k < main_n; k++)
        chk[n++] = &main_blk[k];
    qsort(chk, n, sizeof chk[0], by_addr);
    size_t usable = 0;
    for (size_t i = 0; i < n; i++) {
        const Blk *b = chk[i];
        blk_verify(b, "live block");
        CHECK(live_has(b->p), "MODEL BUG: block %#x %p missing from the live-address table", b->id,
              (void *)b->p);
        size_t u = chk_u[i] = usable_of(b->fam, b->p);
        CHECK(u >= b->size, "block %#x %p: usable size %zu < %zu", b->id, (void *)b->p, u, b->size);
        CHECK(((uintptr_t)b->p & 15) == 0 &&
                  ((uintptr_t)b->p & (((uintptr_t)1 << b->align_log) - 1)) == 0,
              "block %#x %p lost its alignment %zu", b->id, (void *)b->p, (size_t)1 << b->align_log);
        if (i > 0)
            CHECK((uintptr_t)chk[i - 1]->p + chk_u[i - 1] <= (uintptr_t)b->p,
                  "blocks overlap: %#x [%p, +%zu) and %#x [%p, +%zu)", chk[i - 1]->id,
                  (void *)chk[i - 1]->p, chk_u[i - 1], b->id, (void *)b->p, u);
        usable += u;
    }
    size_t in_table = live_count();
    CHECK(in_table == n, "MODEL BUG: %zu live blocks, %zu in the live-address table", n, in_table);
    get_stats(&now);
    stats_sane(&now);
    TRACE("%s: %zu live blocks (%zu usable bytes); obmem: %zu blocks, %zu bytes in use, %zu heaps\n",
          when, n, usable, total_blocks(&now) - total_blocks(&base),
          now.bytes_in_use - base.bytes_in_use, now.heaps);
    if (mode == MODE_PLAIN) {
        /* Blocks freed into a live thread's heap by others may still count. */
        CHECK(total_blocks(&now) >= total_blocks(&base) + n,
              "%zu blocks in use, fewer than %zu at the start + %zu live", total_blocks(&now),
              total_blocks(&base), n);
        CHECK(now.bytes_in_use >= base.bytes_in_use + usable,
              "%zu bytes in use, fewer than %zu at the start + %zu usable in live blocks",
              now.bytes_in_use, base.bytes_in_use, usable);
    }
}

/* What the main thread does at a barrier: frees or resizes some of a
 * slot's blocks (frees into live or abandoned heaps, blocks moving into
 * the main thread's heap), moves blocks from one slot to another, or
 * allocates blocks for a slot (which its worker will free remotely). */
static void main_action(const Phase *ph) {
    int x = ph->x % K, y = (ph->x >> 2) % K;
    int cnt = 1 + ph->cnt % 8;
    Slot *s = &S[x];
    cur_name = "barrier action";
    if (ph->act % 5)
        TRACE("main: action %d (slots %d, %d, count %d)\n", ph->act % 5, x, y, cnt);
    switch (ph->act % 5) {
    case 1:
        for (int j = 0; j < cnt && s->n > 0; j++) {
            blk_free(&s->blk[s->n - 1], (unsigned)j, "block before main's free");
            s->n--;
        }
        break;
    case 2:
        for (int j = 0; j < cnt && j < s->n; j++)
            if (!blk_realloc(&s->blk[s->n - 1 - j], ph->n, (unsigned)j, "block before main's realloc"))
                local_remove(x, s->n - 1 - j);
        break;
    case 3:
        for (int j = 0; j < cnt && s->n > 0 && S[y].n < LOCALMAX; j++) {
            S[y].blk[S[y].n++] = s->blk[s->n - 1];
            s->n--;
        }
        break;
    case 4:
        for (int j = 0; j < cnt && s->n < LOCALMAX; j++) {
            int f = fam_fix((ph->cnt >> 3) & 3);
            size_t n = budget(ph->n);
            void *p = fam_malloc(f, n);
            s->blk[s->n++] = blk_new(MAIN_SLOT, p, n, f, 0, dbg_fill(), "main's malloc");
        }
        break;
    default: break;
    }
}

/* ------------------------------------------------------------------------ */
/* An input */

static void begin_input(void) {
    input_no++;
    memset(live_set, 0, sizeof live_set);
    atomic_store(&live_bytes, 0);
    atomic_store(&g_finish, 0);
    for (int t = 0; t < MAXW; t++) {
        S[t].n = 0;
        S[t].serial = 0;
        S[t].res_phase = -1;
        S[t].pred_join = 0;
        for (int u = 0; u < MAXW; u++) {
            atomic_store(&ring[t][u].head, 0);
            atomic_store(&ring[t][u].tail, 0);
        }
    }
    main_n = 0;
    main_serial = 0;
    cur_name = "start";
    cur_op = -1;
    get_stats(&base);
}

static void end_input(void) {
    cur_name = "cleanup";
    cur_op = -1;
    /* Blocks still in the rings become the main thread's. */
    main_n = 0;
    for (int a = 0; a < K; a++)
        for (int b = 0; b < K; b++) {
            Blk blk;
            while (ring_pop(a, b, &blk))
                main_blk[main_n++] = blk;
        }
    atomic_store(&g_finish, 1);
    for (int t = 0; t < K; t++)
        sem_post(&S[t].go);
    /* While the workers clean up and exit: frees into heaps of live,
     * exiting and exited threads. */
    for (int k = 0; k < main_n; k++)
        blk_free(&main_blk[k], (unsigned)k, "block in a ring at cleanup");
    main_n = 0;
    for (int t = 0; t < K; t++)
        sem_take(&arrive);
    join_zombies();
    for (int t = 0; t < K; t++) {
        CHECK(pthread_join(S[t].th, NULL) == 0, "pthread_join of slot %d failed", t);
        stack_put(S[t].stack);
    }
    /* Blocks of exited threads, freed into abandoned heaps. */
    for (int t = 0; t < K; t++) {
        for (int k = 0; k < S[t].n; k++)
            blk_free(&S[t].blk[k], (unsigned)k, "block of an exited thread");
        S[t].n = 0;
    }
    CHECK(live_count() == 0, "MODEL BUG: %zu blocks still live at the end", live_count());
    CHECK(nstacks == NSTACK, "HARNESS: %d of %d stacks back", nstacks, NSTACK);
    get_stats(&now);
    stats_sane(&now);
    TRACE("end: %zu heaps, %zu arenas in use (%zu at the start), %zu bytes mapped (%zu), %zu large "
          "mappings cached\n",
          now.heaps, now.arenas_in_use, base.arenas_in_use, now.bytes_mapped, base.bytes_mapped,
          now.large_cached);
    if (mode != MODE_PLAIN)
        return;
    for (int c = 0; c < OBM_NUM_CLASSES; c++)
        CHECK(now.classes[c].blocks_in_use == base.classes[c].blocks_in_use,
              "everything freed, threads joined: class %d (%zu bytes) has %zu blocks in use, %zu at "
              "the start",
              c, now.classes[c].block_size, now.classes[c].blocks_in_use,
              base.classes[c].blocks_in_use);
    CHECK(now.large_blocks == base.large_blocks && now.large_bytes == base.large_bytes,
          "everything freed: %zu large blocks (%zu bytes), %zu (%zu) at the start", now.large_blocks,
          now.large_bytes, base.large_blocks, base.large_bytes);
    CHECK(now.bytes_in_use == base.bytes_in_use, "everything freed: bytes_in_use %zu, %zu at the start",
          now.bytes_in_use, base.bytes_in_use);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *m = getenv("OBMEM_FUZZ_MODE");
    const char *om = getenv("OBMEM_MALLOC");
    if ((m && (strcmp(m, "debug") == 0 || strcmp(m, "threads-debug") == 0)) ||
        (om && (strcmp(om, "debug") == 0 || strcmp(om, "pymalloc_debug") == 0)))
        mode = MODE_DEBUG;
    else
        mode = MODE_PLAIN;
    trace_on = getenv("OBMEM_FUZZ_TRACE") != NULL;
    const char *sq = getenv("OBMEM_FUZZ_SEQUENCED");
    force_seq = sq && strcmp(sq, "0") != 0;
    devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (mode == MODE_DEBUG) {
        OBM_IN();
        obm_setup_debug_hooks();
        OBM_OUT();
    }
    for (int i = 0; i < NSTACK; i++) {
        void *st = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (st == MAP_FAILED) {
            say("obmem fuzz: cannot map thread stacks\n");
            abort();
        }
        stacks[nstacks++] = st;
    }
    if (sem_init(&arrive, 0, 0) != 0) {
        say("obmem fuzz: sem_init failed\n");
        abort();
    }
    for (int t = 0; t < MAXW; t++)
        if (sem_init(&S[t].go, 0, 0) != 0 || sem_init(&S[t].turn, 0, 0) != 0) {
            say("obmem fuzz: sem_init failed\n");
            abort();
        }
    get_stats(&base);
    heaps_start = base.heaps;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    decode(data, size);
    begin_input();
    TRACE("input %lu: %d slots, %d ops, %d phases, cleanup %d\n", input_no, K, nops, nphases,
          cleanup_mode);
    for (int t = 0; t < K; t++) {
        S[t].stack = stack_get();
        CHECK(S[t].stack && spawn(t, S[t].stack) == 0, "cannot start worker %d", t);
    }
    for (int ph = 0; ph < nphases; ph++) {
        const Phase *p = &phases[ph];
        TRACE("phase %d: ops #%d..#%d, %s\n", ph, p->start, p->end - 1,
              p->seq ? "sequenced" : "concurrent");
        atomic_store(&g_phase, ph);
        for (int t = 0; t < K; t++)
            sem_post(&S[t].go);
        if (p->seq && p->end > p->start)
            sem_post(&S[ops[p->start].t].turn);
        for (int t = 0; t < K; t++)
            sem_take(&arrive);
        join_zombies();
        char when[32];
        snprintf(when, sizeof when, "barrier %d", ph);
        check_quiescent(when);
        main_action(p);
    }
    end_input();
    return 0;
}
