/* Objects and reference counts (docs/API.md §3): creation, counts, finalize at
 * most once with resurrection on the refcount path, the order finalize ->
 * untrack -> dealloc, and bad input: negative refcount (abort with a
 * message), GC type without traverse (refused), tracking a non-GC object,
 * and obm_lock / obm_unlock. */
#include "gc_test_util.h"
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct Var {
    OBM_OBJECT_HEAD
    size_t n;
    unsigned char data[];
} Var;
static const obm_type VarType = { "Var", sizeof(Var), 0, NULL, NULL, NULL, NULL };

static void test_new(void) {
    Node *n = (Node *)obm_new(&NodeType);
    CHECK(n != NULL);
    CHECK_EQ(obm_refcnt(OBJ(n)), 1);
    CHECK(n->ob_base.ob_type == &NodeType);
    CHECK(!obm_gc_is_tracked(OBJ(n)));
    CHECK(!obm_gc_is_finalized(OBJ(n)));
    for (int i = 0; i < NSLOTS; i++)
        CHECK(n->slot[i] == NULL);
    CHECK_EQ(n->id, 0);
    CHECK_EQ((uintptr_t)n % 16, 0);
    obm_incref(OBJ(n));
    obm_xincref(OBJ(n));
    CHECK_EQ(obm_refcnt(OBJ(n)), 3);
    obm_decref(OBJ(n));
    obm_xdecref(OBJ(n));
    CHECK_EQ(obm_refcnt(OBJ(n)), 1);
    obm_xincref(NULL);
    obm_xdecref(NULL);
    CHECK_EQ(obm_refcnt(NULL), 0);
    long d0 = node_deallocs;
    obm_decref(OBJ(n));
    CHECK_EQ(node_deallocs - d0, 1);

    Var *v = (Var *)obm_new_var(&VarType, 1000);
    CHECK(v != NULL);
    CHECK_EQ((uintptr_t)v % 16, 0);
    for (int i = 0; i < 1000; i++)
        CHECK_EQ(v->data[i], 0);
    memset(v->data, 0xAB, 1000);
    obm_decref(OBJ(v));
    CHECK(obm_new_var(&VarType, SIZE_MAX - 8) == NULL);
}

/* Non-GC finalize: once per object, may resurrect (PEP 442). */
static int fin_calls, dealloc_calls;
static obm_object *saved;
static int order[8], norder;
static void r_finalize(obm_object *o) {
    fin_calls++;
    order[norder++] = 1;
    if (fin_calls == 1) { /* resurrect the first time */
        obm_incref(o);
        saved = o;
    }
}
static void r_dealloc(obm_object *o) {
    dealloc_calls++;
    order[norder++] = 2;
    /* A GC object is untracked before dealloc. */
    CHECK(!obm_gc_is_tracked(o));
}
static const obm_type RPlain = { "RPlain", sizeof(Node), 0, r_finalize, r_dealloc, NULL, NULL };
static const obm_type RGc = { "RGc", sizeof(Node), OBM_TPFLAGS_HAVE_GC, r_finalize, r_dealloc, node_traverse, node_clear };

static void check_finalize_once(const obm_type *t) {
    fin_calls = dealloc_calls = norder = 0;
    saved = NULL;
    Node *n = (Node *)obm_new(t);
    if (t->flags & OBM_TPFLAGS_HAVE_GC)
        obm_gc_track(OBJ(n));
    obm_decref(OBJ(n));
    CHECK_EQ(fin_calls, 1);
    CHECK_EQ(dealloc_calls, 0);
    CHECK(saved == OBJ(n));
    CHECK_EQ(obm_refcnt(saved), 1);
    CHECK(obm_gc_is_finalized(saved));
    if (t->flags & OBM_TPFLAGS_HAVE_GC)
        CHECK(obm_gc_is_tracked(saved)); /* stays tracked when resurrected */
    obm_decref(saved);
    CHECK_EQ(fin_calls, 1);
    CHECK_EQ(dealloc_calls, 1);
    CHECK_EQ(norder, 2);
    CHECK_EQ(order[0], 1);
    CHECK_EQ(order[1], 2);
}
static void test_finalize_once_plain(void) { check_finalize_once(&RPlain); }
static void test_finalize_once_gc(void) { check_finalize_once(&RGc); }

static Node *zero_obj;
static void zero_child(void) {
    obm_decref(OBJ(zero_obj)); /* refcount already 0 */
    _exit(0);
}

/* Decref of an object whose refcount is already 0 aborts with a message. */
static void test_negative_refcount(void) {
    char err[1024];
    /* An object whose count was set to 0 by hand (the memory stays valid). */
    zero_obj = (Node *)obm_new(&LeafType);
    zero_obj->ob_base.ob_refcnt = 0;
    int st = run_child(zero_child, err, sizeof err);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    char expect[128];
    snprintf(expect, sizeof expect, "obmem: negative refcount on Leaf object at %p", (void *)zero_obj);
    if (strstr(err, expect) != err) {
        fprintf(stderr, "stderr was: %s\nexpected: %s\n", err, expect);
        CHECK(0);
    }
    /* Also below zero, and for a GC type. */
    zero_obj->ob_base.ob_refcnt = -3;
    st = run_child(zero_child, err, sizeof err);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    CHECK(strstr(err, "obmem: negative refcount on Leaf object at 0x") == err);
    zero_obj->ob_base.ob_refcnt = 1;
    obm_decref(OBJ(zero_obj));
}

static void refused_child(void) {
    static const obm_type NoTraverse = { "NoTraverse", sizeof(Node), OBM_TPFLAGS_HAVE_GC, NULL, NULL, NULL, NULL };
    static const obm_type TooSmall = { "TooSmall", 4, 0, NULL, NULL, NULL, NULL };
    if (obm_new(&NoTraverse) != NULL)
        _exit(2);
    if (obm_new_var(&NoTraverse, 8) != NULL)
        _exit(3);
    if (obm_new(&TooSmall) != NULL)
        _exit(4);
    if (obm_new(NULL) != NULL)
        _exit(5);
    _exit(0);
}

/* A GC type without traverse is refused with a clear message. */
static void test_gc_type_without_traverse(void) {
    char err[2048];
    int st = run_child(refused_child, err, sizeof err);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    CHECK(strstr(err, "obmem: obm_new: type \"NoTraverse\" has OBM_TPFLAGS_HAVE_GC but no traverse") == err);
    CHECK(strstr(err, "obmem: obm_new_var: type \"NoTraverse\"") != NULL);
    CHECK(strstr(err, "\"TooSmall\"") != NULL);
}

static void track_plain_child(void) {
    Node *n = (Node *)obm_new(&LeafType);
    obm_gc_track(OBJ(n));
    if (obm_gc_is_tracked(OBJ(n)))
        _exit(2);
    obm_gc_untrack(OBJ(n));
    obm_decref(OBJ(n));
    _exit(0);
}

/* Tracking a non-GC object is reported and ignored; untracking is harmless. */
static void test_track_non_gc(void) {
    char err[1024];
    int st = run_child(track_plain_child, err, sizeof err);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    CHECK(strstr(err, "obmem: obm_gc_track: Leaf object at 0x") == err);
}

/* obm_lock is re-entrant and excludes other threads. */
static volatile int other_got_it;
static void *other_thread(void *arg) {
    (void)arg;
    obm_lock();
    other_got_it = 1;
    obm_unlock();
    return NULL;
}
static void unlock_unheld_child(void) {
    obm_unlock();
    _exit(0);
}
static void test_lock(void) {
    obm_lock();
    obm_lock();
    pthread_t th;
    CHECK(pthread_create(&th, NULL, other_thread, NULL) == 0);
    usleep(20000);
    CHECK_EQ(other_got_it, 0);
    obm_unlock();
    usleep(20000);
    CHECK_EQ(other_got_it, 0); /* still held once */
    obm_unlock();
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_EQ(other_got_it, 1);
    char err[512];
    int st = run_child(unlock_unheld_child, err, sizeof err);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    CHECK(strncmp(err, "obmem: obm_unlock", 17) == 0);
}

int main(void) {
    RUN(test_new);
    RUN(test_finalize_once_plain);
    RUN(test_finalize_once_gc);
    RUN(test_negative_refcount);
    RUN(test_gc_type_without_traverse);
    RUN(test_track_non_gc);
    RUN(test_lock);
    printf("test_object_refcount: all passed\n");
    return 0;
}
