/* obmem object and collector benchmarks. Prints one line per measurement:
 *   obmem <benchmark> <shape> <state> <N> <ns per object or op>
 * Shapes: "pairs" (a <-> b) and "ring" (one cycle through all objects);
 * state: "garbage" (no outside reference: the collection frees them all)
 * or "reachable" (held from outside: the collection keeps them all).
 * "wpairs" are pairs of a weak-referenceable type, and "wpairs10" the same
 * with 10% of the objects weakly referenced (weakrefs held outside, made
 * before and dropped after the timed collection). "opairs" and "oring" are
 * "pairs" and "ring" of a type that lists its reference in an obm_type_refs. */
#include <obmem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct Obj {
    OBM_OBJECT_HEAD
    obm_object *other;
} Obj;

static int obj_traverse(obm_object *o, obm_visitproc visit, void *arg) {
    Obj *x = (Obj *)o;
    return x->other ? visit(x->other, arg) : 0;
}
static int obj_clear(obm_object *o) {
    Obj *x = (Obj *)o;
    obm_object *t = x->other;
    x->other = NULL;
    obm_xdecref(t);
    return 0;
}
static void obj_dealloc(obm_object *o) { obj_clear(o); }
static const obm_type ObjType = { "Obj", sizeof(Obj), OBM_TPFLAGS_HAVE_GC, NULL, obj_dealloc, obj_traverse, obj_clear };
static const obm_type WObjType = { "WObj", sizeof(Obj), OBM_TPFLAGS_HAVE_GC | OBM_TPFLAGS_WEAKREFABLE, NULL,
                                   obj_dealloc, obj_traverse, obj_clear };
/* The same type with its reference listed in ref_offsets: the collector
 * reads the field itself instead of calling obj_traverse ("opairs",
 * "oring"), and drops it itself (no dealloc or clear). */
static const obm_type_refs OObjType = {
    { "OObj", sizeof(Obj), OBM_TPFLAGS_HAVE_GC | OBM_TPFLAGS_REF_MAP, NULL, NULL, NULL, NULL }, OBM_REF_FIELD(Obj, other)
};
static const obm_type *obj_type = &ObjType;
static obm_weakref **weak; /* the wpairs10 shape's weakrefs */
static long nweak;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static Obj *new_obj(void) {
    Obj *o = (Obj *)obm_new(obj_type);
    if (!o) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return o;
}

/* Builds n objects of the shape; returns the outside references to keep
 * (one per pair, or the ring's head) in keep[], count in *nkeep. */
static void build(const char *shape, long n, obm_object **keep, long *nkeep) {
    *nkeep = 0;
    int weakly = strcmp(shape, "wpairs10") == 0;
    obj_type = shape[0] == 'w' ? &WObjType : shape[0] == 'o' ? &OObjType.base : &ObjType;
    if (strcmp(shape, "ring") != 0 && strcmp(shape, "oring") != 0) {
        for (long i = 0; i < n / 2; i++) {
            Obj *a = new_obj(), *b = new_obj();
            if (weakly && i % 5 == 0) /* one object of every 10 */
                weak[nweak++] = obm_weakref_new((obm_object *)a, NULL, NULL);
            a->other = (obm_object *)b; /* owns the creation reference of b */
            obm_incref((obm_object *)a);
            b->other = (obm_object *)a;
            obm_gc_track((obm_object *)a);
            obm_gc_track((obm_object *)b);
            keep[(*nkeep)++] = (obm_object *)a;
        }
    } else {
        Obj *head = new_obj(), *cur = head;
        for (long i = 1; i < n; i++) {
            Obj *x = new_obj();
            cur->other = (obm_object *)x;
            obm_gc_track((obm_object *)cur);
            cur = x;
        }
        obm_incref((obm_object *)head);
        cur->other = (obm_object *)head;
        obm_gc_track((obm_object *)cur);
        keep[(*nkeep)++] = (obm_object *)head;
    }
}

static double bench_collect(const char *shape, const char *state, long n, obm_object **keep) {
    long nkeep;
    build(shape, n, keep, &nkeep);
    int garbage = strcmp(state, "garbage") == 0;
    if (garbage)
        for (long i = 0; i < nkeep; i++)
            obm_decref(keep[i]);
    double t0 = now();
    long found = obm_gc_collect(2);
    double t = now() - t0;
    if (found != (garbage ? n : 0)) {
        fprintf(stderr, "collect found %ld, expected %ld\n", found, garbage ? n : 0L);
        exit(1);
    }
    if (!garbage) {
        for (long i = 0; i < nkeep; i++)
            obm_decref(keep[i]);
        obm_gc_collect(2);
    }
    for (long i = 0; i < nweak; i++) {
        if (obm_weakref_get(weak[i]) != NULL) {
            fprintf(stderr, "a weakref to garbage is not cleared\n");
            exit(1);
        }
        obm_decref((obm_object *)weak[i]);
    }
    nweak = 0;
    return t;
}

int main(int argc, char **argv) {
    /* --quick: 1e5 objects only, fewer iterations; --collect: the full
     * collections only (to compare builds of the collector quickly). */
    int quick = 0, collect_only = 0;
    for (int i = 1; i < argc; i++) {
        quick |= strcmp(argv[i], "--quick") == 0;
        collect_only |= strcmp(argv[i], "--collect") == 0;
    }
    obm_gc_disable();
    /* incref + decref of one object */
    if (!collect_only) {
        Obj *o = new_obj();
        long iters = quick ? 10000000 : 200000000;
        double best = 1e9;
        for (int r = 0; r < 3; r++) {
            double t0 = now();
            for (long i = 0; i < iters; i++) {
                obm_incref((obm_object *)o);
                obm_decref((obm_object *)o);
            }
            double t = now() - t0;
            if (t < best)
                best = t;
        }
        printf("obmem incref_decref - - %ld %.2f\n", iters, best / iters * 1e9);
        /* the same on an immortal object (which is then never freed) */
        obm_immortalize((obm_object *)o);
        best = 1e9;
        for (int r = 0; r < 3; r++) {
            double t0 = now();
            for (long i = 0; i < iters; i++) {
                obm_incref((obm_object *)o);
                obm_decref((obm_object *)o);
            }
            double t = now() - t0;
            if (t < best)
                best = t;
        }
        printf("obmem incref_decref_immortal - - %ld %.2f\n", iters, best / iters * 1e9);
    }
    /* create + drop a weak reference (to an object of a weakrefable type) */
    if (!collect_only) {
        obj_type = &WObjType;
        Obj *o = new_obj();
        obj_type = &ObjType;
        long iters = quick ? 1000000 : 10000000;
        double best = 1e9;
        for (int r = 0; r < 3; r++) {
            double t0 = now();
            for (long i = 0; i < iters; i++)
                obm_decref((obm_object *)obm_weakref_new((obm_object *)o, NULL, NULL));
            double t = now() - t0;
            if (t < best)
                best = t;
        }
        printf("obmem weakref_create_drop - - %ld %.2f\n", iters, best / iters * 1e9);
        obm_decref((obm_object *)o);
    }
    /* create + track + destroy a GC object, automatic collection enabled
     * (as for CPython objects) */
    if (!collect_only) {
        obm_gc_enable();
        long iters = quick ? 1000000 : 20000000;
        double best = 1e9;
        for (int r = 0; r < 3; r++) {
            double t0 = now();
            for (long i = 0; i < iters; i++) {
                Obj *o = new_obj();
                obm_gc_track((obm_object *)o);
                obm_decref((obm_object *)o);
            }
            double t = now() - t0;
            if (t < best)
                best = t;
        }
        printf("obmem create_destroy - - %ld %.2f\n", iters, best / iters * 1e9);
        obm_gc_disable();
    }
    /* full collections */
    static const long sizes[] = { 100000, 1000000, 3000000 };
    static const char *shapes[] = { "pairs", "ring", "wpairs", "wpairs10", "opairs", "oring" };
    static const char *states[] = { "garbage", "reachable" };
    obm_object **keep = malloc(sizeof(obm_object *) * 3000000);
    weak = malloc(sizeof(obm_weakref *) * 3000000 / 10);
    for (int si = 0; si < (quick ? 1 : 3); si++)
        for (int sh = 0; sh < 6; sh++)
            for (int st = 0; st < 2; st++) {
                double best = 1e9;
                for (int r = 0; r < 3; r++) {
                    double t = bench_collect(shapes[sh], states[st], sizes[si], keep);
                    if (t < best)
                        best = t;
                }
                printf("obmem collect %s %s %ld %.2f\n", shapes[sh], states[st], sizes[si], best / sizes[si] * 1e9);
                fflush(stdout);
            }
    free(keep);
    free(weak);
    return 0;
}
