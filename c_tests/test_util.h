/*
 * test_util.h: helpers shared by the obmem C tests (c_tests/test_*.c).
 *
 * Every test is a standalone program linked with -lobmem: exit status 0 means
 * pass; a failed check prints "file:line: ..." with the values involved and
 * exits 1 at once (with _exit, so it is safe in threads and forked children).
 */
#ifndef OBMEM_TEST_UTIL_H
#define OBMEM_TEST_UTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <obmem.h>

/* ---- failing ------------------------------------------------------------ */

/* Formats "file:line: [check failed: COND (]message[)]" and exits 1. The
 * buffer is large enough for a captured child's output. */
static void __attribute__((noreturn))
t_vfail(const char *file, int line, const char *cond, const char *fmt, va_list ap)
{
    static char buf[96 * 1024];
    size_t cap = sizeof buf - 2, n = 0;
    int w = snprintf(buf, cap, "%s:%d: ", file, line);
    n = w < 0 ? 0 : (size_t)w < cap ? (size_t)w : cap;
    if (cond && n < cap) {
        w = snprintf(buf + n, cap - n, "check failed: %s (", cond);
        n += w < 0 ? 0 : (size_t)w < cap - n ? (size_t)w : cap - n;
    }
    if (n < cap) {
        w = vsnprintf(buf + n, cap - n, fmt, ap);
        n += w < 0 ? 0 : (size_t)w < cap - n ? (size_t)w : cap - n;
    }
    if (cond && n < cap)
        buf[n++] = ')';
    buf[n++] = '\n';
    fflush(stdout);
    for (size_t off = 0; off < n;) {
        ssize_t k = write(2, buf + off, n - off);
        if (k <= 0)
            break;
        off += (size_t)k;
    }
    _exit(1);
}

static void __attribute__((noreturn, format(printf, 3, 4)))
t_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    t_vfail(file, line, NULL, fmt, ap);
}

static void __attribute__((noreturn, format(printf, 4, 5)))
t_fail_check(const char *file, int line, const char *cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    t_vfail(file, line, cond, fmt, ap);
}

#define FAIL(...) t_fail(__FILE__, __LINE__, __VA_ARGS__)

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond))                                                        \
            FAIL("check failed: %s", #cond);                                \
    } while (0)

#define CHECK_MSG(cond, ...)                                                \
    do {                                                                    \
        if (!(cond))                                                        \
            t_fail_check(__FILE__, __LINE__, #cond, __VA_ARGS__);           \
    } while (0)

/* Unsigned comparisons print both values (decimal and hex). */
#define CHECK_OP_U(a, op, b)                                                \
    do {                                                                    \
        unsigned long long a_ = (unsigned long long)(a);                    \
        unsigned long long b_ = (unsigned long long)(b);                    \
        if (!(a_ op b_))                                                    \
            FAIL("check failed: %s %s %s (%llu [0x%llx] vs %llu [0x%llx])", \
                 #a, #op, #b, a_, a_, b_, b_);                              \
    } while (0)
#define CHECK_EQ(a, b) CHECK_OP_U(a, ==, b)
#define CHECK_NE(a, b) CHECK_OP_U(a, !=, b)
#define CHECK_GE(a, b) CHECK_OP_U(a, >=, b)
#define CHECK_LE(a, b) CHECK_OP_U(a, <=, b)
#define CHECK_GT(a, b) CHECK_OP_U(a, >, b)
#define CHECK_LT(a, b) CHECK_OP_U(a, <, b)

#define CHECK_NOT_NULL(p)                                                   \
    do {                                                                    \
        if ((p) == NULL)                                                    \
            FAIL("%s returned NULL (errno %d)", #p, errno);                 \
    } while (0)

#define CHECK_ALIGNED(p, a)                                                 \
    do {                                                                    \
        uintptr_t p_ = (uintptr_t)(p);                                      \
        uintptr_t al_ = (uintptr_t)(a);                                     \
        if (p_ % al_ != 0)                                                  \
            FAIL("%s = %p is not aligned to %lu", #p, (void *)p_,           \
                 (unsigned long)al_);                                       \
    } while (0)

/* ---- keeping the compiler out of the way -------------------------------- */
/* GCC knows malloc's semantics: it may fold malloc(SIZE_MAX) == NULL, drop a
 * malloc/free pair or warn on free(&stack). Values laundered through these
 * are opaque to it. */
static inline void *opaque_ptr(void *p) { __asm__ volatile("" : "+r"(p)); return p; }
static inline size_t opaque_size(size_t n) { __asm__ volatile("" : "+r"(n)); return n; }
static inline void escape(const void *p) { __asm__ volatile("" : : "r"(p) : "memory"); }
/* memset that the compiler cannot drop as a dead store before free. */
static inline void dirty(void *p, int c, size_t n) { memset(p, c, n); escape(p); }

/* ---- patterns ----------------------------------------------------------- */

static inline unsigned char pat_byte(uint64_t seed, size_t i)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + i * 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return (unsigned char)(x ^ (x >> 8));
}

static inline void fill_pattern(void *p, size_t n, uint64_t seed)
{
    unsigned char *c = (unsigned char *)p;
    for (size_t i = 0; i < n; i++)
        c[i] = pat_byte(seed, i);
}

/* Returns the index of the first wrong byte, or (size_t)-1 if all match. */
static inline size_t find_pattern_mismatch(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *c = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != pat_byte(seed, i))
            return i;
    return (size_t)-1;
}

#define CHECK_PATTERN(p, n, seed)                                           \
    do {                                                                    \
        size_t bad_ = find_pattern_mismatch((p), (n), (seed));              \
        if (bad_ != (size_t)-1)                                             \
            FAIL("pattern of block %p (%zu bytes, seed %llu) broken at "   \
                 "byte %zu: 0x%02x, expected 0x%02x",                       \
                 (void *)(p), (size_t)(n), (unsigned long long)(seed),      \
                 bad_, ((const unsigned char *)(p))[bad_],                  \
                 pat_byte((seed), bad_));                                   \
    } while (0)

static inline size_t find_nonzero(const void *p, size_t n)
{
    const unsigned char *c = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != 0)
            return i;
    return (size_t)-1;
}

#define CHECK_ZERO(p, n)                                                    \
    do {                                                                    \
        size_t bad_ = find_nonzero((p), (n));                               \
        if (bad_ != (size_t)-1)                                             \
            FAIL("block %p (%zu bytes) not zeroed: byte %zu is 0x%02x",     \
                 (void *)(p), (size_t)(n), bad_,                            \
                 ((const unsigned char *)(p))[bad_]);                       \
    } while (0)

/* xorshift64*: a small deterministic PRNG, one state per thread. */
static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* A burst of small blocks: `bytes` of them, 16..512 B with sizes drawn
 * from `seed`, each written; their pointers in an array from mmap, not
 * from the allocator under test. */
typedef struct {
    void **p;
    size_t n, cap;
} small_blocks;

static inline small_blocks small_blocks_alloc(size_t bytes, uint64_t seed)
{
    small_blocks b = {NULL, 0, bytes / 16};
    void *m = mmap(NULL, b.cap * sizeof *b.p, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    CHECK(m != MAP_FAILED);
    b.p = m;
    for (size_t total = 0; total < bytes && b.n < b.cap; b.n++) {
        size_t sz = 16 + (size_t)(rng_next(&seed) % 497);
        b.p[b.n] = malloc(sz);
        CHECK_NOT_NULL(b.p[b.n]);
        dirty(b.p[b.n], (int)b.n, sz);
        total += sz;
    }
    return b;
}

/* Frees the blocks of `b`, then its array. */
static inline void small_blocks_free(small_blocks b)
{
    for (size_t i = 0; i < b.n; i++)
        free(b.p[i]);
    munmap(b.p, b.cap * sizeof *b.p);
}

/* ---- obmem's size classes (from the spec) -------------------------------- */

#define T_PAGE 4096u
#define T_MEDIUM_MAX ((size_t)128 * 1024)
#define T_LARGE_HEADER 64u

static inline size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

/* The usable size obmem gives a malloc(n): 1..16 -> 16, 16-byte steps to 512,
 * then 8 classes per power of two up to 128 KiB; above that a mapping of
 * n + 64 bytes rounded to 4 KiB pages, minus the 64-byte header. */
static inline size_t expected_usable(size_t n)
{
    if (n <= 16)
        return 16;
    if (n <= 512)
        return round_up(n, 16);
    if (n <= T_MEDIUM_MAX) {
        unsigned k = 63u - (unsigned)__builtin_clzll((unsigned long long)(n - 1));
        size_t base = (size_t)1 << k, step = base >> 3;
        return base + round_up(n - base, step);
    }
    return round_up(n + T_LARGE_HEADER, T_PAGE) - T_LARGE_HEADER;
}

/* Whether u is a right usable size for malloc(n): exact for pool blocks; a
 * large block may reuse a cached, somewhat bigger mapping, so its usable size
 * is page-rounded (mapping - 64), at least the fresh one and at most 1.5x. */
static inline int usable_matches(size_t n, size_t u)
{
    size_t e = expected_usable(n);
    if (n <= T_MEDIUM_MAX)
        return u == e;
    return u >= e && (u + T_LARGE_HEADER) % T_PAGE == 0 && u - e <= e / 2;
}

#define CHECK_USABLE(n, u)                                                   \
    CHECK_MSG(usable_matches((n), (u)), "size %zu: usable %zu, expected %zu%s", \
              (size_t)(n), (size_t)(u), expected_usable(n),                  \
              (n) > T_MEDIUM_MAX ? " (or a page-rounded reused mapping <= 1.5x)" : "")

/* The 96 class sizes in order: 16..512 by 16, then 8 per power of two. */
static inline size_t expected_class_size(size_t idx)
{
    if (idx < 32)
        return (idx + 1) * 16;
    size_t m = idx - 32, k = m / 8 + 9, i = m % 8 + 1;
    return ((size_t)1 << k) + i * ((size_t)1 << (k - 3));
}
#define T_NUM_CLASSES 96u

/* ---- proof that this program got obmem's malloc -------------------------- */

/* Whether the environment turned the debug hooks on (c_tests/run.sh
 * --debug-hooks runs the correct-program tests that way). */
static inline int debug_hooks_on(void)
{
    const char *m = getenv("OBMEM_MALLOC");
    return m && strstr(m, "debug") != NULL;
}

/* Whether the program runs under valgrind --tool=memcheck, which puts its
 * preload library (vgpreload_memcheck-*.so) in the program's LD_PRELOAD. */
static inline int on_memcheck(void)
{
    const char *p = getenv("LD_PRELOAD");
    return p && strstr(p, "vgpreload_memcheck") != NULL;
}

static inline void check_obmem_is_malloc(void)
{
    void *p = malloc(opaque_size(600));
    CHECK_NOT_NULL(p);
    /* 640, the class size; exactly the request under the debug hooks, and
     * under memcheck: there the malloc family is Valgrind's replacement,
     * which reports the request (README, Valgrind), or with
     * --soname-synonyms=somalloc=nouserintercepts obmem's memcheck hooks,
     * which do too. */
    size_t expect = debug_hooks_on() || on_memcheck() ? 600 : 640;
    CHECK_EQ(malloc_usable_size(p), expect);
    CHECK_EQ(obm_usable_size(p), expect);
    free(p);

    /* malloc as the program sees it must be the one defined in libobmem. */
    Dl_info info;
    void *(*volatile m)(size_t) = malloc;
    CHECK(dladdr((void *)m, &info) != 0);
    CHECK_MSG(info.dli_fname && strstr(info.dli_fname, "libobmem"),
              "malloc resolves to %s", info.dli_fname ? info.dli_fname : "?");
    void (*volatile f)(void *) = free;
    CHECK(dladdr((void *)f, &info) != 0);
    CHECK_MSG(info.dli_fname && strstr(info.dli_fname, "libobmem"),
              "free resolves to %s", info.dli_fname ? info.dli_fname : "?");
}

/* ---- statistics ---------------------------------------------------------- */

static inline obm_stats stats_now(void)
{
    obm_stats st;
    memset(&st, 0, sizeof st);
    obm_get_stats(&st);
    return st;
}

/* The index in st.classes of the class with block size `bs`, or -1. */
static inline long stats_class_index(const obm_stats *st, size_t bs)
{
    for (size_t i = 0; i < st->num_classes && i < sizeof st->classes / sizeof st->classes[0]; i++)
        if (st->classes[i].block_size == bs)
            return (long)i;
    return -1;
}

static inline size_t abs_diff(size_t a, size_t b) { return a > b ? a - b : b - a; }

/* ---- the process as the OS sees it --------------------------------------- */

/* Field `idx` (0: size, 1: resident) of /proc/self/statm, in bytes. Reads
 * with open/read so that it allocates nothing. */
static inline size_t statm_field(int idx)
{
    char buf[256];
    int fd = open("/proc/self/statm", O_RDONLY);
    if (fd < 0)
        FAIL("open /proc/self/statm: %s", strerror(errno));
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        FAIL("read /proc/self/statm");
    buf[n] = '\0';
    char *s = buf;
    for (int i = 0; i < idx; i++) {
        s = strchr(s, ' ');
        if (!s)
            FAIL("bad statm: %s", buf);
        s++;
    }
    return (size_t)strtoull(s, NULL, 10) * (size_t)sysconf(_SC_PAGESIZE);
}

/* Resident set size in bytes, counted page by page (the Rss line of
 * /proc/self/smaps_rollup). statm's figure comes from per-CPU counters
 * the kernel sums lazily (since Linux 6.2): it may be off by 32 pages per
 * CPU, which made checks of a few hundred KiB fail now and then. statm
 * where smaps_rollup is missing (before Linux 4.14). */
static inline size_t rss_bytes(void)
{
    char buf[1024];
    int fd = open("/proc/self/smaps_rollup", O_RDONLY);
    if (fd < 0)
        return statm_field(1);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return statm_field(1);
    buf[n] = '\0';
    const char *rss = strstr(buf, "\nRss:");
    if (!rss)
        FAIL("no Rss line in smaps_rollup: %s", buf);
    return (size_t)strtoull(rss + 5, NULL, 10) * 1024;
}

/* The VmFlags line of the mapping of /proc/self/smaps that holds `p` (its
 * start in *start if not NULL), or NULL if no mapping does. Reads with
 * read(2) into a static buffer: stdio would allocate from the allocator
 * under test while we look. The line lives until the next call. */
static inline const char *smaps_vmflags_of(const void *p, uintptr_t *start)
{
    static char buf[4 << 20];
    int fd = open("/proc/self/smaps", O_RDONLY);
    if (fd < 0)
        return NULL;
    size_t len = 0;
    ssize_t n;
    while (len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    buf[len] = 0;
    uintptr_t a = (uintptr_t)p;
    int in = 0;
    for (char *line = buf, *next; *line; line = next) {
        next = strchr(line, '\n');
        next = next ? (*next = 0, next + 1) : line + strlen(line);
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
            in = a >= lo && a < hi;
            if (in && start)
                *start = lo;
        } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            return line;
        }
    }
    return NULL;
}

/* Minor page faults of this process so far. */
static inline long minor_faults(void)
{
    struct rusage ru;
    CHECK(getrusage(RUSAGE_SELF, &ru) == 0);
    return ru.ru_minflt;
}

/* Seconds of CLOCK_MONOTONIC. */
static inline double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Mallocs, writes and frees one small block every `pause_us` microseconds
 * until RSS is at most `limit` or `seconds` have passed (a thread that
 * goes on allocating a little, and never takes a slow path of its own).
 * Returns the last RSS read; the seconds it took in *took. */
static inline size_t small_malloc_free_until_rss(size_t limit, double seconds,
                                                 unsigned pause_us, double *took)
{
    double t0 = now_sec(), t = 0;
    size_t rss = rss_bytes();
    while (rss > limit && (t = now_sec() - t0) < seconds) {
        char *q = malloc(100);
        CHECK_NOT_NULL(q);
        memset(q, 1, 100);
        free(q);
        rss = rss_bytes();
        if (rss > limit)
            usleep(pause_us);
    }
    *took = now_sec() - t0;
    return rss;
}

/* ---- running code in a forked child, capturing its stderr ---------------- */

typedef struct {
    int status;        /* from waitpid */
    char out[16384];   /* the child's stderr (and stdout), NUL-terminated */
    size_t len;
} child_result;

/* Forks; the child runs fn(arg) with stderr and stdout on a pipe, no core
 * dumps and a 30 s alarm, then _exit(0) if fn returns. */
static inline void run_in_child(void (*fn)(void *), void *arg, child_result *r)
{
    int fds[2];
    if (pipe(fds) != 0)
        FAIL("pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        FAIL("fork: %s", strerror(errno));
    if (pid == 0) {
        struct rlimit rl = {0, 0};
        setrlimit(RLIMIT_CORE, &rl);
        close(fds[0]);
        dup2(fds[1], 2);
        dup2(fds[1], 1);
        close(fds[1]);
        alarm(30);
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    r->len = 0;
    for (;;) {
        ssize_t n = read(fds[0], r->out + r->len, sizeof r->out - 1 - r->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        r->len += (size_t)n;
        if (r->len == sizeof r->out - 1)
            break;
    }
    r->out[r->len] = '\0';
    close(fds[0]);
    while (waitpid(pid, &r->status, 0) < 0)
        if (errno != EINTR)
            FAIL("waitpid: %s", strerror(errno));
}

static inline const char *describe_status(int st, char *buf, size_t n)
{
    if (WIFEXITED(st))
        snprintf(buf, n, "exit %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, n, "signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        snprintf(buf, n, "status 0x%x", st);
    return buf;
}

/* True if `out` has a line that starts with `prefix` and contains each of
 * the non-NULL strings a, b. */
static inline int has_line(const char *out, const char *prefix, const char *a, const char *b)
{
    const char *line = out;
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char tmp[2048];
        size_t l = len < sizeof tmp - 1 ? len : sizeof tmp - 1;
        memcpy(tmp, line, l);
        tmp[l] = '\0';
        if (strncmp(tmp, prefix, strlen(prefix)) == 0 && (!a || strstr(tmp, a)) &&
            (!b || strstr(tmp, b)))
            return 1;
        if (!end)
            break;
        line = end + 1;
    }
    return 0;
}

/* ---- running this program again with other environment variables -------- */

extern char **environ;

typedef struct {
    int status;
    char err[65536];
    size_t len;
} spawn_result;

/* Runs this program again, as "PROGRAM child MODE", with the OBMEM_*
 * variables removed from the environment and `assign` (a NULL-terminated
 * "K=V" list) added: for settings read when the library is loaded. Its
 * stderr is captured in r->err, its stdout discarded; 30 s alarm. */
static inline void spawn_self(const char *mode, const char *const *assign, spawn_result *r)
{
    char *env[512];
    size_t ne = 0;
    for (char **e = environ; *e && ne < 400; e++)
        if (strncmp(*e, "OBMEM_", 6) != 0)
            env[ne++] = *e;
    for (size_t i = 0; assign[i]; i++)
        env[ne++] = (char *)assign[i];
    env[ne] = NULL;

    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        int dn = open("/dev/null", O_WRONLY);
        dup2(dn, 1);
        char *argv[] = {(char *)"obmem-test", (char *)"child", (char *)mode, NULL};
        alarm(30);
        execve("/proc/self/exe", argv, env);
        _exit(127);
    }
    close(fds[1]);
    r->len = 0;
    ssize_t n;
    while ((n = read(fds[0], r->err + r->len, sizeof r->err - 1 - r->len)) > 0)
        r->len += (size_t)n;
    r->err[r->len] = '\0';
    close(fds[0]);
    CHECK(waitpid(pid, &r->status, 0) == pid);
}

/* In main, for a test that runs itself again (spawn_self): if this process
 * is such a child, runs child(MODE) with stdout sent to stderr (the parent
 * discards stdout), reports "MODE ok" and returns 1; else returns 0. */
static inline int run_as_child(int argc, char **argv, void (*child)(const char *mode))
{
    if (argc != 3 || strcmp(argv[1], "child") != 0)
        return 0;
    dup2(2, 1);
    child(argv[2]);
    fflush(stdout);
    fprintf(stderr, "%s ok\n", argv[2]);
    return 1;
}

/* spawn_self, expecting the child to exit 0 after printing "MODE ok" on
 * stderr, with no "obmem:" warning; prints what the child reported. */
static inline void spawn_self_ok(const char *mode, const char *const *assign)
{
    spawn_result r;
    spawn_self(mode, assign, &r);
    CHECK_MSG(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "%s: status %d, stderr:\n%s",
              mode, r.status, r.err);
    char ok[64];
    snprintf(ok, sizeof ok, "%s ok\n", mode);
    CHECK_MSG(strstr(r.err, ok) != NULL, "%s: stderr:\n%s", mode, r.err);
    CHECK_MSG(strstr(r.err, "obmem:") == NULL, "%s: unexpected warning:\n%s", mode, r.err);
    printf("%s", r.err);
}

/* Runs this program again as "child MODE" with the environment setting
 * `assign` (a bad value of variable `name`): it must exit 0 after exactly
 * one `obmem: NAME: invalid value` warning that names the default it
 * uses ("using DEFAULT"). */
static inline void check_bad_env(const char *mode, const char *assign, const char *name,
                                 const char *dflt)
{
    static spawn_result r;
    spawn_self(mode, (const char *const[]){assign, NULL}, &r);
    CHECK_MSG(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "%s: status %d\n%s", assign,
              r.status, r.err);
    char want[128], use[64];
    snprintf(want, sizeof want, "obmem: %s: invalid value", name);
    snprintf(use, sizeof use, "using %s", dflt);
    const char *w = strstr(r.err, want);
    CHECK_MSG(w != NULL, "%s: no warning:\n%s", assign, r.err);
    CHECK_MSG(strstr(w + 1, "obmem:") == NULL, "%s: more than one warning:\n%s", assign, r.err);
    CHECK_MSG(strstr(r.err, use) != NULL, "%s: default not named:\n%s", assign, r.err);
}

#endif /* OBMEM_TEST_UTIL_H */
