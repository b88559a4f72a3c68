/*
 * race_large_move: realloc moving large blocks in several threads at once.
 *
 * Found by fault_fork_threads (a hammer thread's realloc aborted with
 * "obmem: realloc(): invalid pointer"). When a large block cannot grow in
 * place, large.rs moves its pages to a new reservation with
 * mremap(MREMAP_FIXED) and only then clears the arena-map entry of the old
 * chunk. Between the two, the old address range is free: another thread's
 * new large mapping (same size: the same over-mapped hole) can land on
 * exactly that chunk and register it, and the late clear then erases the
 * other thread's registration, so its next free or realloc reports an
 * invalid pointer and aborts.
 *
 * Each thread loops: a block of S bytes (above the 32 MiB cache limit, so
 * every allocation is a fresh mapping), one byte written at each end, grown
 * to 2S with realloc (moved unless the pages after it happen to be free),
 * both bytes checked, freed. The blocks are never touched beyond a page,
 * so this costs address space, not memory. Any abort fails the test.
 * A second phase does the same with cached sizes (1-3 MiB).
 */
#include "fault_util.h"

#include <stdatomic.h>

enum { THREADS = 4 };
static double seconds = 1.0;
static atomic_long moves, loops;

static void *big_loop(void *arg)
{
    size_t s = (size_t)(uintptr_t)arg;
    double end = now_sec() + seconds;
    while (now_sec() < end) {
        for (int k = 0; k < 50; k++) {
            unsigned char *p = malloc(opaque_size(s));
            CHECK_NOT_NULL(p);
            p[0] = 0x11;
            p[s - 1] = 0x22;
            unsigned char *q = realloc(opaque_ptr(p), opaque_size(2 * s));
            CHECK_NOT_NULL(q);
            CHECK_EQ(q[0], 0x11);
            CHECK_EQ(q[s - 1], 0x22);
            if (q != p)
                atomic_fetch_add_explicit(&moves, 1, memory_order_relaxed);
            q[2 * s - 1] = 0x33;
            free(q);
            atomic_fetch_add_explicit(&loops, 1, memory_order_relaxed);
        }
    }
    return NULL;
}

static void phase(size_t s, const char *what)
{
    atomic_store(&moves, 0);
    atomic_store(&loops, 0);
    uthread t[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK_EQ(uthread_create(&t[i], big_loop, (void *)(uintptr_t)(s + (size_t)i * 4096)), 0);
    for (int i = 0; i < THREADS; i++)
        uthread_join(&t[i]);
    printf("  %s: %ld realloc loops, %ld moved\n", what, atomic_load(&loops),
           atomic_load(&moves));
    CHECK_GT(atomic_load(&moves), 0);
}

int main(void)
{
    check_obmem_is_malloc();
    const char *full = getenv("FAULTS_FULL");
    if (full && *full == '1')
        seconds = 20;
    obm_stats base = stats_now();
    phase(33 * MiB, "33 MiB -> 66 MiB (fresh mappings)");
    phase(MiB + 12345, "1 MiB -> 2 MiB (cached mappings)");
    obm_stats st = stats_now();
    CHECK_EQ(st.large_blocks, base.large_blocks);
    printf("summary: race_large_move ok\n");
    return 0;
}
