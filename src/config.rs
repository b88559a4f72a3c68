//! Sizes and limits of the allocator, gathered in one place.
//!
//! Every invariant the rest of the crate relies on is checked here at compile
//! time, so changing a tunable either keeps the allocator correct or fails to
//! build.

/// Every block is aligned to this, and every size class is a multiple of it.
pub(crate) const ALIGNMENT: usize = 16;
pub(crate) const ALIGNMENT_SHIFT: u32 = 4;

/// An arena: the unit obtained from the OS, aligned to its own size so that
/// the arena of any block is `addr & !ARENA_MASK`.
pub(crate) const ARENA_SHIFT: u32 = 18;
pub(crate) const ARENA_SIZE: usize = 1 << ARENA_SHIFT; // 256 KiB
pub(crate) const ARENA_MASK: usize = ARENA_SIZE - 1;

/// A pool unit: arenas are cut into `UNITS_PER_ARENA` units of this size.
/// Unit 0 holds the arena header; a pool spans one or more of the others.
pub(crate) const UNIT_SHIFT: u32 = 14;
pub(crate) const UNIT_SIZE: usize = 1 << UNIT_SHIFT; // 16 KiB, pymalloc's pool size
pub(crate) const UNITS_PER_ARENA: usize = ARENA_SIZE / UNIT_SIZE; // 16
/// Units 1..UNITS_PER_ARENA can hold pools.
pub(crate) const USABLE_UNITS: usize = UNITS_PER_ARENA - 1;

/// Small classes step by 16 bytes up to this size (pymalloc on 64-bit).
pub(crate) const SMALL_MAX: usize = 512;
pub(crate) const SMALL_CLASSES: usize = SMALL_MAX / ALIGNMENT; // 32
/// Medium classes: this many per power of two, so a block wastes at most
/// 1/(MEDIUM_STEPS+1) of its size (11.1%).
pub(crate) const MEDIUM_STEPS_SHIFT: u32 = 3;
pub(crate) const MEDIUM_STEPS: usize = 1 << MEDIUM_STEPS_SHIFT; // 8
/// The largest size served from pools; above it a block is mapped on its own.
pub(crate) const MEDIUM_MAX_SHIFT: u32 = 17;
pub(crate) const MEDIUM_MAX: usize = 1 << MEDIUM_MAX_SHIFT; // 128 KiB
pub(crate) const MEDIUM_CLASSES: usize =
    (MEDIUM_MAX_SHIFT as usize - SMALL_MAX.trailing_zeros() as usize) * MEDIUM_STEPS; // 64
pub(crate) const NUM_CLASSES: usize = SMALL_CLASSES + MEDIUM_CLASSES; // 96

/// The OS page size the allocator assumes (x86-64 and aarch64 Linux with 4 KiB pages).
pub(crate) const PAGE_SIZE: usize = 4096;

/// Arenas are reserved from the OS this many at a time, so that aligning
/// them costs one over-sized mmap per batch rather than one per arena.
pub(crate) const ARENA_BATCH: usize = 16; // 4 MiB
/// A transparent huge page of x86-64 and most 64-bit Linux targets: what
/// mappings that ask for huge pages are aligned to.
pub(crate) const HUGE_PAGE_SIZE: usize = 2 << 20;
/// Empty arenas kept mapped (pages discarded) for reuse before unmapping.
pub(crate) const ARENA_RETAIN_MAX: usize = 256; // 64 MiB of address space, no RSS
/// The default of `OBMEM_PURGE_DELAY_MS`: free pages unused this long go
/// back to the OS (see purge.rs). Chosen by measurement (BENCHMARKS.md,
/// "Choosing the default delay"): shorter delays make programs with big
/// blocks map and fault them again (malloc-large: 3× slower at 100 ms),
/// and save memory only while the program is active.
/// jemalloc's dirty_decay_ms is 10 s, mimalloc's purge delay 10 ms (v2).
pub(crate) const PURGE_DELAY_MS_DEFAULT: u64 = 1000;
/// Whatever the delay, the process keeps at most this many free pool
/// units with their pages, or three quarters of its peak of units in
/// pools since the last purge if that is more; beyond it, the heap that
/// finds the bound exceeded gives half of its own back at once. So a burst
/// does not pin its whole peak (purge.rs).
pub(crate) const KEEP_MIN_UNITS: usize = 4096; // 64 MiB
/// A pool holds at least this many blocks where an arena has room: with
/// fewer, the pools of the big medium classes would be made and unmade
/// with almost every block (BENCHMARKS.md, "Medium pools of four blocks").
pub(crate) const MIN_POOL_BLOCKS: usize = 4;
/// The pools of the classes above 512 B up to 1 KiB hold at least this
/// many blocks (3 to 5 units): in pools of one unit (16 to 28 blocks), a
/// class with a few dozen live blocks had its free blocks spread over
/// several pools, and its queue head ran dry every few allocations
/// (BENCHMARKS.md, "Pools of 64 blocks from 512 B to 1 KiB").
pub(crate) const MIN_DIRECT_POOL_BLOCKS: usize = 64;
/// A heap keeps up to this many empty pools per class in the queue beyond
/// the head, for classes whose pools hold at most `KEEP_EMPTY_CAPACITY`
/// blocks: their pools empty and fill again all the time, and releasing
/// and remaking them dominated a ring of 1-64 KiB blocks.
pub(crate) const KEEP_EMPTY_POOLS: u8 = 2;
pub(crate) const KEEP_EMPTY_CAPACITY: u32 = 16;
/// The kept pools of a heap, all classes together, hold at most this many
/// units (4 MiB): with it, realloc growth through every class peaks at
/// 42.3 MB instead of 50.4; with half of it, the 1-64 KiB ring, which
/// cycles through 48 classes, took 11% more instructions (BENCHMARKS.md,
/// eleventh session).
pub(crate) const KEEP_EMPTY_UNITS: usize = 256;
/// One empty pool is kept beyond the head for the classes of one-unit pools
/// of at most this many blocks (256 to 512 bytes; `keep_empty_limit`).
pub(crate) const KEEP_ONE_EMPTY_CAPACITY: u32 = 64;

/// While free pages wait for their delay, a thread looks at the clock
/// every this many times it frees the last block of a queue head (see
/// `Heap::purge_tick`).
pub(crate) const PURGE_TICK_EVERY: u32 = 8;

/// Slots of a heap's cache of other heaps' pools it frees blocks into
/// (`Heap::remote_pool`): 4 MiB of units, 4 KiB per heap.
pub(crate) const REMOTE_SLOTS: usize = 256;

/// Slots of a heap's direct-mapped cache from unit to pool, which lets
/// `free` of a block of the calling thread skip the global arena map and
/// the arena header: 16,384 consecutive units (256 MiB) map to distinct
/// slots, and a free that finds its unit evicted enters it again. 256 KiB
/// of each heap's address space; only the slots used are touched. (With
/// 4096 slots, 64 MiB, a ring of 1,000 live blocks of 32-128 KiB took the
/// general path on a third of its frees: BENCHMARKS.md, tenth session.)
pub(crate) const UNIT_SLOTS: usize = 16384;

/// Large blocks (above MEDIUM_MAX) of up to this size, aligned to at most
/// a granule, are spans of whole granules in regions of reserved address
/// space, whose free granules keep their pages for reuse
/// (large/region.rs); bigger ones, and more aligned ones, get a mapping of
/// their own.
pub(crate) const LARGE_SPAN_MAX: usize = 32 << 20;
/// The unit of a span (mimalloc's slice size).
pub(crate) const LARGE_GRANULE: usize = 64 << 10;
/// Address space reserved per region (no memory until written), or, where
/// RLIMIT_AS refuses that, half as much, down to what the span needs.
pub(crate) const LARGE_REGION_SIZE: usize = 1 << 30;
/// Regions at most (64 GiB of address space); beyond, large blocks get
/// mappings of their own.
pub(crate) const LARGE_REGIONS: usize = 64;
/// Free granules keep their pages for the purge delay while the resident
/// free bytes stay under this or the most bytes of live large blocks since
/// free granules last expired (recent demand), whichever is more; beyond
/// it, as many bytes of the older free granules' pages go back at once.
pub(crate) const LARGE_KEEP_MIN: usize = 8 << 20;
/// Freed spans of blocks of up to 1 MiB are cached whole for the next
/// block of the same span (a thread's `SpanCache`, the regions' cache):
/// with the 64-byte header, 17 granules. (At 16, a buffer of exactly 1
/// MiB missed both caches: 140 ns a free and malloc against 22:
/// BENCHMARKS.md, eighteenth session.)
pub(crate) const LARGE_CACHED_GRANULES: usize = ((1 << 20) + 64usize).div_ceil(LARGE_GRANULE);

/// Requests above this fail with ENOMEM (PTRDIFF_MAX, as glibc).
pub(crate) const MAX_REQUEST: usize = isize::MAX as usize;

// The invariants the design relies on.
const _: () = assert!(
    ARENA_SIZE.is_multiple_of(UNIT_SIZE),
    "arena not a whole number of units"
);
const _: () = assert!(UNITS_PER_ARENA <= 16, "the unit bitmap is a u16");
const _: () = assert!(SMALL_MAX.is_multiple_of(ALIGNMENT));
const _: () = assert!(SMALL_MAX.is_power_of_two());
const _: () = assert!(
    MEDIUM_MAX <= USABLE_UNITS * UNIT_SIZE,
    "largest class must fit an arena"
);
const _: () = assert!(UNIT_SIZE.is_multiple_of(PAGE_SIZE));
const _: () = assert!(
    LARGE_REGION_SIZE.is_power_of_two()
        && LARGE_SPAN_MAX + ARENA_SIZE <= LARGE_REGION_SIZE
        && ARENA_SIZE.is_multiple_of(LARGE_GRANULE)
        && LARGE_GRANULE.is_multiple_of(PAGE_SIZE),
    "a region holds its bookkeeping chunk and the largest span"
);
const _: () = assert!(ALIGNMENT == 1 << ALIGNMENT_SHIFT);
const _: () = assert!(NUM_CLASSES <= 255, "class index is stored in a u8");

/// The debug hooks' quarantine of freed blocks: at most this many blocks and
/// bytes wait before going back to the allocator; blocks above the last
/// bound are checked and released at once (their pages are unmapped or
/// reused as a whole, so a stale write is unlikely to go unnoticed anyway).
pub(crate) const QUARANTINE_BLOCKS: usize = 4096;
pub(crate) const QUARANTINE_BYTES: usize = 16 << 20;
pub(crate) const QUARANTINE_MAX_BLOCK: usize = 1 << 20;

/// The largest sample interval of the heap profiler (`obm_prof_start`,
/// `OBMEM_PROF`): 1 TiB.
pub(crate) const PROF_MAX_SAMPLE_BYTES: usize = 1 << 40;
/// The longest `OBMEM_PROF_DUMP` prefix (the file name adds `.<pid>.folded`).
pub(crate) const PROF_DUMP_PREFIX_MAX: usize = 4000;
