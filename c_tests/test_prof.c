/*
 * test_prof.c: the sampled heap profiler through its C API (linked with
 * -rdynamic, below, so that dladdr names the sites).
 * c_tests/run.sh: link with -rdynamic
 *
 * Two call sites keep 48 MiB and 16 MiB of requested bytes live in mixed
 * sizes, through malloc, calloc, realloc, posix_memalign, large blocks,
 * the three domains and objects; the profile (one sample per 64 KiB on
 * average) must attribute them 3:1 and find the total within 20%.
 *
 * Bounds: for blocks much smaller than the interval T, an estimate of B
 * live bytes has a relative standard deviation of about sqrt(T / B)
 * (each sample stands for ~T bytes, and their number is Poisson with mean
 * B / T; larger blocks only lower it): 3.7% for 48 MiB, 6.25% for 16 MiB,
 * 3.1% for the 64 MiB total. So the ratio's logarithm has a deviation of
 * sqrt(0.037^2 + 0.0625^2) = 0.073, and [2.0, 4.5] (log distances 0.41
 * and 0.41 from log 3) is more than 5.5 deviations wide on each side;
 * the total's 20% is 6.4 deviations. A false failure is rarer than one
 * run in ten million.
 *
 * Then: the same from 4 threads that were already allocating when the
 * profile started, and after a profile at another interval; after
 * everything is freed (from another thread than the allocating one), no
 * live bytes are left at the sites; obm_prof_stop keeps the profile for
 * dumping, and nothing allocated while stopped enters it; a forked child inherits
 * the profile (its blocks are inherited) and its frees leave it without
 * changing the parent's; the text format; bad input (0 or absurd sample
 * sizes, NULL path, unknown format, missing directory, full disk);
 * sampled blocks as ordinary blocks; the profile's table failing to map
 * (OBMEM_FAIL_MMAP=prof-table:1:1, in a child run again): obm_prof_start
 * returns -1 with ENOMEM and nothing is sampled, then it works once the
 * table maps; once an allocator hook is installed on one domain, nothing of
 * any domain is sampled.
 */
#define _GNU_SOURCE
#include "test_util.h"
#include <pthread.h>
#include <sys/stat.h>

#define MIB (1024UL * 1024UL)
#define T (64 * 1024)

typedef struct { OBM_OBJECT_HEAD char data[]; } Blob;
static const obm_type BlobType = { "Blob", sizeof(Blob), 0, 0, 0, 0, 0 };

typedef struct {
    void *p;
    int kind; /* 0 malloc family, 1 raw, 2 mem, 3 object */
} Held;

typedef struct {
    Held *held;
    size_t n, cap, bytes;
    uint64_t rng;
} Keep;

static void keep(Keep *k, void *p, int kind, size_t n)
{
    CHECK_NOT_NULL(p);
    CHECK_LT(k->n, k->cap);
    k->held[k->n].p = p;
    k->held[k->n].kind = kind;
    k->n++;
    k->bytes += n;
}

static inline __attribute__((always_inline)) void alloc_one(Keep *k)
{
    uint64_t r = rng_next(&k->rng);
    size_t n = 16 + (size_t)(r >> 40) % 2033;
    void *p = NULL;
    switch (r % 16) {
    case 0: case 1:
        keep(k, calloc(2, n / 2), 0, n / 2 * 2);
        return;
    case 2:
        CHECK_EQ(posix_memalign(&p, 256, n), 0);
        keep(k, p, 0, n);
        return;
    case 3:
        p = malloc(n / 3 + 1);
        keep(k, realloc(p, n), 0, n);
        return;
    case 4:
        keep(k, obm_raw_malloc(n), 1, n);
        return;
    case 5:
        keep(k, obm_mem_calloc(1, n), 2, n);
        return;
    case 6:
        keep(k, obm_new_var(&BlobType, n - sizeof(Blob)), 3, n);
        return;
    case 7:
        if ((r >> 16) % 16 == 0)
            n = 150 * 1024 + (size_t)(r >> 24) % (300 * 1024);
        /* fall through */
    default:
        keep(k, malloc(n), 0, n);
    }
}

__attribute__((noinline)) void site_a(Keep *k, size_t bytes)
{
    while (k->bytes < bytes)
        alloc_one(k);
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void site_b(Keep *k, size_t bytes)
{
    while (k->bytes < bytes)
        alloc_one(k);
    __asm__ volatile("" ::: "memory");
}

static void release_all(Keep *k)
{
    for (size_t i = 0; i < k->n; i++) {
        void *p = k->held[i].p;
        switch (k->held[i].kind) {
        case 0: free(p); break;
        case 1: obm_raw_free(p); break;
        case 2: obm_mem_free(p); break;
        default: obm_decref((obm_object *)p);
        }
    }
    k->n = 0;
    k->bytes = 0;
}

static char dump_path[] = "/tmp/obmem_prof_XXXXXX";

/* Dumps the folded profile and sums the live bytes of lines naming each
 * site; checks every line's form: frames, one space, a positive number. */
static void sites(double *a, double *b, double *all)
{
    CHECK_EQ(obm_prof_dump(dump_path, OBM_PROF_FOLDED), 0);
    FILE *f = fopen(dump_path, "r");
    CHECK_NOT_NULL(f);
    static char line[64 * 1024];
    *a = *b = *all = 0;
    while (fgets(line, sizeof line, f)) {
        char *sp = strrchr(line, ' ');
        CHECK_MSG(sp && sp != line && strchr(line, ' ') == sp, "bad folded line: %s", line);
        char *end;
        double v = strtod(sp + 1, &end);
        CHECK_MSG(v > 0 && *end == '\n', "bad folded count: %s", line);
        *sp = 0;
        if (strstr(line, ";site_a"))
            *a += v;
        if (strstr(line, ";site_b"))
            *b += v;
        *all += v;
    }
    fclose(f);
}

static void check_three_to_one(const char *what, size_t true_a, size_t true_b)
{
    double a, b, all;
    sites(&a, &b, &all);
    printf("%s: site_a %.2f MiB (true %.2f), site_b %.2f MiB (true %.2f), ratio %.3f\n", what,
           a / MIB, (double)true_a / MIB, b / MIB, (double)true_b / MIB, b > 0 ? a / b : 0);
    CHECK_MSG(b > 0 && a / b >= 2.0 && a / b <= 4.5, "%s: ratio %.3f", what, b > 0 ? a / b : 0);
    double total = (double)(true_a + true_b);
    CHECK_MSG(a + b >= 0.8 * total && a + b <= 1.2 * total, "%s: total %.2f MiB of %.2f", what,
              (a + b) / MIB, total / MIB);
}

static void check_sites_empty(const char *what)
{
    double a, b, all;
    sites(&a, &b, &all);
    CHECK_MSG(a == 0 && b == 0, "%s: %.0f and %.0f bytes still live at the sites", what, a, b);
}

enum { THREADS = 4 };
static Keep ka[THREADS], kb[THREADS];

static pthread_barrier_t started;

/* Allocates while profiling is off, waits for main to start a profile
 * (twice: main starts it between the waits), then keeps its share. */
static void *worker(void *arg)
{
    long t = (long)arg;
    for (int i = 0; i < 20000; i++)
        free(opaque_ptr(malloc(16 + (size_t)i % 2000)));
    pthread_barrier_wait(&started);
    pthread_barrier_wait(&started);
    site_a(&ka[t], 48 * MIB / THREADS);
    site_b(&kb[t], 16 * MIB / THREADS);
    return NULL;
}

static void setup_keeps(void)
{
    for (int t = 0; t < THREADS; t++) {
        ka[t].cap = kb[t].cap = 100000;
        ka[t].held = calloc(ka[t].cap, sizeof(Held));
        kb[t].held = calloc(kb[t].cap, sizeof(Held));
        CHECK(ka[t].held && kb[t].held);
        ka[t].rng = 1000 + 2 * (uint64_t)t;
        kb[t].rng = 1001 + 2 * (uint64_t)t;
    }
}

static void test_bad_input(void)
{
    /* Before any profile: an empty file. */
    CHECK_EQ(obm_prof_dump(dump_path, OBM_PROF_FOLDED), 0);
    struct stat st;
    CHECK_EQ(stat(dump_path, &st), 0);
    CHECK_EQ(st.st_size, 0);
    errno = 0;
    CHECK_EQ(obm_prof_start(0), -1);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK_EQ(obm_prof_start((size_t)1 << 41), -1);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK_EQ(obm_prof_start(SIZE_MAX), -1);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK_EQ(obm_prof_dump(NULL, OBM_PROF_FOLDED), -1);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK_EQ(obm_prof_dump(dump_path, 7), -1);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK_EQ(obm_prof_dump("/nonexistent-dir/obmem/profile", OBM_PROF_FOLDED), -1);
    CHECK_EQ(errno, ENOENT);
    obm_prof_stop(); /* stopping what never started is harmless */
}

static void double_free_sample(void *arg)
{
    (void)arg;
    CHECK_EQ(obm_prof_start(1), 0);
    void *p = malloc(opaque_size(100));
    void *again = opaque_ptr(p);
    free(p);
    free(again);
    printf("RETURNED: double free of a sampled block did not abort\n");
}

/* Sampled small blocks are large blocks (large/), and stay ordinary
 * blocks: counted in the statistics, usable to their size, reallocated,
 * their memory reused by the next samples, and a double free of one is
 * reported. At an interval of 1 byte, every allocation of 100 bytes is
 * sampled (p = 1 - e^-100). */
static void test_sample_pages(void)
{
    enum { N = 20 };
    CHECK_EQ(obm_prof_start(1), 0);
    /* The countdown the thread had left of the last profile (of interval
     * T) runs out first: 16 T bytes are more than it with probability
     * 1 - e^-16. */
    for (int i = 0; i < 16 * T / 1024; i++)
        free(opaque_ptr(malloc(1024)));
    obm_stats s0, s1, s2;
    obm_get_stats(&s0);
    char *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = malloc(opaque_size(100));
        CHECK_NOT_NULL(p[i]);
        memset(p[i], i, 100);
    }
    obm_get_stats(&s1);
    CHECK_EQ(s1.large_blocks, s0.large_blocks + N);
    for (int i = 0; i < N; i++)
        free(p[i]);
    obm_get_stats(&s2);
    CHECK_EQ(s2.large_blocks, s0.large_blocks);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            p[i] = malloc(opaque_size(200));
            CHECK_NOT_NULL(p[i]);
            CHECK_GE(malloc_usable_size(p[i]), 200);
            memset(p[i], 'a' + i, 200);
        }
        p[0] = realloc(p[0], 5000);
        CHECK_NOT_NULL(p[0]);
        for (int i = 0; i < N; i++)
            for (int j = 0; j < 200; j++)
                CHECK_EQ(p[i][j], 'a' + i);
        obm_get_stats(&s1);
        CHECK_EQ(s1.large_blocks, s0.large_blocks + N);
        for (int i = 0; i < N; i++)
            free(p[i]);
    }
    obm_prof_stop();
    obm_get_stats(&s2);
    CHECK_EQ(s2.large_blocks, s0.large_blocks);

    child_result r;
    run_in_child(double_free_sample, NULL, &r);
    CHECK_MSG(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT &&
                  has_line(r.out, "obmem: ", "double free", NULL),
              "double free of a sampled block:\n%s", r.out);
}

/* The dump's size in bytes, or -1 if obm_prof_dump fails. */
static long dump_size(const char *path)
{
    if (obm_prof_dump(path, OBM_PROF_FOLDED) != 0)
        return -1;
    struct stat st;
    CHECK_EQ(stat(path, &st), 0);
    return (long)st.st_size;
}

/* Run again with OBMEM_FAIL_MMAP=prof-table:1:1: the first mapping of the
 * profile's table fails, the next ones succeed. */
static void table_child(const char *mode)
{
    CHECK(strcmp(mode, "table-fails") == 0);
    char path[] = "/tmp/obmem_prof_table_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    errno = 0;
    CHECK_EQ(obm_prof_start(1), -1);
    CHECK_EQ(errno, ENOMEM);
    /* Not profiling: at an interval of 1 every block would be sampled, as
     * a large block; the dump is that of no profile, an empty file. */
    obm_stats s0, s1;
    obm_get_stats(&s0);
    for (int i = 0; i < 100; i++)
        free(opaque_ptr(malloc(opaque_size(100))));
    void *kept = opaque_ptr(malloc(opaque_size(100)));
    obm_get_stats(&s1);
    CHECK_EQ(s1.large_blocks, s0.large_blocks);
    CHECK_EQ(s1.large_allocations, s0.large_allocations);
    CHECK_EQ(dump_size(path), 0);
    free(kept);
    /* The table maps now: the same start works and samples (a block of
     * 100 bytes at an interval of 1 byte, with probability 1 - e^-100). */
    CHECK_EQ(obm_prof_start(1), 0);
    kept = opaque_ptr(malloc(opaque_size(100)));
    CHECK_GT(dump_size(path), 0);
    free(kept);
    obm_prof_stop();
    unlink(path);
    printf("obm_prof_start: -1/ENOMEM while the table cannot be mapped, then 0\n");
}

/* In a child: once a hook is installed on one domain (here the raw
 * domain's own table, set back), nothing of any domain is sampled. */
static void hooked_child(void *arg)
{
    (void)arg;
    char path[] = "/tmp/obmem_prof_hooked_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    /* At an interval of 1 byte, a block of 100 is sampled (1 - e^-100). */
    CHECK_EQ(obm_prof_start(1), 0);
    void *kept = opaque_ptr(malloc(opaque_size(100)));
    CHECK_GT(dump_size(path), 0);
    free(kept);
    CHECK_EQ(obm_prof_start(1), 0);
    obm_allocator own;
    obm_get_allocator(OBM_DOMAIN_RAW, &own);
    obm_set_allocator(OBM_DOMAIN_RAW, &own);
    void *p[4] = {
        opaque_ptr(malloc(opaque_size(100))),
        opaque_ptr(obm_raw_malloc(opaque_size(100))),
        opaque_ptr(obm_mem_malloc(opaque_size(100))),
        obm_new_var(&BlobType, opaque_size(100)),
    };
    CHECK_EQ(dump_size(path), 0);
    free(p[0]);
    obm_raw_free(p[1]);
    obm_mem_free(p[2]);
    obm_decref((obm_object *)p[3]);
    unlink(path);
    printf("hooked: nothing sampled\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (run_as_child(argc, argv, table_child))
        return 0;
    const char *fail_table[] = {"OBMEM_FAIL_MMAP=prof-table:1:1", NULL};
    spawn_self_ok("table-fails", fail_table);

    int fd = mkstemp(dump_path);
    CHECK(fd >= 0);
    close(fd);
    setup_keeps();
    test_bad_input();

    /* One thread, after a profile at a smaller interval: the new profile's
     * first sample point thins the old profile's countdown. */
    CHECK_EQ(obm_prof_start(T / 4), 0);
    for (int i = 0; i < 20000; i++)
        free(opaque_ptr(malloc(16 + (size_t)i % 2000)));
    CHECK_EQ(obm_prof_start(T), 0);
    site_a(&ka[0], 48 * MIB);
    site_b(&kb[0], 16 * MIB);
    check_three_to_one("1 thread", ka[0].bytes, kb[0].bytes);
    /* A full disk: the write's error. */
    errno = 0;
    CHECK_EQ(obm_prof_dump("/dev/full", OBM_PROF_FOLDED), -1);
    CHECK_EQ(errno, ENOSPC);
    /* The text report ranks site_a first. */
    CHECK_EQ(obm_prof_dump(dump_path, OBM_PROF_TEXT), 0);
    FILE *f = fopen(dump_path, "r");
    CHECK_NOT_NULL(f);
    static char text[1 << 16];
    size_t got = fread(text, 1, sizeof text - 1, f);
    text[got] = 0;
    fclose(f);
    char *first = strstr(text, "#1:"), *a_at = strstr(text, "site_a"), *second = strstr(text, "#2:");
    CHECK_MSG(first && a_at && a_at > first && (!second || a_at < second), "text report:\n%s", text);

    /* A forked child inherits the profile; its frees leave the parent's. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        check_three_to_one("forked child", ka[0].bytes, kb[0].bytes);
        release_all(&ka[0]);
        release_all(&kb[0]);
        check_sites_empty("forked child after free");
        fflush(stdout);
        _exit(0);
    }
    int status;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    check_three_to_one("parent after the child's frees", ka[0].bytes, kb[0].bytes);

    /* Stopped: the profile stays, and frees still leave it. */
    obm_prof_stop();
    check_three_to_one("stopped", ka[0].bytes, kb[0].bytes);
    release_all(&ka[0]);
    release_all(&kb[0]);
    check_sites_empty("1 thread after free");
    /* Nothing allocated while stopped is sampled. */
    site_a(&ka[0], 8 * MIB);
    check_sites_empty("allocated while stopped");
    release_all(&ka[0]);

    /* Four threads that were allocating before the profile started (a new
     * one), freed by the main thread. */
    CHECK_EQ(pthread_barrier_init(&started, NULL, THREADS + 1), 0);
    pthread_t th[THREADS];
    for (long t = 0; t < THREADS; t++)
        CHECK_EQ(pthread_create(&th[t], NULL, worker, (void *)t), 0);
    pthread_barrier_wait(&started);
    CHECK_EQ(obm_prof_start(T), 0);
    check_sites_empty("new profile");
    pthread_barrier_wait(&started);
    size_t ta = 0, tb = 0;
    for (int t = 0; t < THREADS; t++) {
        CHECK_EQ(pthread_join(th[t], NULL), 0);
        ta += ka[t].bytes;
        tb += kb[t].bytes;
    }
    check_three_to_one("4 threads", ta, tb);
    for (int t = 0; t < THREADS; t++) {
        release_all(&ka[t]);
        release_all(&kb[t]);
    }
    check_sites_empty("4 threads after free");
    obm_prof_stop();
    test_sample_pages();
    child_result r;
    run_in_child(hooked_child, NULL, &r);
    CHECK_MSG(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0 && strstr(r.out, "hooked: nothing sampled"),
              "hooked child:\n%s", r.out);
    unlink(dump_path);
    return 0;
}
