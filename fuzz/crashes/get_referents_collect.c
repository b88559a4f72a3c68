/*
 * Found by fuzz/fuzz_api.c (an earlier version whose get_referents visitor
 * called obm_gc_collect and expected 0).
 *
 * docs/GC.md: "obm_gc_collect from a callback, a finalizer or an
 * introspection visitor returns 0 without collecting." get_objects and
 * get_referrers hold the collector's `collecting` flag during the walk, but
 * obm_gc_get_referents does not (src/gc/introspect.rs): a collection runs
 * from inside its visitor, in the middle of the user's traverse. The header
 * only promises "no collection runs during the walk" for get_objects and
 * get_referrers, so either GC.md or get_referents is wrong.
 *
 *   cc -Iinclude fuzz/crashes/get_referents_collect.c -Ltarget/release -lobmem \
 *      -Wl,-rpath,$PWD/target/release -o /tmp/repro && /tmp/repro
 *
 * Printed "collect inside get_referents returned 2 (count[1] 0 -> 1)" and
 * exited 1 where GC.md would have 0 and no collection. Fixed by 91d4980
 * (get_referents now holds off collections); it prints 0 and exits 0.
 */
#include <obmem.h>
#include <stdio.h>

typedef struct { OBM_OBJECT_HEAD obm_object *ref; } Node;

static int traverse(obm_object *o, obm_visitproc visit, void *arg) {
    Node *n = (Node *)o;
    return n->ref ? visit(n->ref, arg) : 0;
}
static int clear(obm_object *o) {
    Node *n = (Node *)o;
    obm_object *r = n->ref;
    n->ref = NULL;
    obm_xdecref(r);
    return 0;
}
static void dealloc(obm_object *o) { clear(o); }
static const obm_type Node_type = {"Node", sizeof(Node), OBM_TPFLAGS_HAVE_GC, NULL, dealloc, traverse, clear};

static ptrdiff_t inner;
static int visit(obm_object *o, void *arg) {
    (void)o;
    (void)arg;
    inner = obm_gc_collect(0);
    return 0;
}

int main(void) {
    obm_gc_disable();
    Node *a = (Node *)obm_new(&Node_type), *b = (Node *)obm_new(&Node_type);
    obm_incref(&b->ob_base);
    a->ref = &b->ob_base;
    /* garbage: a 2-cycle nobody holds */
    Node *c = (Node *)obm_new(&Node_type), *d = (Node *)obm_new(&Node_type);
    c->ref = &d->ob_base;
    d->ref = &c->ob_base;
    obm_gc_track(&a->ob_base);
    obm_gc_track(&b->ob_base);
    obm_gc_track(&c->ob_base);
    obm_gc_track(&d->ob_base);
    int before[3], after[3];
    obm_gc_get_count(before);
    obm_gc_get_referents(&a->ob_base, visit, NULL);
    obm_gc_get_count(after);
    printf("collect inside get_referents returned %td (count[1] %d -> %d)\n", inner, before[1],
           after[1]);
    return inner != 0 || after[1] != before[1];
}
