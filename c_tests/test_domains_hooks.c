/* obm_set_allocator wrapping the current allocator (PyMem_SetAllocator
 * style): a counting hook on each domain sees exactly the calls made, the
 * drop-in malloc family goes through the object domain's hook, and
 * obm_get_allocator returns what was installed. */
#include <obmem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    obm_allocator inner;
    size_t malloc, calloc, realloc, free;
} counter;

static void *c_malloc(void *ctx, size_t n) { counter *c = ctx; c->malloc++; return c->inner.malloc(c->inner.ctx, n); }
static void *c_calloc(void *ctx, size_t a, size_t b) { counter *c = ctx; c->calloc++; return c->inner.calloc(c->inner.ctx, a, b); }
static void *c_realloc(void *ctx, void *p, size_t n) { counter *c = ctx; c->realloc++; return c->inner.realloc(c->inner.ctx, p, n); }
static void c_free(void *ctx, void *p) { counter *c = ctx; c->free++; c->inner.free(c->inner.ctx, p); }

#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
            exit(1);                                                              \
        }                                                                         \
    } while (0)

static counter counters[3];

static void install(obm_domain d)
{
    counter *c = &counters[d];
    obm_get_allocator(d, &c->inner);
    CHECK(c->inner.malloc && c->inner.calloc && c->inner.realloc && c->inner.free);
    obm_allocator hook = {c, c_malloc, c_calloc, c_realloc, c_free};
    obm_set_allocator(d, &hook);
    obm_allocator back;
    obm_get_allocator(d, &back);
    CHECK(back.ctx == c && back.malloc == c_malloc && back.free == c_free);
}

int main(void)
{
    install(OBM_DOMAIN_RAW);
    install(OBM_DOMAIN_MEM);
    install(OBM_DOMAIN_OBJ);
    for (int d = 0; d < 3; d++)
        counters[d].malloc = counters[d].calloc = counters[d].realloc = counters[d].free = 0;

    for (int i = 0; i < 10; i++) {
        void *r = obm_raw_malloc(100), *m = obm_mem_calloc(3, 50), *o = obm_object_malloc(0);
        r = obm_raw_realloc(r, 1000);
        CHECK(r && m && o);
        obm_raw_free(r);
        obm_mem_free(m);
        obm_object_free(o);
    }
    CHECK(counters[OBM_DOMAIN_RAW].malloc == 10 && counters[OBM_DOMAIN_RAW].realloc == 10 &&
          counters[OBM_DOMAIN_RAW].free == 10 && counters[OBM_DOMAIN_RAW].calloc == 0);
    CHECK(counters[OBM_DOMAIN_MEM].calloc == 10 && counters[OBM_DOMAIN_MEM].free == 10 &&
          counters[OBM_DOMAIN_MEM].malloc == 0 && counters[OBM_DOMAIN_MEM].realloc == 0);
    CHECK(counters[OBM_DOMAIN_OBJ].malloc == 10 && counters[OBM_DOMAIN_OBJ].free == 10);

    /* The drop-in family is the object domain. GCC assumes the malloc
     * family touches no user memory, so the counters are read through a
     * volatile pointer after the calls. */
    volatile counter *obj = &counters[OBM_DOMAIN_OBJ];
    size_t m0 = obj->malloc, f0 = obj->free, c0 = obj->calloc, r0 = obj->realloc;
    void *volatile p = malloc(64);
    void *volatile q = calloc(4, 16);
    p = realloc(p, 4096);
    free(p);
    free(q);
    CHECK(obj->malloc - m0 == 1 && obj->calloc - c0 == 1 && obj->realloc - r0 == 1 && obj->free - f0 == 2);
    CHECK(counters[OBM_DOMAIN_RAW].malloc == 10 && counters[OBM_DOMAIN_MEM].calloc == 10);

    /* Restoring the saved allocator stops the counting. */
    obm_set_allocator(OBM_DOMAIN_OBJ, &counters[OBM_DOMAIN_OBJ].inner);
    size_t m1 = obj->malloc;
    void *volatile r = malloc(32);
    free(r);
    CHECK(obj->malloc == m1);
    printf("counting hooks saw every call in each domain and the malloc family: ok\n");
    return 0;
}
