/*
 * realloc_grow: many buffers growing by small steps, like string builders or
 * vectors that grow by a fixed amount instead of geometrically.
 *
 * Each round mallocs `buffers` buffers of one step, then grows them
 * round-robin (so they interleave in the heap and in-place growth is not
 * free): every realloc adds a random step in [step_min, step_max] bytes and
 * writes the newly added bytes (memset, like appending).  A buffer stops at
 * `max` bytes.  When all are full, their contents are checked at sampled
 * offsets and they are freed.  One op = one realloc call.
 */
#include "bench_common.h"

int main(int argc, char **argv)
{
    long long buffers = 16, max = 1048576, step_min = 16, step_max = 256;
    long long rounds = 4, seed = 42;
    opt_t opts[] = {
        {"buffers", &buffers, "buffers growing at the same time"},
        {"max", &max, "final size of each buffer in bytes"},
        {"step-min", &step_min, "smallest growth step in bytes"},
        {"step-max", &step_max, "largest growth step in bytes"},
        {"rounds", &rounds, "grow-then-free rounds (timed)"},
        {"seed", &seed, "RNG seed"},
        {NULL, NULL, NULL},
    };
    parse_opts(argc, argv, opts, "[options]");
    if (buffers < 1 || step_min < 1 || step_max < step_min || max < step_max || rounds < 1) {
        fprintf(stderr, "realloc_grow: bad parameters\n");
        return 64;
    }

    unsigned char **buf = malloc((size_t)buffers * sizeof *buf);
    size_t *len = malloc((size_t)buffers * sizeof *len);
    if (!buf || !len)
        oom((size_t)buffers * sizeof *buf);

    rng_t rng;
    rng_seed(&rng, (uint64_t)seed);
    uint64_t checksum = 0, errors = 0, reallocs = 0;
    uint64_t t0 = now_ns();

    for (long long r = 0; r < rounds; r++) {
        for (long long b = 0; b < buffers; b++) {
            size_t n = rng_range(&rng, (size_t)step_min, (size_t)step_max);
            buf[b] = malloc(n);
            if (!buf[b])
                oom(n);
            /* byte at offset o is (o ^ b ^ r) & 0xff: position-dependent, so a
             * realloc that moves and copies wrongly is detected */
            for (size_t o = 0; o < n; o++)
                buf[b][o] = (unsigned char)(o ^ (size_t)b ^ (size_t)r);
            len[b] = n;
        }
        long long active = buffers;
        while (active > 0) {
            active = 0;
            for (long long b = 0; b < buffers; b++) {
                size_t old = len[b];
                if (old >= (size_t)max)
                    continue;
                size_t n = old + rng_range(&rng, (size_t)step_min, (size_t)step_max);
                if (n > (size_t)max)
                    n = (size_t)max;
                unsigned char *p = realloc(buf[b], n);
                if (!p)
                    oom(n);
                reallocs++;
                /* the appended bytes are written with memset (fast, like a
                 * memcpy append); only their first byte carries the pattern */
                memset(p + old, (unsigned char)(old ^ (size_t)b ^ (size_t)r), n - old);
                buf[b] = p;
                len[b] = n;
                if (n < (size_t)max)
                    active++;
            }
        }
        for (long long b = 0; b < buffers; b++) {
            /* check the first bytes of the buffer and a sample of later bytes */
            unsigned char *p = buf[b];
            for (size_t o = 0; o < 8; o++)
                if (p[o] != (unsigned char)(o ^ (size_t)b ^ (size_t)r))
                    errors++;
            for (size_t o = 4093; o < len[b]; o += 4093)
                checksum = checksum * 31 + p[o];
            checksum = checksum * 31 + p[len[b] - 1];
            free(p);
        }
    }
    uint64_t t1 = now_ns();
    long rss = peak_rss_kib();
    free(buf), free(len);

    printf("RESULT bench=realloc_grow buffers=%lld max=%lld step_min=%lld step_max=%lld "
           "rounds=%lld seed=%lld ops=%llu ns_per_op=%.2f maxrss_kib=%ld malloc_from=%s errors=%llu checksum=%016llx\n",
           buffers, max, step_min, step_max, rounds, seed, (unsigned long long)reallocs,
           (double)(t1 - t0) / (double)reallocs, rss, malloc_from(), (unsigned long long)errors,
           (unsigned long long)checksum);
    return errors ? 2 : 0;
}
