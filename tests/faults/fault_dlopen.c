/*
 * fault_dlopen: dlopen/dlclose of a plugin that allocates in its
 * constructor and frees in its destructor (tests/faults/lib_plugin.c).
 *
 * Built twice by run.sh: fault_dlopen is linked with -lobmem; with
 * -DFAULTS_UNLINKED it becomes fault_dlopen_preload, a program that does
 * not know obmem at all and runs under LD_PRELOAD=libobmem.so (it finds the
 * statistics with dlsym). c_tests/test_malloc_dlopen.c covers 20 cycles
 * from the main thread of a linked program. Here:
 *   A. 40 dlopen/dlclose cycles from the main thread; after each, the
 *      statistics are back to the baseline (blocks in use, large blocks);
 *      the constructor's blocks are obmem's (obm_usable_size accepts them);
 *   B. the plugin opened by a thread that then exits (its constructor's
 *      blocks belong to an abandoned heap), blocks of four other exited
 *      threads handed to the plugin, and dlclose from the main thread: the
 *      destructor frees them all (remote frees into abandoned heaps);
 *   C. 16 threads touch the plugin's dynamic TLS (glibc allocates a 20 KB
 *      block per thread with malloc) and its pthread key (a block freed by
 *      the key's destructor at thread exit), exit, then dlclose;
 *   D. 4 threads each open and close the plugin 15 times concurrently while
 *      allocating;
 *   E. dlopen of libobmem.so itself: the same library, same functions;
 *      dlclose leaves it working;
 *   F. (fault_dlopen_preload only) a program with obmem neither linked nor
 *      preloaded dlopens libobmem.so, uses obm_raw_malloc from a thread,
 *      dlcloses it while the thread lives, then the thread exits and the
 *      program forks: must not crash (the library must stay loaded: its
 *      pthread key destructor and fork handlers point into it).
 * After each scenario: blocks in use and large blocks equal the baseline.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <obmem.h>

#ifdef FAULTS_UNLINKED
/* Not linked with obmem: its functions come from the preloaded library. */
#include <dlfcn.h>
static void (*p_get_stats)(obm_stats *);
static size_t (*p_usable_size)(const void *);
#define obm_get_stats(x) p_get_stats(x)
#define obm_usable_size(x) p_usable_size(x)
#endif

#include "fault_util.h"

#include <stdatomic.h>

static char plugin_path[4096];
static const char *lib_path;

typedef int (*check_fn)(void);
typedef void (*take_fn)(void *);
typedef int (*tls_fn)(int);

static void *open_plugin(check_fn *check, take_fn *take, tls_fn *tls)
{
    void *h = dlopen(plugin_path, RTLD_NOW | RTLD_LOCAL);
    CHECK_MSG(h != NULL, "dlopen %s: %s", plugin_path, dlerror());
    *check = (check_fn)(uintptr_t)dlsym(h, "plugin_check");
    if (take)
        *take = (take_fn)(uintptr_t)dlsym(h, "plugin_take");
    if (tls)
        *tls = (tls_fn)(uintptr_t)dlsym(h, "plugin_touch_tls");
    CHECK(*check && (!take || *take) && (!tls || *tls));
    return h;
}

static void check_baseline(const obm_stats *base, const char *what)
{
    obm_stats st = stats_now();
    CHECK_MSG(small_in_use(&st) == small_in_use(base) && st.large_blocks == base->large_blocks,
              "%s: %zu small blocks and %zu large blocks in use, %zu and %zu at the baseline",
              what, small_in_use(&st), st.large_blocks, small_in_use(base), base->large_blocks);
}

/* ---- A ---------------------------------------------------------------------- */

static void cycles(const obm_stats *base)
{
    for (int i = 0; i < 40; i++) {
        check_fn check;
        void *h = open_plugin(&check, NULL, NULL);
        CHECK(check());
        obm_stats loaded = stats_now();
        CHECK_GE(small_in_use(&loaded), small_in_use(base) + 400);
        CHECK_GE(loaded.large_blocks, base->large_blocks + 12);
        CHECK_EQ(dlclose(h), 0);
        check_baseline(base, "after a dlopen/dlclose cycle");
    }
}

/* ---- B ---------------------------------------------------------------------- */

static void *opened;
static check_fn b_check;
static take_fn b_take;

static void *opener(void *arg)
{
    (void)arg;
    opened = open_plugin(&b_check, &b_take, NULL);
    return NULL;
}

static void *giver(void *arg)
{
    uint64_t rng = (uintptr_t)arg;
    for (int i = 0; i < 500; i++) {
        uint64_t r = rng_next(&rng);
        size_t n = r % 20 == 0 ? 150000 + (r >> 8) % 500000 : (r >> 8) % 3000 + 1;
        void *p = malloc(opaque_size(n));
        CHECK_NOT_NULL(p);
        dirty(p, 0x11, n < 64 ? n : 64);
        b_take(p);
    }
    return NULL;
}

static void foreign_frees(const obm_stats *base)
{
    uthread t;
    CHECK_EQ(uthread_create(&t, opener, NULL), 0);
    uthread_join(&t); /* the constructor's blocks: an abandoned heap's */
    CHECK(b_check());
    uthread g[4];
    for (int i = 0; i < 4; i++)
        CHECK_EQ(uthread_create(&g[i], giver, (void *)(uintptr_t)(i + 1)), 0);
    for (int i = 0; i < 4; i++)
        uthread_join(&g[i]);
    obm_stats mid = stats_now();
    CHECK_GE(small_in_use(&mid), small_in_use(base) + 2000);
    CHECK_EQ(dlclose(opened), 0); /* the destructor frees it all, here */
    check_baseline(base, "after the destructor freed other threads' blocks");
}

/* ---- C ---------------------------------------------------------------------- */

static tls_fn c_tls;
static atomic_int tls_ok;

static void *tls_user(void *arg)
{
    int v = (int)(uintptr_t)arg;
    for (int i = 0; i < 5; i++)
        if (c_tls(v + i))
            atomic_fetch_add(&tls_ok, 1);
    return NULL;
}

static void tls_and_keys(const obm_stats *base)
{
    check_fn check;
    void *h = open_plugin(&check, NULL, &c_tls);
    for (int batch = 0; batch < 4; batch++) {
        uthread t[4];
        for (int i = 0; i < 4; i++)
            CHECK_EQ(uthread_create(&t[i], tls_user, (void *)(uintptr_t)(batch * 4 + i)), 0);
        for (int i = 0; i < 4; i++)
            uthread_join(&t[i]);
    }
    CHECK_EQ(atomic_load(&tls_ok), 16 * 5);
    CHECK(check());
    CHECK_EQ(dlclose(h), 0);
    check_baseline(base, "after threads used the plugin's TLS and key");
}

/* ---- D ---------------------------------------------------------------------- */

static void *cycler(void *arg)
{
    uint64_t rng = 0x99 + (uintptr_t)arg;
    void *mine[64] = {0};
    for (int i = 0; i < 15; i++) {
        check_fn check;
        void *h = open_plugin(&check, NULL, NULL);
        for (int k = 0; k < 64; k++) {
            free(mine[k]);
            mine[k] = malloc(opaque_size(rng_next(&rng) % 5000 + 1));
            CHECK_NOT_NULL(mine[k]);
        }
        CHECK(check());
        CHECK_EQ(dlclose(h), 0);
    }
    for (int k = 0; k < 64; k++)
        free(mine[k]);
    return NULL;
}

static void concurrent(const obm_stats *base)
{
    uthread t[4];
    for (int i = 0; i < 4; i++)
        CHECK_EQ(uthread_create(&t[i], cycler, (void *)(uintptr_t)i), 0);
    for (int i = 0; i < 4; i++)
        uthread_join(&t[i]);
    check_baseline(base, "after concurrent dlopen/dlclose");
}

/* ---- E ---------------------------------------------------------------------- */

static void self_open1(void)
{
    void *h = dlopen(lib_path, RTLD_NOW | RTLD_LOCAL);
    CHECK_MSG(h != NULL, "dlopen %s: %s", lib_path, dlerror());
    void *(*rm)(size_t) = (void *(*)(size_t))(uintptr_t)dlsym(h, "obm_raw_malloc");
    void *(*dm)(size_t) = (void *(*)(size_t))(uintptr_t)dlsym(RTLD_DEFAULT, "obm_raw_malloc");
    void (*rf)(void *) = (void (*)(void *))(uintptr_t)dlsym(h, "obm_raw_free");
    CHECK(rm != NULL && rm == dm); /* the library already loaded, not a second copy */
    void *p = rm(100);
    CHECK_NOT_NULL(p);
    CHECK_EQ(dlclose(h), 0);
    free(malloc(opaque_size(10)));
    CHECK_EQ(obm_usable_size(p), 112);
    rf(p);
}

static void self_open(void)
{
    /* The loader keeps a few blocks after the first dlopen of a library
     * that is already loaded (scope bookkeeping): the baseline is taken
     * after one round, then 10 more must not add anything. */
    self_open1();
    obm_stats base = stats_now();
    for (int i = 0; i < 10; i++)
        self_open1();
    check_baseline(&base, "after dlopen/dlclose of libobmem itself");
}

/* ---- F: obmem loaded late ------------------------------------------------------- */

#ifdef FAULTS_UNLINKED
static void *(*late_malloc)(size_t);
static void (*late_free)(void *);
static pthread_barrier_t lb1, lb2;

static void *late_thread(void *arg)
{
    (void)arg;
    void *p = late_malloc(100); /* makes this thread a heap and sets its key */
    CHECK_NOT_NULL(p);
    late_free(p);
    pthread_barrier_wait(&lb1);
    pthread_barrier_wait(&lb2); /* exits after the dlclose */
    return NULL;
}

static void late_child(void)
{
    void *h = dlopen(lib_path, RTLD_NOW | RTLD_LOCAL);
    CHECK_MSG(h != NULL, "dlopen %s: %s", lib_path, dlerror());
    late_malloc = (void *(*)(size_t))(uintptr_t)dlsym(h, "obm_raw_malloc");
    late_free = (void (*)(void *))(uintptr_t)dlsym(h, "obm_raw_free");
    CHECK(late_malloc && late_free);
    pthread_barrier_init(&lb1, NULL, 2);
    pthread_barrier_init(&lb2, NULL, 2);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, late_thread, NULL), 0);
    pthread_barrier_wait(&lb1);
    CHECK_EQ(dlclose(h), 0);
    pthread_barrier_wait(&lb2);
    pthread_join(t, NULL); /* the thread's TSD destructors have run */
    pid_t pid = fork();    /* and the fork handlers */
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(0);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("late: ok\n");
}

static int late_load(void)
{
    char env_lib[4200];
    snprintf(env_lib, sizeof env_lib, "FAULTS_LIB=%s", lib_path);
    const char *env[] = {env_lib, NULL};
    const char *args[] = {"late", NULL};
    run_result r;
    run_self(args, env, 0, 60, &r); /* run_self passes no LD_PRELOAD */
    int ok = run_ok(&r) && strstr(r.out, "late: ok") != NULL;
    if (!ok) {
        char buf[64];
        printf("  F: FAIL: a program that dlopened libobmem.so, used it from a thread and "
               "dlclosed it: %s when the thread exited or the program forked "
               "(libobmem.so can be unloaded while its pthread key destructor and fork "
               "handlers are registered; link it with -z nodelete)\n",
               describe_status(r.status, buf, sizeof buf));
        dump_tail(&r, 2000);
    }
    free(r.out);
    return ok;
}
#endif

int main(int argc, char **argv)
{
    const char *dir = getenv("FAULTS_BUILD");
    lib_path = getenv("FAULTS_LIB");
    CHECK_MSG(lib_path != NULL, "FAULTS_LIB (the path of libobmem.so) is not set: run me from tests/faults/run.sh");
#ifdef FAULTS_UNLINKED
    if (argc > 1 && strcmp(argv[1], "late") == 0) {
        late_child();
        return 0;
    }
    p_get_stats = (void (*)(obm_stats *))(uintptr_t)dlsym(RTLD_DEFAULT, "obm_get_stats");
    p_usable_size = (size_t(*)(const void *))(uintptr_t)dlsym(RTLD_DEFAULT, "obm_usable_size");
    CHECK_MSG(p_get_stats && p_usable_size, "obmem is not preloaded");
    Dl_info info;
    void *(*volatile m)(size_t) = malloc;
    CHECK(dladdr((void *)(uintptr_t)m, &info) && info.dli_fname && strstr(info.dli_fname, "libobmem"));
#else
    (void)argc;
    (void)argv;
    check_obmem_is_malloc();
#endif
    CHECK_MSG(dir != NULL, "FAULTS_BUILD is not set: run me from tests/faults/run.sh");
    snprintf(plugin_path, sizeof plugin_path, "%s/lib_plugin.so", dir);
    double t0 = now_sec();
    /* Warm-up: the loader keeps some bookkeeping for good after the first
     * two cycles (the TLS slot table, ...); stdout gets its buffer. */
    for (int i = 0; i < 2; i++) {
        check_fn check;
        void *h = open_plugin(&check, NULL, NULL);
        CHECK(check());
        CHECK_EQ(dlclose(h), 0);
    }
    printf("  plugin %s\n", plugin_path);
    fflush(stdout);
    obm_stats base = stats_now();
    cycles(&base);
    printf("  A: 40 dlopen/dlclose cycles: back to the baseline after each\n");
    foreign_frees(&base);
    printf("  B: the destructor freed the constructor's blocks (its thread exited) and 2000 "
           "blocks of 4 exited threads\n");
    tls_and_keys(&base);
    printf("  C: 16 threads used the plugin's dynamic TLS and pthread key\n");
    concurrent(&base);
    printf("  D: 4 threads x 15 concurrent dlopen/dlclose\n");
    self_open();
    printf("  E: dlopen/dlclose of libobmem.so itself\n");
    int ok = 1;
#ifdef FAULTS_UNLINKED
    ok = late_load();
    if (ok)
        printf("  F: libobmem.so loaded late with dlopen, used from a thread, dlclosed: ok\n");
#endif
    obm_stats st = stats_now();
    printf("summary: %s, %zu small blocks in use at the end (baseline %zu), %.1fs\n",
           ok ? "ok" : "FAILED", small_in_use(&st), small_in_use(&base), now_sec() - t0);
    return ok ? 0 : 1;
}
