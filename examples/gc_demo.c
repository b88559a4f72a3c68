/* gc_demo: the cycle collector at work on a toy interpreter's heap.
 *
 * The "interpreter" runs a loop of function calls. Each call makes a frame
 * object holding its locals; closures created in the call point back at the
 * frame (frame -> closure -> frame: a cycle, as in CPython), and some calls
 * open a "file" whose finalizer closes it. Reference counting alone would
 * leak every frame; the collector finds the cycles, runs the finalizers and
 * frees them. At the end the demo prints the collector's statistics.
 *
 * Then two structures built on weak references: a weak-value cache (entries
 * disappear when nobody uses the cached object any more, through weakref
 * callbacks) and an ephemeron table that attaches data to objects whose
 * data refers back to them (CPython's WeakKeyDictionary would keep those
 * alive forever; the ephemerons let the collector free them).
 *
 * Build (from the repository root, after cargo build --release):
 *   gcc -O2 -Iinclude examples/gc_demo.c -Ltarget/release -lobmem \
 *       -Wl,-rpath,$PWD/target/release -o build/gc_demo && build/gc_demo
 */
#include <obmem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- object types ---- */

typedef struct Frame {          /* a call's locals */
    OBM_OBJECT_HEAD
    obm_object *locals[4];
    long depth;
} Frame;

typedef struct Closure {        /* a function value capturing its frame */
    OBM_OBJECT_HEAD
    obm_object *env;
} Closure;

typedef struct File {           /* an external resource, not a container */
    OBM_OBJECT_HEAD
    int fd;
} File;

static long frames_freed, closures_freed, files_closed;

static int frame_traverse(obm_object *o, obm_visitproc visit, void *arg) {
    Frame *f = (Frame *)o;
    for (int i = 0; i < 4; i++)
        if (f->locals[i]) {
            int r = visit(f->locals[i], arg);
            if (r)
                return r;
        }
    return 0;
}
static int frame_clear(obm_object *o) {
    Frame *f = (Frame *)o;
    for (int i = 0; i < 4; i++) {
        obm_object *t = f->locals[i];
        f->locals[i] = NULL;
        obm_xdecref(t);
    }
    return 0;
}
static void frame_dealloc(obm_object *o) { frames_freed++; frame_clear(o); }

static int closure_traverse(obm_object *o, obm_visitproc visit, void *arg) {
    Closure *c = (Closure *)o;
    return c->env ? visit(c->env, arg) : 0;
}
static int closure_clear(obm_object *o) {
    Closure *c = (Closure *)o;
    obm_object *t = c->env;
    c->env = NULL;
    obm_xdecref(t);
    return 0;
}
static void closure_dealloc(obm_object *o) { closures_freed++; closure_clear(o); }

/* PEP 442 finalizer: runs once, before the object is freed. */
static void file_finalize(obm_object *o) {
    File *f = (File *)o;
    if (f->fd >= 0) {
        files_closed++;
        f->fd = -1;
    }
}

static const obm_type FrameType = { "frame", sizeof(Frame), OBM_TPFLAGS_HAVE_GC, NULL, frame_dealloc, frame_traverse, frame_clear };
static const obm_type ClosureType = { "closure", sizeof(Closure), OBM_TPFLAGS_HAVE_GC, NULL, closure_dealloc, closure_traverse, closure_clear };
static const obm_type FileType = { "file", sizeof(File), 0, file_finalize, NULL, NULL, NULL };

static obm_object *new_tracked(const obm_type *t) {
    obm_object *o = obm_new(t);
    if (!o) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return o;
}

/* ---- weak references ---- */

/* A module: expensive to load, shared while in use, weakly cached. */
typedef struct Module {
    OBM_OBJECT_HEAD
    obm_object *self_ref;       /* a cycle, so only the collector frees it */
    int id;
} Module;
/* Its one reference is a plain field, so the type lists it instead of
 * writing traverse, clear and dealloc: obmem reads and drops it itself. */
static const obm_type_refs ModuleType = {
    .base = { .name = "module", .size = sizeof(Module),
              .flags = OBM_TPFLAGS_HAVE_GC | OBM_TPFLAGS_WEAKREFABLE | OBM_TPFLAGS_REF_MAP },
    .refs = OBM_REF_FIELD(Module, self_ref),
};

enum { CACHE_SLOTS = 64 };
static obm_weakref *cache[CACHE_SLOTS]; /* module id -> weak reference */
static int cache_entries, loads;

/* The weakref callback: the module died, forget the entry. */
static void cache_evict(obm_weakref *ref, void *ctx) {
    int id = (int)(intptr_t)ctx;
    if (cache[id] == ref) {
        cache[id] = NULL;
        cache_entries--;
        obm_decref((obm_object *)ref); /* the cache's reference; obmem holds another */
    }
}

/* Returns a new reference to module `id`, loading it only if no one holds it. */
static obm_object *import_module(int id) {
    obm_object *m = cache[id] ? obm_weakref_get(cache[id]) : NULL;
    if (m)
        return m;
    Module *mod = (Module *)new_tracked(&ModuleType.base);
    mod->id = id;
    obm_incref((obm_object *)mod);
    mod->self_ref = (obm_object *)mod;
    obm_gc_track((obm_object *)mod);
    cache[id] = obm_weakref_new((obm_object *)mod, cache_evict, (void *)(intptr_t)id);
    cache_entries++;
    loads++;
    return (obm_object *)mod;
}

static int weak_cache_demo(void) {
    printf("\nweak-value cache: 1000 imports of 64 modules, 8 kept in use\n");
    obm_object *in_use[8];
    for (int i = 0; i < 1000; i++) {
        obm_object *m = import_module(i % CACHE_SLOTS);
        if (i < 8)
            in_use[i] = m;
        else
            obm_decref(m); /* still cached until a collection frees it */
    }
    printf("  %d loads, %d cache entries\n", loads, cache_entries);
    obm_gc_collect(2); /* the unused modules (cycles) die: callbacks evict them */
    printf("  after a collection: %d cache entries (the modules in use)\n", cache_entries);
    int before = loads;
    for (int i = 0; i < 8; i++)
        obm_decref(import_module(i)); /* hits: no new load */
    printf("  importing the 8 in-use modules again: %d new loads\n", loads - before);
    int ok = cache_entries == 8 && loads == before;
    for (int i = 0; i < 8; i++)
        obm_decref(in_use[i]);
    obm_gc_collect(2);
    printf("  all released: %d cache entries\n", cache_entries);
    return ok && cache_entries == 0;
}

/* Data attached to an object from the outside, referring back to it. */
typedef struct Meta {
    OBM_OBJECT_HEAD
    obm_object *owner;
} Meta;
static long metas_freed;
static int meta_traverse(obm_object *o, obm_visitproc visit, void *arg) {
    Meta *m = (Meta *)o;
    return m->owner ? visit(m->owner, arg) : 0;
}
static int meta_clear(obm_object *o) {
    Meta *m = (Meta *)o;
    obm_object *t = m->owner;
    m->owner = NULL;
    obm_xdecref(t);
    return 0;
}
static void meta_dealloc(obm_object *o) { metas_freed++; meta_clear(o); }
static const obm_type MetaType = { "meta", sizeof(Meta), OBM_TPFLAGS_HAVE_GC, NULL, meta_dealloc, meta_traverse, meta_clear };

static int ephemeron_table_demo(void) {
    enum { N = 1000 };
    printf("\nephemeron table: metadata for %d modules, each pointing back at its module\n", N);
    static obm_object *keys[N], *table[N];
    for (int i = 0; i < N; i++) {
        Module *k = (Module *)new_tracked(&ModuleType.base);
        k->id = i;
        obm_gc_track((obm_object *)k);
        Meta *m = (Meta *)new_tracked(&MetaType);
        obm_incref((obm_object *)k);
        m->owner = (obm_object *)k; /* value -> key */
        obm_gc_track((obm_object *)m);
        table[i] = obm_ephemeron_new((obm_object *)k, (obm_object *)m);
        obm_decref((obm_object *)m); /* the table holds it */
        keys[i] = (obm_object *)k;
    }
    for (int i = 0; i < N; i += 2)
        obm_decref(keys[i]); /* half the modules are no longer used */
    long n = (long)obm_gc_collect(2);
    int live = 0;
    for (int i = 0; i < N; i++) {
        obm_object *v = obm_ephemeron_value(table[i]);
        if (v) {
            live++;
            obm_decref(v);
        }
    }
    printf("  dropped %d modules: the collection freed %ld objects (modules and their metadata),\n"
           "  %d entries still alive, %ld metadata objects freed\n", N / 2, n, live, metas_freed);
    int ok = live == N / 2 && metas_freed == N / 2;
    for (int i = 0; i < N; i++) {
        if (i % 2)
            obm_decref(keys[i]);
        obm_decref(table[i]);
    }
    obm_gc_collect(2);
    return ok && metas_freed == N;
}

/* ---- the "interpreter" ---- */

/* A call: make a frame, a closure over it stored in the frame (a cycle),
 * maybe open a file; return the closure if the caller keeps it. */
static obm_object *call(long depth, int keep_result) {
    Frame *f = (Frame *)new_tracked(&FrameType);
    f->depth = depth;
    obm_gc_track((obm_object *)f);

    Closure *c = (Closure *)new_tracked(&ClosureType);
    obm_incref((obm_object *)f);
    c->env = (obm_object *)f;
    obm_gc_track((obm_object *)c);
    f->locals[0] = (obm_object *)c; /* frame -> closure -> frame */

    if (depth % 3 == 0) {
        File *file = (File *)new_tracked(&FileType);
        file->fd = (int)(depth % 1000) + 3;
        f->locals[1] = (obm_object *)file;
    }
    obm_object *result = NULL;
    if (keep_result) {
        result = (obm_object *)c;
        obm_incref(result);
    }
    obm_decref((obm_object *)f); /* the call returns: its frame is dropped */
    return result;
}

static void on_collection(int phase, const obm_gc_info *info, void *ctx) {
    long *log = ctx;
    if (phase == OBM_GC_STOP && info->generation == 2 && log[0] < 3) {
        printf("  [callback] full collection done: %zu collected\n", info->collected);
        log[0]++;
    }
}

int main(void) {
    long full_logged = 0;
    obm_gc_callback_add(on_collection, &full_logged);
    int th[3];
    obm_gc_get_threshold(th);
    printf("thresholds: %d %d %d\n", th[0], th[1], th[2]);

    /* 200,000 calls; every 1000th result is kept alive in "globals". */
    enum { CALLS = 200000, KEEP_EVERY = 1000 };
    obm_object *globals[CALLS / KEEP_EVERY];
    int nglobals = 0;
    for (long i = 0; i < CALLS; i++) {
        obm_object *r = call(i, i % KEEP_EVERY == 0);
        if (r)
            globals[nglobals++] = r;
    }

    int count[3];
    obm_gc_get_count(count);
    printf("after %d calls: count = %d %d %d, frames freed %ld, files closed %ld\n", CALLS, count[0], count[1],
           count[2], frames_freed, files_closed);

    printf("one explicit full collection with OBM_GC_DEBUG_STATS:\n");
    fflush(stdout);
    obm_gc_set_debug(OBM_GC_DEBUG_STATS);
    intptr_t n = obm_gc_collect(2);
    obm_gc_set_debug(0);
    printf("  obm_gc_collect(2) found %ld unreachable objects\n", (long)n);

    /* The kept closures (and their frames) are still alive. */
    Closure *kept = (Closure *)globals[nglobals - 1];
    printf("kept closure -> frame at depth %ld (refcount %ld)\n", ((Frame *)kept->env)->depth,
           (long)obm_refcnt(kept->env));

    /* Drop the globals: their cycles become garbage too. */
    for (int i = 0; i < nglobals; i++)
        obm_decref(globals[i]);
    n = obm_gc_collect(2);
    printf("after dropping %d globals: obm_gc_collect(2) found %ld\n", nglobals, (long)n);

    obm_gc_gen_stats st[3];
    obm_gc_get_stats(st);
    printf("\n%-10s %12s %12s %14s\n", "generation", "collections", "collected", "uncollectable");
    for (int g = 0; g < 3; g++)
        printf("%-10d %12zu %12zu %14zu\n", g, st[g].collections, st[g].collected, st[g].uncollectable);
    obm_gc_get_count(count);
    printf("count now: %d %d %d\n", count[0], count[1], count[2]);
    printf("frames freed %ld / %d, closures freed %ld, files closed %ld / %d\n", frames_freed, CALLS,
           closures_freed, files_closed, (CALLS + 2) / 3);
    obm_gc_callback_remove(on_collection, &full_logged);
    int ok = frames_freed == CALLS && closures_freed == CALLS;
    ok &= weak_cache_demo();
    ok &= ephemeron_table_demo();
    return ok ? 0 : 1;
}
