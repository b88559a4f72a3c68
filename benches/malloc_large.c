/* malloc_large.c - big blocks, as mimalloc-bench's malloc-large: a set of
 * live blocks of 5-25 MiB, each zeroed when allocated (so every page is
 * touched), one replaced at random at each step. An allocator that gives
 * each freed block's pages back and maps the next one afresh pays a page
 * fault per 4 KiB; one that keeps and reuses them does not.
 * usage: malloc_large [--live N] [--min-mib A] [--max-mib B] [--ops N] [--seed S]
 * Prints one RESULT line (ns per replacement, minor faults, peak RSS). */
#include "bench_common.h"

int main(int argc, char **argv)
{
    long live = 20, min_mib = 5, max_mib = 25, ops = 500, seed = 42;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--live")) live = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--min-mib")) min_mib = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-mib")) max_mib = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--ops")) ops = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--seed")) seed = atol(argv[i + 1]);
        else { fprintf(stderr, "usage: %s [--live N] [--min-mib A] [--max-mib B] [--ops N] [--seed S]\n", argv[0]); return 2; }
    }
    if (live < 1 || live > 1000 || min_mib < 1 || max_mib < min_mib)
        return 2;
    unsigned char *blocks[1000] = {0};
    size_t sizes[1000] = {0};
    uint64_t x = (uint64_t)seed, sum = 0, errors = 0;
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    uint64_t t0 = now_ns();
    for (long i = 0; i < ops; i++) {
        long k = (long)(splitmix64(&x) % (uint64_t)live);
        if (blocks[k]) {
            /* The block still holds what was written when it was allocated. */
            if (blocks[k][0] != (unsigned char)sizes[k] || blocks[k][sizes[k] - 1] != (unsigned char)sizes[k])
                errors++;
            free(blocks[k]);
        }
        size_t mib = (size_t)(min_mib + (long)(splitmix64(&x) % (uint64_t)(max_mib - min_mib + 1)));
        size_t n = (mib << 20) - (size_t)(splitmix64(&x) % 4096);
        blocks[k] = calloc(1, n);
        if (!blocks[k]) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        for (size_t off = 0; off < n; off += 4096)
            errors += blocks[k][off] != 0;
        blocks[k][0] = blocks[k][n - 1] = (unsigned char)n;
        sizes[k] = n;
        sum = sum * 31 + n;
    }
    uint64_t t1 = now_ns();
    getrusage(RUSAGE_SELF, &r1);
    for (long k = 0; k < live; k++)
        free(blocks[k]);
    printf("RESULT bench=malloc_large live=%ld min_mib=%ld max_mib=%ld ops=%ld seed=%ld ns_per_op=%.2f "
           "minflt=%ld maxrss_kib=%ld malloc_from=%s errors=%llu checksum=%016llx\n",
           live, min_mib, max_mib, ops, seed, (double)(t1 - t0) / (double)ops,
           r1.ru_minflt - r0.ru_minflt, peak_rss_kib(), malloc_from(), (unsigned long long)errors,
           (unsigned long long)sum);
    return errors != 0;
}
