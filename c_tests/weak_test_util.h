/* Helpers for the weak reference and ephemeron tests: an event log written
 * by finalize / clear / dealloc / weakref callbacks, and a weak-referenceable
 * GC container ("WNode"), with and without a finalizer. */
#ifndef WEAK_TEST_UTIL_H
#define WEAK_TEST_UTIL_H

#include "gc_test_util.h"

#include <errno.h>

static char event_log[8192];

/* Appends one event ("F1": finalize of object 1, "C1": clear, "D1":
 * dealloc, "W<label>": callback) to the log, space-separated. */
static UNUSED void log_event(char kind, long id) {
    size_t n = strlen(event_log);
    snprintf(event_log + n, sizeof event_log - n, "%s%c%ld", n ? " " : "", kind, id);
}

static UNUSED void log_reset(void) { event_log[0] = 0; }

#define CHECK_LOG(expected)                                                      \
    do {                                                                         \
        if (strcmp(event_log, expected) != 0) {                                  \
            fprintf(stderr, "%s:%d: FAILED: event log \"%s\", expected \"%s\"\n", \
                    __FILE__, __LINE__, event_log, expected);                    \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

/* What finalize does beyond logging (resurrect, make weakrefs, ...). */
static void (*on_finalize)(Node *n) UNUSED;
/* What clear does before clearing (check weakrefs are dead, ...). */
static void (*on_clear)(Node *n) UNUSED;

static UNUSED void wnode_finalize(obm_object *o) {
    log_event('F', ((Node *)o)->id);
    if (on_finalize)
        on_finalize((Node *)o);
}

static UNUSED int wnode_clear(obm_object *o) {
    log_event('C', ((Node *)o)->id);
    if (on_clear)
        on_clear((Node *)o);
    return node_clear(o);
}

static UNUSED void wnode_dealloc(obm_object *o) {
    log_event('D', ((Node *)o)->id);
    node_clear(o);
}

static const obm_type WNodeType UNUSED = {
    "WNode", sizeof(Node), OBM_TPFLAGS_HAVE_GC | OBM_TPFLAGS_WEAKREFABLE,
    NULL, wnode_dealloc, node_traverse, wnode_clear,
};
static const obm_type WFinNodeType UNUSED = {
    "WFinNode", sizeof(Node), OBM_TPFLAGS_HAVE_GC | OBM_TPFLAGS_WEAKREFABLE,
    wnode_finalize, wnode_dealloc, node_traverse, wnode_clear,
};
/* Weak-referenceable but not a GC type. */
static const obm_type WLeafType UNUSED = {
    "WLeaf", sizeof(Node), OBM_TPFLAGS_WEAKREFABLE, NULL, wnode_dealloc, NULL, NULL,
};

#define WR(x) ((obm_weakref *)(x))

#endif
