/* OBMEM_ARENA_HUGEPAGES (docs/API.md section 10): with `1`, the batches of
 * arenas obmem maps ask the kernel for transparent huge pages
 * (MADV_HUGEPAGE, which /proc/self/smaps shows as the `hg` flag of the
 * mapping) and are aligned to a huge page; without it, or with `0`, they
 * do not; a bad value gets one warning and the default (off).
 * Whether the kernel then backs the range with huge pages depends on its
 * THP mode and free memory, so the test checks the advice, which obmem
 * controls, not the backing. Each case runs in a fresh process (the
 * variable is read when the library is loaded). */
#include "test_util.h"

#define MiB ((size_t)1024 * 1024)
#define HUGE_PAGE (2 * MiB)

/* Small blocks enough to need a fresh batch of arenas; the mapping holding
 * the last one is a batch (4 MiB) or part of one merged with neighbours. */
static void check_arenas(int want_advised)
{
    enum { N = 40000 };
    static void *blocks[N];
    for (size_t i = 0; i < N; i++) {
        blocks[i] = malloc(200);
        CHECK_NOT_NULL(blocks[i]);
        dirty(blocks[i], 1, 200);
    }
    uintptr_t start = 0;
    const char *flags = smaps_vmflags_of(blocks[N - 1], &start);
    CHECK_MSG(flags != NULL, "block %p not in /proc/self/smaps", blocks[N - 1]);
    int advised = strstr(flags, " hg") != NULL;
    CHECK_MSG(advised == want_advised, "mapping at %#lx: hg flag %d, want %d",
              (unsigned long)start, advised, want_advised);
    if (want_advised)
        CHECK_MSG(start % HUGE_PAGE == 0, "advised mapping at %#lx not 2 MiB aligned",
                  (unsigned long)start);
    for (size_t i = 0; i < N; i++)
        free(blocks[i]);
}

static void child(const char *mode)
{
    if (strcmp(mode, "on") == 0)
        check_arenas(1);
    else if (strcmp(mode, "off") == 0)
        check_arenas(0);
    else
        FAIL("unknown mode %s", mode);
}

int main(int argc, char **argv)
{
    if (run_as_child(argc, argv, child))
        return 0;
    check_obmem_is_malloc();
    spawn_self_ok("on", (const char *const[]){"OBMEM_ARENA_HUGEPAGES=1", NULL});
    spawn_self_ok("off", (const char *const[]){"OBMEM_ARENA_HUGEPAGES=0", NULL});
    spawn_self_ok("off", (const char *const[]){NULL});
    printf("advice given with 1, not with 0 or unset ok\n");

    const char *bad[] = {"OBMEM_ARENA_HUGEPAGES=yes", "OBMEM_ARENA_HUGEPAGES=2",
                         "OBMEM_ARENA_HUGEPAGES=-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        check_bad_env("off", bad[i], "OBMEM_ARENA_HUGEPAGES", "0");
    printf("bad OBMEM_ARENA_HUGEPAGES ok\n");
    printf("test_arena_hugepages: all ok\n");
    return 0;
}
