/* obj_pair.c N [tracked]: creates and destroys N objects (obm_new +
 * obm_decref), for instruction counts of the object path: (count at N2 -
 * count at N1) / (N2 - N1) under callgrind is the cost of one create +
 * destroy (see BENCHMARKS.md, issue 14 and later).
 *   default   a plain type and a GC type without dealloc, alternately
 *             (nothing of the user's runs at destruction);
 *   tracked   a GC type with a dealloc that clears its one reference,
 *             tracked after creation (benches/gc/bench_obmem.c's
 *             create_destroy shape). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <obmem.h>

typedef struct { OBM_OBJECT_HEAD long v[2]; } Plain;
static int no_traverse(obm_object *o, obm_visitproc v, void *a) { (void)o; (void)v; (void)a; return 0; }
static const obm_type PlainType = { "Plain", sizeof(Plain), 0, 0, 0, 0, 0 };
static const obm_type GcType = { "Gc", sizeof(Plain), OBM_TPFLAGS_HAVE_GC, 0, 0, no_traverse, 0 };

typedef struct { OBM_OBJECT_HEAD obm_object *other; } Node;
static int node_traverse(obm_object *o, obm_visitproc visit, void *arg) {
    Node *n = (Node *)o;
    return n->other ? visit(n->other, arg) : 0;
}
static int node_clear(obm_object *o) {
    Node *n = (Node *)o;
    obm_object *t = n->other;
    n->other = NULL;
    obm_xdecref(t);
    return 0;
}
static void node_dealloc(obm_object *o) { node_clear(o); }
static const obm_type NodeType = { "Node", sizeof(Node), OBM_TPFLAGS_HAVE_GC, 0, node_dealloc, node_traverse,
                                   node_clear };

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000, sum = 0;
    if (argc > 2 && strcmp(argv[2], "tracked") == 0) {
        for (long i = 0; i < n; i++) {
            obm_object *o = obm_new(&NodeType);
            sum += (long)(((Node *)o)->other != NULL);
            obm_gc_track(o);
            obm_decref(o);
        }
    } else {
        for (long i = 0; i < n; i++) {
            obm_object *o = obm_new((i & 1) ? &GcType : &PlainType);
            sum += (long)((Plain *)o)->v[0];
            obm_decref(o);
        }
    }
    printf("RESULT pairs=%ld sum=%ld\n", n, sum);
    return 0;
}
