/* Generations, counts, thresholds, automatic collection, promotion, the
 * long-lived rule, stats and freeze. Mirrors CPython Lib/test/test_gc.py
 * (test_get_count, test_collect_generations, test_get_objects_generations,
 * test_get_stats, test_freeze) and gc_collect_generations in gcmodule.c. */
#include "gc_test_util.h"

static void get_count(int c[3]) { obm_gc_get_count(c); }

struct find { obm_object *target; int found; };
static int find_visit(obm_object *o, void *arg) {
    struct find *f = arg;
    if (o == f->target)
        f->found++;
    return 0;
}
static int in_generation(void *o, int gen) {
    struct find f = { OBJ(o), 0 };
    obm_gc_get_objects(gen, find_visit, &f);
    return f.found;
}

/* test_get_count */
static void test_get_count(void) {
    gc_settle();
    int a[3], d[3];
    get_count(a);
    CHECK_EQ(a[1], 0);
    CHECK_EQ(a[2], 0);
    CHECK(a[0] < 5);
    Node *x = node_new(1);
    get_count(d);
    CHECK_EQ(d[1], 0);
    CHECK_EQ(d[2], 0);
    CHECK(d[0] > a[0]);
    CHECK_EQ(d[0], a[0] + 1);
    /* Freeing a GC object counts down; untracked/non-GC objects do not count. */
    obm_decref(OBJ(x));
    get_count(d);
    CHECK_EQ(d[0], a[0]);
    Node *leaf = new_of(&LeafType, 2);
    get_count(d);
    CHECK_EQ(d[0], a[0]);
    obm_decref(OBJ(leaf));
    /* Tracking twice counts once. */
    Node *y = node_new(3);
    obm_gc_track(OBJ(y));
    get_count(d);
    CHECK_EQ(d[0], a[0] + 1);
    obm_decref(OBJ(y));
}

/* test_collect_generations */
static void test_collect_generations(void) {
    gc_settle();
    Node *x = node_new(1);
    int c[3];
    obm_gc_collect(0);
    get_count(c);
    CHECK_EQ(c[1], 1);
    CHECK_EQ(c[2], 0);
    obm_gc_collect(1);
    get_count(c);
    CHECK_EQ(c[1], 0);
    CHECK_EQ(c[2], 1);
    obm_gc_collect(2);
    get_count(c);
    CHECK_EQ(c[1], 0);
    CHECK_EQ(c[2], 0);
    obm_decref(OBJ(x));
    CHECK_EQ(obm_gc_collect(3), -1);
    CHECK_EQ(obm_gc_collect(-1), -1);
}

/* test_get_objects_generations: an object trickles one generation older
 * per collection of its generation, and stays in 2. */
static void test_get_objects_generations(void) {
    gc_settle();
    Node *l = node_new(1);
    node_set(l, 0, l);
    CHECK(in_generation(l, 0));
    CHECK(!in_generation(l, 1));
    CHECK(!in_generation(l, 2));
    CHECK_EQ(in_generation(l, -1), 1);
    obm_gc_collect(0);
    CHECK(!in_generation(l, 0));
    CHECK(in_generation(l, 1));
    CHECK(!in_generation(l, 2));
    obm_gc_collect(1);
    CHECK(!in_generation(l, 0));
    CHECK(!in_generation(l, 1));
    CHECK(in_generation(l, 2));
    obm_gc_collect(2);
    CHECK(in_generation(l, 2));
    CHECK_EQ(in_generation(l, -1), 1);
    /* A collection of a younger generation does not touch older objects:
     * the garbage cycle in gen 2 survives collect(0) and collect(1). */
    obm_decref(OBJ(l));
    CHECK_EQ(obm_gc_collect(0), 0);
    CHECK_EQ(obm_gc_collect(1), 0);
    CHECK_EQ(obm_gc_collect(2), 1);
    CHECK_EQ(obm_gc_get_objects(3, find_visit, NULL), -1);
}

/* A young cycle referenced from an old object survives a young collection. */
static void test_old_object_keeps_young_alive(void) {
    gc_settle();
    Node *old = node_new(1);
    obm_gc_collect(1);
    obm_gc_collect(1); /* now in gen 2 */
    CHECK(in_generation(old, 2));
    Node *a = node_new(2), *b = node_new(3);
    node_set(a, 0, b);
    node_set(b, 0, a);
    node_set(old, 0, a);
    obm_decref(OBJ(a));
    obm_decref(OBJ(b));
    CHECK_EQ(obm_gc_collect(0), 0);
    CHECK(in_generation(a, 1));
    CHECK_EQ(((Node *)old->slot[0])->id, 2);
    obm_decref(OBJ(old));
    CHECK_EQ(obm_gc_collect(2), 2);
}

/* test_get_stats */
static void test_get_stats(void) {
    obm_gc_gen_stats old[3], st[3];
    obm_gc_get_stats(old);
    obm_gc_collect(0);
    obm_gc_get_stats(st);
    CHECK_EQ(st[0].collections, old[0].collections + 1);
    CHECK_EQ(st[1].collections, old[1].collections);
    CHECK_EQ(st[2].collections, old[2].collections);
    obm_gc_collect(2);
    obm_gc_get_stats(st);
    CHECK_EQ(st[0].collections, old[0].collections + 1);
    CHECK_EQ(st[1].collections, old[1].collections);
    CHECK_EQ(st[2].collections, old[2].collections + 1);
    /* Collected counts go to the generation collected. */
    Node *l = node_new(1);
    node_set(l, 0, l);
    obm_decref(OBJ(l));
    obm_gc_collect(0);
    obm_gc_get_stats(st);
    CHECK_EQ(st[0].collected, old[0].collected + 1);
    CHECK_EQ(st[0].uncollectable, old[0].uncollectable);
}

/* Automatic collection: with thresholds (10, 2, 2) the 11th tracked object
 * starts a collection of generation 0; every 4th one is of generation 1
 * (count[1] = 3 > 2); the 13th is the first full one (count[2] = 3 > 2, and
 * nothing long-lived exists, so the 25% rule lets it through). */
static int auto_log[64];
static int auto_n;
static void log_cb(int phase, const obm_gc_info *info, void *ctx) {
    (void)ctx;
    if (phase == OBM_GC_START && auto_n < 64)
        auto_log[auto_n++] = info->generation;
}
static void test_threshold_automatic_collection(void) {
    gc_settle();
    enum { N = 13 * 11 };
    static Node *keep[N];
    obm_gc_set_threshold(10, 2, 2);
    int th[3];
    obm_gc_get_threshold(th);
    CHECK_EQ(th[0], 10);
    CHECK_EQ(th[1], 2);
    CHECK_EQ(th[2], 2);
    CHECK_EQ(obm_gc_callback_add(log_cb, NULL), 0);
    auto_n = 0;
    obm_gc_enable();
    CHECK(obm_gc_isenabled());
    for (int i = 0; i < N; i++) {
        keep[i] = node_new(i);
        if (i % 11 == 10) /* the 11th object of each group triggered one */
            CHECK_EQ(auto_n, i / 11 + 1);
        else
            CHECK_EQ(auto_n, i / 11);
    }
    obm_gc_disable();
    CHECK(!obm_gc_isenabled());
    CHECK_EQ(auto_n, 13);
    static const int expect[13] = { 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 2 };
    for (int i = 0; i < 13; i++)
        CHECK_EQ(auto_log[i], expect[i]);
    /* Disabled: no automatic collection. */
    for (int i = 0; i < 100; i++)
        obm_decref(OBJ(node_new(i)));
    CHECK_EQ(auto_n, 13);
    /* Threshold 0 disables automatic collection even when enabled. */
    obm_gc_set_threshold(0, 2, 2);
    obm_gc_enable();
    for (int i = 0; i < 100; i++)
        obm_decref(OBJ(node_new(i)));
    obm_gc_disable();
    CHECK_EQ(auto_n, 13);
    CHECK_EQ(obm_gc_callback_remove(log_cb, NULL), 0);
    for (int i = 0; i < N; i++)
        obm_decref(OBJ(keep[i]));
    obm_gc_set_threshold(700, 10, 10);
}

/* The 25% rule: a full collection waits until the objects promoted to
 * generation 2 since the last one reach a quarter of its survivors. */
static int full_seen;
static void full_cb(int phase, const obm_gc_info *info, void *ctx) {
    (void)ctx;
    if (phase == OBM_GC_START && info->generation == 2)
        full_seen = 1;
}
static void test_long_lived_rule(void) {
    enum { OLD = 2000, NEW = 2000 };
    static Node *old[OLD], *young[NEW];
    for (int i = 0; i < OLD; i++)
        old[i] = node_new(i);
    gc_settle(); /* long_lived_total = OLD */
    obm_gc_set_threshold(10, 1, 1);
    CHECK_EQ(obm_gc_callback_add(full_cb, NULL), 0);
    full_seen = 0;
    obm_gc_enable();
    int n = 0;
    while (n < NEW && !full_seen) {
        young[n] = node_new(n);
        n++;
    }
    obm_gc_disable();
    CHECK(full_seen);
    /* count[2] passes its threshold after a few dozen objects, but the full
     * collection waits for OLD/4 promotions (all young objects stay alive). */
    CHECK(n >= OLD / 4);
    CHECK(n < OLD / 4 + 50);
    CHECK_EQ(obm_gc_callback_remove(full_cb, NULL), 0);
    for (int i = 0; i < n; i++)
        obm_decref(OBJ(young[i]));
    for (int i = 0; i < OLD; i++)
        obm_decref(OBJ(old[i]));
    obm_gc_set_threshold(700, 10, 10);
}

/* test_freeze (+ frozen objects are ignored by collections) */
static void test_freeze(void) {
    gc_settle();
    Node *l = node_new(1);
    node_set(l, 0, l);
    obm_gc_freeze();
    CHECK(obm_gc_get_freeze_count() > 0);
    int c[3];
    get_count(c);
    CHECK_EQ(c[0], 0);
    CHECK(!in_generation(l, -1));
    obm_decref(OBJ(l));
    CHECK_EQ(obm_gc_collect(2), 0); /* frozen garbage is not looked at */
    CHECK(obm_gc_is_tracked(OBJ(l)));
    obm_gc_unfreeze();
    CHECK_EQ(obm_gc_get_freeze_count(), 0);
    CHECK(in_generation(l, 2));
    CHECK_EQ(obm_gc_collect(2), 1);
}

/* test_is_tracked: tracking twice / untracking twice is harmless. */
static void test_is_tracked(void) {
    gc_settle();
    Node *n = (Node *)obm_new(&NodeType);
    CHECK(!obm_gc_is_tracked(OBJ(n)));
    obm_gc_untrack(OBJ(n));
    obm_gc_track(OBJ(n));
    obm_gc_track(OBJ(n));
    CHECK(obm_gc_is_tracked(OBJ(n)));
    CHECK_EQ(in_generation(n, 0), 1);
    obm_gc_untrack(OBJ(n));
    obm_gc_untrack(OBJ(n));
    CHECK(!obm_gc_is_tracked(OBJ(n)));
    CHECK_EQ(in_generation(n, -1), 0);
    /* An untracked cycle is invisible to the collector. */
    node_set(n, 0, n);
    obm_decref(OBJ(n));
    CHECK_EQ(obm_gc_collect(2), 0);
    obm_gc_track(OBJ(n));
    CHECK_EQ(obm_gc_collect(2), 1);
    Node *leaf = new_of(&LeafType, 1);
    CHECK(!obm_gc_is_tracked(OBJ(leaf)));
    obm_gc_untrack(OBJ(leaf));
    obm_decref(OBJ(leaf));
}

int main(void) {
    obm_gc_disable();
    RUN(test_get_count);
    RUN(test_collect_generations);
    RUN(test_get_objects_generations);
    RUN(test_old_object_keeps_young_alive);
    RUN(test_get_stats);
    RUN(test_threshold_automatic_collection);
    RUN(test_long_lived_rule);
    RUN(test_freeze);
    RUN(test_is_tracked);
    printf("test_gc_generations: all passed\n");
    return 0;
}
