//! Arenas: 256 KiB chunks, aligned to their size, cut into 16 units of 16 KiB.
//!
//! Unit 0 holds the arena header: one pool descriptor per unit, the table
//! from unit to pool, the owner heap and the free-unit bitmap. Units 1..16
//! hold pools; a pool spans one unit (small classes) or a run of units
//! (medium classes), and its descriptor is the one of its first unit. So
//! the pool of any block is found by arithmetic and one table load:
//! base = p & !ARENA_MASK, unit = (p & ARENA_MASK) >> UNIT_SHIFT,
//! pool = base + unit_pool[unit].
//!
//! The header is not always at the arena's base: it is at one of `COLORS`
//! places in unit 0, chosen by the arena's address (`header_at`). Headers
//! at the same offset of 256 KiB-aligned arenas would all fall in the same
//! few sets of the caches (a 512 KiB 8-way L2 cache indexes 64 KiB), and a
//! program with hundreds of arenas would evict its own pool descriptors:
//! on a ring of 1-64 KiB blocks, 1.7 more L2 misses per malloc+free
//! (BENCHMARKS.md, seventh session), and with 8 places instead of 64, on a
//! ring of 32-128 KiB blocks (an arena per pool), about 2 more again
//! (thirteenth session).
//!
//! Invariants:
//! - `unit_pool[u]` is the byte offset from the arena's base of the
//!   descriptor of the pool holding unit `u`, and 0 while no pool holds it.
//!   The 128 bytes at offset 0 read as zero: every place of the header
//!   starts 128 bytes or more into its page, and nothing else writes them.
//!   So a pointer into a free unit
//!   resolves to a descriptor whose checks all fail. A released arena's
//!   header reads as zero throughout.
//! - Every arena belongs to one heap for its whole life in use (`owner`
//!   never changes while the arena holds pools); only that heap's thread,
//!   or a thread that has taken over an abandoned heap, touches its pools'
//!   owner-only fields and the fields below marked owner only.
//!
//! Arenas come from a global reserve, refilled from the OS `ARENA_BATCH` at a
//! time. An empty arena goes back to the reserve with its header zeroed
//! (`magic` 0 and no pool, so stale pointers into it are recognised as
//! invalid). Its free units' pages either stay resident, so that the next
//! heap to take an arena reuses them without page faults, until the purge
//! delay runs out (`purge_reserve`), or are discarded at once
//! (MADV_DONTNEED: no RSS); beyond `ARENA_RETAIN_MAX` discarded arenas are
//! unmapped. This is how a thread's freed memory serves another thread:
//! each arena belongs to one heap while it holds pools.

use crate::arena_map::{self, CHUNK_ARENA};
use crate::config::*;
use crate::counters;
use crate::os;
use crate::pool::{Pool, POOL_SIZE_SHIFT};
use crate::purge;
use crate::sync::SpinLock;
use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU16, AtomicUsize, Ordering::*};

/// Stored in `magic` while the arena is in use by a heap.
const ARENA_MAGIC: usize = 0x6f62_6d65_6d41_524e; // "obmemARN"

/// All units but unit 0 (the header).
pub(crate) const ALL_UNITS: u16 = ((1u32 << UNITS_PER_ARENA) - 2) as u16;

/// The owner of an arena, as the arena sees it: the heap's address. Arenas
/// sit below heaps, so they name their owner without knowing its type.
pub type OwnerId = *mut ();

#[repr(C)]
pub struct Arena {
    /// One descriptor per unit; descriptor 0 (the header's unit) is never used.
    pub pools: [Pool; UNITS_PER_ARENA],
    /// Unit -> byte offset of its pool's descriptor, 0 for none (shared).
    pub unit_pool: [AtomicU16; UNITS_PER_ARENA],
    /// ARENA_MAGIC while owned by a heap, 0 in the reserve (shared, relaxed).
    pub magic: AtomicUsize,
    /// The heap owning every pool of this arena (shared).
    pub owner: AtomicPtr<()>,
    /// Bit i set: unit i is free. Owner only, like the fields below.
    pub free_units: Cell<u16>,
    /// Bit i set: unit i is free and a pool used it since its pages were
    /// last discarded, so they may be resident. A subset of `free_units`.
    /// Written by the owner; statistics read it.
    pub dirty_units: AtomicU16,
    /// When a unit last became dirty (`purge::now_ms`); the dirty units go
    /// back to the OS together, a purge delay after it. Owner only.
    pub dirty_stamp: Cell<u64>,
    /// The longest run of free units, so that the search for a pool's run
    /// skips an arena with one compare. Owner only.
    pub max_run: Cell<u8>,
    /// Linked in the owner's lists of arenas with a free unit, in the list
    /// of runs of `bucket` units. Owner only.
    pub in_partial: Cell<bool>,
    pub bucket: Cell<u8>,
    pub next: Cell<*mut Arena>,
    pub prev: Cell<*mut Arena>,
}

const _: () = assert!(
    core::mem::size_of::<Arena>() <= UNIT_SIZE,
    "header must fit unit 0"
);
const _: () = assert!(core::mem::offset_of!(Arena, pools) == 0);
/// The offset of `unit_pool` in the header.
const UNIT_POOL_OFFSET: usize = core::mem::offset_of!(Arena, unit_pool);

/// What runs before arenas are unmapped (`set_before_unmap`), as a
/// `fn()` cast to an address; 0 for nothing.
static BEFORE_UNMAP: AtomicUsize = AtomicUsize::new(0);

/// Has `f` run before any arena is unmapped, so that a layer above that
/// keeps pointers into arena headers (the caches of other heaps' pools,
/// `Heap::remote_pool`) forgets them before their memory goes. It runs
/// with the reserve lock held, and must not take it.
pub fn set_before_unmap(f: fn()) {
    BEFORE_UNMAP.store(f as usize, SeqCst);
}

fn before_unmap() {
    let f = BEFORE_UNMAP.load(SeqCst);
    if f != 0 {
        // SAFETY: only `set_before_unmap` stores a nonzero value, a `fn()`.
        let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(f) };
        f();
    }
}

/// Places for the header in unit 0 (see the module documentation): in
/// each of its first four pages, `COLORS / 4` places a cache line apart
/// from 128 bytes into the page, so that a header touches one page and
/// leaves the 128 zero bytes at the arena's base alone.
const COLORS: usize = 64;
const HEADER_SPAN: usize = core::mem::size_of::<Arena>().next_multiple_of(64);
const FIRST_PLACE: usize = 1 << POOL_SIZE_SHIFT;
const _: () = assert!(4 * PAGE_SIZE <= UNIT_SIZE);
const _: () = assert!(FIRST_PLACE + (COLORS / 4 - 1) * 64 + HEADER_SPAN <= PAGE_SIZE);

/// The header of the arena whose first byte is `base`.
#[inline(always)]
fn header_at(base: usize) -> *mut Arena {
    let color = (base >> ARENA_SHIFT) % COLORS;
    let offset = (color % 4) * PAGE_SIZE + FIRST_PLACE + (color / 4) * 64;
    (base + offset) as *mut Arena
}

/// The arena containing `p`.
#[inline(always)]
pub fn arena_of(p: *const u8) -> *mut Arena {
    header_at((p as usize) & !ARENA_MASK)
}

/// The descriptor of the pool holding `p`; the 128 zero bytes at the
/// arena's base if no pool holds `p`'s unit.
///
/// # Safety
/// `p` lies in a chunk the arena map says is an arena (so its header is mapped).
#[inline(always)]
pub unsafe fn pool_of(p: *const u8) -> *const Pool {
    let base = (p as usize) & !ARENA_MASK;
    let unit = ((p as usize) & ARENA_MASK) >> UNIT_SHIFT;
    // SAFETY: the header is mapped (contract) and unit < UNITS_PER_ARENA;
    // the offset read is 0 or a descriptor's offset from the base.
    unsafe {
        let table = (header_at(base) as usize + UNIT_POOL_OFFSET) as *const AtomicU16;
        let off = (*table.add(unit)).load(Relaxed) as usize;
        (base + off) as *const Pool
    }
}

impl Arena {
    #[inline(always)]
    pub fn is_live(&self) -> bool {
        self.magic.load(Relaxed) == ARENA_MAGIC
    }

    /// The arena's first byte (the header is in unit 0, after it).
    #[inline(always)]
    pub fn base(&self) -> usize {
        self as *const Arena as usize & !ARENA_MASK
    }

    /// The first byte of unit `u`.
    pub fn unit_start(&self, u: usize) -> *mut u8 {
        (self.base() + u * UNIT_SIZE) as *mut u8
    }

    /// The byte offset from the arena's base of unit `u`'s descriptor.
    fn descriptor_offset(&self, u: usize) -> usize {
        self as *const Arena as usize - self.base() + (u << POOL_SIZE_SHIFT)
    }

    /// Makes units `first..first + n` a pool of `class`; returns its descriptor.
    ///
    /// # Safety
    /// The caller acts for the arena's owner and excludes every other such
    /// caller (it holds the owner heap's `arena_lock`); units
    /// `first..first + n` were just taken (`take_units`) and `n` is the
    /// units of a pool of `class`, `class < NUM_CLASSES`.
    pub unsafe fn make_pool(&self, first: usize, n: usize, class: usize) -> &Pool {
        // SAFETY: first < UNITS_PER_ARENA, a unit just taken (contract).
        let head = unsafe { self.pool(first) };
        // SAFETY: per the contract the class is valid, the units are the
        // pool's alone, and no other thread uses the unused descriptor.
        unsafe {
            head.init(
                class,
                self.unit_start(first),
                self.owner.load(Relaxed) as usize,
            )
        };
        for u in first..first + n {
            self.unit_pool[u].store(self.descriptor_offset(first) as u16, Relaxed);
        }
        head
    }

    /// Forgets the pool whose first unit is `first` and which spans `n`
    /// units (its units stay taken: see `give_units`).
    ///
    /// # Safety
    /// As `make_pool`, for the pool `make_pool(first, n, _)` made, which
    /// holds no live block, is on no list and is not used again.
    pub unsafe fn unmake_pool(&self, first: usize, n: usize) {
        for u in first..first + n {
            self.unit_pool[u].store(0, Relaxed);
        }
        // SAFETY: first is the pool's first unit, < UNITS_PER_ARENA; the
        // caller owns the pool, empty and unlinked (contract).
        unsafe { self.pool(first).clear() };
    }

    /// Finds and takes a run of `n` free units; returns the first unit's index.
    ///
    /// # Safety
    /// The caller acts for the arena's owner and excludes every other such
    /// caller (it holds the owner heap's `arena_lock`): the unit bitmaps
    /// are plain read-modify-writes, and a unit taken here while
    /// `discard_dirty` runs could lose the pages of live blocks.
    pub unsafe fn take_units(&self, n: usize) -> Option<usize> {
        let free = self.free_units.get();
        let m = run_starts(free, n);
        if m == 0 {
            return None;
        }
        // A run whose pages are resident, if there is one: no page faults,
        // and nothing more resident.
        let warm = run_starts(free & self.dirty_units.load(Relaxed), n);
        let first = if warm != 0 { warm } else { m }.trailing_zeros() as usize;
        let run = run_mask(first, n);
        self.free_units.set(self.free_units.get() & !run);
        self.dirty_units
            .store(self.dirty_units.load(Relaxed) & !run, Relaxed);
        self.update_max_run();
        Some(first)
    }

    fn update_max_run(&self) {
        // Each step shortens every run by one: the steps until none is left
        // are the longest run's length.
        let mut m = self.free_units.get();
        let mut run = 0;
        while m != 0 {
            m &= m >> 1;
            run += 1;
        }
        self.max_run.set(run);
    }

    /// Units `first..first + n` are free again, their pages still resident,
    /// unused since `since`. The arena's stamp stays the latest of its
    /// dirty units'.
    ///
    /// # Safety
    /// As `take_units`; the units were taken and hold no live block (their
    /// pages may be discarded from now on).
    pub unsafe fn give_units(&self, first: usize, n: usize, since: u64) {
        let run = run_mask(first, n);
        debug_assert!(self.free_units.get() & run == 0);
        self.free_units.set(self.free_units.get() | run);
        let dirty = self.dirty_units.load(Relaxed);
        self.dirty_units.store(dirty | run, Relaxed);
        let stamp = if dirty == 0 {
            since
        } else {
            since.max(self.dirty_stamp.get())
        };
        self.dirty_stamp.set(stamp);
        self.update_max_run();
    }

    /// How many free units may hold resident pages.
    pub fn dirty_count(&self) -> usize {
        self.dirty_units.load(Relaxed).count_ones() as usize
    }

    /// Gives back to the OS the pages of every dirty unit; returns how many
    /// units that was.
    ///
    /// # Safety
    /// As `take_units`: no unit may be taken meanwhile. The dirty units
    /// hold no live block then (`give_units`' contract).
    pub unsafe fn discard_dirty(&self) -> usize {
        let mut discard = self.dirty_units.load(Relaxed);
        let units = discard.count_ones() as usize;
        self.dirty_units.store(0, Relaxed);
        let base = self.base();
        while discard != 0 {
            let first = discard.trailing_zeros() as usize;
            let n = (discard >> first).trailing_ones() as usize;
            // SAFETY: dirty units are free and hold no live block, and no
            // unit is taken meanwhile (contract); they belong to this arena,
            // which the caller (acting for its owner) keeps mapped.
            unsafe { os::discard((base + first * UNIT_SIZE) as *mut u8, n * UNIT_SIZE) };
            discard &= !run_mask(first, n);
        }
        crate::purge::given_back(units * UNIT_SIZE);
        units
    }

    pub fn is_empty(&self) -> bool {
        self.free_units.get() == ALL_UNITS
    }

    /// The descriptor of unit `u`, without a bounds check.
    ///
    /// # Safety
    /// `u < UNITS_PER_ARENA`.
    #[inline(always)]
    pub unsafe fn pool(&self, u: usize) -> &Pool {
        debug_assert!(u < UNITS_PER_ARENA);
        // SAFETY: per the contract.
        unsafe { self.pools.get_unchecked(u) }
    }
}

/// The units of `m` that start a run of `n` units of `m`.
fn run_starts(mut m: u16, n: usize) -> u16 {
    for _ in 1..n {
        m &= m >> 1;
    }
    m
}

fn run_mask(first: usize, n: usize) -> u16 {
    (((1u32 << n) - 1) << first) as u16
}

/// Arenas ready to be handed out.
struct Reserve {
    /// Fresh from the OS or discarded: no page resident.
    arenas: [usize; ARENA_RETAIN_MAX],
    count: usize,
    /// Returned empty with the pages of their `dirty_units` resident:
    /// a list through the headers (resident too), `next` towards the
    /// oldest, `prev` towards the newest; each header also holds, in
    /// `dirty_stamp`, when it was returned. Handed out newest first,
    /// purged oldest first. Their number is bounded by the purge policy
    /// (`purge::over_bound`), not here.
    warm_newest: *mut Arena,
    warm_oldest: *mut Arena,
    /// The dirty units of the warm arenas.
    warm_units: usize,
}

// SAFETY: the raw pointers are only used under the lock.
unsafe impl Send for Reserve {}

static RESERVE: SpinLock<Reserve> = SpinLock::new(Reserve {
    arenas: [0; ARENA_RETAIN_MAX],
    count: 0,
    warm_newest: ptr::null_mut(),
    warm_oldest: ptr::null_mut(),
    warm_units: 0,
});

impl Reserve {
    /// Takes the newest warm arena, if any.
    fn pop_newest_warm(&mut self) -> Option<*mut Arena> {
        let a = self.warm_newest;
        (!a.is_null()).then(|| self.unlink_warm(a))
    }

    /// Takes the warm arena `a` off the list; returns it.
    fn unlink_warm(&mut self, a: *mut Arena) -> *mut Arena {
        // SAFETY: `a` and its neighbours are warm arenas, whose headers are
        // mapped and only used under the lock.
        unsafe {
            let (prev, next) = ((*a).prev.get(), (*a).next.get());
            if prev.is_null() {
                self.warm_newest = next;
            } else {
                (*prev).next.set(next);
            }
            if next.is_null() {
                self.warm_oldest = prev;
            } else {
                (*next).prev.set(prev);
            }
        }
        a
    }

    fn push_newest_warm(&mut self, a: *mut Arena) {
        // SAFETY: `a` is an unused arena whose header the caller owns; the
        // others are warm arenas, used only under the lock.
        unsafe {
            (*a).prev.set(ptr::null_mut());
            (*a).next.set(self.warm_newest);
            if self.warm_newest.is_null() {
                self.warm_oldest = a;
            } else {
                (*self.warm_newest).prev.set(a);
            }
        }
        self.warm_newest = a;
    }
}

/// An arena from `acquire` (null if the OS refused), and since when the
/// pages of its `dirty_units` are resident and free (a time of
/// `purge::now_ms`).
pub struct Acquired {
    pub arena: *mut Arena,
    pub dirty_since: u64,
}

/// Whether batches of arenas ask for transparent huge pages
/// (`OBMEM_ARENA_HUGEPAGES=1`). Off by default: a huge page is resident
/// as a whole, so a program holds more memory for its fewer page faults,
/// and where the kernel compacts memory on such faults (THP defrag
/// `madvise`) a burst of new arenas costs more kernel time (BENCHMARKS.md,
/// "Huge pages for arenas"). Purging a unit splits its huge page.
static HUGE_PAGES: AtomicBool = AtomicBool::new(false);

/// Set once by `lifecycle::init`, before the first arena is mapped.
pub fn set_huge_pages(on: bool) {
    HUGE_PAGES.store(on, Relaxed);
}

/// Maps `n` arenas in one aligned mapping and registers them in the arena map.
fn map_arenas(n: usize) -> *mut u8 {
    let size = n * ARENA_SIZE;
    let huge = HUGE_PAGES.load(Relaxed) && size >= HUGE_PAGE_SIZE;
    let align = if huge { HUGE_PAGE_SIZE } else { ARENA_SIZE };
    let base = os::map_aligned(size, align, crate::fault::Site::Arenas);
    if base.is_null() {
        return base;
    }
    if huge {
        // SAFETY: the mapping was made above by `os`.
        unsafe { os::advise_huge(base, size) };
    }
    for i in 0..n {
        if !arena_map::set(base as usize + i * ARENA_SIZE, CHUNK_ARENA) {
            for j in 0..i {
                arena_map::clear(base as usize + j * ARENA_SIZE);
            }
            // SAFETY: the mapping was made above and is not yet published.
            unsafe { os::unmap(base, size) };
            return ptr::null_mut();
        }
    }
    counters::add_mapped(size);
    base
}

/// Takes an arena for `owner`: a warm one (pages resident) if the reserve
/// has one, else a discarded or new one, mapping more from the OS if
/// needed. Null (errno ENOMEM) if the OS refuses.
pub fn acquire(owner: OwnerId) -> Acquired {
    let mut dirty = 0u16;
    let mut since = 0;
    let addr = 'take: {
        let mut r = RESERVE.lock();
        if let Some(warm) = r.pop_newest_warm() {
            // SAFETY: a warm arena is mapped, registered and unused; its
            // header holds its dirty units and their time (`release`).
            let a = unsafe { &*warm };
            dirty = a.dirty_units.load(Relaxed);
            since = a.dirty_stamp.get();
            r.warm_units -= dirty.count_ones() as usize;
            // The new owner counts them (the caller).
            purge::dirty_changed(-(dirty.count_ones() as isize));
            break 'take a.base();
        }
        if r.count == 0 {
            // One big mapping per batch; a single arena if memory is tight.
            let mut n = ARENA_BATCH;
            let mut base = map_arenas(n);
            if base.is_null() {
                n = 1;
                base = map_arenas(1);
            }
            if base.is_null() {
                os::set_errno(libc::ENOMEM);
                return Acquired {
                    arena: ptr::null_mut(),
                    dirty_since: 0,
                };
            }
            // Push in reverse so the lowest address is handed out first.
            for i in (0..n).rev() {
                let c = r.count;
                r.arenas[c] = base as usize + i * ARENA_SIZE;
                r.count += 1;
            }
        }
        r.count -= 1;
        let c = r.count;
        r.arenas[c]
    };
    counters::arena_acquired();
    let a = header_at(addr);
    // SAFETY: `a` came from the reserve, so it is a mapped, registered arena
    // that nobody else references; its header is zero or stale and is
    // rewritten field by field before the arena is published to its owner.
    unsafe {
        ptr::addr_of_mut!((*a).free_units).write(Cell::new(ALL_UNITS));
        ptr::addr_of_mut!((*a).dirty_units).write(AtomicU16::new(dirty));
        ptr::addr_of_mut!((*a).dirty_stamp).write(Cell::new(since));
        ptr::addr_of_mut!((*a).max_run).write(Cell::new(USABLE_UNITS as u8));
        ptr::addr_of_mut!((*a).bucket).write(Cell::new(0));
        ptr::addr_of_mut!((*a).in_partial).write(Cell::new(false));
        ptr::addr_of_mut!((*a).next).write(Cell::new(ptr::null_mut()));
        ptr::addr_of_mut!((*a).prev).write(Cell::new(ptr::null_mut()));
        let pools = ptr::addr_of_mut!((*a).pools) as *mut Pool;
        for u in 0..UNITS_PER_ARENA {
            pools.add(u).write(Pool::unused());
            (*a).unit_pool[u].store(0, Relaxed);
        }
        (*a).owner.store(owner, Relaxed);
        (*a).magic.store(ARENA_MAGIC, Release);
    }
    Acquired {
        arena: a,
        dirty_since: since,
    }
}

/// Returns an empty arena to the reserve. With `keep_since` (a time of
/// `purge::now_ms`), the pages of its dirty units stay resident for the
/// next heap that takes an arena, until the purge delay after that time
/// (`purge_reserve`); otherwise they are discarded now. Returns the bytes
/// whose pages were discarded (those of dirty units).
///
/// # Safety
/// `a` is an empty arena, unlinked from its owner, and no pointer into it is live.
pub unsafe fn release(a: *mut Arena, keep_since: Option<u64>) -> usize {
    // SAFETY: per the contract.
    let dirty = unsafe { &*a }.dirty_units.load(Relaxed);
    let units = dirty.count_ones() as usize;
    counters::arena_released();
    if let Some(since) = keep_since.filter(|_| units > 0) {
        let mut r = RESERVE.lock();
        // SAFETY: per the contract nobody uses the arena any more. A zero
        // header rejects stale pointers, as a discarded one does; zeroed
        // under the lock, which `for_each_arena` holds.
        unsafe {
            (*a).magic.store(0, Relaxed);
            ptr::write_bytes(a as *mut u8, 0, core::mem::size_of::<Arena>());
            (*a).dirty_units.store(dirty, Relaxed);
            (*a).dirty_stamp.set(since);
        }
        r.push_newest_warm(a);
        r.warm_units += units;
        purge::dirty_changed(units as isize);
        drop(r);
        purge::note_due(since + purge::delay_ms());
        return 0;
    }
    // SAFETY: per the contract.
    unsafe { release_discarded(a) };
    purge::given_back(units * UNIT_SIZE);
    units * UNIT_SIZE
}

/// Discards an empty arena's pages and puts it in the reserve, or unmaps it
/// when the reserve is full.
///
/// # Safety
/// As `release`; the arena is in no list of the reserve.
unsafe fn release_discarded(a: *mut Arena) {
    // SAFETY: per the contract nobody uses the arena any more; discarding
    // zeroes the header, so `magic` reads 0 and stale pointers are rejected.
    let base = unsafe {
        (*a).magic.store(0, Relaxed);
        let base = (*a).base();
        os::discard(base as *mut u8, ARENA_SIZE);
        base
    };
    let mut r = RESERVE.lock();
    if r.count < ARENA_RETAIN_MAX {
        let c = r.count;
        r.arenas[c] = base;
        r.count += 1;
    } else {
        before_unmap();
        // SAFETY: per the contract; the reserve lock is held.
        unsafe { unmap_locked(base) };
    }
}

/// Unregisters and unmaps an arena of the reserve's. `before_unmap` must
/// have run first, so that the caches of other heaps' pools stop naming
/// descriptors in it.
///
/// # Safety
/// The caller holds the reserve lock (so that `for_each_pool` never reads
/// an unmapped arena), and the arena is empty, unused and in no list.
unsafe fn unmap_locked(a: usize) {
    arena_map::clear(a);
    // SAFETY: per the contract; unregistered above.
    unsafe { os::unmap(a as *mut u8, ARENA_SIZE) };
    counters::sub_mapped(ARENA_SIZE);
}

/// Discards the pages of the warm arenas returned more than the purge
/// delay ago, and then of the oldest others while their dirty units are
/// more than `keep_units` (0: all of them; `usize::MAX`: only the expired
/// ones); notes when the next is due. Returns the bytes given back. Any
/// thread.
pub fn purge_reserve(now: u64, keep_units: usize) -> usize {
    const BATCH: usize = 16;
    let mut bytes = 0;
    loop {
        // Taken out under the lock, discarded outside it.
        let mut taken = [ptr::null_mut::<Arena>(); BATCH];
        let mut n = 0;
        let mut next_due = 0;
        {
            let mut r = RESERVE.lock();
            while n < BATCH {
                let oldest = r.warm_oldest;
                if oldest.is_null() {
                    break;
                }
                // SAFETY: warm arenas are mapped and unused; their header
                // holds their stamp and dirty units (`release`).
                let a = unsafe { &*oldest };
                let since = a.dirty_stamp.get();
                if r.warm_units <= keep_units && !purge::expired(since, now) {
                    next_due = since + purge::delay_ms();
                    break;
                }
                r.unlink_warm(oldest);
                let units = a.dirty_count();
                r.warm_units -= units;
                purge::dirty_changed(-(units as isize));
                bytes += units * UNIT_SIZE;
                purge::given_back(units * UNIT_SIZE);
                taken[n] = oldest;
                n += 1;
            }
        }
        for &a in &taken[..n] {
            // SAFETY: out of the reserve's lists, empty and unused.
            unsafe { release_discarded(a) };
        }
        if next_due != 0 {
            purge::note_due(next_due);
        }
        if n < BATCH {
            return bytes;
        }
    }
}

/// Unmaps every arena of the reserve, warm or discarded, so that their
/// address space serves other mappings (a mapping failed: under RLIMIT_AS,
/// this may be what was missing). True if anything was unmapped.
pub fn give_back_address_space() -> bool {
    purge_reserve(purge::now_ms(), 0);
    let mut r = RESERVE.lock();
    let n = r.count;
    if n > 0 {
        // Before the unmaps, as in `release_discarded`: the caches of
        // other heaps' pools stop naming descriptors in these arenas.
        before_unmap();
    }
    for &a in &r.arenas[..n] {
        // SAFETY: the lock is held; a reserve arena is empty and unused,
        // and the array forgets it below.
        unsafe { unmap_locked(a) };
    }
    r.count = 0;
    n > 0
}

/// The dirty units of the reserve's warm arenas (resident free pages).
pub fn reserve_warm_units() -> usize {
    RESERVE.lock().warm_units
}

/// Calls `f` on every arena in use, for statistics: their shared fields
/// are read while their owners go on working, so what `f` sees may be a
/// moment out of date. The reserve lock keeps arenas from being unmapped
/// meanwhile.
pub fn for_each_arena(mut f: impl FnMut(&Arena)) {
    let _r = RESERVE.lock();
    arena_map::for_each(CHUNK_ARENA, |addr| {
        // SAFETY: the map says an arena is mapped at addr, and arenas are
        // unmapped only under the reserve lock.
        let a = unsafe { &*header_at(addr) };
        if a.is_live() {
            f(a);
        }
    });
}

/// Calls `f` on every live pool of every arena in use (see `for_each_arena`).
pub fn for_each_pool(mut f: impl FnMut(&Pool)) {
    for_each_arena(|a| {
        for u in 1..UNITS_PER_ARENA {
            if a.unit_pool[u].load(Relaxed) as usize == a.descriptor_offset(u) {
                // SAFETY: u < UNITS_PER_ARENA.
                f(unsafe { a.pool(u) });
            }
        }
    });
}

pub fn lock_for_fork() {
    RESERVE.lock_for_fork();
}

/// # Safety
/// Called after `lock_for_fork`, in the parent or the child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: per the contract.
    unsafe { RESERVE.unlock_after_fork() };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_only() -> Arena {
        Arena {
            pools: [const { Pool::unused() }; UNITS_PER_ARENA],
            unit_pool: [const { AtomicU16::new(0) }; UNITS_PER_ARENA],
            magic: AtomicUsize::new(0),
            owner: AtomicPtr::new(ptr::null_mut()),
            free_units: Cell::new(ALL_UNITS),
            dirty_units: AtomicU16::new(0),
            dirty_stamp: Cell::new(0),
            max_run: Cell::new(USABLE_UNITS as u8),
            bucket: Cell::new(0),
            in_partial: Cell::new(false),
            next: Cell::new(ptr::null_mut()),
            prev: Cell::new(ptr::null_mut()),
        }
    }

    #[test]
    fn unit_runs() {
        let a = header_only();
        // SAFETY: a header of the test's own, used by this thread alone.
        unsafe {
            assert_eq!(a.max_run.get(), 15);
            assert_eq!(a.take_units(1), Some(1));
            assert_eq!(a.max_run.get(), 14);
            assert_eq!(a.take_units(8), Some(2));
            assert_eq!(a.max_run.get(), 6, "units 10..15 are left");
            assert_eq!(a.take_units(8), None, "only units 10..15 are left");
            assert_eq!(a.take_units(6), Some(10));
            assert_eq!(a.free_units.get(), 0);
            a.give_units(2, 8, 7);
            assert_eq!(a.dirty_count(), 8, "given-back units may hold pages");
            assert_eq!(a.dirty_stamp.get(), 7);
            assert_eq!(a.take_units(3), Some(2));
            assert_eq!(
                a.dirty_units.load(Relaxed),
                run_mask(5, 5),
                "taken units are not free"
            );
            a.give_units(2, 3, 8);
            a.give_units(1, 1, 9);
            a.give_units(10, 6, 10);
            assert!(a.is_empty());
            assert_eq!(a.dirty_units.load(Relaxed), ALL_UNITS);
        }
    }

    #[test]
    fn discarding_dirty_units_zeroes_their_pages_only() {
        let a = acquire(0x1000 as OwnerId).arena;
        assert!(!a.is_null());
        // SAFETY: a freshly acquired arena, used by this test alone.
        unsafe {
            let arena = &*a;
            let first = arena.take_units(4).unwrap();
            let unit = |u: usize| arena.unit_start(u);
            for u in first..first + 4 {
                ptr::write_bytes(unit(u), 0xAB, UNIT_SIZE);
            }
            arena.give_units(first + 1, 2, 0); // a pool's units freed: dirty
            assert_eq!(arena.dirty_count(), 2);
            assert_eq!(*unit(first + 1), 0xAB, "kept until discarded");
            assert_eq!(arena.discard_dirty(), 2);
            assert_eq!(arena.dirty_count(), 0);
            assert_eq!(*unit(first), 0xAB, "a unit in use keeps its bytes");
            assert_eq!(*unit(first + 1), 0, "a discarded unit reads zero");
            assert_eq!(*unit(first + 2).add(UNIT_SIZE - 1), 0);
            assert_eq!(*unit(first + 3), 0xAB);
            // A unit taken again is not dirty, so not discarded. (The two
            // discarded units are free and clean: take them, give them
            // back dirty, take them again.)
            assert_eq!(arena.take_units(2), Some(first + 1));
            arena.give_units(first + 1, 2, 0);
            assert_eq!(arena.dirty_count(), 2);
            assert_eq!(arena.take_units(2), Some(first + 1));
            ptr::write_bytes(unit(first + 1), 0xCD, UNIT_SIZE);
            assert_eq!(arena.discard_dirty(), 0);
            assert_eq!(*unit(first + 1), 0xCD, "in use again: kept");
            arena.give_units(first + 1, 2, 0);
            arena.give_units(first, 1, 0);
            arena.give_units(first + 3, 1, 0);
            release(a, None);
        }
    }

    #[test]
    fn pool_lookup_is_arithmetic() {
        let a = acquire(0x1000 as OwnerId).arena;
        assert!(!a.is_null());
        // SAFETY: a freshly acquired arena, used by this test alone.
        unsafe {
            let arena = &*a;
            let base = arena.base();
            assert_eq!(base % ARENA_SIZE, 0);
            assert_eq!(a, arena_of((base + ARENA_SIZE - 1) as *const u8));
            assert!(arena.is_live());
            let first = arena.take_units(3).unwrap();
            let head = arena.make_pool(first, 3, 40) as *const Pool;
            let start = arena.unit_start(first);
            assert_eq!(start as usize, base + first * UNIT_SIZE);
            assert_eq!((*head).start.get(), start as usize);
            assert_eq!(pool_of(start), head);
            assert_eq!(pool_of(start.add(3 * UNIT_SIZE - 1)), head);
            // A unit without a pool resolves to the zero descriptor at the base.
            let none = base as *const Pool;
            assert_eq!((*none).carved.get(), 0);
            assert_eq!(pool_of(start.add(3 * UNIT_SIZE)), none, "a free unit");
            assert_eq!(pool_of(base as *const u8), none, "the header unit");
            assert_eq!(arena_map::lookup(start as usize), CHUNK_ARENA);
            arena.unmake_pool(first, 3);
            assert_eq!(pool_of(start), none);
            arena.give_units(first, 3, 0);
            release(a, None);
            assert_eq!(arena_map::lookup(base), CHUNK_ARENA, "kept in the reserve");
            assert!(!(*a).is_live(), "a released arena's header is rejected");
        }
    }

    #[test]
    fn headers_of_neighbouring_arenas_take_different_places() {
        let bases = (0..COLORS).map(|i| 0x7f00_0000_0000 + i * ARENA_SIZE);
        let mut offsets: [usize; COLORS] = [0; COLORS];
        for (i, base) in bases.enumerate() {
            let h = header_at(base) as usize;
            let end = h + core::mem::size_of::<Arena>();
            offsets[i] = h - base;
            // The header fits one page of unit 0 and leaves the zero
            // descriptor alone.
            assert!(end <= base + UNIT_SIZE);
            assert_eq!(h / PAGE_SIZE, (end - 1) / PAGE_SIZE, "one page");
            assert!(offsets[i] >= 1 << POOL_SIZE_SHIFT);
        }
        // Different places, so different sets of cache lines.
        offsets.sort_unstable();
        for w in offsets.windows(2) {
            assert!(w[1] >= w[0] + 64, "{offsets:?}");
        }
    }

    #[test]
    fn warm_list_hands_out_newest_and_purges_oldest() {
        let mut r = Reserve {
            arenas: [0; ARENA_RETAIN_MAX],
            count: 0,
            warm_newest: ptr::null_mut(),
            warm_oldest: ptr::null_mut(),
            warm_units: 0,
        };
        let mut headers = [header_only(), header_only(), header_only()];
        let [a, b, c] = headers.each_mut().map(|h| h as *mut Arena);
        // What `purge_reserve` does: take the oldest.
        let pop_oldest_warm = |r: &mut Reserve| {
            let a = r.warm_oldest;
            (!a.is_null()).then(|| r.unlink_warm(a))
        };
        assert_eq!(r.pop_newest_warm(), None);
        r.push_newest_warm(a);
        r.push_newest_warm(b);
        r.push_newest_warm(c);
        assert_eq!(r.pop_newest_warm(), Some(c));
        assert_eq!(r.warm_oldest, a); // not expired yet: left where it is
        assert_eq!(pop_oldest_warm(&mut r), Some(a));
        assert_eq!(pop_oldest_warm(&mut r), Some(b));
        assert_eq!(r.pop_newest_warm(), None);
        assert_eq!(pop_oldest_warm(&mut r), None);
        assert!(r.warm_newest.is_null() && r.warm_oldest.is_null());
    }
}
