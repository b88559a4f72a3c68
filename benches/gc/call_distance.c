/* The cost of calls between a program and a shared library, the pattern
 * of a collection's traversal: a loop calls each object's traverse
 * function through a pointer, and traverse calls the visitor it was given.
 * Built twice by benches/gc/run.sh: with -DLIBRARY_HALF as a shared
 * library (the loop and the visitor, as obmem's), and as the program (a
 * traverse, and copies of the loop and the visitor). Prints ns per object
 * for the four placements:
 *   near:            loop, traverse and visitor all in the program;
 *   far visitor:     the visitor in the library;
 *   far loop:        the loop in the library (calls traverse in the program);
 *   far both:        loop and visitor in the library, as through libobmem.so.
 * Nothing but the distance between caller and callee differs. */
typedef int (*visit_t)(void *, void *);
typedef int (*trav_t)(void *, visit_t, void *);

#ifdef LIBRARY_HALF
int lib_visit(void *o, void *arg) {
    *(long *)arg += (long)o & 1;
    return 0;
}
long lib_loop(void **objs, long n, trav_t tr, visit_t visit) {
    long acc = 0;
    for (long i = 0; i < n; i++)
        tr(objs[i], visit, &acc);
    return acc;
}
#else
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int lib_visit(void *o, void *arg);
long lib_loop(void **objs, long n, trav_t tr, visit_t visit);

static int traverse(void *o, visit_t visit, void *arg) { return visit(*(void **)o, arg); }
static int exe_visit(void *o, void *arg) {
    *(long *)arg += (long)o & 1;
    return 0;
}
__attribute__((noinline)) static long exe_loop(void **objs, long n, trav_t tr, visit_t visit) {
    long acc = 0;
    for (long i = 0; i < n; i++)
        tr(objs[i], visit, &acc);
    return acc;
}

int main(void) {
    enum { N = 1000, REPS = 100000, ROUNDS = 3 };
    static void *objs[N], *cells[N];
    for (long i = 0; i < N; i++) {
        cells[i] = &cells[(i + 1) % N];
        objs[i] = &cells[i];
    }
    /* volatile: the compiler must call through the pointers, as a
     * collector does. */
    trav_t volatile tr = traverse;
    visit_t volatile near_visit = exe_visit, far_visit = lib_visit;
    static const char *names[] = { "near", "far visitor", "far loop", "far both" };
    for (int mode = 0; mode < 4; mode++) {
        double best = 1e30;
        for (int round = 0; round < ROUNDS; round++) {
            struct timespec a, b;
            long acc = 0;
            clock_gettime(CLOCK_MONOTONIC, &a);
            for (int r = 0; r < REPS; r++) {
                visit_t v = mode & 1 ? far_visit : near_visit;
                acc += mode & 2 ? lib_loop(objs, N, tr, v) : exe_loop(objs, N, tr, v);
            }
            clock_gettime(CLOCK_MONOTONIC, &b);
            double ns = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / ((double)N * REPS);
            if (acc != 0)
                return 1; /* every visited pointer is 8-aligned */
            if (ns < best)
                best = ns;
        }
        printf("call distance %-12s %.2f ns per object\n", names[mode], best);
    }
    return 0;
}
#endif
