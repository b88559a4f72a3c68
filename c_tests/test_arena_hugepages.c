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

/* The mapping of /proc/self/smaps that holds `p`: its start, and whether
 * its VmFlags line has `hg`. Reads with read(2) into a static buffer:
 * stdio would allocate from the allocator under test while we look. */
static int mapping_of(const void *p, uintptr_t *start, int *advised)
{
    static char buf[4 << 20];
    int fd = open("/proc/self/smaps", O_RDONLY);
    CHECK(fd >= 0);
    size_t len = 0;
    ssize_t n;
    while (len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    buf[len] = 0;
    uintptr_t a = (uintptr_t)p;
    int in = 0;
    for (char *line = buf, *next; *line; line = next) {
        next = strchr(line, '\n');
        next = next ? (*next = 0, next + 1) : line + strlen(line);
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
            in = a >= lo && a < hi;
            if (in)
                *start = lo;
        } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            *advised = strstr(line, " hg") != NULL;
            return 1;
        }
    }
    return 0;
}

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
    int advised = -1;
    CHECK_MSG(mapping_of(blocks[N - 1], &start, &advised), "block %p not in /proc/self/smaps",
              blocks[N - 1]);
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
