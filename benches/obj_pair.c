/* obj_pair.c N: creates and destroys N objects (obm_new + obm_decref) of
 * a plain type and of a GC type, alternately, for instruction counts of
 * the object path: (count at N2 - count at N1) / (N2 - N1) under callgrind
 * is the cost of one create+destroy pair (see BENCHMARKS.md, issue 14). */
#include <stdio.h>
#include <stdlib.h>
#include <obmem.h>

typedef struct { OBM_OBJECT_HEAD long v[2]; } Plain;
static int no_traverse(obm_object *o, obm_visitproc v, void *a) { (void)o; (void)v; (void)a; return 0; }
static const obm_type PlainType = { "Plain", sizeof(Plain), 0, 0, 0, 0, 0 };
static const obm_type GcType = { "Gc", sizeof(Plain), OBM_TPFLAGS_HAVE_GC, 0, 0, no_traverse, 0 };

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000, sum = 0;
    for (long i = 0; i < n; i++) {
        obm_object *o = obm_new((i & 1) ? &GcType : &PlainType);
        sum += (long)((Plain *)o)->v[0];
        obm_decref(o);
    }
    printf("RESULT pairs=%ld sum=%ld\n", n, sum);
    return 0;
}
