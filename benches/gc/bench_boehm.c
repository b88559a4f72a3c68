/* Boehm GC's side of benches/gc: the same shapes, GC_gcollect() timed.
 *   boehm collect <shape> <state> <N> <ns per object> */
#include <gc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct Obj { struct Obj *other; } Obj;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static Obj **roots; /* a GC-allocated array, referenced from this global */

static long build(const char *shape, long n) {
    long nroots = 0;
    if (strcmp(shape, "pairs") == 0) {
        for (long i = 0; i < n / 2; i++) {
            Obj *a = GC_MALLOC(sizeof(Obj)), *b = GC_MALLOC(sizeof(Obj));
            a->other = b;
            b->other = a;
            roots[nroots++] = a;
        }
    } else {
        Obj *head = GC_MALLOC(sizeof(Obj)), *cur = head;
        for (long i = 1; i < n; i++) {
            Obj *x = GC_MALLOC(sizeof(Obj));
            cur->other = x;
            cur = x;
        }
        cur->other = head;
        roots[nroots++] = head;
    }
    return nroots;
}

int main(int argc, char **argv) {
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    GC_INIT();
    GC_disable(); /* only explicit collections, as for the others */
    roots = GC_MALLOC(sizeof(Obj *) * 3000000);
    static const long sizes[] = { 100000, 1000000, 3000000 };
    static const char *shapes[] = { "pairs", "ring" };
    static const char *states[] = { "garbage", "reachable" };
    for (int si = 0; si < (quick ? 1 : 3); si++)
        for (int sh = 0; sh < 2; sh++)
            for (int st = 0; st < 2; st++) {
                double best = 1e9;
                for (int r = 0; r < 3; r++) {
                    long nroots = build(shapes[sh], sizes[si]);
                    if (strcmp(states[st], "garbage") == 0)
                        memset(roots, 0, sizeof(Obj *) * nroots);
                    GC_enable();
                    double t0 = now();
                    GC_gcollect();
                    double t = now() - t0;
                    GC_disable();
                    if (t < best)
                        best = t;
                    memset(roots, 0, sizeof(Obj *) * nroots);
                    GC_enable();
                    GC_gcollect();
                    GC_disable();
                }
                printf("boehm collect %s %s %ld %.2f\n", shapes[sh], states[st], sizes[si], best / sizes[si] * 1e9);
                fflush(stdout);
            }
    return 0;
}
