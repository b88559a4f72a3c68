/* rss_bursts.c - RSS over time of a bursty program: T threads allocate B
 * bytes of mixed small blocks (16-512 B, each written), free them all,
 * then the program idles; R rounds. A sampler thread records the resident
 * set every S ms. Prints the samples as "rss t_ms rss_kib" lines, the RSS
 * at the end of each idle phase, and the area under the RSS curve.
 * usage: rss_bursts [--threads T] [--mib B] [--idle-ms I] [--rounds R] [--sample-ms S]
 * The pointer arrays and the samples live in mmap'd memory, not in the
 * allocator under test. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static int threads = 4, rounds = 5, idle_ms = 5000, sample_ms = 50;
static size_t bytes = (size_t)1024 << 20;
static pthread_barrier_t start, freed;
static volatile int done;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static size_t rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (size_t)sysconf(_SC_PAGESIZE) / 1024;
}

#define MAX_SAMPLES 100000
static double *st;
static size_t *sr;
static size_t ns;
static double t0;

static void *sampler(void *arg)
{
    (void)arg;
    while (!done && ns < MAX_SAMPLES) {
        st[ns] = now_ms() - t0;
        sr[ns] = rss_kib();
        ns++;
        usleep((useconds_t)sample_ms * 1000);
    }
    return NULL;
}

static void *worker(void *arg)
{
    uint64_t x = 0x9e3779b97f4a7c15ull * (1 + (uintptr_t)arg);
    size_t share = bytes / (size_t)threads, cap = share / 16 + 1;
    void **p = mmap(NULL, cap * sizeof *p, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        abort();
    for (int r = 0; r < rounds; r++) {
        pthread_barrier_wait(&start);
        size_t n = 0, total = 0;
        while (total < share && n < cap) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            size_t sz = 16 + (size_t)(x % 497);
            p[n] = malloc(sz);
            if (!p[n])
                abort();
            memset(p[n], (int)n, sz);
            total += sz;
            n++;
        }
        for (size_t i = 0; i < n; i++)
            free(p[i]);
        pthread_barrier_wait(&freed);
    }
    munmap(p, cap * sizeof *p);
    return NULL;
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--mib")) bytes = (size_t)atol(argv[i + 1]) << 20;
        else if (!strcmp(argv[i], "--idle-ms")) idle_ms = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--sample-ms")) sample_ms = atoi(argv[i + 1]);
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    st = mmap(NULL, MAX_SAMPLES * sizeof *st, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    sr = mmap(NULL, MAX_SAMPLES * sizeof *sr, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (st == MAP_FAILED || sr == MAP_FAILED)
        return 1;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    pthread_barrier_init(&freed, NULL, (unsigned)threads + 1);
    t0 = now_ms();
    pthread_t s, w[64];
    pthread_create(&s, NULL, sampler, NULL);
    for (int t = 0; t < threads && t < 64; t++)
        pthread_create(&w[t], NULL, worker, (void *)(uintptr_t)t);
    size_t after_idle[64] = {0};
    for (int r = 0; r < rounds; r++) {
        pthread_barrier_wait(&start);
        pthread_barrier_wait(&freed);
        usleep((useconds_t)idle_ms * 1000);
        after_idle[r < 64 ? r : 63] = rss_kib();
    }
    for (int t = 0; t < threads && t < 64; t++)
        pthread_join(w[t], NULL);
    done = 1;
    pthread_join(s, NULL);
    double area = 0; /* MiB * s */
    for (size_t i = 1; i < ns; i++)
        area += (double)sr[i - 1] / 1024 * (st[i] - st[i - 1]) / 1e3;
    for (size_t i = 0; i < ns; i++)
        printf("rss %.0f %zu\n", st[i], sr[i]);
    printf("RESULT bench=rss_bursts threads=%d mib=%zu rounds=%d idle_ms=%d area_mib_s=%.1f after_idle_kib=",
           threads, bytes >> 20, rounds, idle_ms, area);
    for (int r = 0; r < rounds && r < 64; r++)
        printf("%s%zu", r ? "," : "", after_idle[r]);
    printf(" seconds=%.2f\n", (now_ms() - t0) / 1e3);
    return 0;
}
