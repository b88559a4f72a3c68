/*
 * Shared helpers for the obmem allocator benchmarks.
 *
 * Every benchmark is plain C that only calls malloc/free/realloc, so the
 * allocator under test is chosen at run time with LD_PRELOAD.  Each program
 * prints exactly one machine-readable line on stdout:
 *
 *   RESULT bench=<name> key=value key=value ...
 *
 * always including ns_per_op=, maxrss_kib= (getrusage ru_maxrss of the whole
 * process, allocator overhead included), malloc_from= (the library malloc
 * resolved to), errors= (corrupted blocks seen) and
 * checksum= (a value that depends only on the inputs and seed, so it must be
 * identical under every allocator; "-" when the workload is nondeterministic).
 */
#ifndef OBMEM_BENCH_COMMON_H
#define OBMEM_BENCH_COMMON_H

#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <dlfcn.h>

/*
 * Basename of the shared object that malloc was bound to in this process
 * (e.g. "libc.so.6", "libjemalloc.so.2"), so the harness can verify that
 * LD_PRELOAD really took effect.
 */
static inline const char *malloc_from(void)
{
    Dl_info info;
    void *(*volatile fn)(size_t) = malloc;
    if (!dladdr((void *)fn, &info) || !info.dli_fname)
        return "unknown";
    const char *slash = strrchr(info.dli_fname, '/');
    return slash ? slash + 1 : info.dli_fname;
}

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline long peak_rss_kib(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return -1;
    return ru.ru_maxrss; /* Linux reports KiB */
}

/* splitmix64: seeds the generator state. */
static inline uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* xoshiro256**: fast, good quality, deterministic for a given seed. */
typedef struct { uint64_t s[4]; } rng_t;

static inline void rng_seed(rng_t *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t rng_next(rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* Uniform integer in [lo, hi] without a division (Lemire's multiply-shift). */
static inline size_t rng_range(rng_t *r, size_t lo, size_t hi)
{
    uint64_t span = (uint64_t)(hi - lo) + 1;
    return lo + (size_t)(((unsigned __int128)rng_next(r) * span) >> 64);
}

/*
 * Touching blocks.  A live block of `size` bytes (size >= 1) gets:
 *   - its first min(size, 8) bytes = the tag (a value unique to the block),
 *   - its last byte = low byte of the tag,
 *   - if stride > 0, one byte every `stride` bytes (page touch for big blocks).
 * check_block() verifies the first and last bytes before the block is freed,
 * so an allocator that hands out overlapping or too-small blocks is caught.
 */
static inline void touch_block(unsigned char *p, size_t size, uint64_t tag, size_t stride)
{
    size_t n = size < 8 ? size : 8;
    memcpy(p, &tag, n);
    if (stride)
        for (size_t off = stride; off < size - 1; off += stride)
            p[off] = (unsigned char)off;
    p[size - 1] = (unsigned char)tag;
}

/* Returns 1 if the block still holds what touch_block wrote, else 0. */
static inline int check_block(const unsigned char *p, size_t size, uint64_t tag)
{
    size_t n = size < 8 ? size : 8;
    uint64_t got = 0, want = 0;
    memcpy(&got, p, n);
    memcpy(&want, &tag, n);
    return got == want && p[size - 1] == (unsigned char)tag;
}

static inline void oom(size_t size)
{
    fprintf(stderr, "malloc(%zu) returned NULL\n", size);
    exit(3);
}

/* Tiny option parser: --name=value or --name value, all values integers. */
typedef struct { const char *name; long long *dst; const char *help; } opt_t;

static inline void parse_opts(int argc, char **argv, opt_t *opts, const char *usage)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fprintf(stderr, "usage: %s %s\noptions:\n", argv[0], usage);
            for (opt_t *o = opts; o->name; o++)
                fprintf(stderr, "  --%-12s %s (default %lld)\n", o->name, o->help, *o->dst);
            exit(0);
        }
        if (strncmp(a, "--", 2) != 0)
            goto bad;
        a += 2;
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        opt_t *o;
        for (o = opts; o->name; o++)
            if (strlen(o->name) == len && strncmp(o->name, a, len) == 0)
                break;
        if (!o->name)
            goto bad;
        const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!val)
            goto bad;
        char *end;
        *o->dst = strtoll(val, &end, 0);
        /* accept k/K, m/M suffixes (powers of 1024 for sizes would be
         * ambiguous for counts, so: k = 1000, K = 1024, m = 1e6, M = 2^20) */
        if (*end == 'k') { *o->dst *= 1000; end++; }
        else if (*end == 'K') { *o->dst *= 1024; end++; }
        else if (*end == 'm') { *o->dst *= 1000000; end++; }
        else if (*end == 'M') { *o->dst *= 1048576; end++; }
        if (*end != '\0')
            goto bad;
        continue;
    bad:
        fprintf(stderr, "%s: bad argument '%s' (try --help)\n", argv[0], argv[i]);
        exit(64);
    }
}

#endif
