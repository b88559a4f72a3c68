/*
 * Statistics (docs/API.md 2.5): obm_get_stats and obm_print_stats.
 * - the class table lists obmem's 96 size classes in order;
 * - allocating 1000 blocks of 600 bytes adds 1000 blocks in use to the
 *   640-byte class and about 640000 to bytes_in_use; freeing them takes both
 *   back; a large block shows in large_blocks / large_bytes / bytes_in_use;
 * - arenas_in_use == arenas_allocated - arenas_freed; 64 MiB of small blocks
 *   need >= 256 arenas of 256 KiB; peak_mapped >= bytes_mapped >= bytes in
 *   use; pools of a class cover its blocks;
 * - bytes lost: 16 KiB of header per arena and 64 bytes per large block,
 *   each pool's tail (32 bytes for 112-byte blocks), the padding before an
 *   over-aligned large block (back to the same figure once it is freed);
 * - obm_print_stats(fd) writes a table starting "obmem statistics" to fd.
 */
#include "test_util.h"

static void check_invariants(const obm_stats *st, const char *when)
{
    CHECK_MSG(st->arenas_in_use == st->arenas_allocated - st->arenas_freed,
              "%s: arenas in use %zu, allocated %zu, freed %zu", when, st->arenas_in_use,
              st->arenas_allocated, st->arenas_freed);
    CHECK_MSG(st->peak_mapped >= st->bytes_mapped, "%s: peak_mapped %zu < bytes_mapped %zu", when,
              st->peak_mapped, st->bytes_mapped);
    CHECK_MSG(st->bytes_mapped >= st->bytes_in_use, "%s: bytes_mapped %zu < bytes_in_use %zu",
              when, st->bytes_mapped, st->bytes_in_use);
    CHECK_MSG(st->bytes_mapped >= st->arenas_in_use * (256u << 10),
              "%s: bytes_mapped %zu < %zu arenas of 256 KiB", when, st->bytes_mapped,
              st->arenas_in_use);
    CHECK_MSG(st->bytes_in_use >= st->large_bytes, "%s: bytes_in_use %zu < large_bytes %zu", when,
              st->bytes_in_use, st->large_bytes);
    size_t small_bytes = 0;
    for (size_t i = 0; i < st->num_classes; i++) {
        const obm_class_stats *c = &st->classes[i];
        small_bytes += c->blocks_in_use * c->block_size;
        /* A pool is at least 16 KiB: pools * 16 KiB holds every block. */
        CHECK_MSG((c->blocks_in_use + c->blocks_free) * c->block_size <= c->pools * 16384 * 16,
                  "%s: class %zu has %zu used + %zu free blocks in %zu pools", when,
                  c->block_size, c->blocks_in_use, c->blocks_free, c->pools);
        CHECK_MSG(c->blocks_in_use == 0 || c->pools > 0, "%s: class %zu: %zu blocks, no pool",
                  when, c->block_size, c->blocks_in_use);
    }
    /* bytes_in_use may count requested or block bytes: about the same. */
    CHECK_MSG(small_bytes + st->large_bytes >= st->bytes_in_use / 2 &&
                  small_bytes <= 2 * st->bytes_in_use + (1u << 20),
              "%s: class blocks hold %zu bytes, large %zu, bytes_in_use %zu", when, small_bytes,
              st->large_bytes, st->bytes_in_use);
}

int main(void)
{
    check_obmem_is_malloc();
    obm_stats st = stats_now();
    CHECK_EQ(st.num_classes, T_NUM_CLASSES);
    CHECK_LE(st.num_classes, sizeof st.classes / sizeof st.classes[0]);
    for (size_t i = 0; i < st.num_classes; i++)
        CHECK_MSG(st.classes[i].block_size == expected_class_size(i),
                  "classes[%zu].block_size = %zu, expected %zu", i, st.classes[i].block_size,
                  expected_class_size(i));
    check_invariants(&st, "start");

    /* 1000 x malloc(600) -> class 640. */
    long ci = stats_class_index(&st, 640);
    CHECK(ci >= 0);
    enum { N = 1000 };
    static void *p[N];
    obm_stats b = stats_now();
    for (int i = 0; i < N; i++) {
        p[i] = malloc(opaque_size(600));
        CHECK_NOT_NULL(p[i]);
    }
    obm_stats a = stats_now();
    check_invariants(&a, "after 1000 x 600");
    size_t dblocks = a.classes[ci].blocks_in_use - b.classes[ci].blocks_in_use;
    CHECK_MSG(dblocks == N, "1000 malloc(600): 640-byte class blocks_in_use %zu -> %zu",
              b.classes[ci].blocks_in_use, a.classes[ci].blocks_in_use);
    size_t dbytes = a.bytes_in_use - b.bytes_in_use;
    CHECK_MSG(dbytes >= N * 600 && dbytes <= N * 640 + 4096,
              "1000 malloc(600): bytes_in_use %zu -> %zu (+%zu)", b.bytes_in_use, a.bytes_in_use,
              dbytes);
    CHECK_GE(a.classes[ci].pools, 1);
    for (int i = 0; i < N; i++)
        free(p[i]);
    obm_stats c = stats_now();
    CHECK_MSG(c.classes[ci].blocks_in_use == b.classes[ci].blocks_in_use,
              "after free: 640-byte class blocks_in_use %zu, was %zu",
              c.classes[ci].blocks_in_use, b.classes[ci].blocks_in_use);
    CHECK_MSG(c.bytes_in_use == b.bytes_in_use, "after free: bytes_in_use %zu, was %zu",
              c.bytes_in_use, b.bytes_in_use);
    printf("class counters ok\n");

    /* A large block. */
    b = stats_now();
    void *big = malloc(opaque_size(3u << 20));
    CHECK_NOT_NULL(big);
    a = stats_now();
    check_invariants(&a, "with a 3 MiB block");
    CHECK_EQ(a.large_blocks, b.large_blocks + 1);
    CHECK_MSG(a.large_bytes - b.large_bytes >= (3u << 20) &&
                  a.large_bytes - b.large_bytes <= (3u << 20) + 4096,
              "large_bytes %zu -> %zu for a 3 MiB block", b.large_bytes, a.large_bytes);
    CHECK_MSG(a.bytes_in_use - b.bytes_in_use >= (3u << 20) &&
                  a.bytes_in_use - b.bytes_in_use <= (3u << 20) + 4096,
              "bytes_in_use %zu -> %zu for a 3 MiB block", b.bytes_in_use, a.bytes_in_use);
    free(big);
    c = stats_now();
    CHECK_EQ(c.large_blocks, b.large_blocks);
    CHECK_EQ(c.large_bytes, b.large_bytes);
    CHECK_EQ(c.bytes_in_use, b.bytes_in_use);
    /* An over-aligned large block loses the bytes before it. */
    void *al = NULL;
    CHECK(posix_memalign(&al, 1u << 20, 1u << 20) == 0);
    a = stats_now();
    CHECK_GT(a.bytes_lost_alignment, c.bytes_lost_alignment);
    CHECK_LE(a.bytes_lost_alignment - c.bytes_lost_alignment, 1u << 20);
    free(al);
    b = stats_now();
    CHECK_EQ(b.bytes_lost_alignment, c.bytes_lost_alignment);
    printf("large counters ok\n");

    /* 64 MiB of 100-byte blocks: >= 256 arenas, peak follows. */
    enum { M = (64 << 20) / 112 };
    void **many = malloc(sizeof(void *) * M);
    CHECK_NOT_NULL(many);
    b = stats_now();
    for (size_t i = 0; i < M; i++) {
        many[i] = malloc(opaque_size(100));
        CHECK_NOT_NULL(many[i]);
    }
    a = stats_now();
    check_invariants(&a, "with 64 MiB of small blocks");
    CHECK_MSG(a.arenas_in_use >= b.arenas_in_use + 256,
              "64 MiB of 112-byte blocks: arenas_in_use %zu -> %zu", b.arenas_in_use,
              a.arenas_in_use);
    CHECK_GE(a.arenas_allocated, b.arenas_allocated + 256);
    CHECK_GE(a.bytes_mapped, b.bytes_in_use + (64u << 20));
    CHECK_GE(a.bytes_in_use, b.bytes_in_use + (size_t)M * 100);
    long c112 = stats_class_index(&a, 112);
    CHECK(c112 >= 0);
    CHECK_EQ(a.classes[c112].blocks_in_use - b.classes[c112].blocks_in_use, M);
    CHECK_GE(a.classes[c112].pools, (size_t)M * 112 / 16384);
    /* Lost bytes: a 16 KiB header unit per arena and 64 bytes per large
     * block; a 16 KiB pool of 112-byte blocks wastes 16384 % 112 = 32. The
     * growing heap also gave back the empty pools the cases above left
     * (a few, each wasting under 16 KiB), whose waste no longer counts. */
    CHECK_EQ(a.bytes_lost_headers, a.arenas_in_use * 16384 + a.large_blocks * 64);
    size_t dq = a.bytes_lost_quantization - b.bytes_lost_quantization;
    size_t dpools = a.classes[c112].pools - b.classes[c112].pools;
    CHECK_MSG(dq + 64 * 1024 >= dpools * 32 && dq <= dpools * 32 + 64 * 1024,
              "quantization grew by %zu for %zu new 112-byte pools", dq, dpools);
    size_t peak = a.peak_mapped;
    for (size_t i = 0; i < M; i++)
        free(many[i]);
    c = stats_now();
    check_invariants(&c, "after freeing 64 MiB of small blocks");
    CHECK_EQ(c.classes[c112].blocks_in_use, b.classes[c112].blocks_in_use);
    CHECK_LE(abs_diff(c.bytes_in_use, b.bytes_in_use), 4096);
    CHECK_GE(c.peak_mapped, peak);
    /* Empty arenas are kept for the purge delay (OBMEM_PURGE_DELAY_MS), at
     * most three quarters of the peak of them: they count as kept for reuse;
     * obm_trim gives them back, and then most of the 256 go. */
    CHECK_GT(c.bytes_kept, 0);
    CHECK_GT(obm_trim(), 0);
    c = stats_now();
    CHECK_MSG(c.arenas_in_use <= b.arenas_in_use + 64 || c.arenas_freed >= b.arenas_freed + 192,
              "after freeing every block: arenas_in_use %zu (was %zu), freed %zu (was %zu)",
              c.arenas_in_use, b.arenas_in_use, c.arenas_freed, b.arenas_freed);
    free(many);
    printf("arena counters ok\n");

    /* obm_print_stats to a pipe. */
    int fds[2];
    CHECK(pipe(fds) == 0);
    obm_print_stats(fds[1]);
    close(fds[1]);
    static char buf[1 << 16];
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    close(fds[0]);
    CHECK_MSG(strncmp(buf, "obmem statistics", 16) == 0, "obm_print_stats starts with: %.80s",
              buf);
    CHECK_GT(len, 200);
    /* The table mentions the 640-byte class. */
    CHECK_MSG(strstr(buf, "640") != NULL, "no 640 in the table:\n%s", buf);
    printf("obm_print_stats ok\n");
    printf("test_malloc_stats: all ok\n");
    return 0;
}
