/* get_objects / get_referents / get_referrers, and the rule that a visitor
 * returning non-zero stops the walk and the value is passed up. Mirrors
 * CPython Lib/test/test_gc.py test_get_referents, test_get_objects and the
 * gc.get_referrers behaviour. */
#include "gc_test_util.h"

struct collect { obm_object *seen[64]; int n; int stop_at; };
static int collect_visit(obm_object *o, void *arg) {
    struct collect *c = arg;
    if (c->n < 64)
        c->seen[c->n] = o;
    c->n++;
    return c->stop_at && c->n == c->stop_at ? 42 : 0;
}
static int contains(struct collect *c, void *o) {
    int k = 0;
    for (int i = 0; i < c->n && i < 64; i++)
        k += c->seen[i] == OBJ(o);
    return k;
}

/* test_get_referents: every reference traverse reports, GC or not, and
 * nothing for non-GC objects. */
static void test_get_referents(void) {
    Node *a = node_new(1), *b = node_new(2);
    Node *leaf = new_of(&LeafType, 3);
    node_set(a, 0, b);
    node_set(a, 2, leaf);
    node_set(a, 3, b);
    struct collect c = { .n = 0 };
    CHECK_EQ(obm_gc_get_referents(OBJ(a), collect_visit, &c), 0);
    CHECK_EQ(c.n, 3);
    CHECK_EQ(contains(&c, b), 2);
    CHECK_EQ(contains(&c, leaf), 1);
    c.n = 0;
    CHECK_EQ(obm_gc_get_referents(OBJ(leaf), collect_visit, &c), 0);
    CHECK_EQ(c.n, 0);
    c.n = 0;
    CHECK_EQ(obm_gc_get_referents(OBJ(b), collect_visit, &c), 0);
    CHECK_EQ(c.n, 0);
    /* Stopping: the visitor's value comes back through traverse. */
    c.n = 0;
    c.stop_at = 2;
    CHECK_EQ(obm_gc_get_referents(OBJ(a), collect_visit, &c), 42);
    CHECK_EQ(c.n, 2);
    obm_decref(OBJ(a));
    obm_decref(OBJ(b));
    obm_decref(OBJ(leaf));
}

/* gc.get_referrers: each tracked object that refers to the target, once. */
static void test_get_referrers(void) {
    gc_settle();
    Node *t = node_new(0);
    Node *r1 = node_new(1), *r2 = node_new(2), *other = node_new(3);
    Node *untracked = (Node *)obm_new(&NodeType);
    node_set(r1, 0, t);
    node_set(r1, 1, t); /* two references, reported once */
    node_set(r2, 3, t);
    node_set(other, 0, r1);
    node_set(untracked, 0, t); /* not tracked: not seen */
    obm_gc_collect(0); /* referrers in several generations */
    Node *r3 = node_new(4);
    node_set(r3, 0, t);
    struct collect c = { .n = 0 };
    CHECK_EQ(obm_gc_get_referrers(OBJ(t), collect_visit, &c), 0);
    CHECK_EQ(c.n, 3);
    CHECK_EQ(contains(&c, r1), 1);
    CHECK_EQ(contains(&c, r2), 1);
    CHECK_EQ(contains(&c, r3), 1);
    c.n = 0;
    c.stop_at = 1;
    CHECK_EQ(obm_gc_get_referrers(OBJ(t), collect_visit, &c), 42);
    CHECK_EQ(c.n, 1);
    obm_decref(OBJ(r1));
    obm_decref(OBJ(r2));
    obm_decref(OBJ(r3));
    obm_decref(OBJ(other));
    obm_decref(OBJ(untracked));
    obm_decref(OBJ(t));
}

/* test_get_objects: all tracked objects of a generation, or of all. */
static void test_get_objects(void) {
    gc_settle();
    Node *a = node_new(1);
    obm_gc_collect(0);
    Node *b = node_new(2);
    struct collect c = { .n = 0 };
    CHECK_EQ(obm_gc_get_objects(-1, collect_visit, &c), 0);
    CHECK_EQ(contains(&c, a), 1);
    CHECK_EQ(contains(&c, b), 1);
    int all = c.n;
    c.n = 0;
    obm_gc_get_objects(0, collect_visit, &c);
    CHECK_EQ(contains(&c, b), 1);
    CHECK_EQ(contains(&c, a), 0);
    int n0 = c.n;
    c.n = 0;
    obm_gc_get_objects(1, collect_visit, &c);
    CHECK_EQ(contains(&c, a), 1);
    int n1 = c.n;
    c.n = 0;
    obm_gc_get_objects(2, collect_visit, &c);
    CHECK_EQ(n0 + n1 + c.n, all);
    c.n = 0;
    c.stop_at = 1;
    CHECK_EQ(obm_gc_get_objects(-1, collect_visit, &c), 42);
    CHECK_EQ(c.n, 1);
    CHECK_EQ(obm_gc_get_objects(-2, collect_visit, &c), -1);
    CHECK_EQ(obm_gc_get_objects(0, NULL, NULL), -1);
    obm_decref(OBJ(a));
    obm_decref(OBJ(b));
}

/* A collection asked for from inside a walk does not run (it would move
 * the objects being walked). */
static int collect_in_visit(obm_object *o, void *arg) {
    (void)o;
    *(long *)arg = obm_gc_collect(2);
    return 1;
}
static void test_no_collection_during_walk(void) {
    gc_settle();
    Node *a = node_new(1), *b = node_new(2);
    node_set(a, 0, b);
    /* Garbage the walks' visitors would collect if a collection ran. */
    Node *x = node_new(3), *y = node_new(4);
    node_set(x, 0, y);
    node_set(y, 0, x);
    obm_decref(OBJ(x));
    obm_decref(OBJ(y));
    long r = -5;
    CHECK_EQ(obm_gc_get_objects(-1, collect_in_visit, &r), 1);
    CHECK_EQ(r, 0);
    r = -5;
    CHECK_EQ(obm_gc_get_referents(OBJ(a), collect_in_visit, &r), 1);
    CHECK_EQ(r, 0);
    r = -5;
    CHECK_EQ(obm_gc_get_referrers(OBJ(b), collect_in_visit, &r), 1);
    CHECK_EQ(r, 0);
    obm_decref(OBJ(a));
    obm_decref(OBJ(b));
    /* The cycle was still there: only now is it collected. */
    CHECK_EQ(obm_gc_collect(2), 2);
}

int main(void) {
    obm_gc_disable();
    RUN(test_get_referents);
    RUN(test_get_referrers);
    RUN(test_get_objects);
    RUN(test_no_collection_during_walk);
    printf("test_gc_introspect: all passed\n");
    return 0;
}
