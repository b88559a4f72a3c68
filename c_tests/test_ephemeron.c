/* Ephemerons (docs/API.md §6): a value kept alive only while its key is, and a
 * weak reference to the key, so that a value referring back to its key does
 * not keep it alive (where a plain table entry, the control, does). Chains
 * of ephemerons resolve in one collection; keys dying by count drop values. */
#include "weak_test_util.h"

static obm_object *eph_of(Node *k, Node *v) {
    obm_object *e = obm_ephemeron_new(OBJ(k), OBJ(v));
    CHECK(e != NULL);
    return e;
}

static void test_errors_and_accessors(void) {
    Node *v = node_new(2);
    errno = 0;
    CHECK(obm_ephemeron_new(NULL, OBJ(v)) == NULL);
    CHECK_EQ(errno, EINVAL);
    Node *plain = node_new(3);
    errno = 0;
    CHECK(obm_ephemeron_new(OBJ(plain), OBJ(v)) == NULL); /* not weakrefable */
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(obm_ephemeron_key(OBJ(plain)) == NULL); /* not an ephemeron */
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(obm_ephemeron_value(NULL) == NULL);
    CHECK_EQ(errno, EINVAL);

    Node *k = new_of(&WNodeType, 1);
    obm_object *e = eph_of(k, v);
    CHECK_EQ(obm_refcnt(e), 1);
    CHECK_EQ(obm_gc_is_tracked(e), 1);
    CHECK_EQ(obm_refcnt(OBJ(k)), 1); /* no reference to the key */
    CHECK_EQ(obm_refcnt(OBJ(v)), 2); /* one to the value */
    CHECK_EQ(obm_weakref_count(OBJ(k)), 1);
    obm_object *gk = obm_ephemeron_key(e), *gv = obm_ephemeron_value(e);
    CHECK(gk == OBJ(k) && gv == OBJ(v));
    obm_decref(gk);
    obm_decref(gv);
    errno = 0;
    CHECK(obm_weakref_get((obm_weakref *)e) == NULL); /* not a weakref */
    CHECK_EQ(errno, EINVAL);
    /* The key dies by count: the ephemeron drops the value. */
    log_reset();
    obm_decref(OBJ(k));
    CHECK_LOG("D1");
    CHECK_EQ(obm_refcnt(OBJ(v)), 1);
    CHECK(obm_ephemeron_key(e) == NULL && obm_ephemeron_value(e) == NULL);
    obm_decref(e);
    obm_decref(OBJ(v));
    obm_decref(OBJ(plain));
}

/* Dropping an ephemeron while its key lives drops its value reference. */
static void test_ephemeron_dies_first(void) {
    Node *k = new_of(&WNodeType, 1), *v = new_of(&WNodeType, 2);
    obm_object *e = eph_of(k, v);
    obm_decref(OBJ(v));
    log_reset();
    obm_decref(e);
    CHECK_LOG("D2");
    CHECK_EQ(obm_weakref_count(OBJ(k)), 0);
    obm_decref(OBJ(k));
}

/* The value refers back to the key: with an ephemeron both are garbage once
 * nothing else holds the key; with a strong table entry (the control) both
 * stay alive. */
static void test_value_referring_to_key(void) {
    gc_settle();
    Node *k = new_of(&WNodeType, 1), *v = new_of(&WNodeType, 2);
    node_set(v, 0, k);
    obm_object *e = eph_of(k, v);
    obm_decref(OBJ(v));
    CHECK_EQ(obm_gc_collect(2), 0); /* k is held by us: all alive */
    obm_object *gv = obm_ephemeron_value(e);
    CHECK(gv == OBJ(v));
    obm_decref(gv);
    obm_decref(OBJ(k));
    log_reset();
    CHECK_EQ(obm_gc_collect(2), 2); /* k and v */
    CHECK(strstr(event_log, "D1") && strstr(event_log, "D2"));
    CHECK(obm_ephemeron_key(e) == NULL && obm_ephemeron_value(e) == NULL);
    obm_decref(e);

    /* Control: a WeakKeyDictionary-style entry (a weakref to the key, a
     * strong reference to the value) keeps both alive as long as it lives. */
    Node *ck = new_of(&WNodeType, 3), *cv = new_of(&WNodeType, 4), *entry = node_new(5);
    obm_weakref *wk = obm_weakref_new(OBJ(ck), NULL, NULL);
    node_set(cv, 0, ck);
    node_set(entry, 0, wk);
    node_set(entry, 1, cv);
    obm_decref(OBJ(wk));
    obm_decref(OBJ(ck));
    obm_decref(OBJ(cv));
    log_reset();
    CHECK_EQ(obm_gc_collect(2), 0);
    CHECK_LOG("");
    obm_object *gk = obm_weakref_get(wk);
    CHECK(gk == OBJ(ck));
    obm_decref(gk);
    obm_decref(OBJ(entry));
    CHECK_LOG("D4 D3");
}

/* A chain: e[i] maps k[i] to k[i+1]; only k[0] is held. Ephemerons are
 * created so that the collector's walk meets them in the worst order. All
 * stay alive while k[0] is held, and the whole chain goes in one
 * collection once it is dropped. */
static void test_chain(void) {
    gc_settle();
    enum { N = 50 };
    Node *k[N + 1];
    obm_object *e[N];
    for (int i = 0; i <= N; i++)
        k[i] = new_of(&WNodeType, 100 + i);
    for (int i = N - 1; i >= 0; i--)
        e[i] = eph_of(k[i], k[i + 1]);
    for (int i = 1; i <= N; i++)
        obm_decref(OBJ(k[i]));
    CHECK_EQ(obm_gc_collect(2), 0);
    for (int i = 0; i < N; i++) {
        obm_object *v = obm_ephemeron_value(e[i]);
        CHECK(v == OBJ(k[i + 1]));
        obm_decref(v);
    }
    /* k[N] refers back to k[0]: still no reason to keep k[0]. */
    node_set(k[N], 0, k[0]);
    obm_decref(OBJ(k[0]));
    CHECK_EQ(obm_gc_collect(2), N + 1);
    for (int i = 0; i < N; i++) {
        CHECK(obm_ephemeron_value(e[i]) == NULL);
        obm_decref(e[i]);
    }
}

/* A value reachable by another path outlives its key; a value whose
 * ephemeron is unreachable is collected with it even if the key lives. */
static void test_value_held_elsewhere_and_garbage_ephemeron(void) {
    gc_settle();
    Node *k = new_of(&WNodeType, 1), *v = new_of(&WNodeType, 2);
    obm_object *e = eph_of(k, v);
    obm_decref(OBJ(k));
    CHECK(obm_ephemeron_key(e) == NULL);
    CHECK_EQ(obm_refcnt(OBJ(v)), 1); /* ours */
    obm_decref(e);

    Node *k2 = new_of(&WNodeType, 3), *v2 = new_of(&WNodeType, 4);
    obm_object *e2 = eph_of(k2, v2);
    node_set(v2, 0, e2); /* the value holds its ephemeron: a cycle */
    obm_decref(e2);
    obm_decref(OBJ(v2));
    log_reset();
    CHECK_EQ(obm_gc_collect(2), 2); /* e2 and v2; k2 is ours */
    CHECK_LOG("C4 D4");
    CHECK_EQ(obm_weakref_count(OBJ(k2)), 0);
    obm_decref(OBJ(k2));
}

/* An older ephemeron (generation 2) keeps its value through a young
 * collection: its references count as external there. */
static void test_generations(void) {
    gc_settle();
    Node *k = new_of(&WNodeType, 1), *v = new_of(&WNodeType, 2);
    obm_object *e = eph_of(k, v);
    obm_decref(OBJ(v));
    obm_gc_collect(2); /* k, v and e are old now */
    Node *k2 = new_of(&WNodeType, 3), *v2 = new_of(&WNodeType, 4);
    node_set(v2, 0, k2);
    obm_object *e2 = eph_of(k2, v2);
    obm_decref(OBJ(v2));
    obm_decref(OBJ(k2));
    CHECK_EQ(obm_gc_collect(0), 2); /* k2, v2 in generation 0 */
    obm_decref(e2);
    obm_decref(OBJ(k));
    obm_decref(e);
    CHECK_EQ(obm_gc_collect(2), 0);
}

int main(void) {
    obm_gc_disable();
    RUN(test_errors_and_accessors);
    RUN(test_ephemeron_dies_first);
    RUN(test_value_referring_to_key);
    RUN(test_chain);
    RUN(test_value_held_elsewhere_and_garbage_ephemeron);
    RUN(test_generations);
    printf("test_ephemeron: all passed\n");
    return 0;
}
