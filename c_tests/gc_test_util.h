/* Shared helpers for the object and gc tests: checks that fail loudly with
 * file:line and values, and a generic container type ("Node") with a few
 * reference slots, a payload, and counters of deallocations/finalizations. */
#ifndef GC_TEST_UTIL_H
#define GC_TEST_UTIL_H

#include <obmem.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define UNUSED __attribute__((unused))

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond);   \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

#define CHECK_EQ(a, b)                                                           \
    do {                                                                         \
        long long a_ = (long long)(a), b_ = (long long)(b);                      \
        if (a_ != b_) {                                                          \
            fprintf(stderr, "%s:%d: FAILED: %s == %s (%lld != %lld)\n", __FILE__, \
                    __LINE__, #a, #b, a_, b_);                                   \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

/* Runs one test function, printing its name (the CPython test it mirrors). */
#define RUN(test)                                                                \
    do {                                                                         \
        printf("%s: ", #test);                                                   \
        fflush(stdout);                                                          \
        test();                                                                  \
        printf("ok\n");                                                          \
        fflush(stdout);                                                          \
    } while (0)

#define NSLOTS 4

typedef struct Node {
    OBM_OBJECT_HEAD
    obm_object *slot[NSLOTS];
    long id;
} Node;

static long node_deallocs UNUSED;
static long node_finalized UNUSED;

static inline int node_traverse(obm_object *o, obm_visitproc visit, void *arg) {
    Node *n = (Node *)o;
    for (int i = 0; i < NSLOTS; i++) {
        if (n->slot[i]) {
            int r = visit(n->slot[i], arg);
            if (r)
                return r;
        }
    }
    return 0;
}

static inline int node_clear(obm_object *o) {
    Node *n = (Node *)o;
    for (int i = 0; i < NSLOTS; i++) {
        obm_object *t = n->slot[i];
        n->slot[i] = NULL;
        obm_xdecref(t);
    }
    return 0;
}

static inline void node_dealloc(obm_object *o) {
    node_deallocs++;
    node_clear(o);
}

static inline void node_finalize(obm_object *o) {
    (void)o;
    node_finalized++;
}

/* A GC container. */
static const obm_type NodeType UNUSED = {
    "Node", sizeof(Node), OBM_TPFLAGS_HAVE_GC, NULL, node_dealloc, node_traverse, node_clear,
};
/* A GC container with a finalizer that only counts. */
static const obm_type FinNodeType UNUSED = {
    "FinNode", sizeof(Node), OBM_TPFLAGS_HAVE_GC, node_finalize, node_dealloc, node_traverse, node_clear,
};
/* A non-GC container (cannot be part of a cycle the collector sees). */
static const obm_type LeafType UNUSED = {
    "Leaf", sizeof(Node), 0, NULL, node_dealloc, NULL, NULL,
};

/* A new tracked object of type t (refcount 1, owned by the caller). */
static inline Node *new_of(const obm_type *t, long id) {
    Node *n = (Node *)obm_new(t);
    CHECK(n != NULL);
    n->id = id;
    if (t->flags & OBM_TPFLAGS_HAVE_GC)
        obm_gc_track(&n->ob_base);
    return n;
}

static inline Node *node_new(long id) { return new_of(&NodeType, id); }

/* n->slot[i] = v, with a new reference to v. */
static inline void node_set(Node *n, int i, void *v) {
    obm_xincref((obm_object *)v);
    obm_object *old = n->slot[i];
    n->slot[i] = (obm_object *)v;
    obm_xdecref(old);
}

#define OBJ(x) ((obm_object *)(x))

/* Reads fd to its end into buf, NUL-terminated, at most size - 1 bytes. */
static inline void read_all(int fd, char *buf, size_t size) {
    size_t n = 0;
    ssize_t r;
    while (n + 1 < size && (r = read(fd, buf + n, size - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = 0;
}

/* Runs fn in a child (SIGABRT at its default) with its stderr captured in
 * err; returns the child's wait status. */
static inline int run_child(void (*fn)(void), char *err, size_t size) {
    int p[2];
    CHECK(pipe(p) == 0);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 2);
        signal(SIGABRT, SIG_DFL);
        fn();
        _exit(0);
    }
    close(p[1]);
    read_all(p[0], err, size);
    close(p[0]);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    return status;
}

/* Collects until nothing is left (the previous test's garbage is gone). */
static inline void gc_settle(void) {
    while (obm_gc_collect(2) > 0) {
    }
}

#endif
