/* The trashcan: dropping the head of a 10-million-long chain, or of a deep
 * tree, does not overflow the stack, with the default stack and in a thread
 * with a 64 KiB stack; deallocations nested in several threads that
 * release the lock in the middle (test_trashcan_threads). Mirrors CPython
 * Lib/test/test_gc.py test_trashcan and test_trashcan_threads. */
#include "gc_test_util.h"
#include <pthread.h>
#include <sched.h>
#include <time.h>

typedef struct Link {
    OBM_OBJECT_HEAD
    obm_object *next;
} Link;

static long link_deallocs;
static int link_traverse(obm_object *o, obm_visitproc visit, void *arg) {
    Link *l = (Link *)o;
    return l->next ? visit(l->next, arg) : 0;
}
static int link_clear(obm_object *o) {
    Link *l = (Link *)o;
    obm_object *t = l->next;
    l->next = NULL;
    obm_xdecref(t);
    return 0;
}
static void link_dealloc(obm_object *o) {
    __atomic_add_fetch(&link_deallocs, 1, __ATOMIC_RELAXED);
    link_clear(o);
}
static const obm_type GcLink = { "GcLink", sizeof(Link), OBM_TPFLAGS_HAVE_GC, NULL, link_dealloc, link_traverse, link_clear };
static const obm_type PlainLink = { "PlainLink", sizeof(Link), 0, NULL, link_dealloc, NULL, NULL };

/* A chain of n links; returns its head (one reference). The last link
 * optionally points back to the head (a ring the collector must break). */
static Link *make_chain(const obm_type *t, long n, int ring) {
    Link *head = (Link *)obm_new(t);
    CHECK(head != NULL);
    Link *cur = head;
    for (long i = 1; i < n; i++) {
        Link *l = (Link *)obm_new(t);
        CHECK(l != NULL);
        cur->next = OBJ(l); /* steals the new reference */
        if (t->flags & OBM_TPFLAGS_HAVE_GC)
            obm_gc_track(OBJ(cur));
        cur = l;
    }
    if (ring) {
        obm_incref(OBJ(head));
        cur->next = OBJ(head);
    }
    if (t->flags & OBM_TPFLAGS_HAVE_GC)
        obm_gc_track(OBJ(cur));
    return head;
}

static void drop_chain(const obm_type *t, long n) {
    Link *head = make_chain(t, n, 0);
    long d0 = link_deallocs;
    obm_decref(OBJ(head));
    CHECK_EQ(link_deallocs - d0, n);
}

/* test_trashcan: 10 million links, GC and plain, default stack. */
static void test_trashcan(void) {
    drop_chain(&GcLink, 10 * 1000 * 1000);
    drop_chain(&PlainLink, 10 * 1000 * 1000);
}

/* A deep tree: each node owns a leaf and the next (deeper) node. */
static void test_trashcan_deep_tree(void) {
    enum { DEPTH = 1000 * 1000 };
    long d0 = node_deallocs;
    Node *root = node_new(0), *cur = root;
    for (long i = 1; i < DEPTH; i++) {
        Node *child = node_new(i), *leaf = new_of(&LeafType, -i);
        node_set(cur, 0, child);
        node_set(cur, 1, leaf);
        obm_decref(OBJ(leaf));
        obm_decref(OBJ(child));
        cur = child;
    }
    obm_decref(OBJ(root));
    CHECK_EQ(node_deallocs - d0, 2L * DEPTH - 1);
}

/* The collector breaking a ring of a million links: its clear drops the
 * whole chain by reference counting. */
static void test_trashcan_collected_ring(void) {
    enum { N = 1000 * 1000 };
    obm_gc_collect(2);
    Link *head = make_chain(&GcLink, N, 1);
    obm_decref(OBJ(head));
    long d0 = link_deallocs;
    CHECK_EQ(obm_gc_collect(2), N);
    CHECK_EQ(link_deallocs - d0, N);
}

/* The same in a thread with a 64 KiB stack. */
static void *small_stack_body(void *arg) {
    (void)arg;
    obm_lock();
    drop_chain(&GcLink, 1000 * 1000);
    drop_chain(&PlainLink, 1000 * 1000);
    test_trashcan_deep_tree();
    Link *head = make_chain(&GcLink, 200 * 1000, 1);
    obm_decref(OBJ(head));
    CHECK_EQ(obm_gc_collect(2), 200 * 1000);
    obm_unlock();
    return NULL;
}
static void run_small_stack(void *(*body)(void *), void *arg) {
    pthread_attr_t attr;
    pthread_t th;
    CHECK(pthread_attr_init(&attr) == 0);
    CHECK(pthread_attr_setstacksize(&attr, 64 * 1024) == 0);
    CHECK(pthread_create(&th, &attr, body, arg) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    pthread_attr_destroy(&attr);
}
static void test_trashcan_small_stack_thread(void) {
    run_small_stack(small_stack_body, NULL);
}

/* test_trashcan_threads: two threads (64 KiB stacks) build and drop nested
 * containers whose finalizer releases the lock in the middle of a
 * deallocation, so the other thread runs in between. */
static long inits, dels;
static volatile int stop_flag;
static void c_finalize(obm_object *o) {
    (void)o;
    dels++;
    obm_unlock(); /* like the GIL switch in the CPython test */
    sched_yield();
    obm_lock();
}
static const obm_type CType = { "C", sizeof(Node), OBM_TPFLAGS_HAVE_GC, c_finalize, node_dealloc, node_traverse, node_clear };
static Node *c_new(obm_object *item) {
    Node *c = (Node *)obm_new(&CType);
    CHECK(c != NULL);
    node_set(c, 0, item);
    obm_gc_track(OBJ(c));
    inits++;
    return c;
}
static void make_nested(void) {
    enum { NESTING = 60 };
    Node *x = c_new(NULL);
    for (int i = 0; i < NESTING; i++) {
        Node *c = c_new(OBJ(x));
        obm_decref(OBJ(x));
        Node *l = node_new(i); /* "[C([x])]" */
        node_set(l, 0, c);
        obm_decref(OBJ(c));
        x = l;
    }
    obm_decref(OBJ(x));
}
static void *nested_body(void *arg) {
    (void)arg;
    long rounds = 0;
    while (!stop_flag) {
        obm_lock();
        make_nested();
        obm_unlock();
        rounds++;
    }
    return (void *)rounds;
}
static void test_trashcan_threads(void) {
    enum { N_THREADS = 2 };
    pthread_t th[N_THREADS];
    pthread_attr_t attr;
    CHECK(pthread_attr_init(&attr) == 0);
    CHECK(pthread_attr_setstacksize(&attr, 64 * 1024) == 0);
    obm_gc_set_threshold(50, 5, 5);
    obm_gc_enable();
    stop_flag = 0;
    for (int i = 0; i < N_THREADS; i++)
        CHECK(pthread_create(&th[i], &attr, nested_body, NULL) == 0);
    struct timespec ts = { 0, 500 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    stop_flag = 1;
    long rounds = 0;
    for (int i = 0; i < N_THREADS; i++) {
        void *r;
        CHECK(pthread_join(th[i], &r) == 0);
        rounds += (long)r;
    }
    pthread_attr_destroy(&attr);
    obm_gc_disable();
    obm_gc_set_threshold(700, 10, 10);
    obm_gc_collect(2);
    printf("(%ld rounds) ", rounds);
    CHECK(rounds > 0);
    CHECK_EQ(inits, dels);
    CHECK_EQ(inits, rounds * 61);
}

int main(void) {
    obm_gc_disable();
    RUN(test_trashcan);
    RUN(test_trashcan_deep_tree);
    RUN(test_trashcan_collected_ring);
    RUN(test_trashcan_small_stack_thread);
    RUN(test_trashcan_threads);
    printf("test_gc_trashcan: all passed\n");
    return 0;
}
