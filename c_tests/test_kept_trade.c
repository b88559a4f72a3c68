/* Free memory kept for reuse does not add to what a program faults in of
 * the other kind, once that kind has been idle for a moment (docs/API.md
 * section 10, "Giving memory back"; the moment is 10 ms, and the rule that
 * both kinds count only while the other is idle is tested in purge.rs):
 * - free units of arenas, kept for the purge delay, are given back for as
 *   many bytes as a large block then takes of fresh pages: with a delay of
 *   a minute, after a burst of small blocks is freed, a 16 MiB block
 *   written in full leaves RSS within 4 MiB of where it was, and
 *   bytes_purged grows by its size;
 * - the other way round, the free pages kept for large blocks are given
 *   back as pools take fresh units: freed large blocks' kept bytes fall
 *   below 1 MiB once 16 MiB of small blocks are live, those the freeing
 *   thread keeps for its own next large blocks included;
 * - a region of large blocks asks for small pages in its first 2 MiB (the
 *   `nh` flag in /proc/self/smaps; a 256 KiB block costs 256 KiB, not a
 *   huge page) and for huge pages beyond (`hg`).
 * Each case runs in a fresh process (the delay is read when the library is
 * loaded, and RSS is a per-process figure). */
#include "test_util.h"

#define MiB ((size_t)1024 * 1024)

static obm_stats st;

static void stats(void) { obm_get_stats(&st); }

/* Longer than the 10 ms one kind must have been idle for its kept memory
 * to go to the other. */
static void pause_idle(void) { usleep(50 * 1000); }

static void case_units_for_large(void)
{
    small_blocks_free(small_blocks_alloc(48 * MiB, 7));
    stats();
    size_t kept0 = st.bytes_kept, purged0 = st.bytes_purged, rss0 = rss_bytes();
    CHECK_MSG(kept0 >= 32 * MiB, "only %zu bytes kept after a 48 MiB burst", kept0);
    pause_idle();
    unsigned char *big = malloc(16 * MiB);
    CHECK_NOT_NULL(big);
    dirty(big, 1, 16 * MiB);
    stats();
    size_t rss1 = rss_bytes();
    CHECK_MSG(st.bytes_purged - purged0 >= 16 * MiB, "purged %zu bytes for a 16 MiB block",
              st.bytes_purged - purged0);
    CHECK_MSG(kept0 - st.bytes_kept >= 15 * MiB, "kept %zu -> %zu bytes", kept0, st.bytes_kept);
    CHECK_MSG(rss1 <= rss0 + 4 * MiB, "RSS %zu -> %zu bytes", rss0, rss1);
    printf("units for large: kept %zu -> %zu MiB, RSS %zu -> %zu MiB\n", kept0 / MiB,
           st.bytes_kept / MiB, rss0 / MiB, rss1 / MiB);
    free(big);
}

/* Large blocks of `size` bytes, freed, then small blocks that take fresh
 * units: the large blocks' kept pages go back, those the freeing thread
 * keeps for its next large blocks too (blocks of up to 1 MiB with their
 * header: large/span_cache.rs). */
static void large_for_units(size_t size)
{
    enum { NB = 6 };
    void *big[NB];
    for (int i = 0; i < NB; i++) {
        big[i] = malloc(size);
        CHECK_NOT_NULL(big[i]);
        dirty(big[i], i, size);
    }
    for (int i = 0; i < NB; i++)
        free(big[i]);
    stats();
    size_t cached0 = st.large_cached_bytes, purged0 = st.bytes_purged;
    CHECK_MSG(cached0 >= 5 * size, "only %zu bytes of freed large blocks kept", cached0);
    pause_idle();
    small_blocks small = small_blocks_alloc(16 * MiB, 7);
    stats();
    CHECK_MSG(st.large_cached_bytes <= MiB, "large blocks' kept bytes %zu -> %zu", cached0,
              st.large_cached_bytes);
    CHECK_MSG(st.bytes_purged - purged0 >= cached0 - MiB, "purged %zu bytes",
              st.bytes_purged - purged0);
    printf("large for units (%zu-byte blocks): kept %zu -> %zu KiB\n", size, cached0 / 1024,
           st.large_cached_bytes / 1024);
    small_blocks_free(small);
}

static void case_large_for_units(void) { large_for_units(MiB); }
static void case_large_for_units_cached(void) { large_for_units(900 * 1000); }

/* The VmFlags line of the mapping that holds `p`. */
static const char *vmflags_of(const void *p)
{
    const char *f = smaps_vmflags_of(p, NULL);
    CHECK_MSG(f != NULL, "%p is in no mapping of /proc/self/smaps", p);
    return f;
}

static void case_region_pages(void)
{
    unsigned char *small = malloc(256 * 1024);
    CHECK_NOT_NULL(small);
    dirty(small, 1, 256 * 1024);
    const char *f = vmflags_of(small);
    CHECK_MSG(strstr(f, " nh") && !strstr(f, " hg"), "256 KiB block's mapping: %s", f);
    unsigned char *big = malloc(8 * MiB);
    CHECK_NOT_NULL(big);
    f = vmflags_of(big + 6 * MiB);
    CHECK_MSG(strstr(f, " hg") && !strstr(f, " nh"), "8 MiB block's mapping at 6 MiB: %s", f);
    free(big);
    free(small);
}

static void child(const char *mode)
{
    if (strcmp(mode, "units_for_large") == 0)
        case_units_for_large();
    else if (strcmp(mode, "large_for_units") == 0)
        case_large_for_units();
    else if (strcmp(mode, "large_for_units_cached") == 0)
        case_large_for_units_cached();
    else if (strcmp(mode, "region_pages") == 0)
        case_region_pages();
    else
        FAIL("unknown mode %s", mode);
}

int main(int argc, char **argv)
{
    if (run_as_child(argc, argv, child))
        return 0;
    check_obmem_is_malloc();
    if (debug_hooks_on()) {
        printf("test_kept_trade: skipped under the debug hooks (their quarantine keeps blocks)\n");
        return 0;
    }
    const char *const long_delay[] = {"OBMEM_PURGE_DELAY_MS=60000", NULL};
    spawn_self_ok("units_for_large", long_delay);
    spawn_self_ok("large_for_units", long_delay);
    spawn_self_ok("large_for_units_cached", long_delay);
    spawn_self_ok("region_pages", long_delay);
    printf("test_kept_trade: all ok\n");
    return 0;
}
