/*
 * ring: single-threaded malloc/free churn over a ring of live blocks.
 *
 * `slots` blocks are live at all times.  Each operation frees the block in
 * slot i (after checking its contents), mallocs a new block of a random size
 * in [min, max], writes it (tag in the first bytes, last byte, and with
 * --stride one byte per stride) and stores it back in slot i.  With
 * --random=0 (default) i walks the ring in order, so every block lives for
 * exactly `slots` operations (FIFO); with --random=1 i is a random slot
 * (random lifetimes, more fragmentation).
 *
 * One op = one free + one malloc.  The ring is filled and then churned for
 * --warmup ops before the clock starts, so the measurement is steady state.
 *
 * --null=1 runs the identical loop (RNG, writes, checks) but takes blocks from
 * a fixed array instead of calling malloc/free: the harness's own cost per
 * op, to subtract mentally from the allocators' figures.
 */
#include "bench_common.h"

int main(int argc, char **argv)
{
    long long min = 16, max = 512, slots = 1000, ops = 10000000, seed = 42;
    long long stride = 0, random_slots = 0, warmup = -1, null = 0;
    opt_t opts[] = {
        {"min", &min, "smallest block size in bytes"},
        {"max", &max, "largest block size in bytes"},
        {"slots", &slots, "number of live blocks"},
        {"ops", &ops, "timed malloc+free pairs"},
        {"warmup", &warmup, "untimed pairs before timing (-1: 10*slots)"},
        {"stride", &stride, "also write one byte every STRIDE bytes (0: off)"},
        {"random", &random_slots, "1: replace random slots instead of ring order"},
        {"seed", &seed, "RNG seed"},
        {"null", &null, "1: no malloc/free, measure the harness loop only"},
        {NULL, NULL, NULL},
    };
    parse_opts(argc, argv, opts, "[options]");
    if (min < 1 || max < min || slots < 1 || ops < 1 || stride < 0) {
        fprintf(stderr, "ring: bad parameters\n");
        return 64;
    }
    if (warmup < 0)
        warmup = 10 * slots;

    unsigned char **ptr = malloc((size_t)slots * sizeof *ptr);
    size_t *size = malloc((size_t)slots * sizeof *size);
    uint64_t *tag = malloc((size_t)slots * sizeof *tag);
    if (!ptr || !size || !tag)
        oom((size_t)slots * sizeof *ptr);
    /* null mode: slot i always reuses the fixed block pool + i * max */
    unsigned char *pool = NULL;
    if (null && !(pool = malloc((size_t)slots * (size_t)max)))
        oom((size_t)slots * (size_t)max);

    rng_t rng;
    rng_seed(&rng, (uint64_t)seed);
    uint64_t k = 0; /* global op counter, source of unique tags */

    for (long long i = 0; i < slots; i++) {
        size_t sz = rng_range(&rng, (size_t)min, (size_t)max);
        unsigned char *p = null ? pool + (size_t)i * (size_t)max : malloc(sz);
        if (!p)
            oom(sz);
        uint64_t t = (++k) * 0x9e3779b97f4a7c15ull;
        touch_block(p, sz, t, (size_t)stride);
        ptr[i] = p, size[i] = sz, tag[i] = t;
    }

    uint64_t checksum = 0, errors = 0, t0 = 0;
    size_t i = 0;
    for (long long n = -warmup; n < ops; n++) {
        if (n == 0)
            t0 = now_ns();
        if (random_slots)
            i = rng_range(&rng, 0, (size_t)slots - 1);
        else if (++i == (size_t)slots)
            i = 0;
        unsigned char *p = ptr[i];
        if (!check_block(p, size[i], tag[i]))
            errors++;
        checksum = checksum * 31 + tag[i] + size[i];
        size_t sz = rng_range(&rng, (size_t)min, (size_t)max);
        if (!null) {
            free(p);
            p = malloc(sz);
        }
        if (!p)
            oom(sz);
        uint64_t t = (++k) * 0x9e3779b97f4a7c15ull;
        touch_block(p, sz, t, (size_t)stride);
        ptr[i] = p, size[i] = sz, tag[i] = t;
    }
    uint64_t t1 = now_ns();
    long rss = peak_rss_kib();

    for (long long j = 0; j < slots; j++) {
        if (!check_block(ptr[j], size[j], tag[j]))
            errors++;
        if (!null)
            free(ptr[j]);
    }
    free(pool), free(ptr), free(size), free(tag);

    printf("RESULT bench=ring%s min=%lld max=%lld slots=%lld random=%lld stride=%lld "
           "ops=%lld seed=%lld ns_per_op=%.2f maxrss_kib=%ld malloc_from=%s errors=%llu checksum=%016llx\n",
           null ? "_null" : "", min, max, slots, random_slots, stride, ops, seed,
           (double)(t1 - t0) / (double)ops, rss, malloc_from(), (unsigned long long)errors,
           (unsigned long long)checksum);
    return errors ? 2 : 0;
}
