/* Randomized graphs with weak references (with and without callbacks),
 * ephemerons and immortal objects: the companion of test_gc_random.c.
 * Random containers (some with finalizers, some immortal, some non-GC
 * leaves), weakrefs and ephemerons, held by the test or by containers; drop
 * the test's references with partial collections in between, run one full
 * collection, and compare with an independent model of reachability with
 * ephemeron semantics (an ephemeron's value is reachable only if the
 * ephemeron and its key are, to a fixpoint):
 *  - exactly the model's garbage is freed, survivors are intact;
 *  - a live weakref yields its target if the model keeps it, else NULL
 *    (never a freed object); its callback ran exactly once iff the target
 *    died and it has one; no callback ever runs twice;
 *  - a live ephemeron yields key and value iff the key lives;
 *  - a surviving object is the target of exactly the surviving weakrefs and
 *    ephemerons that name it (garbage ones left its list).
 * Objects whose finalizer resurrects them keep them, and what they reach,
 * alive (their weakrefs with a callback may have been cleared, since a
 * collection clears those before finalizers). Several seeds. */
#include "gc_test_util.h"

#include <stdint.h>

enum { MAXOBJ = 6000 };
enum kind { K_GC, K_FIN, K_RESCUE, K_IMM, K_LEAF, K_WREF, K_EPH, NKINDS };

static int total, nnodes, nweak;   /* objects: nodes, then weakrefs, then ephemerons */
static obm_object *obj[MAXOBJ];
static int kind[MAXOBJ];
static int edge[MAXOBJ][NSLOTS];   /* containers: index or -1 */
static int target[MAXOBJ];         /* weakref target / ephemeron key */
static int value[MAXOBJ];          /* ephemeron value, or -1 */
static int has_cb[MAXOBJ], cb_runs[MAXOBJ];
static int ext[MAXOBJ], freed[MAXOBJ], finalized[MAXOBJ];
static int alive[MAXOBJ]; /* model: 0 garbage, 1 reachable, 2 only through a resurrection */
static obm_object *rescued[MAXOBJ];
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
    CHECK(i >= 0 && i < nnodes);
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
    if (kind[i] == K_RESCUE) {
        obm_incref(o);
        rescued[nrescued++] = o;
    }
}
static void r_callback(obm_weakref *r, void *ctx) {
    int i = (int)(intptr_t)ctx;
    CHECK(OBJ(r) == obj[i]);
    CHECK(obm_weakref_get(r) == NULL); /* cleared before its callback */
    CHECK(obm_refcnt(OBJ(r)) >= 1);    /* and held */
    cb_runs[i]++;
    CHECK_EQ(cb_runs[i], 1);
}

#define WGC (OBM_TPFLAGS_HAVE_GC | OBM_TPFLAGS_WEAKREFABLE)
static const obm_type types[K_LEAF + 1] = {
    {"W", sizeof(Node), WGC, NULL, r_dealloc, node_traverse, node_clear},
    {"WFin", sizeof(Node), WGC, r_finalize, r_dealloc, node_traverse, node_clear},
    {"WRescue", sizeof(Node), WGC, r_finalize, r_dealloc, node_traverse, node_clear},
    {"WImm", sizeof(Node), WGC, NULL, r_dealloc, node_traverse, node_clear},
    {"WLeaf", sizeof(Node), OBM_TPFLAGS_WEAKREFABLE, NULL, r_dealloc, NULL, NULL},
};

/* The model: roots are the test's references and immortal objects; strong
 * edges are container slots and an ephemeron's value while its key is
 * marked; iterate to the fixpoint. Then the resurrecting objects that are
 * not reached become roots (their finalizer stores them), marked 2 with
 * what only they reach. */
static void close_over(int mark);
static void model_reachability(void) {
    for (int i = 0; i < total; i++)
        alive[i] = ext[i] > 0 || kind[i] == K_IMM;
    close_over(1);
    for (int i = 0; i < nnodes; i++)
        if (!alive[i] && kind[i] == K_RESCUE)
            alive[i] = 2;
    close_over(2);
}

static void close_over(int mark) {
    static int queue[MAXOBJ];
    int head = 0, tail = 0;
    for (int i = 0; i < total; i++)
        if (alive[i] == mark)
            queue[tail++] = i;
    for (;;) {
        while (head < tail) {
            int i = queue[head++];
            if (kind[i] <= K_LEAF)
                for (int k = 0; k < NSLOTS; k++) {
                    int j = edge[i][k];
                    if (j >= 0 && !alive[j]) {
                        alive[j] = mark;
                        queue[tail++] = j;
                    }
                }
        }
        int more = 0;
        for (int i = nweak; i < total; i++)
            if (alive[i] && alive[target[i]] && value[i] >= 0 && !alive[value[i]]) {
                alive[value[i]] = mark;
                queue[tail++] = value[i];
                more = 1;
            }
        if (!more)
            break;
    }
}

static void one_round(uint64_t seed, int n, int nw, int ne) {
    rng = seed * 0x9E3779B97F4A7C15ull + 7;
    nnodes = n, nweak = n + nw, total = n + nw + ne;
    CHECK(total <= MAXOBJ);
    base_id += MAXOBJ;
    memset(freed, 0, sizeof freed);
    memset(finalized, 0, sizeof finalized);
    memset(cb_runs, 0, sizeof cb_runs);
    nrescued = 0;
    for (int i = 0; i < total; i++) {
        for (int k = 0; k < NSLOTS; k++)
            edge[i][k] = -1;
        value[i] = -1;
        ext[i] = 1; /* the creation reference */
    }
    for (int i = 0; i < n; i++) {
        int r = rnd_below(100);
        kind[i] = r < 60 ? K_GC : r < 78 ? K_FIN : r < 80 ? K_RESCUE : r < 82 ? K_IMM : K_LEAF;
        obj[i] = obm_new(&types[kind[i]]);
        CHECK(obj[i] != NULL);
        ((Node *)obj[i])->id = base_id + i;
    }
    for (int i = n; i < nweak; i++) {
        kind[i] = K_WREF;
        target[i] = rnd_below(n);
        has_cb[i] = rnd_below(2);
        obj[i] = OBJ(obm_weakref_new(obj[target[i]], has_cb[i] ? r_callback : NULL,
                                     (void *)(intptr_t)i));
        CHECK(obj[i] != NULL);
    }
    for (int i = nweak; i < total; i++) {
        kind[i] = K_EPH;
        /* Keys of GC types: a non-GC key is invisible to the collector, so
         * a cycle through it is not found (documented). */
        do
            target[i] = rnd_below(n);
        while (kind[target[i]] == K_LEAF);
        /* Values near their key, and often referring back to it. */
        value[i] = (target[i] + rnd_below(11) + 1) % n;
        obj[i] = obm_ephemeron_new(obj[target[i]], obj[value[i]]);
        CHECK(obj[i] != NULL);
    }
    /* Container edges to nodes nearby (cycles), anywhere, or to weakrefs
     * and ephemerons (so that those can be garbage too). */
    for (int i = 0; i < n; i++) {
        if (kind[i] == K_LEAF)
            continue;
        int m = rnd_below(3) + (rnd_below(4) == 0);
        for (int k = 0; k < m; k++) {
            int r = rnd_below(10), j;
            if (r < 6)
                j = (i + rnd_below(21) - 10 + n) % n;
            else if (r < 8)
                j = rnd_below(n);
            else
                j = n + rnd_below(total - n);
            edge[i][k] = j;
            node_set((Node *)obj[i], k, obj[j]);
        }
        obm_gc_track(obj[i]);
        if (kind[i] == K_IMM)
            obm_immortalize(obj[i]);
    }
    for (int t = 0; t < total / 50; t++) {
        int i = rnd_below(total);
        obm_incref(obj[i]);
        ext[i]++;
    }
    /* Drop most of the test's references, in random order of indices. */
    int start = rnd_below(total);
    for (int s = 0; s < total; s++) {
        int i = (start + s) % total;
        int keep = rnd_below(100) < 3;
        while (ext[i] > keep) {
            ext[i]--;
            obm_decref(obj[i]);
        }
        if (rnd_below(400) == 0)
            obm_gc_collect(rnd_below(2));
    }
    model_reachability();
    obm_gc_collect(2);

    int nalive = 0, ncb = 0;
    for (int i = 0; i < n; i++) {
        if (alive[i]) {
            nalive++;
            if (freed[i]) {
                fprintf(stderr, "seed %llu: object %d (kind %d) freed but reachable\n",
                        (unsigned long long)seed, i, kind[i]);
                CHECK(0);
            }
            Node *o = (Node *)obj[i];
            CHECK_EQ(o->id, base_id + i);
            for (int k = 0; k < NSLOTS; k++)
                CHECK(o->slot[k] == (edge[i][k] >= 0 ? obj[edge[i][k]] : NULL));
        } else {
            if (!freed[i]) {
                fprintf(stderr, "seed %llu: object %d (kind %d) unreachable but not freed\n",
                        (unsigned long long)seed, i, kind[i]);
                CHECK(0);
            }
            if (kind[i] == K_FIN)
                CHECK_EQ(finalized[i], 1);
            CHECK(kind[i] != K_RESCUE);
        }
    }
    /* Live weakrefs and ephemerons against the model; count the entries
     * that name each surviving node. */
    static int named[MAXOBJ];
    memset(named, 0, sizeof named);
    for (int i = n; i < total; i++) {
        if (!alive[i]) {
            CHECK(cb_runs[i] <= 1);
            continue;
        }
        int t = target[i];
        if (alive[t])
            named[t]++;
        if (kind[i] == K_WREF) {
            obm_object *got = obm_weakref_get((obm_weakref *)obj[i]);
            if ((alive[t] == 2 || alive[i] == 2) && has_cb[i]) {
                /* Resurrected target or weakref: a collection may have
                 * cleared it (running the callback unless the weakref was
                 * garbage too), or finalize kept the target by count. */
                if (got == NULL && alive[t])
                    named[t]--; /* cleared: off the target's list */
                CHECK(got == NULL || (got == obj[t] && alive[t] && cb_runs[i] == 0));
                if (alive[i] == 1 && alive[t] != 1)
                    CHECK_EQ(cb_runs[i], got == NULL);
                obm_xdecref(got);
            } else if (alive[t]) {
                CHECK(got == obj[t]);
                obm_decref(got);
                CHECK_EQ(cb_runs[i], 0);
            } else {
                CHECK(got == NULL);
                CHECK_EQ(cb_runs[i], has_cb[i]);
                ncb += has_cb[i];
            }
        } else {
            obm_object *k = obm_ephemeron_key(obj[i]), *v = obm_ephemeron_value(obj[i]);
            if (alive[t]) {
                CHECK(k == obj[t] && v == obj[value[i]]);
                CHECK(alive[value[i]]); /* the model agrees */
                obm_decref(k);
                obm_decref(v);
            } else {
                CHECK(k == NULL && v == NULL);
            }
        }
    }
    for (int i = 0; i < n; i++)
        if (alive[i] && kind[i] != K_LEAF)
            CHECK_EQ(obm_weakref_count(obj[i]), named[i]);
    printf("[seed %llu: %d of %d nodes alive, %d callbacks]\n  ", (unsigned long long)seed,
           nalive, n, ncb);

    /* Cleanup: immortal nodes drop what they hold (they stay, leaked by
     * design), then the test's references go. */
    for (int i = 0; i < n; i++)
        if (kind[i] == K_IMM) {
            node_clear(obj[i]);
            for (int k = 0; k < NSLOTS; k++)
                edge[i][k] = -1;
        }
    for (int i = 0; i < total; i++)
        while (ext[i] > 0) {
            ext[i]--;
            obm_decref(obj[i]);
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
        CHECK_EQ(freed[i], kind[i] != K_IMM);
}

static void test_random_weak_graphs(void) {
    for (uint64_t seed = 1; seed <= 10; seed++)
        one_round(seed, 2000, 500, 400);
    one_round(77, 4000, 1000, 1000);
}

int main(void) {
    obm_gc_disable();
    RUN(test_random_weak_graphs);
    obm_gc_set_threshold(50, 3, 3);
    obm_gc_enable();
    RUN(test_random_weak_graphs);
    printf("test_gc_random_weak: all passed\n");
    return 0;
}
