/* Cycles of containers are found and collected with exact counts
 * (CPython Lib/test/test_gc.py: test_list, test_dict, test_tuple,
 * test_class, test_newinstance, test_function, test_bug21435-style
 * mixtures), and reachable objects are left alone. */
#include "gc_test_util.h"

/* test_list: l = []; l.append(l); del l; gc.collect() == 1 */
static void test_list(void) {
    gc_settle();
    long before = node_deallocs;
    Node *l = node_new(1);
    node_set(l, 0, l);
    obm_decref(OBJ(l));
    CHECK_EQ(obm_gc_collect(2), 1);
    CHECK_EQ(node_deallocs - before, 1);
}

/* test_dict: d = {}; d[1] = d -- a self-cycle through a second slot */
static void test_dict(void) {
    gc_settle();
    Node *d = node_new(1);
    node_set(d, 3, d);
    obm_decref(OBJ(d));
    CHECK_EQ(obm_gc_collect(2), 1);
}

/* test_tuple: t = ([],); t[0].append(t) -> 2 objects */
static void test_tuple(void) {
    gc_settle();
    Node *l = node_new(1);
    Node *t = node_new(2);
    node_set(t, 0, l);
    node_set(l, 0, t);
    obm_decref(OBJ(l));
    obm_decref(OBJ(t));
    CHECK_EQ(obm_gc_collect(2), 2);
}

/* test_class / test_newinstance: a bigger cycle that also owns non-GC
 * objects, which reference counting frees once the cycle is cleared. */
static void test_newinstance(void) {
    gc_settle();
    long before = node_deallocs;
    Node *a = node_new(1), *b = node_new(2), *c = node_new(3);
    Node *leaf = new_of(&LeafType, 4);
    node_set(a, 0, b);
    node_set(b, 0, c);
    node_set(c, 0, a);
    node_set(b, 1, leaf);
    obm_decref(OBJ(leaf));
    obm_decref(OBJ(a));
    obm_decref(OBJ(b));
    obm_decref(OBJ(c));
    /* The leaf is not a GC object: it is not counted, but it is freed. */
    CHECK_EQ(obm_gc_collect(2), 3);
    CHECK_EQ(node_deallocs - before, 4);
}

/* A cycle held from outside survives; dropping the outside reference
 * makes it collectable (mirrors test_function's "still referenced" part). */
static void test_reachable_cycle_survives(void) {
    gc_settle();
    Node *a = node_new(1), *b = node_new(2);
    node_set(a, 0, b);
    node_set(b, 0, a);
    obm_decref(OBJ(b));
    CHECK_EQ(obm_gc_collect(2), 0);
    CHECK_EQ(a->id, 1);
    CHECK_EQ(((Node *)a->slot[0])->id, 2);
    obm_decref(OBJ(a));
    CHECK_EQ(obm_gc_collect(2), 2);
}

/* Garbage hanging off a cycle but not part of it is also unreachable. */
static void test_garbage_reachable_only_from_cycle(void) {
    gc_settle();
    Node *a = node_new(1), *b = node_new(2), *tail = node_new(3), *tail2 = node_new(4);
    node_set(a, 0, b);
    node_set(b, 0, a);
    node_set(b, 1, tail);
    node_set(tail, 0, tail2);
    obm_decref(OBJ(a));
    obm_decref(OBJ(b));
    obm_decref(OBJ(tail));
    obm_decref(OBJ(tail2));
    CHECK_EQ(obm_gc_collect(2), 4);
}

/* An object reached late in the scan (after it was moved to the
 * unreachable list) is moved back: a long chain in reverse list order
 * held only at its far end. */
static void test_reachable_found_late(void) {
    gc_settle();
    enum { N = 1000 };
    Node *nodes[N];
    for (int i = 0; i < N; i++)
        nodes[i] = node_new(i);
    /* nodes[i] -> nodes[i-1]; nodes[0] -> nodes[N-1] closes a ring. */
    for (int i = 1; i < N; i++)
        node_set(nodes[i], 0, nodes[i - 1]);
    node_set(nodes[0], 0, nodes[N - 1]);
    Node *keep = nodes[N - 1];
    obm_incref(OBJ(keep));
    for (int i = 0; i < N; i++)
        obm_decref(OBJ(nodes[i]));
    CHECK_EQ(obm_gc_collect(2), 0);
    /* Walk the ring: everything is intact. */
    Node *p = keep;
    for (int i = N - 1; i >= 0; i--) {
        CHECK_EQ(p->id, i);
        p = (Node *)p->slot[0];
    }
    CHECK(p == keep);
    obm_decref(OBJ(keep));
    CHECK_EQ(obm_gc_collect(2), N);
}

/* A type without clear cannot break its cycle: the objects survive in
 * the oldest generation (CPython does the same) and nothing crashes. */
static const obm_type NoClearType = {
    "NoClear", sizeof(Node), OBM_TPFLAGS_HAVE_GC, NULL, node_dealloc, node_traverse, NULL,
};
static void test_no_clear_survives(void) {
    gc_settle();
    Node *a = new_of(&NoClearType, 1);
    node_set(a, 0, a);
    obm_decref(OBJ(a));
    CHECK_EQ(obm_gc_collect(2), 1);
    CHECK_EQ(obm_refcnt(OBJ(a)), 1);
    CHECK(obm_gc_is_tracked(OBJ(a)));
    /* Break it by hand. */
    obm_incref(OBJ(a));
    node_clear(OBJ(a));
    obm_decref(OBJ(a));
}

int main(void) {
    obm_gc_disable();
    RUN(test_list);
    RUN(test_dict);
    RUN(test_tuple);
    RUN(test_newinstance);
    RUN(test_reachable_cycle_survives);
    RUN(test_garbage_reachable_only_from_cycle);
    RUN(test_reachable_found_late);
    RUN(test_no_clear_survives);
    printf("test_gc_cycles: all passed\n");
    return 0;
}
