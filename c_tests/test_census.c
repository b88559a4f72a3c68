/*
 * test_census.c: obm_census against counts the test keeps itself.
 *
 * Objects of four types (plain, GC, with a finalizer, variable-size) are
 * created and destroyed at random; after each round the census must give,
 * per type, exactly the live objects and the sum of their blocks' usable
 * sizes (obm_usable_size of the block, which starts 16 bytes before the
 * object for GC types and types with a finalizer), sorted by bytes, most
 * first; obm_census(NULL, 0) counts the types, a short buffer gets the
 * first rows and the full count; obm_print_stats prints the table.
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

static void check(void)
{
    size_t want_objects[NTYPES] = { 0 }, want_bytes[NTYPES] = { 0 };
    size_t live_types = 0;
    for (int i = 0; i < N; i++) {
        if (!objs[i])
            continue;
        want_objects[kind[i]]++;
        want_bytes[kind[i]] += obm_usable_size((char *)objs[i] - prefix[kind[i]]);
    }
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

int main(void)
{
    uint64_t seed = 14;
    CHECK_EQ(obm_census(NULL, 0), 0);
    for (int round = 0; round < 20; round++) {
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
    /* The statistics table names the types. */
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
    CHECK_MSG(strstr(buf, "objects by type") && strstr(buf, "VarSized") && strstr(buf, "GcThing"),
              "statistics without the census: %s", buf);
    for (int i = 0; i < N; i++)
        if (objs[i]) {
            obm_decref(objs[i]);
            objs[i] = NULL;
        }
    check();
    CHECK_EQ(obm_census(NULL, 0), 0);
    return 0;
}
