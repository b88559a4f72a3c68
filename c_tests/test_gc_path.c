/*
 * test_gc_path.c: obm_gc_path_to_root ("why is this object alive?").
 *
 * Hand-built graphs: the shortest of two chains is chosen, a root target is
 * a chain of one, an untracked leaf is reached through its container,
 * cyclic garbage answers 1 without a visit, a visitor's non-zero value stops
 * the walk and is returned, NULL target or visitor is -1/EINVAL. Random
 * graphs: every answer is checked against a breadth-first search the test
 * computes from its own record of the edges and of the references it holds.
 * Out of memory: rerun in a child with OBMEM_FAIL_MMAP=large, where the
 * search's table for 20000 tracked objects cannot be mapped: -1/ENOMEM,
 * nothing visited, and a search on few objects still works.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/wait.h>
#include "gc_test_util.h"

enum { MAXCHAIN = 4096 };
static obm_object *chain[MAXCHAIN];
static int chain_len;
static int stop_at = -1;

static int record(obm_object *o, void *arg)
{
    CHECK(arg == (void *)&chain_len);
    CHECK(chain_len < MAXCHAIN);
    chain[chain_len++] = o;
    if (chain_len == stop_at)
        return 7;
    return 0;
}

static int path(void *target)
{
    chain_len = 0;
    return obm_gc_path_to_root(OBJ(target), record, &chain_len);
}

static void test_hand_built(void)
{
    /* root -> a -> b -> t and root -> c -> t: the chain is root, c, t. */
    Node *root = node_new(0), *a = node_new(1), *b = node_new(2), *c = node_new(3), *t = node_new(4);
    node_set(root, 0, a);
    node_set(a, 0, b);
    node_set(b, 0, t);
    node_set(root, 1, c);
    node_set(c, 0, t);
    obm_decref(OBJ(a));
    obm_decref(OBJ(b));
    obm_decref(OBJ(c));
    obm_decref(OBJ(t));
    CHECK_EQ(path(t), 0);
    CHECK_EQ(chain_len, 3);
    CHECK(chain[0] == OBJ(root) && chain[1] == OBJ(c) && chain[2] == OBJ(t));
    /* Cut the short chain: the long one is the answer now. */
    node_set(c, 0, NULL);
    CHECK_EQ(path(t), 0);
    CHECK_EQ(chain_len, 4);
    CHECK(chain[0] == OBJ(root) && chain[1] == OBJ(a) && chain[2] == OBJ(b) && chain[3] == OBJ(t));
    /* A target held by the test is a root itself: a chain of one. */
    obm_incref(OBJ(b));
    CHECK_EQ(path(t), 0);
    CHECK_EQ(chain_len, 2);
    CHECK(chain[0] == OBJ(b) && chain[1] == OBJ(t));
    CHECK_EQ(path(b), 0);
    CHECK_EQ(chain_len, 1);
    CHECK(chain[0] == OBJ(b));
    obm_decref(OBJ(b));
    /* A visitor's non-zero value stops the walk and is returned. */
    stop_at = 2;
    CHECK_EQ(path(t), 7);
    CHECK_EQ(chain_len, 2);
    stop_at = -1;
    /* An untracked, non-GC leaf is reached through its container. */
    Node *leaf = (Node *)obm_new(&LeafType);
    CHECK(leaf != NULL);
    node_set(b, 1, leaf);
    obm_decref(OBJ(leaf));
    CHECK_EQ(path(leaf), 0);
    CHECK_EQ(chain_len, 4);
    CHECK(chain[2] == OBJ(b) && chain[3] == OBJ(leaf));
    /* Cyclic garbage: 1, and no visit. */
    obm_gc_disable();
    Node *x = node_new(5), *y = node_new(6);
    node_set(x, 0, y);
    node_set(y, 0, x);
    obm_decref(OBJ(y));
    CHECK_EQ(path(x), 0); /* still held by the test */
    CHECK_EQ(chain_len, 1);
    obm_decref(OBJ(x));
    CHECK_EQ(path(x), 1);
    CHECK_EQ(path(y), 1);
    CHECK_EQ(chain_len, 0);
    /* So is the whole graph once it is a cycle and its root is dropped. */
    node_set(t, 0, root);
    obm_decref(OBJ(root));
    CHECK_EQ(path(t), 1);
    CHECK_EQ(chain_len, 0);
    obm_gc_enable();
    CHECK(obm_gc_collect(2) >= 7);
    /* Bad input. */
    errno = 0;
    CHECK_EQ(obm_gc_path_to_root(NULL, record, NULL), -1);
    CHECK_EQ(errno, EINVAL);
    Node *z = node_new(9);
    errno = 0;
    CHECK_EQ(obm_gc_path_to_root(OBJ(z), NULL, NULL), -1);
    CHECK_EQ(errno, EINVAL);
    obm_decref(OBJ(z));
}

static uint64_t rng = 0x14;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

enum { G = 300 };
static Node *nodes[G];
static int held[G]; /* references the test holds */

/* A garbage cycle that keeps every node alive without making it reachable:
 * a bag holding a reference to each node and to itself. */
typedef struct {
    OBM_OBJECT_HEAD
    obm_object *items[G + 1];
} Bag;

static int bag_traverse(obm_object *o, obm_visitproc visit, void *arg)
{
    Bag *b = (Bag *)o;
    for (int i = 0; i <= G; i++)
        if (b->items[i]) {
            int r = visit(b->items[i], arg);
            if (r)
                return r;
        }
    return 0;
}

static int bag_clear(obm_object *o)
{
    Bag *b = (Bag *)o;
    for (int i = 0; i <= G; i++) {
        obm_object *t = b->items[i];
        b->items[i] = NULL;
        obm_xdecref(t);
    }
    return 0;
}

static void bag_dealloc(obm_object *o) { bag_clear(o); }

static const obm_type BagType = {
    "Bag", sizeof(Bag), OBM_TPFLAGS_HAVE_GC, NULL, bag_dealloc, bag_traverse, bag_clear,
};

static int index_of(obm_object *o)
{
    for (int i = 0; i < G; i++)
        if (OBJ(nodes[i]) == o)
            return i;
    return -1;
}

static void test_random_graphs(void)
{
    obm_gc_disable();
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < G; i++) {
            nodes[i] = node_new(i);
            held[i] = 1;
        }
        int edges = (int)(next_rand() % (2 * G)) + G / 4;
        for (int e = 0; e < edges; e++)
            node_set(nodes[next_rand() % G], (int)(next_rand() % NSLOTS), nodes[next_rand() % G]);
        int keep = 1 + (int)(next_rand() % 6);
        for (int i = 0; i < G; i++) {
            if (keep > 0 && next_rand() % (G / 6) == 0) {
                keep--;
                continue;
            }
            held[i] = 0;
        }
        /* Nobody but the test, the nodes and the garbage bag refers to
         * these nodes, so the roots are exactly those the test holds. */
        Bag *bag = (Bag *)obm_new(&BagType);
        CHECK(bag != NULL);
        for (int i = 0; i < G; i++)
            bag->items[i] = OBJ(nodes[i]); /* takes the test's reference */
        bag->items[G] = OBJ(bag);
        obm_gc_track(OBJ(bag));
        for (int i = 0; i < G; i++)
            if (held[i])
                obm_incref(OBJ(nodes[i]));
        /* The expected distances, by BFS over the test's own edge record
         * (read from the slots, which the test set). */
        int dist[G], queue[G], head = 0, tail = 0;
        for (int i = 0; i < G; i++) {
            dist[i] = held[i] ? 0 : -1;
            if (held[i])
                queue[tail++] = i;
        }
        while (head < tail) {
            int i = queue[head++];
            for (int s = 0; s < NSLOTS; s++) {
                int j = nodes[i]->slot[s] ? index_of(nodes[i]->slot[s]) : -1;
                if (j >= 0 && dist[j] < 0) {
                    dist[j] = dist[i] + 1;
                    queue[tail++] = j;
                }
            }
        }
        for (int i = 0; i < G; i++) {
            int r = path(nodes[i]);
            if (dist[i] < 0) {
                CHECK_EQ(r, 1);
                CHECK_EQ(chain_len, 0);
                continue;
            }
            CHECK_EQ(r, 0);
            CHECK_EQ(chain_len, dist[i] + 1);
            CHECK(held[index_of(chain[0])]);
            CHECK(chain[chain_len - 1] == OBJ(nodes[i]));
            for (int k = 0; k + 1 < chain_len; k++) {
                Node *from = (Node *)chain[k];
                int linked = 0;
                for (int s = 0; s < NSLOTS; s++)
                    linked |= from->slot[s] == chain[k + 1];
                CHECK(linked);
            }
        }
        for (int i = 0; i < G; i++)
            if (held[i])
                obm_decref(OBJ(nodes[i]));
        /* Everything is garbage now: the bag and the nodes. */
        CHECK_EQ(obm_gc_collect(2), G + 1);
    }
    obm_gc_enable();
}

static void enomem_child(void)
{
    enum { MANY = 20000 };
    static Node *many[MANY];
    for (int i = 0; i < MANY; i++)
        many[i] = node_new(i);
    errno = 0;
    CHECK_EQ(path(many[5]), -1);
    CHECK_EQ(errno, ENOMEM);
    CHECK_EQ(chain_len, 0);
    for (int i = 0; i < MANY; i++)
        obm_decref(OBJ(many[i]));
    Node *one = node_new(1);
    CHECK_EQ(path(one), 0);
    CHECK_EQ(chain_len, 1);
    obm_decref(OBJ(one));
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "enomem") == 0) {
        enomem_child();
        return 0;
    }
    RUN(test_hand_built);
    RUN(test_random_graphs);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        setenv("OBMEM_FAIL_MMAP", "large", 1);
        execl("/proc/self/exe", argv[0], "enomem", (char *)NULL);
        _exit(3);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("enomem: ok\n");
    return 0;
}
