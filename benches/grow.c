/*
 * grow: pure growth, the cost of making pools when nothing is reused.
 * The program mallocs blocks of every size class in turn, from 16 bytes up
 * to --max bytes (default 131072: all 96 classes; 512: the 32 small ones),
 * writing the first byte of each, until --mib MiB are allocated; nothing
 * is freed before the end. So nearly every new pool takes memory that was
 * never resident: the path where a heap looks at its empty pools as it
 * grows (docs/ARCHITECTURE.md, "Idle empty pools"). Prints the classes
 * used, the mallocs and the wall time per malloc (mostly page faults).
 *
 *   build/bench/grow --mib 256 --max 512
 */
#include "bench_common.h"

int main(int argc, char **argv)
{
    long long mib = 256, max = 131072;
    opt_t opts[] = {
        {"mib", &mib, "MiB to allocate"},
        {"max", &max, "largest block size (16..131072)"},
        {NULL, NULL, NULL},
    };
    parse_opts(argc, argv, opts, "[--mib N] [--max BYTES]");
    if (mib < 1 || max < 16 || max > 131072) {
        fprintf(stderr, "grow: --mib must be >= 1 and --max in 16..131072\n");
        return 2;
    }
    /* One size per class: 16-byte steps to 512, then eight steps per
     * power of two. */
    size_t sizes[96];
    int k = 0;
    for (size_t s = 16; s <= 512 && s <= (size_t)max; s += 16)
        sizes[k++] = s;
    for (size_t s = 576; s <= (size_t)max && k < 96; s += (size_t)1 << (63 - __builtin_clzll(s - 1) - 3))
        sizes[k++] = s;
    size_t total = (size_t)mib << 20, got = 0, n = 0, cap = total / 16 + 1;
    char **v = malloc(cap * sizeof *v);
    if (!v)
        oom(cap * sizeof *v);
    uint64_t t0 = now_ns();
    while (got < total) {
        size_t s = sizes[n % (size_t)k];
        char *p = malloc(s);
        if (!p)
            oom(s);
        p[0] = 1;
        got += s;
        v[n++] = p;
    }
    double ns = (double)(now_ns() - t0);
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
    printf("RESULT bench=grow mib=%lld classes=%d mallocs=%zu ns_per_malloc=%.1f malloc_from=%s\n",
           mib, k, n, ns / (double)n, malloc_from());
    return 0;
}
