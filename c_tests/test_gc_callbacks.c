/* Collection callbacks: START/STOP phases and their info; a callback that
 * asks for a collection does not start a nested one. Mirrors CPython
 * Lib/test/test_gc.py GCCallbackTests (test_collect,
 * test_collect_generation, test_collect_garbage). */
#include "gc_test_util.h"

struct visit { int cb; int phase; obm_gc_info info; };
static struct visit visits[64];
static int nvisits;

static void cb1(int phase, const obm_gc_info *info, void *ctx) {
    (void)ctx;
    if (nvisits < 64)
        visits[nvisits++] = (struct visit){ 1, phase, *info };
}
static void cb2(int phase, const obm_gc_info *info, void *ctx) {
    if (nvisits < 64)
        visits[nvisits++] = (struct visit){ (int)(long)ctx, phase, *info };
}

static void preclean(void) {
    gc_settle();
    nvisits = 0;
}

/* test_collect: each callback is called at START and STOP. */
static void test_collect(void) {
    CHECK_EQ(obm_gc_callback_add(cb1, NULL), 0);
    CHECK_EQ(obm_gc_callback_add(cb2, (void *)2L), 0);
    preclean();
    obm_gc_collect(2);
    CHECK_EQ(nvisits, 4);
    int n1 = 0, n2 = 0, start = 0, stop = 0;
    for (int i = 0; i < nvisits; i++) {
        n1 += visits[i].cb == 1;
        n2 += visits[i].cb == 2;
        start += visits[i].phase == OBM_GC_START;
        stop += visits[i].phase == OBM_GC_STOP;
    }
    CHECK_EQ(n1, 2);
    CHECK_EQ(n2, 2);
    CHECK_EQ(start, 2);
    CHECK_EQ(stop, 2);
    /* Order: both STARTs (registration order), then both STOPs. */
    CHECK_EQ(visits[0].phase, OBM_GC_START);
    CHECK_EQ(visits[0].cb, 1);
    CHECK_EQ(visits[1].cb, 2);
    CHECK_EQ(visits[3].phase, OBM_GC_STOP);
}

/* test_collect_generation */
static void test_collect_generation(void) {
    for (int g = 0; g < 3; g++) {
        preclean();
        obm_gc_collect(g);
        CHECK_EQ(nvisits, 4);
        for (int i = 0; i < nvisits; i++)
            CHECK_EQ(visits[i].info.generation, g);
    }
}

/* test_collect_garbage: STOP reports what was collected; START reports 0. */
static void test_collect_garbage(void) {
    preclean();
    for (int i = 0; i < 3; i++) {
        Node *a = node_new(i), *b = node_new(i);
        node_set(a, 0, b);
        node_set(b, 0, a);
        obm_decref(OBJ(a));
        obm_decref(OBJ(b));
    }
    CHECK_EQ(obm_gc_collect(2), 6);
    CHECK_EQ(nvisits, 4);
    for (int i = 0; i < nvisits; i++) {
        if (visits[i].phase == OBM_GC_START) {
            CHECK_EQ(visits[i].info.collected, 0);
        } else {
            CHECK_EQ(visits[i].info.collected, 6);
        }
        CHECK_EQ(visits[i].info.uncollectable, 0);
    }
}

/* A callback that calls obm_gc_collect gets 0: no nested collection. */
static long nested = -9;
static void collecting_cb(int phase, const obm_gc_info *info, void *ctx) {
    (void)info;
    (void)ctx;
    if (phase == OBM_GC_START)
        nested = obm_gc_collect(2);
}
static void test_callback_collect_not_nested(void) {
    CHECK_EQ(obm_gc_callback_add(collecting_cb, NULL), 0);
    preclean();
    obm_gc_gen_stats before[3], after[3];
    obm_gc_get_stats(before);
    obm_gc_collect(1);
    obm_gc_get_stats(after);
    CHECK_EQ(nested, 0);
    CHECK_EQ(after[1].collections - before[1].collections, 1);
    CHECK_EQ(after[2].collections - before[2].collections, 0);
    CHECK_EQ(obm_gc_callback_remove(collecting_cb, NULL), 0);
}

/* Removal: by (function, ctx); a missing one is -1; NULL cannot be added. */
static void test_callback_remove(void) {
    CHECK_EQ(obm_gc_callback_remove(cb2, (void *)3L), -1);
    CHECK_EQ(obm_gc_callback_remove(cb2, (void *)2L), 0);
    CHECK_EQ(obm_gc_callback_remove(cb1, NULL), 0);
    CHECK_EQ(obm_gc_callback_remove(cb1, NULL), -1);
    CHECK_EQ(obm_gc_callback_add(NULL, NULL), -1);
    preclean();
    obm_gc_collect(2);
    CHECK_EQ(nvisits, 0);
    /* Many callbacks (the list grows). */
    for (long i = 0; i < 100; i++)
        CHECK_EQ(obm_gc_callback_add(cb2, (void *)i), 0);
    nvisits = 0;
    obm_gc_collect(0);
    CHECK_EQ(nvisits, 64); /* capped by the test's log */
    for (long i = 0; i < 100; i++)
        CHECK_EQ(obm_gc_callback_remove(cb2, (void *)i), 0);
}

int main(void) {
    obm_gc_disable();
    RUN(test_collect);
    RUN(test_collect_generation);
    RUN(test_collect_garbage);
    RUN(test_callback_collect_not_nested);
    RUN(test_callback_remove);
    printf("test_gc_callbacks: all passed\n");
    return 0;
}
