/* bench_refcnt: incref+decref pairs through the exported functions, on a
 * mortal object ("mortal") or an immortal one ("immortal"), through the
 * header-inline functions ("inline", "inline_immortal"), and weakref
 * creation+drop ("weakref").
 *   bench_refcnt MODE N        runs N pairs (for callgrind: see instr_refcnt.sh)
 *   bench_refcnt MODE N time   also prints ns per pair (best of 5 runs)
 * The immortal and weakref modes need the obmem that has them (issue 13). */
#include <obmem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct Obj {
    OBM_OBJECT_HEAD
    long payload;
} Obj;

#ifdef OBM_TPFLAGS_WEAKREFABLE
#define FLAGS OBM_TPFLAGS_WEAKREFABLE
#else
#define FLAGS 0
#endif
static obm_type ObjType = {.name = "Obj", .size = sizeof(Obj), .flags = FLAGS};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* noinline with an opaque pointer, so the compiler cannot fold the pairs. */
__attribute__((noinline)) static void pairs(obm_object *o, long n) {
    for (long i = 0; i < n; i++) {
        obm_incref(o);
        obm_decref(o);
        __asm__ volatile("" : : "r"(o) : "memory");
    }
}

__attribute__((noinline)) static void pairs_inline(obm_object *o, long n) {
#ifdef OBM_TPFLAGS_WEAKREFABLE
    for (long i = 0; i < n; i++) {
        obm_incref_inline(o);
        obm_decref_inline(o);
        __asm__ volatile("" : : "r"(o) : "memory");
    }
#else
    (void)o;
    (void)n;
    fprintf(stderr, "no inline reference counting in this obmem\n");
    exit(2);
#endif
}

__attribute__((noinline)) static void weakrefs(obm_object *o, long n) {
#ifdef OBM_TPFLAGS_WEAKREFABLE
    for (long i = 0; i < n; i++) {
        obm_weakref *r = obm_weakref_new(o, NULL, NULL);
        obm_decref((obm_object *)r);
    }
#else
    (void)o;
    (void)n;
    fprintf(stderr, "no weak references in this obmem\n");
    exit(2);
#endif
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s mortal|immortal|inline|inline_immortal|weakref N [time]\n", argv[0]);
        return 2;
    }
    long n = atol(argv[2]);
    obm_object *o = obm_new(&ObjType);
    int weak = strcmp(argv[1], "weakref") == 0;
    int inl = strncmp(argv[1], "inline", 6) == 0;
    if (strcmp(argv[1], "immortal") == 0 || strcmp(argv[1], "inline_immortal") == 0) {
#ifdef OBM_IMMORTAL_REFCNT
        obm_immortalize(o);
#else
        fprintf(stderr, "no immortal objects in this obmem\n");
        return 2;
#endif
    }
    if (argc > 3) {
        double best = 1e9;
        for (int r = 0; r < 5; r++) {
            double t0 = now();
            if (weak)
                weakrefs(o, n);
            else if (inl)
                pairs_inline(o, n);
            else
                pairs(o, n);
            double t = (now() - t0) / n * 1e9;
            if (t < best)
                best = t;
        }
        printf("%s: %.2f ns per %s\n", argv[1], best, weak ? "create+drop" : "incref+decref");
    } else if (weak) {
        weakrefs(o, n);
    } else if (inl) {
        pairs_inline(o, n);
    } else {
        pairs(o, n);
    }
    return 0;
}
