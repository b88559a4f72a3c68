/* Immortal objects (docs/API.md §7) and the collection details of §8: counts
 * that never change, objects never finalized or freed, static objects,
 * the collector treating immortal objects as alive, obm_gc_immortalize_frozen,
 * copy-on-write after fork (private dirty memory of a child that increfs and
 * decrefs 500,000 objects, with a mortal control), and the candidates and
 * duration_ns of obm_gc_info. */
#include "gc_test_util.h"

#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>

/* A statically allocated GC object and a plain one: immortal from the start. */
static Node static_node = {OBM_STATIC_OBJECT_INIT(&NodeType)};
static Node static_fin = {OBM_STATIC_OBJECT_INIT(&FinNodeType)};

static void test_immortalize(void) {
    long d0 = node_deallocs, f0 = node_finalized;
    Node *n = new_of(&FinNodeType, 1);
    Node *leaf = new_of(&LeafType, 2);
    node_set(n, 0, leaf);
    obm_decref(OBJ(leaf)); /* n owns leaf now */
    CHECK_EQ(obm_is_immortal(OBJ(n)), 0);
    obm_immortalize(OBJ(n));
    CHECK_EQ(obm_is_immortal(OBJ(n)), 1);
    CHECK_EQ(obm_refcnt(OBJ(n)), OBM_IMMORTAL_REFCNT);
    intptr_t raw = n->ob_base.ob_refcnt;
    for (int i = 0; i < 1000; i++)
        obm_decref(OBJ(n)); /* far more than it ever had */
    for (int i = 0; i < 10; i++)
        obm_incref(OBJ(n));
    obm_xdecref(OBJ(n));
    obm_xincref(OBJ(n));
    CHECK_EQ(n->ob_base.ob_refcnt, raw); /* never written */
    CHECK_EQ(obm_refcnt(OBJ(n)), OBM_IMMORTAL_REFCNT);
    obm_immortalize(OBJ(n)); /* again: harmless */
    obm_immortalize(NULL);
    CHECK_EQ(obm_is_immortal(NULL), 0);
    gc_settle();
    CHECK_EQ(node_deallocs, d0);
    CHECK_EQ(node_finalized, f0);
    CHECK_EQ(obm_refcnt(OBJ(leaf)), 1); /* what it references stays alive */
    CHECK_EQ(obm_gc_is_tracked(OBJ(n)), 1);
}

/* A mortal count that reaches 2^31 saturates into an immortal one
 * (CPython 3.14), instead of wrapping. */
static void test_saturation(void) {
    long d0 = node_deallocs;
    Node *n = new_of(&LeafType, 3);
    n->ob_base.ob_refcnt = 0x7fffffff; /* as if 2^31-1 references existed */
    CHECK_EQ(obm_is_immortal(OBJ(n)), 0);
    obm_incref(OBJ(n));
    CHECK_EQ(obm_is_immortal(OBJ(n)), 1);
    for (int i = 0; i < 5; i++)
        obm_decref(OBJ(n));
    CHECK_EQ(obm_refcnt(OBJ(n)), OBM_IMMORTAL_REFCNT);
    CHECK_EQ(node_deallocs, d0);
}

static int count_visit(obm_object *o, void *arg) {
    (void)o;
    ++*(int *)arg;
    return 0;
}

static void test_static_objects(void) {
    long f0 = node_finalized, d0 = node_deallocs;
    CHECK_EQ(obm_is_immortal(OBJ(&static_node)), 1);
    CHECK_EQ(obm_refcnt(OBJ(&static_node)), OBM_IMMORTAL_REFCNT);
    for (int i = 0; i < 100; i++)
        obm_decref(OBJ(&static_fin));
    obm_incref(OBJ(&static_fin));
    CHECK_EQ(static_fin.ob_base.ob_refcnt, OBM_STATIC_REFCNT);
    CHECK_EQ(node_finalized, f0);
    CHECK_EQ(node_deallocs, d0);
    /* Query and introspection functions accept them. */
    CHECK_EQ(obm_gc_is_tracked(OBJ(&static_node)), 0);
    CHECK_EQ(obm_gc_is_finalized(OBJ(&static_fin)), 0);
    Node *child = node_new(4);
    obm_incref(OBJ(child));
    static_node.slot[0] = OBJ(child); /* the static object owns a reference */
    int n = 0;
    CHECK_EQ(obm_gc_get_referents(OBJ(&static_node), count_visit, &n), 0);
    CHECK_EQ(n, 1);
    /* Tracking one is refused (nothing lies in front of it): a message, no
     * crash, still untracked; untracking is harmless. */
    obm_gc_track(OBJ(&static_node));
    CHECK_EQ(obm_gc_is_tracked(OBJ(&static_node)), 0);
    obm_gc_untrack(OBJ(&static_node));
    /* A reference from a static object is external to the collector: the
     * child survives a collection though we drop ours. */
    obm_decref(OBJ(child));
    gc_settle();
    CHECK_EQ(obm_refcnt(OBJ(child)), 1);
    CHECK_EQ(node_deallocs, d0);
}

/* The collector treats an immortal object as alive: a cycle through it is
 * not garbage, even when nothing else holds it, and what it reaches lives. */
static void test_collector_keeps_immortal_cycles(void) {
    long d0 = node_deallocs;
    gc_settle();
    Node *a = node_new(10), *b = node_new(11), *c = node_new(12);
    node_set(a, 0, b);
    node_set(b, 0, a);
    node_set(b, 1, c);
    obm_immortalize(OBJ(a));
    obm_decref(OBJ(b));
    obm_decref(OBJ(c));
    CHECK_EQ(obm_gc_collect(2), 0);
    CHECK_EQ(node_deallocs, d0);
    CHECK_EQ(obm_refcnt(OBJ(b)), 1);
    CHECK_EQ(obm_refcnt(OBJ(c)), 1);
    /* A mortal cycle next to it is still collected. */
    Node *x = node_new(13), *y = node_new(14);
    node_set(x, 0, y);
    node_set(y, 0, x);
    obm_decref(OBJ(x));
    obm_decref(OBJ(y));
    CHECK_EQ(obm_gc_collect(2), 2);
    CHECK_EQ(node_deallocs, d0 + 2);
}

static struct {
    int calls;
    obm_gc_info start, stop;
} seen;

static void info_cb(int phase, const obm_gc_info *info, void *ctx) {
    (void)ctx;
    seen.calls++;
    if (phase == OBM_GC_START)
        seen.start = *info;
    else
        seen.stop = *info;
}

/* §8: candidates is the number of objects examined, duration_ns the wall
 * time of the collection. */
static void test_gc_info_details(void) {
    gc_settle();
    obm_gc_collect(2); /* everything is in generation 2 now */
    enum { N = 3000 };
    static Node *keep[N];
    for (int i = 0; i < N; i++)
        keep[i] = node_new(i);
    Node *x = node_new(1), *y = node_new(2);
    node_set(x, 0, y);
    node_set(y, 0, x);
    obm_decref(OBJ(x));
    obm_decref(OBJ(y));
    CHECK_EQ(obm_gc_callback_add(info_cb, NULL), 0);
    seen.calls = 0;
    CHECK_EQ(obm_gc_collect(0), 2);
    CHECK_EQ(seen.calls, 2);
    CHECK_EQ(seen.start.generation, 0);
    CHECK_EQ(seen.start.candidates, 0);
    CHECK_EQ(seen.start.duration_ns, 0);
    CHECK_EQ(seen.stop.collected, 2);
    CHECK_EQ(seen.stop.candidates, N + 2); /* generation 0 only */
    CHECK(seen.stop.duration_ns > 0);
    CHECK(seen.stop.duration_ns < 10ull * 1000 * 1000 * 1000);
    /* A full collection examines the older objects too. */
    size_t gen2 = 0;
    int n = 0;
    obm_gc_get_objects(-1, count_visit, &n);
    gen2 = (size_t)n;
    CHECK_EQ(obm_gc_collect(2), 0);
    CHECK_EQ(seen.stop.generation, 2);
    CHECK_EQ(seen.stop.candidates, gen2);
    CHECK_EQ(obm_gc_callback_remove(info_cb, NULL), 0);
    for (int i = 0; i < N; i++)
        obm_decref(OBJ(keep[i]));
}

/* Private_Dirty of this process, in kB, from /proc/self/smaps_rollup. */
static long private_dirty_kb(void) {
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f)
        return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Private_Dirty: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

enum { COW_N = 500000 };

/* Forks a child that increfs and decrefs each of the objects; returns the
 * growth of its private dirty memory in kB. */
static long child_dirty_growth(obm_object **objs) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        long before = private_dirty_kb();
        for (int i = 0; i < COW_N; i++) {
            obm_incref(objs[i]);
            obm_decref(objs[i]);
        }
        long growth = private_dirty_kb() - before;
        if (before < 0)
            growth = -1000000;
        CHECK(write(fds[1], &growth, sizeof growth) == (ssize_t)sizeof growth);
        _exit(0);
    }
    close(fds[1]);
    long growth = 0;
    CHECK(read(fds[0], &growth, sizeof growth) == (ssize_t)sizeof growth);
    close(fds[0]);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return growth;
}

static void test_copy_on_write(void) {
    if (private_dirty_kb() < 0) {
        printf("(no /proc/self/smaps_rollup: skipped) ");
        return;
    }
    gc_settle();
    obm_object **objs = malloc(COW_N * sizeof *objs);
    CHECK(objs != NULL);
    for (int i = 0; i < COW_N; i++)
        objs[i] = OBJ(node_new(i));
    /* The control first: mortal objects, whose counts the child writes. */
    long mortal = child_dirty_growth(objs);
    /* The pre-fork server's sequence. */
    obm_gc_freeze();
    size_t frozen = obm_gc_get_freeze_count();
    CHECK(frozen >= COW_N);
    CHECK_EQ(obm_gc_immortalize_frozen(), frozen);
    for (int i = 0; i < COW_N; i += 9973)
        CHECK_EQ(obm_is_immortal(objs[i]), 1);
    long immortal = child_dirty_growth(objs);
    printf("(private dirty growth: mortal %ld kB, immortal %ld kB) ", mortal, immortal);
    /* 500,000 objects of 64 bytes (with their gc header) are ~30 MiB. */
    CHECK(mortal > 16 * 1024);
    CHECK(immortal < 2 * 1024);
    obm_gc_unfreeze();
    free(objs); /* the objects are immortal: never freed */
}

int main(void) {
    obm_gc_disable();
    RUN(test_immortalize);
    RUN(test_saturation);
    RUN(test_static_objects);
    RUN(test_collector_keeps_immortal_cycles);
    RUN(test_gc_info_details);
    RUN(test_copy_on_write);
    printf("test_immortal: all passed\n");
    return 0;
}
