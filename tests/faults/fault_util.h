/*
 * fault_util.h: helpers for the fault-injection and memory-return tests in
 * tests/faults/. Built on c_tests/test_util.h (CHECK macros, patterns, the
 * xorshift PRNG, stats_now); compile with -Iinclude -Ic_tests.
 *
 * What is added here:
 * - reading the process's memory from /proc (RSS, virtual size);
 * - summing the statistics (small blocks in use over every class);
 * - running this program again as a child with a given environment
 *   (re-exec, so obmem reads OBMEM_FAIL_MMAP at start-up), optionally with
 *   address-space randomisation off so that two runs map the same addresses
 *   (a run with OBMEM_FAIL_MMAP=trace then predicts the mapping calls of a
 *   run with a failure injected), capturing its stderr and stdout;
 * - parsing `obmem: mmap #K SITE BYTES` trace lines and the `@@ NAME`
 *   markers a scenario writes before each operation.
 */
#ifndef OBMEM_FAULT_UTIL_H
#define OBMEM_FAULT_UTIL_H

#include "test_util.h"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/time.h>
#include <time.h>

#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)
#define GiB ((size_t)1024 * 1024 * 1024)

/* ---- /proc (rss_bytes, statm_field, now_sec: test_util.h) -------------------- */

static inline size_t vm_bytes(void) { return statm_field(0); }

/* A "Name:   123 kB" field of /proc/self/status, in bytes (0 if absent). */
static inline size_t status_kb_field(const char *name)
{
    static char buf[8192];
    int fd = open("/proc/self/status", O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    size_t len = strlen(name);
    for (char *line = buf; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL)
        if (strncmp(line, name, len) == 0 && line[len] == ':')
            return (size_t)strtoull(line + len + 1, NULL, 10) * 1024;
    return 0;
}

static inline double mib(size_t b) { return (double)b / (double)MiB; }

/* ---- statistics ---------------------------------------------------------------- */

/* Small (pool) blocks in use, over every class. */
static inline size_t small_in_use(const obm_stats *st)
{
    size_t n = 0;
    for (size_t i = 0; i < st->num_classes && i < OBM_NUM_CLASSES; i++)
        n += st->classes[i].blocks_in_use;
    return n;
}

static inline size_t small_allocations(const obm_stats *st)
{
    size_t n = 0;
    for (size_t i = 0; i < st->num_classes && i < OBM_NUM_CLASSES; i++)
        n += st->classes[i].allocations;
    return n;
}

static inline size_t class_in_use(const obm_stats *st, size_t block_size)
{
    long i = stats_class_index(st, block_size);
    if (i < 0)
        FAIL("no class of %zu bytes", block_size);
    return st->classes[i].blocks_in_use;
}

/* Bytes of pool blocks not in use (free or never carved) and the pools
 * holding blocks: after everything is freed, what the pools still cover. */
static inline size_t pool_free_bytes(const obm_stats *st, size_t *pools)
{
    size_t bytes = 0, n = 0;
    for (size_t i = 0; i < st->num_classes && i < OBM_NUM_CLASSES; i++) {
        bytes += st->classes[i].blocks_free * st->classes[i].block_size;
        n += st->classes[i].pools;
    }
    if (pools)
        *pools = n;
    return bytes;
}

/* ---- threads with stacks of their own --------------------------------------------- */

/* A thread on a stack the test maps itself. glibc keeps the stacks it
 * maps in a cache after the thread is joined, together with the thread's
 * DTV, which it allocated with calloc; with a stack of our own the DTV is
 * freed by pthread_join, so the statistics come back exactly to a baseline
 * taken before the thread was created. */
typedef struct {
    pthread_t t;
    void *stack;
    size_t size;
} uthread;

static inline int uthread_create(uthread *u, void *(*fn)(void *), void *arg)
{
    u->size = 512 * KiB;
    u->stack = mmap(NULL, u->size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (u->stack == MAP_FAILED)
        return errno;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstack(&a, u->stack, u->size);
    int rc = pthread_create(&u->t, &a, fn, arg);
    pthread_attr_destroy(&a);
    if (rc != 0)
        munmap(u->stack, u->size);
    return rc;
}

static inline void *uthread_join(uthread *u)
{
    void *ret = NULL;
    int rc = pthread_join(u->t, &ret);
    if (rc != 0)
        FAIL("pthread_join: %s", strerror(rc));
    munmap(u->stack, u->size);
    return ret;
}

/* ---- markers ------------------------------------------------------------------- */

/* Writes "@@ name" to stderr without allocating: in a trace run, the mapping
 * calls after this line belong to the operation `name`. */
static inline void mark(const char *name)
{
    char buf[128];
    int n = snprintf(buf, sizeof buf, "@@ %s\n", name);
    if (n > 0 && write(2, buf, (size_t)n) < 0)
        _exit(3);
}

/* ---- children ---------------------------------------------------------------------- */

typedef struct {
    int status;
    char *out; /* stderr and stdout, NUL-terminated (malloc'd) */
    size_t len;
    double secs;
} run_result;

/* Runs /proc/self/exe with the arguments `args` (NULL-terminated, without
 * argv[0]) and the environment `env` (NULL-terminated "K=V" strings, added
 * to PATH and HOME only), with address-space randomisation off when
 * `no_aslr`, and a kill after `timeout` seconds. Captures its output.
 * LD_LIBRARY_PATH is passed on (to test another build of the library);
 * LD_PRELOAD is not. */
static inline void run_self(const char *const *args, const char *const *env, int no_aslr,
                            int timeout, run_result *r)
{
    int fds[2];
    if (pipe(fds) != 0)
        FAIL("pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    double t0 = now_sec();
    pid_t pid = fork();
    if (pid < 0)
        FAIL("fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        dup2(fds[1], 1);
        close(fds[1]);
        struct rlimit rl = {0, 0};
        setrlimit(RLIMIT_CORE, &rl);
        if (no_aslr)
            personality(ADDR_NO_RANDOMIZE); /* best effort: the parent checks the effect */
        char *argv[32];
        int argc = 0;
        argv[argc++] = (char *)"/proc/self/exe";
        for (int i = 0; args && args[i] && argc < 30; i++)
            argv[argc++] = (char *)args[i];
        argv[argc] = NULL;
        char *envp[32];
        int envc = 0;
        static char path[4096], home[4096], llp[4096];
        const char *p = getenv("PATH"), *h = getenv("HOME"), *l = getenv("LD_LIBRARY_PATH");
        snprintf(path, sizeof path, "PATH=%s", p ? p : "/usr/bin:/bin");
        snprintf(home, sizeof home, "HOME=%s", h ? h : "/tmp");
        envp[envc++] = path;
        envp[envc++] = home;
        if (l) {
            snprintf(llp, sizeof llp, "LD_LIBRARY_PATH=%s", l);
            envp[envc++] = llp;
        }
        for (int i = 0; env && env[i] && envc < 30; i++)
            envp[envc++] = (char *)env[i];
        envp[envc] = NULL;
        alarm((unsigned)timeout);
        execve("/proc/self/exe", argv, envp);
        _exit(127);
    }
    close(fds[1]);
    size_t cap = 1 << 16;
    r->out = malloc(cap);
    CHECK_NOT_NULL(r->out);
    r->len = 0;
    for (;;) {
        if (r->len + 4096 > cap) {
            cap *= 2;
            r->out = realloc(r->out, cap);
            CHECK_NOT_NULL(r->out);
        }
        ssize_t n = read(fds[0], r->out + r->len, cap - r->len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        r->len += (size_t)n;
    }
    r->out[r->len] = '\0';
    close(fds[0]);
    while (waitpid(pid, &r->status, 0) < 0)
        if (errno != EINTR)
            FAIL("waitpid: %s", strerror(errno));
    r->secs = now_sec() - t0;
}

static inline int run_ok(const run_result *r)
{
    return WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0;
}

/* Prints the last `max` bytes of a child's output, indented. */
static inline void dump_tail(const run_result *r, size_t max)
{
    const char *s = r->len > max ? r->out + r->len - max : r->out;
    fprintf(stderr, "---- child output%s ----\n%s\n---- end ----\n",
            r->len > max ? " (tail)" : "", s);
}

/* ---- trace parsing ------------------------------------------------------------------ */

typedef struct {
    long global;   /* K of "obmem: mmap #K" */
    long site_idx; /* 1-based index among calls of the same site */
    size_t bytes;
} trace_call;

/* Finds the `nth` (1-based) mapping call of `site` after the marker line
 * "@@ marker" (and before the next marker if `within`); returns 1 and
 * fills *c, or 0. site NULL: any site. */
static inline int trace_find(const char *out, const char *marker, const char *site, int nth,
                             int within, trace_call *c)
{
    long site_count = 0;
    int after = marker == NULL, seen = 0;
    char want[128];
    snprintf(want, sizeof want, "@@ %s", marker ? marker : "");
    for (const char *line = out; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char tmp[512];
        size_t l = len < sizeof tmp - 1 ? len : sizeof tmp - 1;
        memcpy(tmp, line, l);
        tmp[l] = '\0';
        if (strncmp(tmp, "@@ ", 3) == 0) {
            if (after && within && marker)
                return 0;
            if (marker && strcmp(tmp, want) == 0)
                after = 1;
        } else {
            long k;
            char s[64];
            size_t bytes;
            if (sscanf(tmp, "obmem: mmap #%ld %63s %zu", &k, s, &bytes) == 3) {
                int match = site == NULL || strcmp(s, site) == 0;
                if (match)
                    site_count++;
                if (match && after && ++seen == nth) {
                    c->global = k;
                    c->site_idx = site_count;
                    c->bytes = bytes;
                    return 1;
                }
            }
        }
        line = end ? end + 1 : NULL;
    }
    return 0;
}

/* The number of mapping calls (of `site`, or all if NULL) after "@@ marker"
 * and before the next marker (whole trace if marker is NULL). */
static inline int trace_count(const char *out, const char *marker, const char *site)
{
    int n = 0;
    trace_call c;
    while (trace_find(out, marker, site, n + 1, 1, &c))
        n++;
    return n;
}

/* Whether the output has a line starting with `prefix`. */
static inline int has_prefix_line(const char *out, const char *prefix)
{
    size_t l = strlen(prefix);
    for (const char *line = out; line && *line;) {
        if (strncmp(line, prefix, l) == 0)
            return 1;
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return 0;
}

/* Whether address-space randomisation is off in this process. */
static inline int aslr_off(void)
{
    int p = personality(0xffffffff);
    return p != -1 && (p & ADDR_NO_RANDOMIZE);
}

#endif /* OBMEM_FAULT_UTIL_H */
