/* The header-inline reference counting functions (obm_incref_inline and
 * friends): the same counts as the exported functions, the last reference
 * deallocates, immortal objects are never written, NULL is accepted by the
 * x forms, and under the debug hooks every call goes through the exported
 * functions (obm_debug_hooks_on). */
#include "gc_test_util.h"

static void test_counts_and_last_reference(void) {
    long d0 = node_deallocs;
    Node *n = new_of(&LeafType, 1);
    for (int i = 0; i < 1000; i++)
        obm_incref_inline(OBJ(n));
    CHECK_EQ(obm_refcnt(OBJ(n)), 1001);
    for (int i = 0; i < 999; i++)
        obm_decref_inline(OBJ(n));
    CHECK_EQ(obm_refcnt(OBJ(n)), 2);
    obm_xincref_inline(OBJ(n));
    obm_xdecref_inline(OBJ(n));
    obm_xincref_inline(NULL);
    obm_xdecref_inline(NULL);
    obm_decref_inline(OBJ(n));
    CHECK_EQ(node_deallocs, d0);
    obm_decref_inline(OBJ(n)); /* the last one: dealloc through obm_decref */
    CHECK_EQ(node_deallocs, d0 + 1);
}

static void test_gc_object(void) {
    long d0 = node_deallocs;
    Node *a = node_new(1), *b = node_new(2);
    node_set(a, 0, b);
    obm_decref_inline(OBJ(b));
    CHECK_EQ(obm_refcnt(OBJ(b)), 1);
    obm_decref_inline(OBJ(a)); /* frees a, which frees b */
    CHECK_EQ(node_deallocs, d0 + 2);
}

static void test_immortal(void) {
    long d0 = node_deallocs;
    Node *n = new_of(&LeafType, 3);
    obm_immortalize(OBJ(n));
    intptr_t raw = n->ob_base.ob_refcnt;
    for (int i = 0; i < 100; i++)
        obm_decref_inline(OBJ(n));
    obm_incref_inline(OBJ(n));
    CHECK_EQ(n->ob_base.ob_refcnt, raw);
    CHECK_EQ(node_deallocs, d0);
}

static void test_hooks_flag(void) {
    const char *m = getenv("OBMEM_MALLOC");
    int debug = m && (strcmp(m, "debug") == 0 || strcmp(m, "pymalloc_debug") == 0);
    void *p = malloc(16); /* the hooks are installed by the first allocation at the latest */
    free(p);
    CHECK_EQ(obm_debug_hooks_on, debug);
}

int main(void) {
    obm_gc_disable();
    RUN(test_counts_and_last_reference);
    RUN(test_gc_object);
    RUN(test_immortal);
    RUN(test_hooks_flag);
    printf("test_refcount_inline: all passed\n");
    return 0;
}
