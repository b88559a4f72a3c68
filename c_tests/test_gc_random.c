/* Randomized graphs: random objects (GC containers with and without
 * finalizers, finalizers that resurrect, containers that list their
 * references in an obm_type_refs map and have no clear, non-GC leaves),
 * random edges and
 * cycles, random external references. Drop references (with partial
 * collections in between), run one full collection, and check that exactly
 * the objects the test itself finds unreachable were freed: each survivor
 * intact (id and edges as modelled), each other object deallocated once and
 * finalized at most once. Resurrecting finalizers keep their object and
 * everything reachable from it, as PEP 442 says. Several seeds. */
#include "gc_test_util.h"

enum { MAXN = 20000 };

enum kind { K_GC, K_GC_FIN, K_GC_RESCUE, K_LISTED, K_LEAF, K_LEAF_FIN, NKINDS };

static int n;                       /* objects in this round */
static Node *obj[MAXN];             /* valid while alive */
static int kind[MAXN];
static int edge[MAXN][NSLOTS];      /* model: index or -1 */
static int ext[MAXN];               /* external references held by the test */
static int freed[MAXN], finalized[MAXN], expect_alive[MAXN];
static obm_object *rescued[MAXN];
static int nrescued;
static long base_id;

static uint64_t rng;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static int rnd_below(int k) { return (int)(rnd() % (uint32_t)k); }

static int index_of(obm_object *o) {
    long i = ((Node *)o)->id - base_id;
    CHECK(i >= 0 && i < n);
    return (int)i;
}

static void r_dealloc(obm_object *o) {
    int i = index_of(o);
    CHECK_EQ(freed[i], 0);
    freed[i] = 1;
    node_clear(o);
}
static void r_finalize(obm_object *o) {
    int i = index_of(o);
    CHECK_EQ(finalized[i], 0);
    finalized[i] = 1;
    if (kind[i] == K_GC_RESCUE) {
        obm_incref(o);
        rescued[nrescued++] = o;
    }
}
/* The collector finds its references through the map and breaks its
 * cycles by dropping them itself (no clear). */
static const obm_type_refs listed = {
    { "RListed", sizeof(Node), OBM_TPFLAGS_HAVE_GC | OBM_TPFLAGS_REF_MAP, NULL, r_dealloc, NULL, NULL },
    OBM_REF_FIELD(Node, slot[0]) | OBM_REF_FIELD(Node, slot[1]) | OBM_REF_FIELD(Node, slot[2]) |
        OBM_REF_FIELD(Node, slot[3]),
};
static const obm_type *types[NKINDS] = {
    &(const obm_type){ "R", sizeof(Node), OBM_TPFLAGS_HAVE_GC, NULL, r_dealloc, node_traverse, node_clear },
    &(const obm_type){ "RFin", sizeof(Node), OBM_TPFLAGS_HAVE_GC, r_finalize, r_dealloc, node_traverse, node_clear },
    &(const obm_type){ "RRescue", sizeof(Node), OBM_TPFLAGS_HAVE_GC, r_finalize, r_dealloc, node_traverse, node_clear },
    &listed.base,
    &(const obm_type){ "RLeaf", sizeof(Node), 0, NULL, r_dealloc, NULL, NULL },
    &(const obm_type){ "RLeafFin", sizeof(Node), 0, r_finalize, r_dealloc, NULL, NULL },
};

/* Marks everything reachable from the marked objects (explicit queue). */
static void close_over_edges(int *mark) {
    static int queue[MAXN];
    int head = 0, tail = 0;
    for (int i = 0; i < n; i++)
        if (mark[i])
            queue[tail++] = i;
    while (head < tail) {
        int i = queue[head++];
        for (int k = 0; k < NSLOTS; k++) {
            int j = edge[i][k];
            if (j >= 0 && !mark[j]) {
                mark[j] = 1;
                queue[tail++] = j;
            }
        }
    }
}

static void one_round(uint64_t seed, int count) {
    rng = seed * 0x9E3779B97F4A7C15ull + 1;
    n = count;
    base_id += MAXN;
    nrescued = 0;
    memset(freed, 0, sizeof freed);
    memset(finalized, 0, sizeof finalized);
    /* Objects: mostly plain GC containers. */
    for (int i = 0; i < n; i++) {
        int r = rnd_below(100);
        kind[i] = r < 45   ? K_GC
                  : r < 60 ? K_GC_FIN
                  : r < 62 ? K_GC_RESCUE
                  : r < 74 ? K_LISTED
                  : r < 92 ? K_LEAF
                           : K_LEAF_FIN;
        obj[i] = (Node *)obm_new(types[kind[i]]);
        CHECK(obj[i] != NULL);
        obj[i]->id = base_id + i;
        ext[i] = 1; /* the creation reference */
        for (int k = 0; k < NSLOTS; k++)
            edge[i][k] = -1;
    }
    /* Edges: containers point at random objects, often nearby (cycles). */
    for (int i = 0; i < n; i++) {
        if (kind[i] >= K_LEAF)
            continue;
        int m = rnd_below(3) + (rnd_below(4) == 0);
        for (int k = 0; k < m; k++) {
            int j = rnd_below(4) == 0 ? rnd_below(n) : (i + rnd_below(21) - 10 + n) % n;
            edge[i][k] = j;
            node_set(obj[i], k, obj[j]);
        }
        obm_gc_track(OBJ(obj[i]));
    }
    /* A few extra external references. */
    for (int t = 0; t < n / 50; t++) {
        int i = rnd_below(n);
        obm_incref(OBJ(obj[i]));
        ext[i]++;
    }
    /* Drop most external references, with partial collections between. */
    for (int i = 0; i < n; i++) {
        int keep = rnd_below(100) < 2;
        while (ext[i] > keep) {
            ext[i]--;
            obm_decref(OBJ(obj[i])); /* may free it (and others) */
        }
        if (rnd_below(500) == 0)
            obm_gc_collect(rnd_below(2));
    }
    /* Expected survivors: reachable from the external references, or from
     * a resurrecting object that is itself unreachable (its finalizer runs
     * and stores it). */
    memset(expect_alive, 0, sizeof expect_alive);
    for (int i = 0; i < n; i++)
        expect_alive[i] = ext[i] > 0;
    close_over_edges(expect_alive);
    for (int i = 0; i < n; i++)
        if (!expect_alive[i] && kind[i] == K_GC_RESCUE)
            expect_alive[i] = 2;
    close_over_edges(expect_alive);

    long found = obm_gc_collect(2);

    int alive = 0, dead = 0;
    for (int i = 0; i < n; i++) {
        if (expect_alive[i]) {
            alive++;
            if (freed[i]) {
                fprintf(stderr, "seed %llu: object %d (kind %d) freed but reachable\n",
                        (unsigned long long)seed, i, kind[i]);
                CHECK(0);
            }
            Node *o = obj[i];
            CHECK_EQ(o->id, base_id + i);
            CHECK(obm_refcnt(OBJ(o)) > 0);
            for (int k = 0; k < NSLOTS; k++) {
                int j = edge[i][k];
                CHECK(o->slot[k] == (j >= 0 ? OBJ(obj[j]) : NULL));
            }
        } else {
            dead++;
            if (!freed[i]) {
                fprintf(stderr, "seed %llu: object %d (kind %d) unreachable but not freed\n",
                        (unsigned long long)seed, i, kind[i]);
                CHECK(0);
            }
            /* Every unreachable object with a finalizer had it run. */
            if (kind[i] == K_GC_FIN || kind[i] == K_LEAF_FIN)
                CHECK_EQ(finalized[i], 1);
        }
    }
    printf("[seed %llu: %d alive, %d freed (%ld by the last collection), %d rescued]\n  ",
           (unsigned long long)seed, alive, dead, found, nrescued);

    /* Cleanup: drop everything. Resurrecting objects that die for the first
     * time store themselves once more; the second time they are freed
     * without another finalize (r_finalize checks), so this ends. */
    for (int i = 0; i < n; i++)
        while (ext[i] > 0) {
            ext[i]--;
            obm_decref(OBJ(obj[i]));
        }
    for (int pass = 0;; pass++) {
        CHECK(pass < 3);
        while (nrescued > 0)
            obm_decref(rescued[--nrescued]);
        obm_gc_collect(2);
        if (nrescued == 0)
            break;
    }
    for (int i = 0; i < n; i++)
        CHECK_EQ(freed[i], 1);
}

static void test_random_graphs(void) {
    for (uint64_t seed = 1; seed <= 12; seed++)
        one_round(seed, 3000);
    one_round(99, MAXN);
}

/* The same with automatic collection running at low thresholds while the
 * graph is built and torn down. */
static void test_random_graphs_automatic(void) {
    obm_gc_set_threshold(100, 3, 3);
    obm_gc_enable();
    for (uint64_t seed = 100; seed < 106; seed++)
        one_round(seed, 5000);
    obm_gc_disable();
    obm_gc_set_threshold(700, 10, 10);
}

int main(int argc, char **argv) {
    obm_gc_disable();
    if (argc > 1) { /* reproduce one seed: test_gc_random SEED [N] */
        one_round(strtoull(argv[1], NULL, 0), argc > 2 ? atoi(argv[2]) : 3000);
        printf("\n");
        return 0;
    }
    RUN(test_random_graphs);
    RUN(test_random_graphs_automatic);
    printf("test_gc_random: all passed\n");
    return 0;
}
