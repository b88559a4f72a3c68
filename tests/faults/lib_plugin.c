/*
 * lib_plugin: the plugin fault_dlopen loads (built by run.sh into
 * build/faults/lib_plugin.so, linked with nothing but libpthread: malloc
 * and friends resolve to whatever the program uses, obmem here).
 *
 * Its constructor allocates blocks of every kind (malloc, calloc,
 * posix_memalign, realloc, large blocks), creates a pthread key whose
 * destructor frees a per-thread block, and starts a thread that allocates
 * and waits. Its destructor stops and joins that thread (which frees its
 * own blocks), checks and frees what the constructor allocated, frees the
 * blocks the program handed over with plugin_take (allocated by other
 * threads, often exited ones), and deletes the key.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define N 600
static unsigned char *kept[N];
static size_t klen[N];
static void *taken[8192];
static atomic_int ntaken;
static pthread_key_t key;
static int key_ok;
static pthread_t helper;
static int helper_ok;
/* The helper runs on a stack of ours: glibc frees the thread's DTV at
 * pthread_join then (with a stack it mapped itself, it would keep the
 * DTV allocated with the cached stack), so nothing outlives dlclose. */
static void *helper_stack;
enum { HELPER_STACK = 256 * 1024 };
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int stop_helper;
static atomic_int broken;
/* Dynamic TLS: glibc allocates it with malloc on a thread's first access. */
static __thread unsigned char tls_big[20000];

static unsigned char pat(size_t i, size_t k) { return (unsigned char)(i * 31 + k * 7 + 1); }

static void *helper_main(void *arg)
{
    (void)arg;
    void *mine[100];
    for (int i = 0; i < 100; i++) {
        mine[i] = malloc((size_t)i * 40 + 1);
        if (!mine[i])
            atomic_store(&broken, 1);
        else
            memset(mine[i], 0x5c, 1);
    }
    pthread_mutex_lock(&mu);
    while (!stop_helper)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < 100; i++)
        free(mine[i]);
    return NULL;
}

static void per_thread_free(void *p) { free(p); }

__attribute__((constructor)) static void plugin_init(void)
{
    for (size_t i = 0; i < N; i++) {
        size_t n = i % 50 == 0 ? 200000 + i * 100 : i % 7 == 0 ? 3000 + i * 11 : i + 1;
        unsigned char *p;
        switch (i % 4) {
        case 0:
            p = malloc(n);
            break;
        case 1:
            p = calloc(1, n);
            break;
        case 2: {
            void *q = NULL;
            p = posix_memalign(&q, 64 << (i % 5), n) == 0 ? q : NULL;
            break;
        }
        default:
            p = realloc(malloc(n / 2 + 1), n);
            break;
        }
        if (!p) {
            atomic_store(&broken, 1);
            continue;
        }
        for (size_t k = 0; k < n && k < 64; k++)
            p[k] = pat(i, k);
        kept[i] = p;
        klen[i] = n;
    }
    key_ok = pthread_key_create(&key, per_thread_free) == 0;
    stop_helper = 0;
    helper_stack = mmap(NULL, HELPER_STACK, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (helper_stack != MAP_FAILED) {
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setstack(&a, helper_stack, HELPER_STACK);
        helper_ok = pthread_create(&helper, &a, helper_main, NULL) == 0;
        pthread_attr_destroy(&a);
    }
}

int plugin_check(void)
{
    if (atomic_load(&broken) || !key_ok || !helper_ok)
        return 0;
    for (size_t i = 0; i < N; i++)
        for (size_t k = 0; k < klen[i] && k < 64; k++)
            if (kept[i][k] != pat(i, k))
                return 0;
    return 1;
}

/* Keeps a block of the program's, freed by the destructor. */
void plugin_take(void *p)
{
    int i = atomic_fetch_add(&ntaken, 1);
    if (i < (int)(sizeof taken / sizeof taken[0]))
        taken[i] = p;
    else
        free(p);
}

/* Touches this thread's dynamic TLS and gives it a per-thread block. */
int plugin_touch_tls(int v)
{
    memset(tls_big, v, sizeof tls_big);
    void *p = malloc(777);
    if (!p)
        return 0;
    void *old = pthread_getspecific(key);
    free(old);
    pthread_setspecific(key, p);
    return tls_big[sizeof tls_big - 1] == (unsigned char)v;
}

__attribute__((destructor)) static void plugin_fini(void)
{
    if (helper_ok) {
        pthread_mutex_lock(&mu);
        stop_helper = 1;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
        pthread_join(helper, NULL);
        munmap(helper_stack, HELPER_STACK);
    }
    for (size_t i = 0; i < N; i++) {
        if (kept[i])
            for (size_t k = 0; k < klen[i] && k < 64; k++)
                if (kept[i][k] != pat(i, k))
                    abort(); /* the program sees the plugin die */
        free(kept[i]);
        kept[i] = NULL;
    }
    int n = atomic_exchange(&ntaken, 0);
    for (int i = 0; i < n && i < (int)(sizeof taken / sizeof taken[0]); i++)
        free(taken[i]);
    if (key_ok)
        pthread_key_delete(key);
}
