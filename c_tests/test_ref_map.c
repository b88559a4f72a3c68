/* Types that list their references in an obm_type_refs map
 * (OBM_TPFLAGS_REF_MAP) instead of a traverse function: the collector
 * reads the listed fields itself, a NULL clear or dealloc drops them, the
 * introspection functions see them, the user's own clear and dealloc win
 * over the defaults, and unusable maps are refused with a message. */
#include "gc_test_util.h"

#include <stddef.h>

/* The references are words 3 and 5, with plain data around them. */
typedef struct Pair {
    OBM_OBJECT_HEAD
    long tag;
    obm_object *a;
    long pad;
    obm_object *b;
} Pair;

#define PAIR_REFS (OBM_REF_FIELD(Pair, a) | OBM_REF_FIELD(Pair, b))

static const obm_type_refs Listed = {
    { "Listed", sizeof(Pair), OBM_TPFLAGS_HAVE_GC | OBM_TPFLAGS_REF_MAP, NULL, NULL, NULL, NULL }, PAIR_REFS
};
/* Not a GC type: only its deallocation uses the map. */
static const obm_type_refs ListedPlain = {
    { "ListedPlain", sizeof(Pair), OBM_TPFLAGS_REF_MAP, NULL, NULL, NULL, NULL }, PAIR_REFS
};

/* With the user's clear and dealloc: obmem must call them, and not drop
 * the fields itself. own_dealloc decrefs without setting the fields to
 * NULL, so a second drop by obmem would make a count negative (abort). */
static long own_clears, own_deallocs;
static int own_clear(obm_object *o) {
    Pair *p = (Pair *)o;
    own_clears++;
    obm_object *a = p->a, *b = p->b;
    p->a = p->b = NULL;
    obm_xdecref(a);
    obm_xdecref(b);
    return 0;
}
static void own_dealloc(obm_object *o) {
    Pair *p = (Pair *)o;
    own_deallocs++;
    obm_xdecref(p->a);
    obm_xdecref(p->b);
}
static const obm_type_refs ListedOwn = {
    { "ListedOwn", sizeof(Pair), OBM_TPFLAGS_HAVE_GC | OBM_TPFLAGS_REF_MAP, NULL, own_dealloc, NULL, own_clear },
    PAIR_REFS
};

static Pair *pair_new(const obm_type_refs *t, long tag) {
    Pair *p = (Pair *)obm_new(&t->base);
    CHECK(p != NULL);
    CHECK(p->a == NULL && p->b == NULL);
    p->tag = tag;
    if (t->base.flags & OBM_TPFLAGS_HAVE_GC)
        obm_gc_track(OBJ(p));
    return p;
}

/* *field = v, with a new reference to v. */
static void set(obm_object **field, void *v) {
    obm_xincref(OBJ(v));
    obm_object *old = *field;
    *field = OBJ(v);
    obm_xdecref(old);
}

/* A leaf (non-GC Node) whose deallocation node_deallocs counts. */
static Node *leaf(void) { return new_of(&LeafType, 0); }

enum { RING = 1000 };

/* A ring through `a`, each member owning a leaf through `b`; returns the
 * first member (the caller's reference), the others held by the ring. */
static Pair *make_ring(void) {
    Pair *first = pair_new(&Listed, 0), *cur = first;
    for (int i = 1; i <= RING; i++) {
        Node *l = leaf();
        cur->b = OBJ(l); /* takes the creation reference */
        if (i == RING) {
            set(&cur->a, first);
            break;
        }
        Pair *next = pair_new(&Listed, i);
        cur->a = OBJ(next);
        cur = next;
    }
    return first;
}

/* A cycle of listed objects is found through their maps and broken by the
 * default clear, which drops the leaves too. */
static void test_cycle_collected(void) {
    gc_settle();
    Pair *first = make_ring();
    long d0 = node_deallocs;
    obm_decref(OBJ(first));
    CHECK_EQ(obm_gc_collect(2), RING);
    CHECK_EQ(node_deallocs - d0, RING);
}

/* Reachable listed objects survive with their fields intact. */
static void test_reachable_kept(void) {
    gc_settle();
    Pair *first = make_ring();
    CHECK_EQ(obm_gc_collect(2), 0);
    Pair *cur = first;
    for (int i = 0; i < RING; i++) {
        CHECK_EQ(cur->tag, i);
        CHECK_EQ(obm_refcnt(cur->b), 1);
        CHECK_EQ(obm_refcnt(OBJ(cur)), i == 0 ? 2 : 1);
        cur = (Pair *)cur->a;
    }
    CHECK(cur == first);
    obm_decref(OBJ(first));
    CHECK_EQ(obm_gc_collect(2), RING);
}

/* A cycle through a listed object and a traverse object. */
static void test_mixed_cycle(void) {
    gc_settle();
    Pair *p = pair_new(&Listed, 7);
    Node *n = node_new(8);
    set(&p->b, n);
    node_set(n, 2, p);
    obm_decref(OBJ(n));
    /* Held from outside through p: nothing to collect. */
    CHECK_EQ(obm_gc_collect(2), 0);
    CHECK(p->b == OBJ(n) && n->slot[2] == OBJ(p));
    long d0 = node_deallocs;
    obm_decref(OBJ(p));
    CHECK_EQ(obm_gc_collect(2), 2);
    CHECK_EQ(node_deallocs - d0, 1);
}

/* Without a dealloc, the death of a (non-GC) listed object drops its
 * references. */
static void test_dealloc_drops_fields(void) {
    Pair *q = pair_new(&ListedPlain, 1);
    Node *l1 = leaf(), *l2 = leaf();
    set(&q->a, l1);
    set(&q->b, l2);
    CHECK_EQ(obm_refcnt(OBJ(l1)), 2);
    long d0 = node_deallocs;
    obm_decref(OBJ(l2)); /* now held by q only */
    CHECK_EQ(node_deallocs - d0, 0);
    obm_decref(OBJ(q));
    CHECK_EQ(obm_refcnt(OBJ(l1)), 1);
    CHECK_EQ(node_deallocs - d0, 1); /* l2 */
    obm_decref(OBJ(l1));
    CHECK_EQ(node_deallocs - d0, 2);
}

/* The user's clear and dealloc run instead of the defaults. */
static void test_user_functions_run(void) {
    gc_settle();
    Pair *x = pair_new(&ListedOwn, 1), *y = pair_new(&ListedOwn, 2);
    Node *l = leaf();
    set(&x->a, y);
    set(&y->a, x);
    x->b = OBJ(l);
    obm_decref(OBJ(y));
    obm_decref(OBJ(x));
    long c0 = own_clears, d0 = own_deallocs, n0 = node_deallocs;
    CHECK_EQ(obm_gc_collect(2), 2);
    CHECK(own_clears - c0 >= 1);
    CHECK_EQ(own_deallocs - d0, 2);
    CHECK_EQ(node_deallocs - n0, 1);
}

static obm_object *seen[4];
static int nseen;
static int record(obm_object *o, void *arg) {
    CHECK(nseen < 4);
    seen[nseen++] = o;
    return arg ? *(int *)arg : 0;
}

/* get_referents and get_referrers read the map. */
static void test_introspection(void) {
    Pair *p = pair_new(&Listed, 1);
    Node *x = leaf(), *y = leaf();
    set(&p->a, x);
    set(&p->b, y);
    nseen = 0;
    CHECK_EQ(obm_gc_get_referents(OBJ(p), record, NULL), 0);
    CHECK_EQ(nseen, 2);
    CHECK(seen[0] == OBJ(x) && seen[1] == OBJ(y));
    /* A non-zero result stops the walk and is returned. */
    int stop = 5;
    nseen = 0;
    CHECK_EQ(obm_gc_get_referents(OBJ(p), record, &stop), 5);
    CHECK_EQ(nseen, 1);
    /* NULL fields are skipped. */
    set(&p->a, NULL);
    nseen = 0;
    CHECK_EQ(obm_gc_get_referents(OBJ(p), record, NULL), 0);
    CHECK_EQ(nseen, 1);
    CHECK(seen[0] == OBJ(y));
    nseen = 0;
    CHECK_EQ(obm_gc_get_referrers(OBJ(y), record, NULL), 0);
    CHECK_EQ(nseen, 1);
    CHECK(seen[0] == OBJ(p));
    obm_decref(OBJ(p));
    obm_decref(OBJ(x));
    obm_decref(OBJ(y));
}

/* The path to a root goes through listed objects. */
static void test_path_to_root(void) {
    gc_settle();
    Pair *root = pair_new(&Listed, 1), *mid = pair_new(&Listed, 2), *target = pair_new(&Listed, 3);
    set(&root->b, mid);
    set(&mid->a, target);
    obm_decref(OBJ(mid));
    obm_decref(OBJ(target));
    nseen = 0;
    CHECK_EQ(obm_gc_path_to_root(OBJ(target), record, NULL), 0);
    CHECK_EQ(nseen, 3);
    CHECK(seen[0] == OBJ(root) && seen[1] == OBJ(mid) && seen[2] == OBJ(target));
    obm_decref(OBJ(root));
    CHECK_EQ(obm_gc_collect(2), 0); /* freed by reference counting */
}

/* Dropping the head of a long chain of listed objects, destroyed by the
 * default dealloc, does not overflow the stack (the trashcan). */
static void test_long_chain(void) {
    Pair *head = pair_new(&ListedPlain, 0), *cur = head;
    for (int i = 1; i < 1000000; i++) {
        Pair *next = pair_new(&ListedPlain, i);
        cur->a = OBJ(next);
        cur = next;
    }
    Node *l = leaf();
    cur->b = OBJ(l);
    long d0 = node_deallocs;
    obm_decref(OBJ(head));
    CHECK_EQ(node_deallocs - d0, 1);
}

static void bad_types_child(void) {
    static const obm_type_refs WithTraverse = {
        { "WithTraverse", sizeof(Pair), OBM_TPFLAGS_HAVE_GC | OBM_TPFLAGS_REF_MAP, NULL, NULL, node_traverse, NULL },
        PAIR_REFS
    };
    /* Word 0 is the reference count. */
    static const obm_type_refs HeadWord = {
        { "HeadWord", sizeof(Pair), OBM_TPFLAGS_HAVE_GC | OBM_TPFLAGS_REF_MAP, NULL, NULL, NULL, NULL }, 1
    };
    /* Word 6 lies past the 48 bytes of a Pair; so does word 63. */
    static const obm_type_refs PastSize = {
        { "PastSize", sizeof(Pair), OBM_TPFLAGS_REF_MAP, NULL, NULL, NULL, NULL }, PAIR_REFS | (1ull << 6)
    };
    static const obm_type_refs TopWord = {
        { "TopWord", sizeof(Pair), OBM_TPFLAGS_REF_MAP, NULL, NULL, NULL, NULL }, 1ull << 63
    };
    /* The last word of the object, and an empty map, are fine. */
    static const obm_type_refs LastWord = {
        { "LastWord", sizeof(Pair), OBM_TPFLAGS_REF_MAP, NULL, NULL, NULL, NULL }, OBM_REF_FIELD(Pair, b)
    };
    static const obm_type_refs Empty = {
        { "Empty", sizeof(Pair), OBM_TPFLAGS_HAVE_GC | OBM_TPFLAGS_REF_MAP, NULL, NULL, NULL, NULL }, 0
    };
    if (obm_new(&WithTraverse.base) != NULL)
        _exit(2);
    if (obm_new(&HeadWord.base) != NULL)
        _exit(3);
    if (obm_new_var(&PastSize.base, 64) != NULL)
        _exit(4);
    if (obm_new(&TopWord.base) != NULL)
        _exit(5);
    obm_object *ok1 = obm_new(&LastWord.base), *ok2 = obm_new(&Empty.base);
    if (ok1 == NULL || ok2 == NULL)
        _exit(6);
    obm_decref(ok1);
    obm_decref(ok2);
    _exit(0);
}

/* Unusable maps are refused with a message naming the type. */
static void test_bad_types_refused(void) {
    char err[4096];
    int st = run_child(bad_types_child, err, sizeof err);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    CHECK(strstr(err, "obmem: obm_new: type \"WithTraverse\" has both OBM_TPFLAGS_REF_MAP and a traverse function") ==
          err);
    CHECK(strstr(err, "obm_new: type \"HeadWord\" has OBM_TPFLAGS_REF_MAP but its refs map 0x1 names a word of the "
                      "head or past its size 48") != NULL);
    CHECK(strstr(err, "obm_new_var: type \"PastSize\"") != NULL);
    CHECK(strstr(err, "type \"TopWord\" has OBM_TPFLAGS_REF_MAP but its refs map 0x8000000000000000") != NULL);
    CHECK(strstr(err, "LastWord") == NULL && strstr(err, "Empty") == NULL);
}

int main(void) {
    obm_gc_disable();
    RUN(test_cycle_collected);
    RUN(test_reachable_kept);
    RUN(test_mixed_cycle);
    RUN(test_dealloc_drops_fields);
    RUN(test_user_functions_run);
    RUN(test_introspection);
    RUN(test_path_to_root);
    RUN(test_long_chain);
    RUN(test_bad_types_refused);
    return 0;
}
