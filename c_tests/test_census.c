/*
 * test_census.c: obm_census against counts the test keeps itself.
 *
 * Objects of four types (plain, GC, with a finalizer, variable-size) are
 * created and destroyed at random; after each round the census must give,
 * per type, exactly the live objects and the sum of their blocks' usable
 * sizes (obm_usable_size of the block, which starts 16 bytes before the
 * object for GC types and types with a finalizer), sorted by bytes, most
 * first; obm_census(NULL, 0) counts the types, a short buffer gets the
 * first rows and the full count; the census section of obm_print_stats's
 * table, and of the table OBMEM_SHOW_STATS=1 prints at exit (in a child
 * run again, which reports the counts it keeps), has exactly those rows.
 */
#include "test_util.h"

typedef struct { OBM_OBJECT_HEAD long v[3]; } Obj;

static int no_traverse(obm_object *o, obm_visitproc v, void *a) { (void)o; (void)v; (void)a; return 0; }
static void fin(obm_object *o) { (void)o; }

enum { NTYPES = 4 };
static const obm_type types[NTYPES] = {
    { "Plain", sizeof(Obj), 0, 0, 0, 0, 0 },
    { "GcThing", sizeof(Obj), OBM_TPFLAGS_HAVE_GC, 0, 0, no_traverse, 0 },
    { "Finalized", sizeof(Obj) + 40, 0, fin, 0, 0, 0 },
    { "VarSized", sizeof(Obj), 0, 0, 0, 0, 0 },
};
static const size_t prefix[NTYPES] = { 0, 16, 16, 0 };

enum { N = 3000 };
static obm_object *objs[N];
static int kind[N];

/* The live objects and bytes per type, as the test counts them. */
static void wanted(size_t want_objects[NTYPES], size_t want_bytes[NTYPES])
{
    for (int t = 0; t < NTYPES; t++)
        want_objects[t] = want_bytes[t] = 0;
    for (int i = 0; i < N; i++) {
        if (!objs[i])
            continue;
        want_objects[kind[i]]++;
        want_bytes[kind[i]] += obm_usable_size((char *)objs[i] - prefix[kind[i]]);
    }
}

/* The census section of a statistics table `text`: its header once, then
 * one row "  NAME OBJECTS BYTES" per live type, most bytes first, with the
 * wanted counts, and no other row. */
static void check_table(const char *text, const size_t want_objects[NTYPES],
                        const size_t want_bytes[NTYPES])
{
    const char *header = "objects by type          objects          bytes\n";
    const char *at = strstr(text, header);
    size_t live_types = 0;
    for (int t = 0; t < NTYPES; t++)
        live_types += want_objects[t] != 0;
    if (live_types == 0) {
        CHECK_MSG(!at, "a census section without objects:\n%s", text);
        return;
    }
    CHECK_MSG(at && !strstr(at + 1, header), "not one census section:\n%s", text);
    const char *line = at + strlen(header);
    int seen[NTYPES] = { 0 };
    size_t rows = 0, last_bytes = SIZE_MAX;
    char name[64];
    size_t objects, bytes;
    int len;
    while (strncmp(line, "  ", 2) == 0 &&
           sscanf(line, " %63s %zu %zu%n", name, &objects, &bytes, &len) == 3) {
        int t = 0;
        while (t < NTYPES && strcmp(types[t].name, name) != 0)
            t++;
        CHECK_MSG(t < NTYPES && !seen[t], "census row %zu: unknown or repeated type %s", rows, name);
        seen[t] = 1;
        CHECK_MSG(objects == want_objects[t] && bytes == want_bytes[t],
                  "census row %s: %zu objects, %zu bytes; the test counts %zu, %zu", name, objects,
                  bytes, want_objects[t], want_bytes[t]);
        CHECK_LE(bytes, last_bytes);
        last_bytes = bytes;
        rows++;
        line += len;
        CHECK_EQ(*line, '\n');
        line++;
    }
    CHECK_MSG(rows == live_types, "%zu census rows for %zu live types:\n%s", rows, live_types, at);
}

static void check(void)
{
    size_t want_objects[NTYPES], want_bytes[NTYPES];
    size_t live_types = 0;
    wanted(want_objects, want_bytes);
    for (int t = 0; t < NTYPES; t++)
        live_types += want_objects[t] != 0;
    CHECK_EQ(obm_census(NULL, 0), live_types);
    obm_type_census rows[8];
    size_t n = obm_census(rows, 8);
    CHECK_EQ(n, live_types);
    for (size_t r = 0; r < n; r++) {
        int t = (int)(rows[r].type - types);
        CHECK_MSG(t >= 0 && t < NTYPES, "row %zu has an unknown type", r);
        CHECK_EQ(rows[r].objects, want_objects[t]);
        CHECK_EQ(rows[r].bytes, want_bytes[t]);
        if (r > 0)
            CHECK_LE(rows[r].bytes, rows[r - 1].bytes);
    }
    if (n >= 2) {
        obm_type_census one[1];
        CHECK_EQ(obm_census(one, 1), n);
        CHECK(one[0].type == rows[0].type && one[0].bytes == rows[0].bytes);
    }
}

/* Creates and destroys objects at random for `rounds` rounds, checking
 * the census after each. */
static void churn(uint64_t seed, int rounds)
{
    for (int round = 0; round < rounds; round++) {
        for (int k = 0; k < N; k++) {
            int i = (int)(rng_next(&seed) % N);
            if (objs[i]) {
                obm_decref(objs[i]);
                objs[i] = NULL;
            } else {
                int t = (int)(rng_next(&seed) % NTYPES);
                kind[i] = t;
                objs[i] = t == 3 ? obm_new_var(&types[t], rng_next(&seed) % 300000)
                                 : obm_new(&types[t]);
                CHECK_NOT_NULL(objs[i]);
                if (t == 1 && (k & 1))
                    obm_gc_track(objs[i]);
            }
        }
        check();
    }
}

/* Run again with OBMEM_SHOW_STATS=1: leaves objects live at exit and
 * reports the counts it keeps, "want NAME OBJECTS BYTES" per type. */
static void exit_child(const char *mode)
{
    CHECK(strcmp(mode, "exit-table") == 0);
    churn(15, 5);
    size_t want_objects[NTYPES], want_bytes[NTYPES];
    wanted(want_objects, want_bytes);
    for (int t = 0; t < NTYPES; t++)
        printf("want %s %zu %zu\n", types[t].name, want_objects[t], want_bytes[t]);
}

/* The table OBMEM_SHOW_STATS=1 prints at exit, against the child's counts. */
static void test_exit_table(void)
{
    static spawn_result r;
    const char *assign[] = {"OBMEM_SHOW_STATS=1", NULL};
    spawn_self("exit-table", assign, &r);
    CHECK_MSG(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0 && strstr(r.err, "exit-table ok\n"),
              "exit-table: status %d, stderr:\n%s", r.status, r.err);
    size_t want_objects[NTYPES], want_bytes[NTYPES];
    for (int t = 0; t < NTYPES; t++) {
        char key[64];
        snprintf(key, sizeof key, "want %s ", types[t].name);
        const char *at = strstr(r.err, key);
        CHECK_MSG(at && sscanf(at + strlen(key), "%zu %zu", &want_objects[t], &want_bytes[t]) == 2,
                  "exit-table: no counts for %s:\n%s", types[t].name, r.err);
        CHECK_GT(want_objects[t], 0);
    }
    const char *table = strstr(r.err, "exit-table ok\n");
    CHECK_MSG(strstr(table, "obmem statistics (pid "), "exit-table: no table at exit:\n%s", r.err);
    check_table(table, want_objects, want_bytes);
    printf("OBMEM_SHOW_STATS=1: the census rows at exit match the child's counts\n");
}

int main(int argc, char **argv)
{
    if (run_as_child(argc, argv, exit_child))
        return 0;
    CHECK_EQ(obm_census(NULL, 0), 0);
    churn(14, 20);
    /* The statistics table's census section. */
    char path[] = "/tmp/obmem_census_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    obm_print_stats(fd);
    char buf[1 << 16];
    ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
    CHECK(got > 0);
    buf[got] = 0;
    close(fd);
    unlink(path);
    size_t want_objects[NTYPES], want_bytes[NTYPES];
    wanted(want_objects, want_bytes);
    check_table(buf, want_objects, want_bytes);
    for (int i = 0; i < N; i++)
        if (objs[i]) {
            obm_decref(objs[i]);
            objs[i] = NULL;
        }
    check();
    CHECK_EQ(obm_census(NULL, 0), 0);
    /* Under memcheck /proc/self/exe is Valgrind's tool, which cannot be run
     * again directly: the child is left to the runs without it. */
    if (on_memcheck())
        printf("exit table: skipped under memcheck\n");
    else
        test_exit_table();
    return 0;
}
