/* Debug flags: SAVEALL keeps the garbage in the garbage list; STATS prints
 * CPython's lines per collection to stderr; COLLECTABLE names each object.
 * Mirrors CPython Lib/test/test_gc.py test_saveall and the DEBUG_STATS
 * output of gcmodule.c. */
#include "gc_test_util.h"
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

/* test_saveall */
static void test_saveall(void) {
    gc_settle();
    CHECK_EQ(obm_gc_garbage_count(), 0);
    Node *l = node_new(1);
    node_set(l, 0, l);
    unsigned debug = obm_gc_get_debug();
    obm_gc_set_debug(debug | OBM_GC_DEBUG_SAVEALL);
    CHECK_EQ(obm_gc_get_debug(), debug | OBM_GC_DEBUG_SAVEALL);
    obm_decref(OBJ(l));
    long d0 = node_deallocs;
    CHECK_EQ(obm_gc_collect(2), 1);
    obm_gc_set_debug(debug);
    CHECK_EQ(obm_gc_garbage_count(), 1);
    CHECK(obm_gc_garbage_get(0) == OBJ(l));
    CHECK(obm_gc_garbage_get(1) == NULL);
    CHECK_EQ(node_deallocs, d0); /* not cleared */
    CHECK_EQ(l->slot[0], OBJ(l));
    /* The list owns a reference; clearing it leaves a normal cycle. */
    obm_gc_garbage_clear();
    CHECK_EQ(obm_gc_garbage_count(), 0);
    CHECK_EQ(obm_gc_collect(2), 1);
    CHECK_EQ(node_deallocs - d0, 1);
}

/* DEBUG_LEAK as in CPython: COLLECTABLE | UNCOLLECTABLE | SAVEALL. */
static void test_debug_constants(void) {
    CHECK_EQ(OBM_GC_DEBUG_STATS, 1);
    CHECK_EQ(OBM_GC_DEBUG_COLLECTABLE, 2);
    CHECK_EQ(OBM_GC_DEBUG_UNCOLLECTABLE, 4);
    CHECK_EQ(OBM_GC_DEBUG_SAVEALL, 32);
    CHECK_EQ(OBM_GC_DEBUG_LEAK, 38);
}

static void capture_stderr(void (*fn)(void), char *buf, size_t size) {
    int status = run_child(fn, buf, size);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void stats_child(void) {
    Node *keep = node_new(7);
    obm_gc_collect(0); /* keep in gen 1 */
    Node *a = node_new(1), *b = node_new(2);
    node_set(a, 0, b);
    node_set(b, 0, a);
    obm_decref(OBJ(a));
    obm_decref(OBJ(b));
    obm_gc_set_debug(OBM_GC_DEBUG_STATS | OBM_GC_DEBUG_COLLECTABLE);
    obm_gc_collect(2);
    obm_gc_set_debug(0);
    obm_decref(OBJ(keep));
}

/* DEBUG_STATS prints, per collection:
 *   gc: collecting generation 2...
 *   gc: objects in each generation: 2 1 0
 *   gc: objects in permanent generation: 0
 *   gc: done, 2 unreachable, 0 uncollectable, 0.000012s elapsed
 * and DEBUG_COLLECTABLE a "gc: collectable <Node 0x...>" line per object. */
static void test_debug_stats(void) {
    char err[4096];
    capture_stderr(stats_child, err, sizeof err);
    CHECK(strstr(err, "gc: collecting generation 2...\n") == err);
    CHECK(strstr(err, "gc: objects in each generation: 2 1 0\n") != NULL);
    CHECK(strstr(err, "gc: objects in permanent generation: 0\n") != NULL);
    const char *c1 = strstr(err, "gc: collectable <Node 0x");
    CHECK(c1 != NULL);
    CHECK(strstr(c1 + 1, "gc: collectable <Node 0x") != NULL);
    const char *done = strstr(err, "gc: done, 2 unreachable, 0 uncollectable, ");
    CHECK(done != NULL);
    CHECK(strstr(done, "s elapsed\n") != NULL);
    /* The duration, in seconds with microseconds: a number, not a constant. */
    double secs = -1;
    CHECK(sscanf(done, "gc: done, 2 unreachable, 0 uncollectable, %lfs elapsed", &secs) == 1);
    CHECK(secs >= 0 && secs < 10);
    CHECK(strstr(done, "0.000000s elapsed") == NULL);
}

/* A type whose traverse visits a reference it does not own (borrowed, a
 * bug in the type): the collector finds a target visited more often than
 * its count allows and stops the program, naming both objects, whichever
 * pass (the first visit of the target or a later one) sees it. */
typedef struct Liar {
    OBM_OBJECT_HEAD
    obm_object *borrowed;
    int visits;
} Liar;
static int liar_traverse(obm_object *o, obm_visitproc visit, void *arg) {
    Liar *l = (Liar *)o;
    for (int i = 0; i < l->visits; i++) {
        int r = visit(l->borrowed, arg);
        if (r)
            return r;
    }
    return 0;
}
static void liar_dealloc(obm_object *o) { (void)o; }
static const obm_type LiarType = {"Liar", sizeof(Liar), OBM_TPFLAGS_HAVE_GC, NULL, liar_dealloc,
                                  liar_traverse, NULL};
static Node *liar_target;
static Liar *liar;

static void liar_child(void) {
    obm_gc_collect(2);
    fprintf(stderr, "collected without noticing\n");
}

/* The target is held once (by us) and visited `visits` times by a tracked
 * Liar, which the collector's list holds before or after the target (the
 * target's count is then first taken in list order or at a visit). */
static void liar_case(int liar_first, int visits) {
    char err[4096];
    liar_target = (Node *)obm_new(&NodeType);
    liar = (Liar *)obm_new(&LiarType);
    CHECK(liar_target != NULL && liar != NULL);
    liar->borrowed = OBJ(liar_target);
    liar->visits = visits;
    obm_gc_track(OBJ(liar_first ? (void *)liar : (void *)liar_target));
    obm_gc_track(OBJ(liar_first ? (void *)liar_target : (void *)liar));
    int status = run_child(liar_child, err, sizeof err);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    char want[256];
    snprintf(want, sizeof want,
             "obmem: gc: the traverse of Liar object at %p visits Node object at %p more often "
             "than its refcount allows",
             (void *)liar, (void *)liar_target);
    CHECK(strstr(err, want) != NULL);
    CHECK(strstr(err, "collected without noticing") == NULL);
    obm_gc_untrack(OBJ(liar));
    obm_decref(OBJ(liar));
    obm_decref(OBJ(liar_target));
}

static void test_traverse_misuse(void) {
    for (int visits = 2; visits <= 3; visits++) {
        liar_case(1, visits);
        liar_case(0, visits);
    }
}

int main(void) {
    obm_gc_disable();
    RUN(test_saveall);
    RUN(test_debug_constants);
    RUN(test_debug_stats);
    RUN(test_traverse_misuse);
    printf("test_gc_debug: all passed\n");
    return 0;
}
