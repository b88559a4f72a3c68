/* Finalizers (PEP 442) in collections and on the refcount path: run at most
 * once, may resurrect (transitively), resurrection does not block the
 * cleanup of other garbage, finalizers may create garbage or trigger
 * collections. Mirrors CPython Lib/test/test_gc.py. */
#include "gc_test_util.h"

/* ---- Lazarus: a self-loop whose finalizer stores a new reference ---- */
static long resurrected;
static obm_object *storage[1000];
static int nstorage;

static void lazarus_finalize(obm_object *o) {
    resurrected++;
    obm_incref(o);
    storage[nstorage++] = o;
}
static const obm_type LazarusType = {
    "Lazarus", sizeof(Node), OBM_TPFLAGS_HAVE_GC, lazarus_finalize, node_dealloc, node_traverse, node_clear,
};

static void storage_clear(void) {
    while (nstorage > 0)
        obm_decref(storage[--nstorage]);
}

static void get_collected(long *c, long *nc) {
    obm_gc_gen_stats st[3];
    obm_gc_get_stats(st);
    *c = (long)st[2].collected;
    *nc = (long)st[2].uncollectable;
}

/* test_resurrection_only_happens_once_per_object */
static void test_resurrection_only_happens_once_per_object(void) {
    gc_settle();
    resurrected = 0;
    Node *laz = new_of(&LazarusType, 1);
    node_set(laz, 0, laz);
    CHECK_EQ(resurrected, 0);
    obm_decref(OBJ(laz));
    CHECK_EQ(obm_gc_collect(2), 0); /* resurrected: not counted */
    CHECK_EQ(resurrected, 1);
    CHECK_EQ(nstorage, 1);
    CHECK(storage[0] == OBJ(laz));
    CHECK(obm_gc_is_tracked(OBJ(laz)));
    /* Dropping the stored reference: collected without a second finalize. */
    storage_clear();
    CHECK_EQ(obm_gc_collect(2), 1);
    CHECK_EQ(resurrected, 1);
}

/* test_resurrection_is_transitive: laz <-> cargo (a self-loop); the
 * finalizer stores laz, so cargo must survive intact too. */
static void test_resurrection_is_transitive(void) {
    gc_settle();
    resurrected = 0;
    Node *laz = new_of(&LazarusType, 1);
    Node *cargo = node_new(2);
    node_set(cargo, 0, cargo);
    node_set(laz, 1, cargo);
    node_set(cargo, 1, laz);
    obm_decref(OBJ(laz));
    obm_decref(OBJ(cargo));
    long d0 = node_deallocs;
    CHECK_EQ(obm_gc_collect(2), 0);
    CHECK_EQ(node_deallocs, d0);
    CHECK_EQ(nstorage, 1);
    Node *inst = (Node *)storage[0];
    CHECK_EQ(inst->id, 1);
    CHECK(inst->slot[1] == OBJ(cargo));
    CHECK_EQ(((Node *)inst->slot[1])->id, 2);
    CHECK(((Node *)inst->slot[1])->slot[0] == OBJ(cargo));
    storage_clear();
    CHECK_EQ(obm_gc_collect(2), 2);
    CHECK_EQ(node_deallocs - d0, 2);
}

/* test_resurrection_does_not_block_cleanup_of_other_objects */
static void test_resurrection_does_not_block_cleanup_of_other_objects(void) {
    enum { N = 100 };
    gc_settle();
    long oldc, oldnc, c, nc;
    get_collected(&oldc, &oldnc);
    /* No problems if just collecting A() instances. */
    for (int i = 0; i < N; i++) {
        Node *a = node_new(i);
        node_set(a, 0, a);
        obm_decref(OBJ(a));
    }
    CHECK_EQ(obm_gc_collect(2), N);
    get_collected(&c, &nc);
    CHECK_EQ(c - oldc, N);
    CHECK_EQ(nc - oldnc, 0);
    /* But Z() is not actually collected. */
    oldc = c, oldnc = nc;
    Node *z = new_of(&LazarusType, 0);
    node_set(z, 0, z);
    obm_decref(OBJ(z));
    CHECK_EQ(obm_gc_collect(2), 0);
    get_collected(&c, &nc);
    CHECK_EQ(c - oldc, 0);
    CHECK_EQ(nc - oldnc, 0);
    /* Z() should not prevent anything else from being collected. */
    oldc = c, oldnc = nc;
    for (int i = 0; i < N; i++) {
        Node *a = node_new(i);
        node_set(a, 0, a);
        obm_decref(OBJ(a));
    }
    z = new_of(&LazarusType, 0);
    node_set(z, 0, z);
    obm_decref(OBJ(z));
    CHECK_EQ(obm_gc_collect(2), N);
    get_collected(&c, &nc);
    CHECK_EQ(c - oldc, N);
    CHECK_EQ(nc - oldnc, 0);
    /* The 2 Zs are still in storage; clearing it makes them garbage. */
    oldc = c, oldnc = nc;
    CHECK_EQ(nstorage, 2);
    storage_clear();
    CHECK_EQ(obm_gc_collect(2), 2);
    get_collected(&c, &nc);
    CHECK_EQ(c - oldc, 2);
    CHECK_EQ(nc - oldnc, 0);
}

/* test_is_finalized */
static void test_is_finalized(void) {
    gc_settle();
    Node *leaf = new_of(&LeafType, 0);
    CHECK(!obm_gc_is_finalized(OBJ(leaf)));
    obm_decref(OBJ(leaf));
    Node *laz = new_of(&LazarusType, 1);
    CHECK(!obm_gc_is_finalized(OBJ(laz)));
    obm_decref(OBJ(laz)); /* refcount path: finalize resurrects it */
    CHECK_EQ(nstorage, 1);
    CHECK(obm_gc_is_finalized(storage[0]));
    storage_clear(); /* second time: no finalize, freed */
    CHECK_EQ(nstorage, 0);
}

/* test_bug21435: a finalizer that drops a reference to other garbage in
 * the middle of finalize_garbage (objects vanish from the list). */
static void b_finalize(obm_object *o) {
    Node *n = (Node *)o;
    obm_object *t = n->slot[1];
    n->slot[1] = NULL;
    obm_xdecref(t);
}
static const obm_type BType = {
    "B", sizeof(Node), OBM_TPFLAGS_HAVE_GC, b_finalize, node_dealloc, node_traverse, node_clear,
};
static void test_bug21435(void) {
    gc_settle();
    for (int round = 0; round < 2; round++) {
        Node *a = node_new(1);
        Node *x = node_new(2);
        Node *b = new_of(&BType, 3);
        node_set(b, 0, x);
        node_set(a, 1, b);
        node_set(b, 1, a);
        if (round) { /* other order on the list */
            obm_decref(OBJ(b));
            obm_decref(OBJ(a));
        } else {
            obm_decref(OBJ(a));
            obm_decref(OBJ(b));
        }
        obm_decref(OBJ(x));
        long d0 = node_deallocs;
        obm_gc_collect(2);
        CHECK_EQ(node_deallocs - d0, 3);
    }
}

/* A finalizer that creates new cyclic garbage: that garbage is not part of
 * the current collection but is collected by the next one. */
static void maker_finalize(obm_object *o) {
    (void)o;
    Node *fresh = node_new(99);
    node_set(fresh, 0, fresh);
    obm_decref(OBJ(fresh));
}
static const obm_type MakerType = {
    "Maker", sizeof(Node), OBM_TPFLAGS_HAVE_GC, maker_finalize, node_dealloc, node_traverse, node_clear,
};
static void test_finalizer_creates_garbage(void) {
    gc_settle();
    Node *m = new_of(&MakerType, 1);
    node_set(m, 0, m);
    obm_decref(OBJ(m));
    long d0 = node_deallocs;
    CHECK_EQ(obm_gc_collect(2), 1);
    CHECK_EQ(node_deallocs - d0, 1);
    CHECK_EQ(obm_gc_collect(2), 1); /* the fresh self-loop */
    CHECK_EQ(node_deallocs - d0, 2);
    CHECK_EQ(obm_gc_collect(2), 0);
}

/* test_del: a finalizer that allocates tracked objects with threshold 1,
 * so automatic collections start inside deallocation. */
static void alloc_finalize(obm_object *o) {
    (void)o;
    for (int i = 0; i < 5; i++) {
        Node *t = node_new(i);
        node_set(t, 0, t);
        obm_decref(OBJ(t));
    }
}
static const obm_type AllocType = {
    "A", sizeof(Node), OBM_TPFLAGS_HAVE_GC, alloc_finalize, node_dealloc, node_traverse, node_clear,
};
static void test_del(void) {
    gc_settle();
    int th[3];
    obm_gc_get_threshold(th);
    obm_gc_enable();
    obm_gc_set_threshold(1, 10, 10);
    long d0 = node_deallocs;
    Node *a = new_of(&AllocType, 1);
    obm_decref(OBJ(a)); /* refcount path */
    Node *b = new_of(&AllocType, 2);
    node_set(b, 0, b);
    obm_decref(OBJ(b)); /* collector path, from an automatic collection */
    for (int i = 0; i < 10; i++)
        obm_decref(OBJ(node_new(i)));
    obm_gc_disable();
    obm_gc_set_threshold(th[0], th[1], th[2]);
    gc_settle();
    /* a, b, 10 plain nodes, and 5 self-loops made by each finalizer. */
    CHECK_EQ(node_deallocs - d0, 2 + 10 + 10);
}

/* A finalizer that asks for a collection during a collection gets 0 and
 * no nested collection runs. */
static long nested_result = -7;
static void collect_finalize(obm_object *o) {
    (void)o;
    nested_result = obm_gc_collect(2);
}
static const obm_type CollectType = {
    "C", sizeof(Node), OBM_TPFLAGS_HAVE_GC, collect_finalize, node_dealloc, node_traverse, node_clear,
};
static void test_collect_in_finalizer(void) {
    gc_settle();
    obm_gc_gen_stats before[3], after[3];
    obm_gc_get_stats(before);
    Node *c = new_of(&CollectType, 1);
    node_set(c, 0, c);
    obm_decref(OBJ(c));
    CHECK_EQ(obm_gc_collect(2), 1);
    CHECK_EQ(nested_result, 0);
    obm_gc_get_stats(after);
    CHECK_EQ(after[2].collections - before[2].collections, 1);
}

/* Finalizers run once per object even when the object is both collected
 * and resurrected several times over. */
static void test_finalizer_runs_once(void) {
    gc_settle();
    node_finalized = 0;
    Node *a = new_of(&FinNodeType, 1), *b = new_of(&FinNodeType, 2);
    node_set(a, 0, b);
    node_set(b, 0, a);
    obm_decref(OBJ(a));
    obm_decref(OBJ(b));
    CHECK_EQ(obm_gc_collect(2), 2);
    CHECK_EQ(node_finalized, 2);
    Node *c = new_of(&FinNodeType, 3); /* refcount path */
    obm_decref(OBJ(c));
    CHECK_EQ(node_finalized, 3);
}

int main(void) {
    obm_gc_disable();
    RUN(test_resurrection_only_happens_once_per_object);
    RUN(test_resurrection_is_transitive);
    RUN(test_resurrection_does_not_block_cleanup_of_other_objects);
    RUN(test_is_finalized);
    RUN(test_bug21435);
    RUN(test_finalizer_creates_garbage);
    RUN(test_del);
    RUN(test_collect_in_finalizer);
    RUN(test_finalizer_runs_once);
    printf("test_gc_finalizers: all passed\n");
    return 0;
}
