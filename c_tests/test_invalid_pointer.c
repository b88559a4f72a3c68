/*
 * Pointers obmem never returned (docs/API.md 2.1): free, realloc or
 * malloc_usable_size of such a pointer prints a line starting "obmem: " that
 * names the function and the address (as printf's %p prints it) to stderr
 * and aborts. Each case runs in a forked child whose stderr is captured
 * through a pipe; the child must die of SIGABRT with that line.
 * Pointers: a stack address, a static array, p+8 inside a small block, p+48
 * inside a 112-byte block (16-aligned but not a block start), the middle of
 * a 4 KiB block, p+4096 inside a large block, a page from mmap.
 * Double free of a small, a medium and a large block: SIGABRT and a line
 * starting "obmem: " that names free. realloc of a freed block, to a size
 * that would keep it in place: SIGABRT and a line naming realloc.
 */

#include "test_util.h"

#include <sys/mman.h>

typedef enum { F_FREE, F_REALLOC, F_USABLE } func;
static const char *const func_name[] = {"free", "realloc", "malloc_usable_size"};

typedef enum {
    K_STACK,
    K_STATIC,
    K_SMALL_PLUS_8,
    K_SMALL_PLUS_48,
    K_MEDIUM_MIDDLE,
    K_LARGE_PLUS_PAGE,
    K_MMAP_PAGE,
    K_COUNT
} kind;
static const char *const kind_name[] = {
    "a stack address", "a static array", "p+8 in a 100-byte block", "p+48 in a 100-byte block",
    "p+2048 in a 4096-byte block", "p+4096 in a 1 MiB block", "a page from mmap"};

static char static_array[256] __attribute__((aligned(64)));

typedef struct {
    func f;
    kind k;
} invalid_case;

/* The pipe carries the expected address from the child as its first line,
 * "ADDR <%p>\n", then whatever obmem prints. */
static void invalid_child(void *arg)
{
    invalid_case *c = arg;
    char stack_buf[256] __attribute__((aligned(64)));
    memset(stack_buf, 0, sizeof stack_buf);
    void *p = NULL;
    switch (c->k) {
    case K_STACK: p = stack_buf + 64; break;
    case K_STATIC: p = static_array + 64; break;
    case K_SMALL_PLUS_8: {
        char *b = malloc(opaque_size(100));
        CHECK_NOT_NULL(b);
        p = b + 8;
        break;
    }
    case K_SMALL_PLUS_48: {
        char *b = malloc(opaque_size(100));
        CHECK_NOT_NULL(b);
        CHECK_EQ(malloc_usable_size(b), 112);
        p = b + 48;
        break;
    }
    case K_MEDIUM_MIDDLE: {
        char *b = malloc(opaque_size(4096));
        CHECK_NOT_NULL(b);
        CHECK_EQ(malloc_usable_size(b), 4096);
        p = b + 2048;
        break;
    }
    case K_LARGE_PLUS_PAGE: {
        char *b = malloc(opaque_size(1u << 20));
        CHECK_NOT_NULL(b);
        p = b + 4096;
        break;
    }
    case K_MMAP_PAGE: {
        /* Two pages, the first made inaccessible: an allocator that reads a
         * header before the pointer without checking it faults instead of
         * reporting. */
        char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(m != MAP_FAILED);
        CHECK(mprotect(m, 4096, PROT_NONE) == 0);
        p = m + 4096;
        break;
    }
    default: FAIL("bad kind");
    }
    printf("ADDR %p\n", p);
    fflush(stdout);
    p = opaque_ptr(p);
    switch (c->f) {
    case F_FREE: free(p); break;
    case F_REALLOC: {
        void *q = realloc(p, opaque_size(200));
        escape(q);
        break;
    }
    case F_USABLE: {
        volatile size_t u = malloc_usable_size(p);
        (void)u;
        break;
    }
    }
    printf("RETURNED: %s did not abort\n", func_name[c->f]);
    fflush(stdout);
}

static int check_abort_report(const child_result *r, const char *func_needed, const char *addr,
                              const char *what)
{
    char sb[64];
    int ok = 1;
    if (!(WIFSIGNALED(r->status) && WTERMSIG(r->status) == SIGABRT)) {
        fprintf(stderr, "FAIL %s: child ended with %s, expected SIGABRT\n", what,
                describe_status(r->status, sb, sizeof sb));
        ok = 0;
    }
    if (!has_line(r->out, "obmem: ", func_needed, addr)) {
        fprintf(stderr, "FAIL %s: no line starting \"obmem: \" naming %s%s%s\n", what,
                func_needed, addr ? " and " : "", addr ? addr : "");
        ok = 0;
    }
    if (!ok)
        fprintf(stderr, "  child output:\n%s\n", r->out);
    return ok;
}

static child_result res;

static void double_free_child(void *arg)
{
    size_t n = *(size_t *)arg;
    void *p = malloc(opaque_size(n));
    CHECK_NOT_NULL(p);
    /* Some unrelated activity in between is normal in real programs, but the
     * simplest double free comes first. */
    void *again = opaque_ptr(p); /* the same pointer, hidden from GCC */
    free(p);
    free(again);
    printf("RETURNED: double free of a %zu-byte block did not abort\n", n);
    fflush(stdout);
}

static void double_free_later_child(void *arg)
{
    size_t n = *(size_t *)arg;
    void *keep[10];
    void *p = malloc(opaque_size(n));
    CHECK_NOT_NULL(p);
    for (int i = 0; i < 10; i++)
        keep[i] = malloc(opaque_size(n)); /* neighbours stay allocated */
    void *again = opaque_ptr(p); /* the same pointer, hidden from GCC */
    free(p);
    free(again);
    printf("RETURNED: double free of a %zu-byte block (with live neighbours) did not abort\n", n);
    fflush(stdout);
    for (int i = 0; i < 10; i++)
        free(keep[i]);
}

static void realloc_after_free_child(void *arg)
{
    size_t n = *(size_t *)arg;
    void *p = malloc(opaque_size(n));
    CHECK_NOT_NULL(p);
    void *again = opaque_ptr(p); /* the same pointer, hidden from GCC */
    free(p);
    void *q = realloc(again, opaque_size(n));
    escape(q);
    printf("RETURNED: realloc of a freed %zu-byte block did not abort\n", n);
    fflush(stdout);
}

int main(void)
{
    check_obmem_is_malloc();
    int failures = 0, total = 0;
    for (int f = F_FREE; f <= F_USABLE; f++) {
        for (int k = 0; k < K_COUNT; k++) {
            invalid_case c = {(func)f, (kind)k};
            run_in_child(invalid_child, &c, &res);
            /* The child printed "ADDR <p>" first. */
            char addr[64] = "";
            const char *a = strstr(res.out, "ADDR ");
            if (a)
                sscanf(a + 5, "%63s", addr);
            char what[160];
            snprintf(what, sizeof what, "%s(%s)", func_name[f], kind_name[k]);
            total++;
            if (!addr[0]) {
                fprintf(stderr, "FAIL %s: child did not get to the call:\n%s\n", what, res.out);
                failures++;
            } else if (!check_abort_report(&res, func_name[f], addr, what)) {
                failures++;
            } else {
                printf("ok %s\n", what);
            }
        }
    }
    static const size_t df[] = {100, 16, 4096, 1u << 20};
    for (size_t i = 0; i < sizeof df / sizeof df[0]; i++) {
        for (int later = 0; later < 2; later++) {
            size_t n = df[i];
            run_in_child(later ? double_free_later_child : double_free_child, &n, &res);
            char what[96];
            snprintf(what, sizeof what, "double free of a %zu-byte block%s", n,
                     later ? " with live neighbours" : "");
            total++;
            if (!check_abort_report(&res, "free", NULL, what))
                failures++;
            else
                printf("ok %s\n", what);
        }
    }
    for (size_t i = 0; i < sizeof df / sizeof df[0]; i++) {
        size_t n = df[i];
        run_in_child(realloc_after_free_child, &n, &res);
        char what[96];
        snprintf(what, sizeof what, "realloc of a freed %zu-byte block", n);
        total++;
        if (!check_abort_report(&res, "realloc", NULL, what))
            failures++;
        else
            printf("ok %s\n", what);
    }
    printf("%d of %d invalid-pointer cases failed\n", failures, total);
    if (failures)
        return 1;
    printf("test_invalid_pointer: all ok\n");
    return 0;
}
