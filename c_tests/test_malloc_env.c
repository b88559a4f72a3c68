/*
 * Environment variables (docs/API.md 5): the test re-executes itself with
 * different settings and checks the child's exit status and stderr.
 * - OBMEM_SHOW_STATS=1 prints the statistics table to stderr at exit, first
 *   line starting "obmem statistics"; without it, or with 0, nothing is
 *   printed; a bad value is reported in one line and the table stays off;
 * - OBMEM_MALLOC=pymalloc | malloc | debug | pymalloc_debug | malloc_debug:
 *   a correct program runs silently and exits 0 in every mode, and the
 *   debug modes have the debug hooks on;
 * - OBMEM_GC_THRESHOLD=100,5,3 sets obm_gc_get_threshold;
 * - a bad value of OBMEM_MALLOC or OBMEM_GC_THRESHOLD is reported once on
 *   stderr (exactly one line naming the variable or the value), the default
 *   is used (malloc is still obmem's pymalloc: 600 -> 640; thresholds
 *   700,10,10) and the program does not crash.
 */
#include "test_util.h"

extern char **environ;

/* obm_gc_get_threshold is looked up at run time, so that this allocator
 * test builds before the gc module exists (its absence is then a failure
 * of the OBMEM_GC_THRESHOLD checks only). */
static void gc_threshold(int out[3])
{
    void (*fn)(int *) = (void (*)(int *))dlsym(RTLD_DEFAULT, "obm_gc_get_threshold");
    CHECK_MSG(fn != NULL, "obm_gc_get_threshold is not exported by libobmem");
    fn(out);
}

/* The child's workload: a correct program using every allocator entry. */
static int child_main(const char *mode)
{
    int th[3] = {-1, -1, -1};
    if (strcmp(mode, "default") == 0) {
        check_obmem_is_malloc();
    } else if (strcmp(mode, "gcdefault") == 0) {
        check_obmem_is_malloc();
        gc_threshold(th);
        CHECK_MSG(th[0] == 700 && th[1] == 10 && th[2] == 10, "gc thresholds %d,%d,%d", th[0],
                  th[1], th[2]);
    } else if (strcmp(mode, "debughooks") == 0) {
        /* Under the debug hooks a block's usable size is exactly the request
         * and new memory holds 0xCD. */
        unsigned char *p = malloc(opaque_size(5));
        CHECK_NOT_NULL(p);
        CHECK_EQ(malloc_usable_size(p), 5);
        CHECK_EQ(p[4], 0xCD);
        free(p);
    } else if (strcmp(mode, "gc100") == 0) {
        gc_threshold(th);
        CHECK_MSG(th[0] == 100 && th[1] == 5 && th[2] == 3, "gc thresholds %d,%d,%d", th[0],
                  th[1], th[2]);
    }
    for (int round = 0; round < 3; round++) {
        void *p[300];
        for (int i = 0; i < 300; i++) {
            size_t n = (size_t)i * 97 % 5000 + (i % 50 == 0 ? 200000 : 0);
            p[i] = malloc(opaque_size(n));
            CHECK_NOT_NULL(p[i]);
            fill_pattern(p[i], n, (uint64_t)i);
        }
        for (int i = 0; i < 300; i++) {
            size_t n = (size_t)i * 97 % 5000 + (i % 50 == 0 ? 200000 : 0);
            CHECK_PATTERN(p[i], n, (uint64_t)i);
            p[i] = realloc(opaque_ptr(p[i]), opaque_size(n + 100));
            CHECK_NOT_NULL(p[i]);
            CHECK_PATTERN(p[i], n, (uint64_t)i);
            free(p[i]);
        }
        void *c = calloc(100, 10);
        CHECK_NOT_NULL(c);
        CHECK_ZERO(c, 1000);
        free(c);
        void *a = NULL;
        CHECK(posix_memalign(&a, 256, 1000) == 0);
        CHECK_ALIGNED(a, 256);
        free(a);
        void *r = obm_raw_malloc(100), *m = obm_mem_malloc(200), *o = obm_object_malloc(300);
        CHECK(r && m && o);
        dirty(r, 1, 100);
        dirty(m, 2, 200);
        dirty(o, 3, 300);
        r = obm_raw_realloc(r, 1000);
        m = obm_mem_realloc(m, 2000);
        o = obm_object_realloc(o, 3000);
        CHECK(r && m && o);
        obm_raw_free(r);
        obm_mem_free(m);
        obm_object_free(o);
    }
    printf("child ok\n");
    return 0;
}

static int count_lines_with(const char *out, const char *a, const char *b)
{
    int count = 0;
    const char *line = out;
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char tmp[4096];
        size_t l = len < sizeof tmp - 1 ? len : sizeof tmp - 1;
        memcpy(tmp, line, l);
        tmp[l] = '\0';
        if (strstr(tmp, a) || (b && strstr(tmp, b)))
            count++;
        if (!end)
            break;
        line = end + 1;
    }
    return count;
}

#define EXPECT_CLEAN_EXIT(r, what)                                                    \
    do {                                                                              \
        char sb_[64];                                                                 \
        CHECK_MSG(WIFEXITED((r).status) && WEXITSTATUS((r).status) == 0,              \
                  "%s: child %s, stderr:\n%s", what,                                  \
                  describe_status((r).status, sb_, sizeof sb_), (r).err);             \
    } while (0)

static spawn_result r;

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "child") == 0)
        return child_main(argv[2]);

    /* Sanity: the child runs and is silent with no OBMEM_* variables. */
    spawn_self("default", (const char *const[]){NULL}, &r);
    EXPECT_CLEAN_EXIT(r, "no OBMEM_* variables");
    CHECK_MSG(r.len == 0, "stderr not empty without OBMEM_* variables:\n%s", r.err);

    /* OBMEM_SHOW_STATS=1: the table at exit. */
    spawn_self("default", (const char *const[]){"OBMEM_SHOW_STATS=1", NULL}, &r);
    EXPECT_CLEAN_EXIT(r, "OBMEM_SHOW_STATS=1");
    CHECK_MSG(has_line(r.err, "obmem statistics", NULL, NULL),
              "OBMEM_SHOW_STATS=1: no line starting \"obmem statistics\" in stderr:\n%s", r.err);
    CHECK_MSG(count_lines_with(r.err, "obmem statistics", NULL) == 1,
              "OBMEM_SHOW_STATS=1: the table printed %d times",
              count_lines_with(r.err, "obmem statistics", NULL));
    CHECK_MSG(r.len > 200, "OBMEM_SHOW_STATS=1: only %zu bytes:\n%s", r.len, r.err);
    printf("OBMEM_SHOW_STATS=1 ok\n");

    /* OBMEM_SHOW_STATS=0: off, silent. A bad value: one line, default (off). */
    spawn_self("default", (const char *const[]){"OBMEM_SHOW_STATS=0", NULL}, &r);
    EXPECT_CLEAN_EXIT(r, "OBMEM_SHOW_STATS=0");
    CHECK_MSG(r.len == 0, "OBMEM_SHOW_STATS=0: unexpected stderr:\n%s", r.err);
    spawn_self("default", (const char *const[]){"OBMEM_SHOW_STATS=banana", NULL}, &r);
    EXPECT_CLEAN_EXIT(r, "OBMEM_SHOW_STATS=banana");
    int lines = count_lines_with(r.err, "OBMEM_SHOW_STATS", "banana");
    CHECK_MSG(lines == 1, "OBMEM_SHOW_STATS=banana: %d lines of stderr name it (expected 1):\n%s",
              lines, r.err);
    CHECK_MSG(!has_line(r.err, "obmem statistics", NULL, NULL),
              "OBMEM_SHOW_STATS=banana: the default (off) is not used:\n%s", r.err);
    printf("OBMEM_SHOW_STATS=0 / bad value ok\n");

    /* Every valid OBMEM_MALLOC mode runs a correct program silently; the
     * debug modes install the debug hooks (the child checks they are on). */
    static const char *const modes[] = {"pymalloc", "malloc", "debug", "pymalloc_debug",
                                        "malloc_debug"};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        char kv[64];
        snprintf(kv, sizeof kv, "OBMEM_MALLOC=%s", modes[i]);
        spawn_self(i == 0 ? "default" : strstr(modes[i], "debug") ? "debughooks" : "other",
                    (const char *const[]){kv, NULL}, &r);
        EXPECT_CLEAN_EXIT(r, kv);
        CHECK_MSG(r.len == 0, "%s: unexpected stderr:\n%s", kv, r.err);
    }
    printf("OBMEM_MALLOC modes ok\n");

    spawn_self("default", (const char *const[]){"OBMEM_MALLOC=bogus_mode", NULL}, &r);
    EXPECT_CLEAN_EXIT(r, "OBMEM_MALLOC=bogus_mode");
    lines = count_lines_with(r.err, "OBMEM_MALLOC", "bogus_mode");
    CHECK_MSG(lines == 1, "OBMEM_MALLOC=bogus_mode: %d lines of stderr name it (expected 1):\n%s",
              lines, r.err);
    printf("bad OBMEM_MALLOC ok\n");

    /* The gc thresholds (needs obm_gc_get_threshold). */
    spawn_self("gcdefault", (const char *const[]){NULL}, &r);
    EXPECT_CLEAN_EXIT(r, "default gc thresholds");
    spawn_self("gc100", (const char *const[]){"OBMEM_GC_THRESHOLD=100,5,3", NULL}, &r);
    EXPECT_CLEAN_EXIT(r, "OBMEM_GC_THRESHOLD=100,5,3");
    CHECK_MSG(r.len == 0, "OBMEM_GC_THRESHOLD=100,5,3: unexpected stderr:\n%s", r.err);
    printf("OBMEM_GC_THRESHOLD ok\n");

    /* Bad values: reported once, default used, no crash. */
    struct {
        const char *kv, *name, *value;
    } bad[] = {
        {"OBMEM_GC_THRESHOLD=abc,def", "OBMEM_GC_THRESHOLD", "abc,def"},
        {"OBMEM_GC_THRESHOLD=12x", "OBMEM_GC_THRESHOLD", "12x"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        spawn_self("gcdefault", (const char *const[]){bad[i].kv, NULL}, &r);
        EXPECT_CLEAN_EXIT(r, bad[i].kv);
        lines = count_lines_with(r.err, bad[i].name, bad[i].value);
        CHECK_MSG(lines == 1, "%s: %d lines of stderr name it (expected exactly 1):\n%s",
                  bad[i].kv, lines, r.err);
    }
    printf("bad OBMEM_GC_THRESHOLD ok\n");
    printf("test_malloc_env: all ok\n");
    return 0;
}
