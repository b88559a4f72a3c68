/* Programs run under valgrind --tool=memcheck by tests/valgrind/run.sh, one
 * case per argument. Each misuse sits in a named function that is never
 * inlined, so that the script can find it in the reported stacks. */
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
    fprintf(stderr, "usage: cases overrun|underrun|mem_uaf|object_uaf|double_free|leaks|clean\n");
    return 2;
}
