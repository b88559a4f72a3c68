/* collect_one: builds N objects in pairs (a <-> b) and runs one full
 * collection, for callgrind (benches/gc/instr_collect.sh counts the
 * instructions of obm_gc_collect alone).
 *   collect_one N garbage|reachable WEAKEVERY WEAKREFABLE [LISTED]
 * WEAKEVERY k > 0: one object of every 2k gets a weak reference (k = 5:
 * 10% of the objects); WEAKREFABLE 1: the type has OBM_TPFLAGS_WEAKREFABLE;
 * LISTED 1: the type lists its reference (obm_type_refs) instead of having
 * a traverse function. */
#include <obmem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct Obj {
    OBM_OBJECT_HEAD
    obm_object *other;
} Obj;
static int tr(obm_object *o, obm_visitproc v, void *a) {
    Obj *x = (Obj *)o;
    return x->other ? v(x->other, a) : 0;
}
static int cl(obm_object *o) {
    Obj *x = (Obj *)o;
    obm_object *t = x->other;
    x->other = NULL;
    obm_xdecref(t);
    return 0;
}
static void de(obm_object *o) { cl(o); }
static obm_type T = {"Obj", sizeof(Obj), OBM_TPFLAGS_HAVE_GC, NULL, de, tr, cl};
#ifdef OBM_TPFLAGS_REF_MAP
static obm_type_refs L = {{"LObj", sizeof(Obj), OBM_TPFLAGS_HAVE_GC | OBM_TPFLAGS_REF_MAP, NULL, NULL, NULL, NULL},
                          OBM_REF_FIELD(Obj, other)};
#endif

int main(int argc, char **argv) {
    if (argc < 5)
        return 2;
    long n = atol(argv[1]);
    int reach = strcmp(argv[2], "reachable") == 0;
    int every = atoi(argv[3]);
#ifdef OBM_TPFLAGS_WEAKREFABLE
    if (atoi(argv[4]))
        T.flags |= OBM_TPFLAGS_WEAKREFABLE;
#else
    if (atoi(argv[4]) || every)
        return 3; /* an obmem without weak references */
#endif
    obm_type *t = &T;
    if (argc > 5 && atoi(argv[5])) {
#ifdef OBM_TPFLAGS_REF_MAP
        L.base.flags |= T.flags & OBM_TPFLAGS_WEAKREFABLE;
        t = &L.base;
#else
        return 3; /* an obmem without listed references */
#endif
    }
    obm_gc_disable();
    for (long i = 0; i < n / 2; i++) {
        Obj *a = (Obj *)obm_new(t), *b = (Obj *)obm_new(t);
        a->other = (obm_object *)b;
        b->other = (obm_object *)a;
        obm_incref((obm_object *)a);
        obm_gc_track((obm_object *)a);
        obm_gc_track((obm_object *)b);
#ifdef OBM_TPFLAGS_WEAKREFABLE
        if (every && i % every == 0)
            obm_weakref_new((obm_object *)a, NULL, NULL); /* kept: never dropped */
#endif
        if (!reach)
            obm_decref((obm_object *)a);
    }
    printf("%ld\n", (long)obm_gc_collect(2));
    return 0;
}
