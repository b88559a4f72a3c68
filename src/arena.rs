//! Arenas: 256 KiB chunks, aligned to their size, cut into 16 units of 16 KiB.
//!
//! Unit 0 holds the arena header: one pool descriptor per unit, the table
//! from unit to pool, the owner heap and the free-unit bitmap. Units 1..16
//! hold pools; a pool spans one unit (small classes) or a run of units
//! (medium classes), and its descriptor is the one of its first unit. So
//! the pool of any block is found by arithmetic and one table load:
//! arena = p & !ARENA_MASK, unit = (p & ARENA_MASK) >> UNIT_SHIFT,
//! pool = arena + unit_pool[unit].
//!
//! Invariants:
//! - `unit_pool[u]` is the byte offset from the arena's base of the
//!   descriptor of the pool holding unit `u`, and 0 while no pool holds it.
//!   Offset 0 is descriptor 0, which belongs to the header unit and stays
//!   all zero, so a pointer into a free unit resolves to a descriptor whose
//!   checks all fail. A released arena reads as zero throughout.
//! - Every arena belongs to one heap for its whole life in use (`owner`
//!   never changes while the arena holds pools); only that heap's thread,
//!   or a thread that has taken over an abandoned heap, touches its pools'
//!   owner-only fields and the fields below marked owner only.
//!
//! Arenas come from a global reserve, refilled from the OS `ARENA_BATCH` at a
//! time. An empty arena goes back to the reserve with its pages discarded
//! (MADV_DONTNEED: no RSS, zero header, so stale pointers into it are
//! recognised as invalid); beyond `ARENA_RETAIN_MAX` it is unmapped.

use crate::arena_map::{self, CHUNK_ARENA};
use crate::config::*;
use crate::counters;
use crate::os;
use crate::pool::{Pool, POOL_SIZE_SHIFT};
use crate::sync::SpinLock;
use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU16, AtomicUsize, Ordering::*};

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

/// The arena containing `p`.
#[inline(always)]
pub fn arena_of(p: *const u8) -> *mut Arena {
    ((p as usize) & !ARENA_MASK) as *mut Arena
}

/// The descriptor of the pool holding `p`; descriptor 0 (all zero) if no
/// pool holds `p`'s unit.
///
/// # Safety
/// `p` lies in a chunk the arena map says is an arena (so its header is mapped).
#[inline(always)]
pub unsafe fn pool_of(p: *const u8) -> *const Pool {
    let arena = (p as usize) & !ARENA_MASK;
    let unit = ((p as usize) & ARENA_MASK) >> UNIT_SHIFT;
    // SAFETY: the header is mapped (contract) and unit < UNITS_PER_ARENA;
    // the offset read is 0 or a descriptor's offset within the header.
    unsafe {
        let table = (arena + UNIT_POOL_OFFSET) as *const AtomicU16;
        let off = (*table.add(unit)).load(Relaxed) as usize;
        (arena + off) as *const Pool
    }
}

/// The byte offset of unit `u`'s descriptor in the header.
const fn descriptor_offset(u: usize) -> usize {
    u << POOL_SIZE_SHIFT
}

impl Arena {
    #[inline(always)]
    pub fn is_live(&self) -> bool {
        self.magic.load(Relaxed) == ARENA_MAGIC
    }

    /// The first byte of unit `u`.
    pub fn unit_start(&self, u: usize) -> *mut u8 {
        (self as *const Arena as usize + u * UNIT_SIZE) as *mut u8
    }

    /// Makes units `first..first + n` a pool of `class`; returns its descriptor.
    pub fn make_pool(&self, first: usize, n: usize, class: usize) -> &Pool {
        let head = self.pool(first);
        head.init(class, self.unit_start(first));
        for u in first..first + n {
            self.unit_pool[u].store(descriptor_offset(first) as u16, Relaxed);
        }
        head
    }

    /// Forgets the pool whose first unit is `first` and which spans `n`
    /// units (its units stay taken: see `give_units`).
    pub fn unmake_pool(&self, first: usize, n: usize) {
        for u in first..first + n {
            self.unit_pool[u].store(0, Relaxed);
        }
        self.pool(first).clear();
    }

    /// Finds and takes a run of `n` free units; returns the first unit's index.
    pub fn take_units(&self, n: usize) -> Option<usize> {
        let mut m = self.free_units.get();
        for _ in 1..n {
            m &= m >> 1;
        }
        if m == 0 {
            return None;
        }
        let first = m.trailing_zeros() as usize;
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
    /// as of `now`.
    pub fn give_units(&self, first: usize, n: usize, now: u64) {
        let run = run_mask(first, n);
        debug_assert!(self.free_units.get() & run == 0);
        self.free_units.set(self.free_units.get() | run);
        self.dirty_units
            .store(self.dirty_units.load(Relaxed) | run, Relaxed);
        self.dirty_stamp.set(now);
        self.update_max_run();
    }

    /// How many free units may hold resident pages.
    pub fn dirty_count(&self) -> usize {
        self.dirty_units.load(Relaxed).count_ones() as usize
    }

    /// Gives back to the OS the pages of every dirty unit; returns how many
    /// units that was.
    pub fn discard_dirty(&self) -> usize {
        let mut discard = self.dirty_units.load(Relaxed);
        let units = discard.count_ones() as usize;
        self.dirty_units.store(0, Relaxed);
        let base = self as *const Arena as usize;
        while discard != 0 {
            let first = discard.trailing_zeros() as usize;
            let n = (discard >> first).trailing_ones() as usize;
            // SAFETY: free units hold no live block and belong to this
            // arena, which the caller (its owner) keeps mapped.
            unsafe { os::discard((base + first * UNIT_SIZE) as *mut u8, n * UNIT_SIZE) };
            discard &= !run_mask(first, n);
        }
        crate::purge::given_back(units * UNIT_SIZE);
        units
    }

    pub fn is_empty(&self) -> bool {
        self.free_units.get() == ALL_UNITS
    }

    /// The descriptor of unit `u` (< UNITS_PER_ARENA).
    #[inline(always)]
    pub fn pool(&self, u: usize) -> &Pool {
        debug_assert!(u < UNITS_PER_ARENA);
        // SAFETY: callers pass unit indexes < UNITS_PER_ARENA.
        unsafe { self.pools.get_unchecked(u) }
    }
}

fn run_mask(first: usize, n: usize) -> u16 {
    (((1u32 << n) - 1) << first) as u16
}

/// Arenas ready to be handed out: fresh from the OS or returned empty.
struct Reserve {
    arenas: [usize; ARENA_RETAIN_MAX],
    count: usize,
}

static RESERVE: SpinLock<Reserve> = SpinLock::new(Reserve {
    arenas: [0; ARENA_RETAIN_MAX],
    count: 0,
});

/// Maps `n` arenas in one aligned mapping and registers them in the arena map.
fn map_arenas(n: usize) -> *mut u8 {
    let base = os::map_aligned(n * ARENA_SIZE, ARENA_SIZE, crate::fault::Site::Arenas);
    if base.is_null() {
        return base;
    }
    for i in 0..n {
        if !arena_map::set(base as usize + i * ARENA_SIZE, CHUNK_ARENA) {
            for j in 0..i {
                arena_map::clear(base as usize + j * ARENA_SIZE);
            }
            // SAFETY: the mapping was made above and is not yet published.
            unsafe { os::unmap(base, n * ARENA_SIZE) };
            return ptr::null_mut();
        }
    }
    counters::add_mapped(n * ARENA_SIZE);
    base
}

/// Takes an arena for `owner`, mapping more from the OS if the reserve is empty.
/// Null (errno ENOMEM) if the OS refuses.
pub fn acquire(owner: OwnerId) -> *mut Arena {
    let addr = {
        let mut r = RESERVE.lock();
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
                return ptr::null_mut();
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
    let a = addr as *mut Arena;
    // SAFETY: `a` came from the reserve, so it is a mapped, registered arena
    // that nobody else references; its header is zero or stale and is
    // rewritten field by field before the arena is published to its owner.
    unsafe {
        ptr::addr_of_mut!((*a).free_units).write(Cell::new(ALL_UNITS));
        ptr::addr_of_mut!((*a).dirty_units).write(AtomicU16::new(0));
        ptr::addr_of_mut!((*a).dirty_stamp).write(Cell::new(0));
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
    a
}

/// Returns an empty arena: its pages are discarded and it goes back to the
/// reserve, or to the OS when the reserve is full.
///
/// # Safety
/// `a` is an empty arena, unlinked from its owner, and no pointer into it is live.
pub unsafe fn release(a: *mut Arena) {
    // SAFETY: per the contract nobody uses the arena any more; discarding
    // zeroes the header, so `magic` reads 0 and stale pointers are rejected.
    unsafe {
        (*a).magic.store(0, Relaxed);
        os::discard(a as *mut u8, ARENA_SIZE);
    }
    counters::arena_released();
    let mut r = RESERVE.lock();
    if r.count < ARENA_RETAIN_MAX {
        let c = r.count;
        r.arenas[c] = a as usize;
        r.count += 1;
    } else {
        // Under the lock, so that `for_each_pool` never reads an unmapped arena.
        arena_map::clear(a as usize);
        // SAFETY: the arena is empty and unregistered.
        unsafe { os::unmap(a as *mut u8, ARENA_SIZE) };
        counters::sub_mapped(ARENA_SIZE);
    }
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
        let a = unsafe { &*(addr as *const Arena) };
        if a.is_live() {
            f(a);
        }
    });
}

/// Calls `f` on every live pool of every arena in use (see `for_each_arena`).
pub fn for_each_pool(mut f: impl FnMut(&Pool)) {
    for_each_arena(|a| {
        for u in 1..UNITS_PER_ARENA {
            if a.unit_pool[u].load(Relaxed) as usize == descriptor_offset(u) {
                f(a.pool(u));
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

    #[test]
    fn discarding_dirty_units_zeroes_their_pages_only() {
        let a = acquire(0x1000 as OwnerId);
        assert!(!a.is_null());
        // SAFETY: a freshly acquired arena, used by this test alone.
        unsafe {
            let arena = &*a;
            let first = arena.take_units(4).unwrap();
            let unit = |u: usize| (a as *mut u8).add(u * UNIT_SIZE);
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
            release(a);
        }
    }

    #[test]
    fn pool_lookup_is_arithmetic() {
        let a = acquire(0x1000 as OwnerId);
        assert!(!a.is_null());
        assert_eq!(a as usize % ARENA_SIZE, 0);
        // SAFETY: a freshly acquired arena, used by this test alone.
        unsafe {
            let arena = &*a;
            assert!(arena.is_live());
            let first = arena.take_units(3).unwrap();
            let head = arena.make_pool(first, 3, 40) as *const Pool;
            let start = arena.unit_start(first);
            assert_eq!(start as usize, a as usize + first * UNIT_SIZE);
            assert_eq!((*head).start.get(), start as usize);
            assert_eq!(pool_of(start), head);
            assert_eq!(pool_of(start.add(3 * UNIT_SIZE - 1)), head);
            assert_eq!(
                pool_of(start.add(3 * UNIT_SIZE)),
                a as *const Pool,
                "a free unit"
            );
            assert_eq!(pool_of(a as *const u8), a as *const Pool, "the header unit");
            assert_eq!(arena_map::lookup(start as usize), CHUNK_ARENA);
            arena.unmake_pool(first, 3);
            assert_eq!(pool_of(start), a as *const Pool);
            arena.give_units(first, 3, 0);
            release(a);
            assert_eq!(
                arena_map::lookup(a as usize),
                CHUNK_ARENA,
                "kept in the reserve"
            );
            assert!(!(*a).is_live(), "a released arena's header is rejected");
        }
    }
}
