/* Programs run under valgrind --tool=memcheck by tests/valgrind/run.sh, one
 * case per argument. Each misuse sits in a named function that is never
 * inlined, so that the script can find it in the reported stacks. */
#include <malloc.h>
#include <obmem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))

typedef struct Point {
    OBM_OBJECT_HEAD
    long x, y;
} Point;
static const obm_type PointType = {"Point", sizeof(Point), 0, NULL, NULL, NULL, NULL};

static volatile long sink;

NOINLINE static char *make_mem_block(size_t n) { return obm_mem_malloc(n); }
NOINLINE static char *make_raw_block(size_t n) { return obm_raw_malloc(n); }
NOINLINE static char *make_object_block(size_t n) { return obm_object_malloc(n); }
NOINLINE static Point *new_point(void) { return (Point *)obm_new(&PointType); }
NOINLINE static void *leak_malloc(void) { return malloc(100); }
NOINLINE static void *leak_mem(void) { return obm_mem_malloc(77); }

/* A read one byte past the end of a 24-byte block (its class is 32). */
static void overrun(void)
{
    char *p = make_mem_block(24);
    memset(p, 1, 24);
    sink = p[24];
    obm_mem_free(p);
}

/* The same past the end of an object-domain block: obm_object_malloc is
 * obmem's (a function of its own, not malloc's alias, which memcheck
 * replaces), so the block is declared by obmem's memcheck hooks. */
static void object_overrun(void)
{
    char *p = make_object_block(24);
    memset(p, 1, 24);
    sink = p[24];
    obm_object_free(p);
}

/* A write one byte before a 40-byte raw block. */
static void underrun(void)
{
    char *p = make_raw_block(40);
    p[-1] = 7;
    obm_raw_free(p);
}

static void mem_use_after_free(void)
{
    long *p = (long *)make_mem_block(64);
    p[3] = 5;
    obm_mem_free(p);
    sink = p[3];
}

static void object_use_after_free(void)
{
    Point *pt = new_point();
    pt->x = 3;
    obm_decref((obm_object *)pt);
    sink = pt->x;
}

static void double_free(void)
{
    char *p = make_mem_block(48);
    obm_mem_free(p);
    obm_mem_free(p);
}

static void *kept;

static void leaks(void)
{
    void *a = leak_malloc();
    void *b = leak_mem();
    memset(a, 1, 100);
    memset(b, 1, 77);
    kept = malloc(10); /* still reachable: not a leak */
}

/* A hook on the object domain sees every obm_object_* call under memcheck
 * too (they reach obmem, not Valgrind's malloc); exit status 1 if not. */
static struct {
    obm_allocator inner;
    volatile size_t malloc, calloc, realloc, free;
} obj_hook;
static void *h_malloc(void *c, size_t n) { obj_hook.malloc++; return obj_hook.inner.malloc(c, n); }
static void *h_calloc(void *c, size_t a, size_t b) { obj_hook.calloc++; return obj_hook.inner.calloc(c, a, b); }
static void *h_realloc(void *c, void *p, size_t n) { obj_hook.realloc++; return obj_hook.inner.realloc(c, p, n); }
static void h_free(void *c, void *p) { obj_hook.free++; obj_hook.inner.free(c, p); }

static void object_hooks(void)
{
    obm_get_allocator(OBM_DOMAIN_OBJ, &obj_hook.inner);
    obm_allocator h = {obj_hook.inner.ctx, h_malloc, h_calloc, h_realloc, h_free};
    obm_set_allocator(OBM_DOMAIN_OBJ, &h);
    for (int i = 0; i < 10; i++) {
        char *a = obm_object_malloc(40), *b = obm_object_calloc(3, 8);
        memset(a, 1, 40);
        a = obm_object_realloc(a, 400);
        if (!a || !b || a[39] != 1 || b[23] != 0)
            abort();
        obm_object_free(a);
        obm_object_free(b);
    }
    obm_set_allocator(OBM_DOMAIN_OBJ, &obj_hook.inner);
    if (obj_hook.malloc != 10 || obj_hook.calloc != 10 || obj_hook.realloc != 10 || obj_hook.free != 20) {
        fprintf(stderr, "object-domain hook saw malloc %zu calloc %zu realloc %zu free %zu, expected 10 10 10 20\n",
                (size_t)obj_hook.malloc, (size_t)obj_hook.calloc, (size_t)obj_hook.realloc, (size_t)obj_hook.free);
        exit(1);
    }
    printf("object-domain hook saw every call\n");
}

/* The malloc family's blocks (Valgrind's under memcheck) through obmem's
 * object domain and obm_usable_size, which hand them back to Valgrind, and
 * the object domain's blocks through obm_usable_size: no error. */
static void mixed(void)
{
    for (int i = 0; i < 100; i++) {
        size_t n = (size_t)i * 37 + 1;
        unsigned char *p = malloc(n), *q = calloc(n, 1), *o = obm_object_malloc(n);
        if (!p || !q || !o || obm_usable_size(p) < n || obm_usable_size(o) < n)
            abort();
        memset(p, 3, n);
        memset(o, 4, n);
        p = obm_object_realloc(p, 2 * n);
        if (!p || p[n - 1] != 3 || q[n - 1] != 0 || malloc_usable_size(p) < 2 * n)
            abort();
        obm_object_free(p);
        obm_object_free(q);
        obm_object_free(o);
    }
    printf("mixed ok\n");
}

/* Correct use of every domain: no error, no leak. */
static void clean(void)
{
    static void *blocks[3][300];
    for (int i = 0; i < 300; i++) {
        size_t n = (size_t)i * 13 + 1;
        blocks[0][i] = obm_raw_malloc(n);
        blocks[1][i] = obm_mem_calloc(n, 2);
        blocks[2][i] = obm_object_malloc(n);
        memset(blocks[0][i], i, n);
        memset(blocks[2][i], i, n);
        for (size_t k = 0; k < 2 * n; k++)
            if (((unsigned char *)blocks[1][i])[k] != 0)
                abort();
    }
    for (int i = 0; i < 300; i++) {
        size_t n = (size_t)i * 13 + 1, m = (size_t)i * 5 + 3;
        blocks[0][i] = obm_raw_realloc(blocks[0][i], m);
        blocks[2][i] = obm_object_realloc(blocks[2][i], m);
        for (size_t k = 0; k < (n < m ? n : m); k++)
            if (((unsigned char *)blocks[0][i])[k] != (unsigned char)i)
                abort();
        if (obm_usable_size(blocks[0][i]) != m)
            abort();
    }
    for (int i = 0; i < 300; i++) {
        obm_raw_free(blocks[0][i]);
        obm_mem_free(blocks[1][i]);
        obm_object_free(blocks[2][i]);
    }
    char *big = obm_mem_malloc(3 << 20);
    memset(big, 2, 3 << 20);
    obm_mem_free(big);
    for (int i = 0; i < 1000; i++) {
        Point *pt = new_point();
        pt->x = i;
        sink += pt->x;
        obm_decref((obm_object *)pt);
    }
    obm_gc_collect(2);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } cases[] = {
        {"overrun", overrun},         {"underrun", underrun},
        {"object_overrun", object_overrun}, {"object_hooks", object_hooks},
        {"mixed", mixed},
        {"mem_uaf", mem_use_after_free}, {"object_uaf", object_use_after_free},
        {"double_free", double_free}, {"leaks", leaks},
        {"clean", clean},
    };
    for (size_t i = 0; argc == 2 && i < sizeof cases / sizeof cases[0]; i++) {
        if (strcmp(argv[1], cases[i].name) == 0) {
            cases[i].fn();
            return 0;
        }
    }
    fprintf(stderr, "usage: cases overrun|underrun|object_overrun|object_hooks|mixed|mem_uaf|object_uaf|double_free|leaks|clean\n");
    return 2;
}
