/* Weak references (docs/API.md §6): creation and errors, death by reference
 * count (finalize, clear every weakref, callbacks newest first holding a
 * reference, dealloc), death in a collection in CPython 3.14's order
 * (callbacks of reachable weakrefs before finalizers, none for garbage
 * weakrefs, callback-less weakrefs of resurrected objects kept, every
 * weakref to real garbage cleared before any clear, including weakrefs a
 * finalizer made), and callbacks that decref their own weakref, allocate or
 * collect. Each test asserts the order of events in a log. */
#include "weak_test_util.h"

/* Callback: logs "W<ctx>", checks the weakref is dead and held. */
static obm_weakref *others[4]; /* weakrefs that must be dead in a callback */
static int held_ok = 1;
static void cb_log(obm_weakref *r, void *ctx) {
    log_event('W', (long)(intptr_t)ctx);
    if (obm_weakref_get(r) != NULL)
        held_ok = 0;
    if (obm_refcnt(OBJ(r)) < 1)
        held_ok = 0;
    for (int i = 0; i < 4; i++)
        if (others[i] && obm_weakref_get(others[i]) != NULL)
            held_ok = 0;
}

static void test_errors_and_get(void) {
    errno = 0;
    CHECK(obm_weakref_new(NULL, NULL, NULL) == NULL);
    CHECK_EQ(errno, EINVAL);
    Node *plain = node_new(1); /* a GC type without the flag */
    errno = 0;
    CHECK(obm_weakref_new(OBJ(plain), NULL, NULL) == NULL);
    CHECK_EQ(errno, EINVAL);
    CHECK_EQ(obm_weakref_count(OBJ(plain)), 0);
    errno = 0;
    CHECK(obm_weakref_get((obm_weakref *)plain) == NULL); /* not a weakref */
    CHECK_EQ(errno, EINVAL);
    static Node st = {OBM_STATIC_OBJECT_INIT(&WNodeType)};
    errno = 0;
    CHECK(obm_weakref_new(OBJ(&st), NULL, NULL) == NULL);
    CHECK_EQ(errno, EINVAL);
    obm_decref(OBJ(plain));

    Node *n = new_of(&WLeafType, 2); /* not GC: weakrefs work too */
    obm_weakref *a = obm_weakref_new(OBJ(n), NULL, NULL);
    obm_weakref *b = obm_weakref_new(OBJ(n), NULL, NULL);
    CHECK(a && b && a != b); /* each call makes a new one */
    CHECK_EQ(obm_refcnt(OBJ(a)), 1);
    /* A weakref holds no reference the collector follows: without a
     * callback it is not tracked; with one it is (its callback must not run
     * when it is garbage itself). */
    CHECK_EQ(obm_gc_is_tracked(OBJ(a)), 0);
    obm_weakref *c = obm_weakref_new(OBJ(n), cb_log, (void *)3);
    CHECK_EQ(obm_gc_is_tracked(OBJ(c)), 1);
    obm_decref(OBJ(c));
    CHECK_EQ(obm_weakref_count(OBJ(n)), 2);
    CHECK_EQ(obm_refcnt(OBJ(n)), 1); /* weak: no reference held */
    obm_object *got = obm_weakref_get(a);
    CHECK(got == OBJ(n));
    CHECK_EQ(obm_refcnt(OBJ(n)), 2); /* a new strong reference */
    obm_decref(got);
    obm_decref(OBJ(b)); /* a weakref dying first leaves the list */
    CHECK_EQ(obm_weakref_count(OBJ(n)), 1);
    log_reset();
    obm_decref(OBJ(n));
    CHECK_LOG("D2");
    CHECK(obm_weakref_get(a) == NULL);
    obm_decref(OBJ(a));
}

/* Death by count: finalize, every weakref cleared, callbacks newest first
 * (each weakref held), dealloc. */
static void test_refcount_death_order(void) {
    Node *n = new_of(&WFinNodeType, 1);
    obm_weakref *r1 = obm_weakref_new(OBJ(n), cb_log, (void *)1);
    obm_weakref *r2 = obm_weakref_new(OBJ(n), NULL, NULL);
    obm_weakref *r3 = obm_weakref_new(OBJ(n), cb_log, (void *)3);
    CHECK_EQ(obm_weakref_count(OBJ(n)), 3);
    others[0] = r1, others[1] = r2, others[2] = r3;
    held_ok = 1;
    log_reset();
    obm_decref(OBJ(n));
    CHECK_LOG("F1 W3 W1 D1");
    CHECK(held_ok);
    memset(others, 0, sizeof others);
    CHECK(obm_weakref_get(r1) == NULL && obm_weakref_get(r2) == NULL);
    obm_decref(OBJ(r1));
    obm_decref(OBJ(r2));
    obm_decref(OBJ(r3));
}

/* A callback that drops the last reference to its own weakref, one that
 * allocates objects and weakrefs, and one that runs a collection. */
static obm_weakref *own_ref;
static Node *made_in_cb;
static obm_weakref *made_ref;
static void cb_drop_own(obm_weakref *r, void *ctx) {
    (void)ctx;
    CHECK(r == own_ref);
    log_event('W', 1);
    own_ref = NULL;
    obm_decref(OBJ(r)); /* obmem still holds one */
    CHECK(obm_weakref_get(r) == NULL);
}
static void cb_allocate(obm_weakref *r, void *ctx) {
    (void)r, (void)ctx;
    log_event('W', 2);
    made_in_cb = new_of(&WNodeType, 7);
    made_ref = obm_weakref_new(OBJ(made_in_cb), cb_log, (void *)9);
}
static void cb_collect(obm_weakref *r, void *ctx) {
    (void)r, (void)ctx;
    log_event('W', 3);
    obm_gc_collect(2);
}

static void test_callbacks_that_do_things(void) {
    Node *n = new_of(&WNodeType, 1);
    own_ref = obm_weakref_new(OBJ(n), cb_drop_own, NULL);
    obm_weakref *a = obm_weakref_new(OBJ(n), cb_allocate, NULL);
    obm_weakref *c = obm_weakref_new(OBJ(n), cb_collect, NULL);
    log_reset();
    obm_decref(OBJ(n));
    CHECK_LOG("W3 W2 W1 D1");
    CHECK(own_ref == NULL);
    CHECK(obm_weakref_get(made_ref) == OBJ(made_in_cb));
    obm_decref(OBJ(made_in_cb)); /* the get's reference */
    log_reset();
    obm_decref(OBJ(made_in_cb));
    CHECK_LOG("W9 D7");
    obm_decref(OBJ(made_ref));
    obm_decref(OBJ(a));
    obm_decref(OBJ(c));
}

/* A finalizer that resurrects keeps the weakrefs as they are; the next
 * death (finalize does not run again) clears them. */
static Node *saved;
static void resurrect(Node *n) {
    obm_incref(OBJ(n));
    saved = n;
}

static void test_refcount_resurrection_keeps_weakrefs(void) {
    Node *n = new_of(&WFinNodeType, 1);
    obm_weakref *r = obm_weakref_new(OBJ(n), cb_log, (void *)1);
    obm_weakref *q = obm_weakref_new(OBJ(n), NULL, NULL);
    on_finalize = resurrect;
    log_reset();
    obm_decref(OBJ(n));
    on_finalize = NULL;
    CHECK_LOG("F1");
    CHECK(saved == n);
    obm_object *got = obm_weakref_get(q);
    CHECK(got == OBJ(n));
    obm_decref(got);
    CHECK_EQ(obm_weakref_count(OBJ(n)), 2);
    log_reset();
    obm_decref(OBJ(saved));
    CHECK_LOG("W1 D1");
    CHECK(obm_weakref_get(q) == NULL && obm_weakref_get(r) == NULL);
    obm_decref(OBJ(r));
    obm_decref(OBJ(q));
}

/* A weakref made inside finalize (death by count) is cleared with the
 * others and its callback runs. */
static obm_weakref *fin_ref;
static void make_ref(Node *n) { fin_ref = obm_weakref_new(OBJ(n), cb_log, (void *)5); }

static void test_refcount_weakref_made_in_finalizer(void) {
    Node *n = new_of(&WFinNodeType, 1);
    on_finalize = make_ref;
    log_reset();
    obm_decref(OBJ(n));
    on_finalize = NULL;
    CHECK_LOG("F1 W5 D1");
    CHECK(obm_weakref_get(fin_ref) == NULL);
    obm_decref(OBJ(fin_ref));
}

/* In a collection: the callback of a reachable weakref to garbage runs
 * before the finalizers; a weakref that is garbage gets none; a
 * callback-less weakref is cleared before any clear. */
static obm_weakref *plain_ref;
static int plain_dead_in_clear = 1;
static void check_plain_dead(Node *n) {
    (void)n;
    if (obm_weakref_get(plain_ref) != NULL)
        plain_dead_in_clear = 0;
}

static void test_collection_order(void) {
    gc_settle();
    Node *a = new_of(&WFinNodeType, 1), *b = new_of(&WFinNodeType, 2);
    node_set(a, 0, b);
    node_set(b, 0, a);
    obm_weakref *ra = obm_weakref_new(OBJ(a), cb_log, (void *)10); /* reachable */
    plain_ref = obm_weakref_new(OBJ(a), NULL, NULL);                /* reachable */
    obm_weakref *rg = obm_weakref_new(OBJ(b), cb_log, (void *)20);  /* garbage: */
    node_set(a, 1, rg); /* only a holds it */
    obm_decref(OBJ(rg));
    obm_decref(OBJ(a));
    obm_decref(OBJ(b));
    on_clear = check_plain_dead;
    plain_dead_in_clear = 1;
    log_reset();
    CHECK_EQ(obm_gc_collect(2), 3); /* a, b and the garbage weakref */
    on_clear = NULL;
    /* W10 first; no W20; both finalizers; then clears and deallocs. */
    CHECK(strncmp(event_log, "W10 F1 F2 C", 11) == 0);
    CHECK(strstr(event_log, "W20") == NULL);
    CHECK(strstr(event_log, "D1") && strstr(event_log, "D2"));
    CHECK(plain_dead_in_clear);
    CHECK(obm_weakref_get(ra) == NULL && obm_weakref_get(plain_ref) == NULL);
    obm_decref(OBJ(ra));
    obm_decref(OBJ(plain_ref));
}

/* Resurrection in a collection: callbacks ran before the finalizer (the
 * weakrefs with callbacks are cleared), but the callback-less weakrefs
 * of the resurrected objects still work. */
static void test_collection_resurrection_keeps_plain_weakrefs(void) {
    gc_settle();
    Node *a = new_of(&WFinNodeType, 1), *b = new_of(&WNodeType, 2);
    node_set(a, 0, b);
    node_set(b, 0, a);
    obm_weakref *rc = obm_weakref_new(OBJ(b), cb_log, (void *)30);
    obm_weakref *ra = obm_weakref_new(OBJ(a), NULL, NULL);
    obm_weakref *rb = obm_weakref_new(OBJ(b), NULL, NULL);
    obm_decref(OBJ(a));
    obm_decref(OBJ(b));
    on_finalize = resurrect;
    saved = NULL;
    log_reset();
    CHECK_EQ(obm_gc_collect(2), 0);
    on_finalize = NULL;
    CHECK_LOG("W30 F1");
    CHECK(saved == a);
    CHECK(obm_weakref_get(rc) == NULL);
    obm_object *ga = obm_weakref_get(ra), *gb = obm_weakref_get(rb);
    CHECK(ga == OBJ(a) && gb == OBJ(b));
    obm_decref(ga);
    obm_decref(gb);
    /* Dropping it again: finalize does not run twice; now it is garbage. */
    obm_decref(OBJ(saved));
    log_reset();
    CHECK_EQ(obm_gc_collect(2), 2);
    CHECK(strstr(event_log, "F1") == NULL);
    CHECK(obm_weakref_get(ra) == NULL && obm_weakref_get(rb) == NULL);
    obm_decref(OBJ(rc));
    obm_decref(OBJ(ra));
    obm_decref(OBJ(rb));
}

/* A weakref (with a callback) made by a finalizer during a collection is
 * cleared before any clear, and its callback is not called. */
static void test_collection_weakref_made_in_finalizer(void) {
    gc_settle();
    Node *a = new_of(&WFinNodeType, 1), *b = new_of(&WNodeType, 2);
    node_set(a, 0, b);
    node_set(b, 0, a);
    obm_decref(OBJ(a));
    obm_decref(OBJ(b));
    fin_ref = NULL;
    on_finalize = make_ref;
    plain_dead_in_clear = 1;
    log_reset();
    CHECK_EQ(obm_gc_collect(2), 2);
    on_finalize = NULL;
    CHECK(fin_ref != NULL);
    CHECK(strncmp(event_log, "F1 C", 4) == 0);
    CHECK(strstr(event_log, "W5") == NULL);
    CHECK(obm_weakref_get(fin_ref) == NULL);
    obm_decref(OBJ(fin_ref));
}

/* An object that owns the only weakref to itself: when it dies by count,
 * the weakref is still alive, so its callback runs, then dealloc frees it. */
static void test_object_owning_its_weakref(void) {
    Node *n = new_of(&WNodeType, 1);
    obm_weakref *r = obm_weakref_new(OBJ(n), cb_log, (void *)4);
    node_set(n, 0, r);
    obm_decref(OBJ(r));
    log_reset();
    obm_decref(OBJ(n));
    CHECK_LOG("W4 D1");
}

/* A cycle through a weakref (an object holding a weakref with a callback to
 * an object of the same cycle) is collected without calling the callback. */
static void test_weakref_in_garbage_cycle(void) {
    gc_settle();
    Node *a = new_of(&WNodeType, 1);
    obm_weakref *r = obm_weakref_new(OBJ(a), cb_log, (void *)6);
    node_set(a, 0, r);
    node_set(a, 1, a);
    obm_decref(OBJ(r));
    obm_decref(OBJ(a));
    log_reset();
    CHECK_EQ(obm_gc_collect(2), 2);
    CHECK_LOG("C1 D1");
}

/* An object the collection first takes for garbage and then finds
 * reachable (x: before its only holder y in the young list, so x's count
 * is all internal when x is scanned) keeps its weakrefs, with and without
 * a callback, while a weakref to real garbage (the self-cycle g) is
 * cleared. The collector visits the weakly referenced objects it set
 * aside as garbage, not the whole garbage list (weak.rs, WeakTargets). */
static void brought_back(obm_weakref_callback cb) {
    gc_settle();
    Node *x = new_of(&WNodeType, 1), *y = new_of(&WNodeType, 2);
    node_set(y, 0, x);
    obm_decref(OBJ(x));
    obm_weakref *rx = obm_weakref_new(OBJ(x), cb, (void *)7);
    Node *g = new_of(&WNodeType, 3);
    node_set(g, 0, g);
    obm_weakref *rg = obm_weakref_new(OBJ(g), cb, (void *)8);
    obm_decref(OBJ(g));
    log_reset();
    CHECK_EQ(obm_gc_collect(2), 1);
    CHECK_LOG(cb ? "W8 C3 D3" : "C3 D3");
    CHECK(obm_weakref_get(rg) == NULL);
    obm_object *got = obm_weakref_get(rx);
    CHECK(got == OBJ(x));
    obm_decref(got);
    log_reset();
    obm_decref(OBJ(y)); /* x dies with y: a callback still set runs */
    CHECK_LOG(cb ? "D2 W7 D1" : "D2 D1");
    CHECK(obm_weakref_get(rx) == NULL);
    obm_decref(OBJ(rx));
    obm_decref(OBJ(rg));
}

/* An untracked weakref (no callback) held only by a garbage cycle is not
 * counted by the collection and dies with the cycle. */
static void test_untracked_weakref_dies_with_its_holder(void) {
    gc_settle();
    Node *x = new_of(&WNodeType, 1);
    Node *a = new_of(&WNodeType, 2), *b = new_of(&WNodeType, 3);
    node_set(a, 0, b);
    node_set(b, 0, a);
    obm_weakref *r = obm_weakref_new(OBJ(x), NULL, NULL);
    node_set(a, 1, r);
    obm_decref(OBJ(r));
    obm_decref(OBJ(a));
    obm_decref(OBJ(b));
    CHECK_EQ(obm_weakref_count(OBJ(x)), 1);
    CHECK_EQ(obm_gc_collect(2), 2);
    CHECK_EQ(obm_weakref_count(OBJ(x)), 0);
    obm_decref(OBJ(x));
}

static void test_weakref_to_object_brought_back(void) {
    brought_back(NULL);
    brought_back(cb_log);
}

/* More weakly referenced garbage than the collector's first table of
 * them holds, with large blocks refused (OBMEM_FAIL_MMAP=large, in a
 * child): the table cannot grow, and the collection walks the whole
 * garbage list instead, for the weakrefs with a callback (step 4) and for
 * the others (step 7). Every weakref to the garbage is cleared before the
 * first clear, every callback runs, and the weakref to an object brought
 * back is not cleared. */
enum { MANY = 20000 };
static obm_weakref *many_refs[MANY];
static int many_checked;
static long many_called;
static void check_many_dead(Node *n) {
    (void)n;
    if (many_checked++)
        return;
    for (long i = 0; i < MANY; i++)
        CHECK(obm_weakref_get(many_refs[i]) == NULL);
}
static void cb_count(obm_weakref *r, void *ctx) {
    (void)r;
    (void)ctx;
    many_called++;
}
static void many_weakly_referenced(obm_weakref_callback cb) {
    for (long i = 0; i < MANY; i++) {
        Node *g = new_of(&WNodeType, 100 + i);
        node_set(g, 0, g);
        many_refs[i] = obm_weakref_new(OBJ(g), cb, NULL);
        CHECK(many_refs[i] != NULL);
        obm_decref(OBJ(g));
    }
    many_checked = 0;
    many_called = 0;
    on_clear = check_many_dead;
    brought_back(NULL); /* collects the MANY first (gc_settle) */
    on_clear = NULL;
    CHECK(many_checked > 0);
    CHECK_EQ(many_called, cb ? MANY : 0);
    for (long i = 0; i < MANY; i++) {
        CHECK(obm_weakref_get(many_refs[i]) == NULL);
        obm_decref(OBJ(many_refs[i]));
    }
}
static void targets_refused_child(void) {
    obm_gc_disable();
    many_weakly_referenced(NULL);
    many_weakly_referenced(cb_count);
}

static const char *self_path;
static void test_weak_targets_refused(void) {
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        setenv("OBMEM_FAIL_MMAP", "large", 1);
        /* By its path: under memcheck /proc/self/exe is Valgrind's. */
        execl(strchr(self_path, '/') ? self_path : "/proc/self/exe", self_path, "targets_refused",
              (char *)NULL);
        _exit(3);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* A collection skips the pass for callbacks when no live weakref has one.
 * A weakref made with a callback to a garbage cycle gets it run, first in
 * the process, then again after callbacks were taken every way (run at a
 * death by count, dropped with their weakref, dropped for a garbage
 * weakref), which leaves none. (First in main: a count that one of the
 * other tests took below zero would wrap and hide a missing increment.) */
static void callback_of_garbage_cycle_runs(long id) {
    Node *a = new_of(&WNodeType, 4), *b = new_of(&WNodeType, 5);
    node_set(a, 0, b);
    node_set(b, 0, a);
    obm_weakref *r = obm_weakref_new(OBJ(b), cb_log, (void *)(intptr_t)id);
    obm_decref(OBJ(a));
    obm_decref(OBJ(b));
    log_reset();
    CHECK_EQ(obm_gc_collect(2), 2);
    char want[32];
    snprintf(want, sizeof want, "W%ld C4 D5 D4", id);
    CHECK_LOG(want);
    CHECK(obm_weakref_get(r) == NULL);
    obm_decref(OBJ(r));
}

static void test_callbacks_counted(void) {
    gc_settle();
    callback_of_garbage_cycle_runs(40);
    Node *n = new_of(&WNodeType, 1);
    obm_weakref *ran = obm_weakref_new(OBJ(n), cb_log, (void *)1);
    obm_weakref *dropped = obm_weakref_new(OBJ(n), cb_log, (void *)2);
    obm_decref(OBJ(dropped)); /* its callback goes with it */
    log_reset();
    obm_decref(OBJ(n));
    CHECK_LOG("W1 D1");
    obm_decref(OBJ(ran));
    test_weakref_in_garbage_cycle(); /* a garbage weakref's callback dropped */
    callback_of_garbage_cycle_runs(41);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "targets_refused") == 0) {
        targets_refused_child();
        return 0;
    }
    self_path = argv[0];
    obm_gc_disable();
    RUN(test_callbacks_counted);
    RUN(test_errors_and_get);
    RUN(test_refcount_death_order);
    RUN(test_callbacks_that_do_things);
    RUN(test_refcount_resurrection_keeps_weakrefs);
    RUN(test_refcount_weakref_made_in_finalizer);
    RUN(test_collection_order);
    RUN(test_collection_resurrection_keeps_plain_weakrefs);
    RUN(test_collection_weakref_made_in_finalizer);
    RUN(test_object_owning_its_weakref);
    RUN(test_weakref_in_garbage_cycle);
    RUN(test_untracked_weakref_dies_with_its_holder);
    RUN(test_weakref_to_object_brought_back);
    RUN(test_weak_targets_refused);
    printf("test_weakref: all passed\n");
    return 0;
}
