//! Thread heaps: each thread allocates from its own heap, reached through a
//! native thread-local pointer, so `malloc` and `free` of its own blocks take
//! no lock and no atomic read-modify-write.
//!
//! A heap owns arenas (and so their pools) and keeps, per size class, a
//! queue of its pools that may have a free block. The module is cut by
//! concept:
//!
//! - this file: the `Heap` structure, its invariants, and the two tables
//!   the fast paths read;
//! - `queue`: the per-class pool queues (allocation, local frees, new and
//!   released pools);
//! - `arenas`: the heap's arenas, their list by longest free run, and the
//!   purge of their free pages;
//! - `remote`: blocks other threads free into this heap;
//! - `registry`: heap creation, thread exit, adoption, trim, fork;
//! - `tls`: the thread's heap pointer in native TLS.
//!
//! The fast paths read two things here, `alloc_pools` and the unit cache;
//! either can send the calling thread to the slow paths, and is set up so
//! that it does whenever it must: for a thread without a heap (its TLS slot
//! points to the placeholder heap `NO_HEAP`) and once hooks are installed
//! (`force_slow_paths`). `alloc_pools[slot]` is the queue head of the
//! slot's `class` (`heads`), or the placeholder pool `EMPTY_POOL`, whose
//! allocation list is always empty, when the class has no pool or the heap
//! takes the slow paths. The unit cache is a direct-mapped table from 16
//! KiB unit to the heap's pool holding it: the tag of slot `u % UNIT_SLOTS`
//! equal to the unit number `u = address >> 14` proves that the unit is
//! mapped and holds a live pool of this heap, and the slot names the pool.
//! A pool's units are entered when it is made (evicting whatever shared
//! their slots) and removed when it is released; a unit missing from the
//! cache sends its frees to the general path, which enters it again
//! (`recache_unit`). Slot 0 is never used: its tag stays 0, which unit 0
//! (the addresses below 16 KiB, NULL among them) matches, and its pool is
//! the all-zero `EMPTY_POOL`, whose checks fail. Other slots with tag 0 are
//! empty: only unit 0 has number 0, and it maps to slot 0.
//!
//! Owner-only fields are `Cell`s: only the owning thread (or the thread
//! holding the registry lock while the heap is abandoned) touches them;
//! other threads use only `slow`, `remote`, `state`, `next_all`, the
//! counters and the flush of `spans`.

mod arenas;
mod queue;
mod registry;
mod remote;
pub(crate) mod tls;

pub use registry::{
    cache_remote_pool, current, current_or_init, current_or_placeholder, current_spans,
    current_spans_or_init, drain_current, for_each_heap, give_back_units, reclaim_abandoned,
    trim_all,
};
pub(crate) use registry::{lock_for_fork, orphan_other_heaps, unlock_after_fork};

use crate::arena::{self, Arena};
use crate::config::*;
use crate::counters::{self, HeapStats};
use crate::large::SpanCache;
use crate::os;
use crate::pool::Pool;
use crate::purge;
use crate::report;
use crate::size_class::{self, fast_slots, FAST_SLOTS};
use crate::sync::SpinLock;
use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering::*,
};

const FREE: u8 = 0;
const ACTIVE: u8 = 1;
const ABANDONED: u8 = 2;
const ORPHANED: u8 = 3;

#[repr(C, align(64))]
pub struct Heap {
    state: AtomicU8,
    /// By fast slot (`size_class::fast_slots`): the pool `malloc`'s fast
    /// path pops from, the head of the slot's class; see the module doc.
    /// Entry 0 is always `EMPTY_POOL`, so `malloc(0)` takes the slow path.
    /// Written by other threads in `force_slow_paths`.
    alloc_pools: [AtomicPtr<Pool>; FAST_SLOTS],
    /// `heads[class + 1]`: the head of the queue of `class`, or `EMPTY_POOL`.
    heads: [Cell<*const Pool>; NUM_CLASSES + 1],
    /// The last pool of each class queue (null if the queue is empty).
    tails: [Cell<*mut Pool>; NUM_CLASSES],
    /// Empty pools kept in each class queue beyond the head (`keep_empty`).
    kept_empty: [Cell<u8>; NUM_CLASSES],
    /// Those pools, the first `kept_empty[c]` of each row, wherever they
    /// sit in their queue: a look finds them without walking the queue.
    kept_pools: [[Cell<*const Pool>; KEEP_EMPTY_POOLS as usize]; NUM_CLASSES],
    /// Units of those kept pools, all classes together (at most
    /// `KEEP_EMPTY_UNITS`).
    kept_units: Cell<usize>,
    /// Held by the owner while it changes the fields below up to `units_peak`
    /// and the arenas' unit bitmaps (slow paths only), and by `obm_trim`
    /// when it purges another thread's heap.
    arena_lock: SpinLock<()>,
    /// Owned arenas with at least one free unit, doubly linked, in lists by
    /// their longest run of free units (`partial[r]`, r = 1..=15), so that
    /// a pool of n units finds an arena in `partial[n..]` at once.
    partial: [Cell<*mut Arena>; UNITS_PER_ARENA],
    /// Whether an arena in `partial` is entirely free: at most one is,
    /// kept so that a heap at the edge of an arena does not give it back
    /// and take another at every pool.
    has_empty_arena: Cell<bool>,
    /// Arenas this heap owns.
    arenas: Cell<usize>,
    /// Units held by this heap's pools, and their most since the last purge.
    units_in_use: Cell<usize>,
    units_peak: Cell<usize>,
    /// Free units whose pages may be resident, over all arenas of `partial`.
    dirty_units: Cell<usize>,
    /// When the oldest dirty units' purge delay runs out (0: none pending).
    /// Written under `arena_lock` (`set_purge_due`); read by any thread's
    /// sweep (`registry::purge_if_due`).
    purge_due: AtomicU64,
    /// Owner only: events left before `purge_tick` next looks at the clock.
    purge_ticks: Cell<u32>,
    /// Owner only: when it next looks at its empty pools, the queue heads
    /// and the kept ones (`release_idle_pools`; 0: no look is due), on its
    /// slow paths and its purge ticks, and when it last looked.
    idle_look_at: Cell<u64>,
    idle_looked: Cell<u64>,
    /// When the next look is to release the empty pools the last one
    /// marked (0: none marked). Written by the owner; noted as due by any
    /// thread's sweep, so that the owner's purge ticks run until then.
    idle_release_at: AtomicU64,
    /// Pools with blocks freed by other threads, linked by `remote_next`.
    remote: AtomicPtr<Pool>,
    /// Every heap ever made, newest first (push-only).
    next_all: AtomicPtr<Heap>,
    /// Link in the abandoned list (under the registry lock).
    next_abandoned: Cell<*mut Heap>,
    pub stats: HeapStats,
    /// Large blocks' spans this thread freed, for its next ones.
    pub spans: SpanCache,
    /// Owner only: other heaps' pools this thread freed blocks into, by
    /// unit (`remote_pool`), with the unit cache's rules: tag 0 is empty,
    /// slot 0 is never used and names `EMPTY_POOL`. Emptied once hooks are
    /// installed, like the unit cache. Tags and pools are apart, so that a
    /// slot's index is the unit's low byte (one `movzx`) scaled by 8.
    remote_tags: [AtomicUsize; REMOTE_SLOTS],
    remote_pools: [Cell<*const Pool>; REMOTE_SLOTS],
    /// The unit cache (see the module doc). Last in the struct and zero
    /// when empty, so that a new heap's untouched pages stay untouched.
    unit_cache: [UnitSlot; UNIT_SLOTS],
}

/// A slot of the unit cache: the tag and the pool side by side, so that a
/// `free` touches one cache line and computes one index.
#[repr(C)]
struct UnitSlot {
    /// A unit's number, or 0 for none.
    tag: AtomicUsize,
    pool: Cell<*const Pool>,
}

impl UnitSlot {
    // An initializer of the cache's slots: each copy is a distinct slot.
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: UnitSlot = UnitSlot {
        tag: AtomicUsize::new(0),
        pool: Cell::new(ptr::null()),
    };
}

/// `2 * (u % SLOTS)`: the index, in 8-byte words, of the tag of unit `u`'s
/// slot in a cache of `SLOTS` slots (a power of two), the pool being the
/// next word. Two instructions that keep `u` (`lea`, `and`); in Rust,
/// LLVM folds the doubling into the shift that made `u` and computes `u`
/// again beside it.
#[inline(always)]
fn slot_words<const SLOTS: usize>(u: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let i: usize;
        // SAFETY: arithmetic on registers only.
        unsafe {
            core::arch::asm!(
                "lea {i:e}, [{u} + {u}]",
                "and {i:e}, {mask}",
                u = in(reg) u,
                mask = const (SLOTS - 1) * 2,
                i = out(reg) i,
                options(pure, nomem, nostack),
            )
        };
        i
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        (u % SLOTS) * 2
    }
}

/// The pool of the slot whose tag is word `i` of `cache` (`slot_words`):
/// word `i + 1`, read without halving `i`.
#[inline(always)]
fn slot_pool(cache: &[UnitSlot], i: usize) -> *const Pool {
    debug_assert!(i / 2 < cache.len() && i.is_multiple_of(2));
    let words = cache.as_ptr() as *const Cell<*const Pool>;
    // SAFETY: `UnitSlot` is (tag, pool), two words, and i / 2 < cache.len()
    // (`slot_words` masks it below the length), so word i + 1 is that
    // slot's pool.
    unsafe { (*words.add(i + 1)).get() }
}

/// A pool whose allocation list is always empty: the queue head of a class
/// without pools, so the malloc fast path needs no null test. Never written.
pub(crate) struct Placeholder<T>(T);
// SAFETY: the placeholders are never written (see `EMPTY_POOL` and `NO_HEAP`).
unsafe impl<T> Sync for Placeholder<T> {}

static EMPTY_POOL: Placeholder<Pool> = Placeholder(Pool::unused());

/// The heap of every thread that has none yet: `slow` is set, so its
/// malloc and free go to the slow paths, which make the thread a heap.
/// Never written.
pub(crate) static NO_HEAP: Placeholder<Heap> = Placeholder(Heap::new());

/// The address the TLS slot holds for a thread without a heap.
pub(crate) fn no_heap() -> *mut Heap {
    &NO_HEAP.0 as *const Heap as *mut Heap
}

fn empty_pool() -> *const Pool {
    &EMPTY_POOL.0
}

/// Set once hooks are installed: every heap, present and future, takes the
/// slow paths from then on.
static FORCE_SLOW: AtomicBool = AtomicBool::new(false);

impl Heap {
    const fn new() -> Heap {
        Heap {
            state: AtomicU8::new(FREE),
            alloc_pools: [const { AtomicPtr::new(&EMPTY_POOL.0 as *const Pool as *mut Pool) };
                FAST_SLOTS],
            heads: [const { Cell::new(&EMPTY_POOL.0 as *const Pool) }; NUM_CLASSES + 1],
            tails: [const { Cell::new(ptr::null_mut()) }; NUM_CLASSES],
            kept_empty: [const { Cell::new(0) }; NUM_CLASSES],
            kept_pools: [const { [const { Cell::new(ptr::null()) }; KEEP_EMPTY_POOLS as usize] };
                NUM_CLASSES],
            kept_units: Cell::new(0),
            arena_lock: SpinLock::new(()),
            partial: [const { Cell::new(ptr::null_mut()) }; UNITS_PER_ARENA],
            has_empty_arena: Cell::new(false),
            arenas: Cell::new(0),
            units_in_use: Cell::new(0),
            units_peak: Cell::new(0),
            dirty_units: Cell::new(0),
            purge_due: AtomicU64::new(0),
            purge_ticks: Cell::new(0),
            idle_look_at: Cell::new(0),
            idle_looked: Cell::new(0),
            idle_release_at: AtomicU64::new(0),
            remote: AtomicPtr::new(ptr::null_mut()),
            next_all: AtomicPtr::new(ptr::null_mut()),
            next_abandoned: Cell::new(ptr::null_mut()),
            stats: HeapStats::new(),
            spans: SpanCache::new(),
            remote_tags: [const { AtomicUsize::new(0) }; REMOTE_SLOTS],
            remote_pools: {
                let mut pools = [const { Cell::new(ptr::null()) }; REMOTE_SLOTS];
                pools[0] = Cell::new(&EMPTY_POOL.0 as *const Pool);
                pools
            },
            unit_cache: {
                let mut slots = [UnitSlot::EMPTY; UNIT_SLOTS];
                slots[0].pool = Cell::new(&EMPTY_POOL.0 as *const Pool);
                slots
            },
        }
    }

    /// Initialises a heap in zeroed memory, field by field: the unit cache
    /// is left as it is (zero: empty), and nothing large goes through the
    /// stack of the thread being served.
    ///
    /// # Safety
    /// `h` is valid for writes, aligned and zero-filled.
    unsafe fn init_in_place(h: *mut Heap) {
        // SAFETY: per the contract; each write targets a field of *h.
        unsafe {
            ptr::addr_of_mut!((*h).state).write(AtomicU8::new(FREE));
            for slot in 0..FAST_SLOTS {
                ptr::addr_of_mut!((*h).alloc_pools[slot])
                    .write(AtomicPtr::new(empty_pool() as *mut Pool));
            }
            for slot in 0..=NUM_CLASSES {
                ptr::addr_of_mut!((*h).heads[slot]).write(Cell::new(empty_pool()));
            }
            for class in 0..NUM_CLASSES {
                ptr::addr_of_mut!((*h).tails[class]).write(Cell::new(ptr::null_mut()));
                ptr::addr_of_mut!((*h).kept_empty[class]).write(Cell::new(0));
                for slot in 0..KEEP_EMPTY_POOLS as usize {
                    ptr::addr_of_mut!((*h).kept_pools[class][slot]).write(Cell::new(ptr::null()));
                }
            }
            ptr::addr_of_mut!((*h).kept_units).write(Cell::new(0));
            ptr::addr_of_mut!((*h).arena_lock).write(SpinLock::new(()));
            for r in 0..UNITS_PER_ARENA {
                ptr::addr_of_mut!((*h).partial[r]).write(Cell::new(ptr::null_mut()));
            }
            ptr::addr_of_mut!((*h).has_empty_arena).write(Cell::new(false));
            ptr::addr_of_mut!((*h).arenas).write(Cell::new(0));
            ptr::addr_of_mut!((*h).units_in_use).write(Cell::new(0));
            ptr::addr_of_mut!((*h).units_peak).write(Cell::new(0));
            ptr::addr_of_mut!((*h).dirty_units).write(Cell::new(0));
            ptr::addr_of_mut!((*h).purge_due).write(AtomicU64::new(0));
            ptr::addr_of_mut!((*h).purge_ticks).write(Cell::new(0));
            ptr::addr_of_mut!((*h).idle_look_at).write(Cell::new(0));
            ptr::addr_of_mut!((*h).idle_looked).write(Cell::new(0));
            ptr::addr_of_mut!((*h).idle_release_at).write(AtomicU64::new(0));
            ptr::addr_of_mut!((*h).remote).write(AtomicPtr::new(ptr::null_mut()));
            ptr::addr_of_mut!((*h).next_all).write(AtomicPtr::new(ptr::null_mut()));
            ptr::addr_of_mut!((*h).next_abandoned).write(Cell::new(ptr::null_mut()));
            ptr::addr_of_mut!((*h).stats).write(HeapStats::new());
            ptr::addr_of_mut!((*h).spans).write(SpanCache::new());
            ptr::addr_of_mut!((*h).unit_cache[0].pool).write(Cell::new(empty_pool()));
            ptr::addr_of_mut!((*h).remote_pools[0]).write(Cell::new(empty_pool()));
        }
    }

    /// The pool `malloc` of a block of `class` pops from (`EMPTY_POOL` if none).
    ///
    /// # Safety
    /// `slot` is `class + 1` for a class < NUM_CLASSES, or 0.
    #[inline(always)]
    pub unsafe fn head_pool(&self, slot: usize) -> &Pool {
        // SAFETY: slot <= NUM_CLASSES per the contract; heads hold live
        // pools of ours or the placeholder, which is never written.
        unsafe { &*self.heads.get_unchecked(slot).get() }
    }

    fn head(&self, class: usize) -> Option<&Pool> {
        let p = self.heads[class + 1].get();
        if ptr::eq(p, empty_pool()) {
            None
        } else {
            // SAFETY: a queue head other than the placeholder is a live pool we own.
            Some(unsafe { &*p })
        }
    }

    fn set_head(&self, class: usize, p: *const Pool) {
        let p = if p.is_null() { empty_pool() } else { p };
        if !ptr::eq(p, empty_pool()) {
            // SAFETY: the new head is a live pool of ours.
            self.unkeep(unsafe { &*p });
        }
        self.heads[class + 1].set(p);
        let slots = &self.alloc_pools[fast_slots(class)];
        if let [one] = slots {
            // A class above 1 KiB: no loop to set up.
            one.store(p as *mut Pool, Relaxed);
        } else {
            // Four stores a round: a class up to 1 KiB has 16 or 64 slots.
            let mut fours = slots.chunks_exact(4);
            for four in &mut fours {
                for slot in four {
                    slot.store(p as *mut Pool, Relaxed);
                }
            }
            for slot in fours.remainder() {
                slot.store(p as *mut Pool, Relaxed);
            }
        }
        // The fence between these stores and the load of FORCE_SLOW, with
        // the two SeqCst operations of `force_slow_paths`: either that walk
        // sees these stores, or this thread sees the flag.
        fence(SeqCst);
        if FORCE_SLOW.load(SeqCst) {
            for slot in &self.alloc_pools[fast_slots(class)] {
                slot.store(empty_pool() as *mut Pool, SeqCst);
            }
        }
    }

    /// The pool `malloc`'s fast path pops from for fast slot `slot`.
    ///
    /// # Safety
    /// `slot < FAST_SLOTS`.
    #[inline(always)]
    pub unsafe fn alloc_pool(&self, slot: usize) -> &Pool {
        // SAFETY: slot < FAST_SLOTS per the contract; the entries hold
        // live pools of ours or the placeholder, which is never written.
        unsafe { &*self.alloc_pools.get_unchecked(slot).load(Relaxed) }
    }

    /// Whether word `i` of the array of words at offset `AT` in the heap (a
    /// cache's tags) holds `u`: one compare with memory and one branch
    /// (`asm!`: LLVM would load the atomic into a register first).
    ///
    /// # Safety
    /// Word `i` from offset `AT` is an `AtomicUsize` of the heap.
    #[inline(always)]
    unsafe fn word_is<const AT: usize>(&self, i: usize, u: usize) -> bool {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the word is in the heap (contract); the asm only reads it.
        unsafe {
            core::arch::asm!(
                "cmp qword ptr [{h} + {i} * 8 + {at}], {u}",
                "jne {no}",
                h = in(reg) self as *const Heap,
                i = in(reg) i,
                u = in(reg) u,
                at = const AT,
                no = label { return false; },
                options(nostack, readonly),
            )
        };
        #[cfg(not(target_arch = "x86_64"))]
        {
            let w = (self as *const Heap as *const u8).wrapping_add(AT) as *const AtomicUsize;
            // SAFETY: the word is an AtomicUsize of the heap (contract).
            if unsafe { &*w.add(i) }.load(Relaxed) != u {
                return false;
            }
        }
        true
    }

    /// The pool of this heap holding unit `u` (an address `>> UNIT_SHIFT`),
    /// if the unit cache has it (see the module doc); `EMPTY_POOL` for unit
    /// 0, the addresses below 16 KiB.
    ///
    /// # Safety
    /// Called by the heap's owner, or on the placeholder heap: the cache's
    /// pool entries are plain cells only the owner writes.
    #[inline(always)]
    pub unsafe fn cached_pool(&self, u: usize) -> Option<&Pool> {
        let i = slot_words::<UNIT_SLOTS>(u);
        // SAFETY: i is from `slot_words` for this cache, so word i is the
        // tag of u's slot, in the array.
        if !unsafe { self.word_is::<{ core::mem::offset_of!(Heap, unit_cache) }>(i, u) } {
            return None;
        }
        let pool = slot_pool(&self.unit_cache, i);
        // SAFETY: a tagged slot names a live pool of ours, slot 0 the
        // placeholder (the module doc).
        Some(unsafe { &*pool })
    }

    /// Enters the unit holding `p`, a block of `pool` (of this heap), in the
    /// unit cache again: a free that missed the cache because another unit
    /// that shares the slot evicted it (a heap of more than 64 MiB) makes
    /// the next frees there hit.
    ///
    /// # Safety
    /// Called by the heap's owner (the cache's pool cells are its own), and
    /// `pool` is a live pool of this heap holding `p`.
    pub unsafe fn recache_unit(&self, pool: &Pool, p: *const u8) {
        self.cache_units(pool, p as usize & !(UNIT_SIZE - 1), 1);
    }

    /// Enters the `n` units of `pool`, starting at `start`, in the unit cache.
    fn cache_units(&self, pool: &Pool, start: usize, n: usize) {
        for k in 0..n {
            let u = (start >> UNIT_SHIFT) + k;
            let slot = u % UNIT_SLOTS;
            if slot == 0 {
                continue;
            }
            let tag = &self.unit_cache[slot].tag;
            self.unit_cache[slot].pool.set(pool);
            // SeqCst: as in `set_head`.
            tag.store(u, SeqCst);
            if FORCE_SLOW.load(SeqCst) {
                tag.store(0, SeqCst);
            }
        }
    }

    /// Removes the `n` units starting at `start` from the unit cache.
    fn uncache_units(&self, start: usize, n: usize) {
        for k in 0..n {
            let u = (start >> UNIT_SHIFT) + k;
            let tag = &self.unit_cache[u % UNIT_SLOTS].tag;
            if tag.load(Relaxed) == u && !u.is_multiple_of(UNIT_SLOTS) {
                tag.store(0, Relaxed);
            }
        }
    }
}

/// The heap owning the arena of a pool: arenas name their owner by address.
pub fn owner_of(a: &Arena) -> *mut Heap {
    a.owner.load(Relaxed) as *mut Heap
}

/// The heap owning a live pool: the copy of its arena's owner in the
/// descriptor (`Pool::owner`), one load where the arena's takes three.
#[inline(always)]
pub fn owner_of_pool(pool: &Pool) -> *mut Heap {
    pool.owner() as *mut Heap
}

impl Heap {
    /// The descriptor this thread last found for unit `u` (of a pointer
    /// `p`) when it freed a block there into another thread's heap: still
    /// mapped, since the cache is emptied before any arena is unmapped
    /// (`forget_remote_pools`), so `free` may test `p` against it before
    /// it looks `p` up in the arena map (a consumer frees run after run of
    /// blocks of its producer's few pools). The descriptor may describe
    /// another pool by now, or none (`EMPTY_POOL` for unit 0): the caller
    /// must check `p` with `Pool::is_block`, which reads its current layout.
    ///
    /// # Safety
    /// `self` is the calling thread's heap or the placeholder heap (whose
    /// cache is never written): the cache's cells are the owner's.
    #[inline(always)]
    pub unsafe fn remote_pool(&self, u: usize) -> Option<&'static Pool> {
        let i = u as u8 as usize;
        // SAFETY: i < REMOTE_SLOTS, so word i is the slot's tag.
        if !unsafe { self.word_is::<{ core::mem::offset_of!(Heap, remote_tags) }>(i, u) } {
            return None;
        }
        // SAFETY: i < REMOTE_SLOTS (a byte).
        let pool = unsafe { self.remote_pools.get_unchecked(i) }.get();
        // SAFETY: `EMPTY_POOL` (slot 0, which unit 0 matches), or a
        // descriptor in an arena header, mapped while the entry is there
        // (above). Never null: saying so saves a test.
        unsafe {
            core::hint::assert_unchecked(!pool.is_null());
            Some(&*pool)
        }
    }

    /// Enters `pool` as the descriptor for `p`'s unit in `remote_pool`'s
    /// cache. Owner only; not the placeholder heap, which is never written
    /// (see `registry::cache_remote_pool`). `p` is a live block of `pool`,
    /// so its arena, which holds the descriptor, cannot be unmapped before
    /// the entry is made, and `forget_remote_pools` removes the entry
    /// before it is.
    fn cache_remote_pool(&self, p: *const u8, pool: &Pool) {
        let u = p as usize >> UNIT_SHIFT;
        if u.is_multiple_of(REMOTE_SLOTS) {
            return;
        }
        self.remote_pools[u % REMOTE_SLOTS].set(pool);
        let tag = &self.remote_tags[u % REMOTE_SLOTS];
        // SeqCst: as in `set_head`.
        tag.store(u, SeqCst);
        if FORCE_SLOW.load(SeqCst) {
            tag.store(0, SeqCst);
        }
    }
}

/// Empties every heap's cache of other heaps' pools: arenas are about to
/// be unmapped (`arena::set_before_unmap`), and a descriptor in one must
/// not be read again. A free that read an entry just before is of a live
/// block, whose arena stays mapped, or of an invalid pointer into the
/// arena going away, which may then fault instead of being reported (a
/// race the unmap-count test this replaced had too).
fn forget_remote_pools() {
    for_each_heap(|h| h.remote_tags.iter().for_each(empty_slot));
}

/// Empties the cache slot of tag `tag`, which another thread may own. Read
/// first: most slots were never written, and writing them would make their
/// pages resident.
fn empty_slot(tag: &AtomicUsize) {
    if tag.load(SeqCst) != 0 {
        tag.store(0, SeqCst);
    }
}

/// From now on every heap takes the slow paths (hooks were installed): its
/// fast-path pools become the placeholder and its unit cache and cache of
/// other heaps' pools are emptied. The owners race with this only in
/// `set_head`, `cache_units` and `cache_remote_pool`, which check the flag
/// after their store (see there).
pub fn force_slow_paths() {
    FORCE_SLOW.store(true, SeqCst);
    for_each_heap(|h| {
        for p in &h.alloc_pools {
            p.store(empty_pool() as *mut Pool, SeqCst);
        }
        let tags = h.unit_cache.iter().map(|slot| &slot.tag);
        tags.chain(&h.remote_tags).for_each(empty_slot);
    });
}

const _: () = assert!(core::mem::size_of::<Heap>().is_multiple_of(64));
// `remote_pool` indexes its cache by the unit's low byte.
const _: () = assert!(REMOTE_SLOTS == 256);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{alloc, free};

    #[test]
    fn the_unit_cache_names_pools_evicts_and_forgets() {
        let h = Heap::new();
        let (a, b) = (Pool::unused(), Pool::unused());
        let at = |addr: usize| addr as *const u8;
        fn cached(h: &Heap, p: *const u8) -> Option<&Pool> {
            // SAFETY: the test's own heap, used by this thread only, and
            // the placeholder.
            unsafe { h.cached_pool(p as usize >> UNIT_SHIFT) }
        }
        let names =
            |h: &Heap, p: usize, pool: &Pool| cached(h, at(p)).is_some_and(|c| ptr::eq(c, pool));
        let u = 0x7000_0000_0000usize + UNIT_SIZE; // slot 1
        h.cache_units(&a, u, 2);
        for p in [u, u + 100, u + UNIT_SIZE, u + 2 * UNIT_SIZE - 1] {
            assert!(names(&h, p, &a), "{p:#x}");
        }
        assert!(cached(&h, at(u + 2 * UNIT_SIZE)).is_none());
        // A unit UNIT_SLOTS units away takes the first unit's slot.
        let far = u + UNIT_SLOTS * UNIT_SIZE;
        h.cache_units(&b, far, 1);
        assert!(cached(&h, at(u)).is_none() && names(&h, u + UNIT_SIZE, &a));
        assert!(names(&h, far, &b));
        // A free there (the general path) takes the slot back for a's unit.
        // SAFETY: the test's own heap, used by this thread only; a and b
        // hold the addresses given.
        unsafe { h.recache_unit(&a, at(u + 48)) };
        assert!(names(&h, u, &a) && cached(&h, at(far)).is_none());
        // SAFETY: as above.
        unsafe { h.recache_unit(&b, at(far + 16)) };
        assert!(cached(&h, at(u)).is_none() && names(&h, far, &b));
        // Forgetting a's units leaves the slot b took.
        h.uncache_units(u, 2);
        assert!(cached(&h, at(u + UNIT_SIZE)).is_none() && names(&h, far, &b));
        // Slot 0 is never used; unit 0 (NULL) resolves to the placeholder pool.
        let zero_slot = 5 * UNIT_SLOTS * UNIT_SIZE;
        h.cache_units(&a, zero_slot, 1);
        assert!(cached(&h, at(zero_slot)).is_none());
        let p0 = cached(&h, ptr::null()).expect("unit 0 always hits slot 0");
        // SAFETY: the placeholder pool, which is never written.
        assert!(ptr::eq(p0, empty_pool()) && !unsafe { p0.is_carved_block(ptr::null()) });
        // The placeholder heap caches nothing but unit 0, and pops nothing.
        assert!(cached(&NO_HEAP.0, at(u)).is_none());
        // SAFETY: slot 1 exists; the placeholder's pool is never written.
        assert!(unsafe { NO_HEAP.0.alloc_pool(1).pop() }.is_null());
    }

    #[test]
    fn unmapping_an_arena_empties_the_caches_of_other_heaps_pools() {
        // This thread's heap caches the pool of a block it frees for
        // another thread, which stays alive meanwhile.
        let (to_owner, done) = std::sync::mpsc::channel::<()>();
        let (to_freer, block) = std::sync::mpsc::channel::<usize>();
        let owner = std::thread::spawn(move || {
            to_freer.send(alloc::malloc(64) as usize).unwrap();
            done.recv().unwrap();
        });
        let p = block.recv().unwrap();
        // SAFETY: a live block of the other thread's heap, freed once (as
        // `free` does when its caches miss).
        unsafe { free::free_remote_uncached(p as *mut u8) };
        // SAFETY: this thread's heap (the free made it one).
        let me = unsafe { &*current() };
        let u = p >> UNIT_SHIFT;
        // SAFETY: our own heap.
        let cached = |u| unsafe { me.remote_pool(u) }.is_some();
        assert!(
            u.is_multiple_of(REMOTE_SLOTS) || cached(u),
            "the free cached the pool"
        );
        // An unmap of any arena: make one empty, into the reserve, and
        // give the reserve's address space back (tests running meanwhile
        // may take the reserve's arenas: try again).
        let mut unmapped = false;
        for _ in 0..20 {
            std::thread::spawn(|| {
                let blocks: Vec<usize> = (0..64).map(|_| alloc::malloc(8000) as usize).collect();
                for b in blocks {
                    // SAFETY: live blocks of ours, freed once.
                    unsafe { free::free(b as *mut u8, "free") };
                }
                trim_all();
            })
            .join()
            .unwrap();
            if arena::give_back_address_space() {
                unmapped = true;
                break;
            }
        }
        assert!(unmapped, "no arena of the reserve was unmapped");
        assert!(!cached(u), "an entry survived the unmap");
        to_owner.send(()).unwrap();
        owner.join().unwrap();
    }

    #[test]
    fn remote_frees_reach_the_owner_and_are_drained() {
        // Run in a fresh thread so no other test shares this heap.
        std::thread::spawn(|| {
            // A class the test harness itself does not use, for exact counts.
            let class = size_class::class_of(3000).unwrap();
            let blocks: Vec<usize> = (0..100).map(|_| alloc::malloc(3000) as usize).collect();
            let h = current();
            assert!(!h.is_null());
            // SAFETY: our own heap.
            let heap = unsafe { &*h };
            let in_use = |_: &Heap| {
                let mut n = 0;
                crate::arena::for_each_pool(|p| {
                    if p.class() == class {
                        n += p.used();
                    }
                });
                n
            };
            let before = in_use(heap);
            std::thread::spawn(move || {
                for p in blocks {
                    // SAFETY: live blocks of the other thread, freed once.
                    unsafe { free::free(p as *mut u8, "free") };
                }
            })
            .join()
            .unwrap();
            // The blocks wait on our remote list (with whatever the thread
            // machinery freed remotely), still counted as in use.
            let mut n = 0;
            let mut pool = heap.remote.load(Acquire);
            while !pool.is_null() {
                // SAFETY: pools on the remote list are live pools of the heap.
                let mut b = unsafe { (*pool).thread_free_list() };
                while !b.is_null() {
                    n += 1;
                    // SAFETY: remote-list blocks are free blocks linked by their first word.
                    b = unsafe { (*b).next };
                }
                // SAFETY: as above.
                pool = unsafe { (*pool).remote_next.load(Relaxed) };
            }
            assert!(n >= 100, "{n} blocks on the remote list");
            assert_eq!(in_use(heap), before);
            // SAFETY: this thread owns the heap.
            assert!(unsafe { heap.drain_remote() });
            assert!(heap.remote.load(Acquire).is_null());
            assert_eq!(in_use(heap), before - 100);
            // SAFETY: as above.
            assert!(!unsafe { heap.drain_remote() }, "nothing left to drain");
        })
        .join()
        .unwrap();
    }

    /// The pools in `h`'s queue for `class`.
    fn queued_pools(h: &Heap, class: usize) -> usize {
        let mut n = 0;
        let mut p = h.heads[class + 1].get();
        while !p.is_null() && !ptr::eq(p, empty_pool()) {
            n += 1;
            // SAFETY: queued pools are live pools of ours.
            p = unsafe { &*p }.next.get();
        }
        n
    }

    /// Fills `limit + 3` pools of `size`-byte blocks and frees them all:
    /// the head and `limit` kept empty pools stay in the queue.
    fn check_kept_empty_pools(size: usize, limit: u8) {
        let class = size_class::class_of(size).unwrap();
        assert_eq!(queue::keep_empty_limit(class), limit, "{size} B");
        // SAFETY: a class from `class_of`.
        let cap = unsafe { size_class::info(class) }.capacity as usize;
        let pools = limit as usize + 3;
        // The lists' own buffers (32 KiB) are of another class.
        let mut blocks: Vec<usize> = Vec::with_capacity(4096);
        blocks.extend((0..cap * pools).map(|_| alloc::malloc(size) as usize));
        assert!(blocks.iter().all(|&p| p != 0));
        // SAFETY: our own live heap.
        let heap = unsafe { &*current() };
        let pools_of = |h: &Heap| queued_pools(h, class);
        // The full pools left the queue; the head is the last one made.
        // Free everything: every pool but the head empties out of order.
        for &p in &blocks {
            // SAFETY: live blocks, freed once.
            unsafe { free::free(p as *mut u8, "free") };
        }
        assert_eq!(heap.kept_empty[class].get(), limit, "{size} B");
        // The head and the kept ones stay in the queue, the rest went back.
        assert_eq!(pools_of(heap), 1 + limit as usize, "{size} B");
        // Allocation reaches the kept pools again as they become heads.
        let mut again: Vec<usize> = Vec::with_capacity(4096);
        again.extend((0..cap * (1 + limit as usize)).map(|_| alloc::malloc(size) as usize));
        assert_eq!(heap.kept_empty[class].get(), 0);
        for &p in &again {
            // SAFETY: as above.
            unsafe { free::free(p as *mut u8, "free") };
        }
        // obm_trim releases them; none is left counted.
        trim_all();
        assert_eq!(heap.kept_empty[class].get(), 0);
        assert!(pools_of(heap) <= 1, "{size} B: {} pools", pools_of(heap));
    }

    #[test]
    fn a_small_class_uses_freed_blocks_before_carving() {
        std::thread::spawn(|| {
            let size = 512;
            let class = size_class::class_of(size).unwrap();
            let per_page = PAGE_SIZE / size;
            // SAFETY: our own live heap.
            let heap = unsafe { &*current() };
            // Allocate until a new pool is made (it carves one page and
            // hands out one block): every older pool of the class is full.
            let mut blocks: Vec<usize> = Vec::with_capacity(4096);
            let head = loop {
                blocks.push(alloc::malloc(size) as usize);
                let h = heap.head(class).unwrap();
                if h.carved.get() == per_page && h.used() == 1 && blocks.len() > 1 {
                    break h;
                }
            };
            let span = queue::pool_units(class) * UNIT_SIZE;
            let in_head = |b: usize| (head.start.get()..head.start.get() + span).contains(&b);
            let older = blocks[blocks.len() - 2];
            assert!(!in_head(older));
            // A full pool gets a block back and queues behind the head.
            // SAFETY: a live block, freed once.
            unsafe { free::free(older as *mut u8, "free") };
            // The rest of the head's carved page goes first.
            for _ in 1..per_page {
                let b = alloc::malloc(size) as usize;
                assert!(in_head(b));
                blocks.push(b);
            }
            // Then the freed block, before the head carves another page.
            let b = alloc::malloc(size) as usize;
            assert_eq!(b, older);
            assert_eq!(head.carved.get(), per_page);
            for &p in &blocks {
                // SAFETY: live blocks (`older` was handed out again), each
                // freed once.
                unsafe { free::free(p as *mut u8, "free") };
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_look_finds_the_kept_pools_wherever_they_sit() {
        std::thread::spawn(|| {
            let size = 20 << 10;
            let class = size_class::class_of(size).unwrap();
            assert_eq!(queue::keep_empty_limit(class), KEEP_EMPTY_POOLS);
            // SAFETY: a class from `class_of`.
            let cap = unsafe { size_class::info(class) }.capacity as usize;
            let span = queue::pool_units(class) * UNIT_SIZE;
            // Five full pools, made in order; the last one is the head.
            let blocks: Vec<usize> = (0..cap * 5).map(|_| alloc::malloc(size) as usize).collect();
            let free_block = |i: usize| {
                // SAFETY: live blocks, each freed once.
                unsafe { free::free(blocks[i] as *mut u8, "free") }
            };
            // The third and fourth pools get a block back and join the
            // queue; then the first two empty out and are kept behind them.
            free_block(2 * cap);
            free_block(3 * cap);
            (0..2 * cap).for_each(free_block);
            // SAFETY: our own live heap.
            let heap = unsafe { &*current() };
            assert_eq!(heap.kept_empty[class].get(), KEEP_EMPTY_POOLS);
            let mut found = Vec::new();
            heap.for_each_kept(class, |pool| found.push(pool.start.get()));
            found.sort_unstable();
            let holds = |start: usize, b: usize| (start..start + span).contains(&b);
            assert_eq!(found.len(), 2);
            assert!(holds(found[0], blocks[0]) || holds(found[0], blocks[cap]));
            assert!(holds(found[1], blocks[0]) || holds(found[1], blocks[cap]));
            assert_ne!(found[0], found[1]);
            (2 * cap..5 * cap)
                .filter(|&i| i != 2 * cap && i != 3 * cap)
                .for_each(free_block);
            trim_all();
            assert_eq!(heap.kept_empty[class].get(), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn empty_pools_of_few_blocks_are_kept_up_to_the_limit() {
        std::thread::spawn(|| {
            // 20 KiB blocks: pools of few blocks, two kept.
            check_kept_empty_pools(20 << 10, KEEP_EMPTY_POOLS);
            // 512 B: one-unit pools of 32 blocks, one kept.
            check_kept_empty_pools(512, 1);
            // 64 B and 1664 B: one-unit pools of 256 blocks, two-unit
            // pools of 19, none kept.
            check_kept_empty_pools(64, 0);
            check_kept_empty_pools(1664, 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn kept_empty_pools_stay_within_their_units() {
        std::thread::spawn(|| {
            let mut blocks: Vec<usize> = Vec::with_capacity(4096);
            // Every class from 8 KiB to 128 KiB: two kept pools each would
            // take more than twice the budget. All made before any is
            // freed: a heap that grows looks at its empty pools.
            let classes = size_class::class_of(8 << 10).unwrap()..NUM_CLASSES;
            for class in classes.clone() {
                // SAFETY: a class below NUM_CLASSES.
                let info = unsafe { size_class::info(class) };
                let n = info.capacity as usize * (KEEP_EMPTY_POOLS as usize + 2);
                let size = info.block_size as usize;
                blocks.extend((0..n).map(|_| alloc::malloc(size) as usize));
            }
            for p in blocks.drain(..) {
                // SAFETY: live blocks, freed once.
                unsafe { free::free(p as *mut u8, "free") };
            }
            // SAFETY: our own live heap.
            let heap = unsafe { &*current() };
            let units: usize = classes
                .map(|c| heap.kept_empty[c].get() as usize * queue::pool_units(c))
                .sum();
            assert_eq!(units, heap.kept_units.get());
            assert!(units <= KEEP_EMPTY_UNITS, "{units} units kept");
            assert!(
                units + USABLE_UNITS > KEEP_EMPTY_UNITS,
                "{units} units kept: the budget is used"
            );
            trim_all();
            assert_eq!(heap.kept_units.get(), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn empty_pools_go_back_after_a_look_finds_them_idle() {
        std::thread::spawn(|| {
            let size = 20 << 10;
            let class = size_class::class_of(size).unwrap();
            // SAFETY: a class from `class_of`.
            let cap = unsafe { size_class::info(class) }.capacity as usize;
            let first = alloc::malloc(size);
            // SAFETY: our own live heap (made by the first malloc).
            let heap = unsafe { &*current() };
            let queued = |h: &Heap| queued_pools(h, class);
            let mut blocks: Vec<usize> = Vec::with_capacity(64);
            blocks.extend((0..cap * 5).map(|_| alloc::malloc(size) as usize));
            for &p in &blocks {
                // SAFETY: live blocks, freed once.
                unsafe { free::free(p as *mut u8, "free") };
            }
            // The empty head, two kept empty pools, and the pool of `first`.
            assert_eq!(queued(heap), 2 + KEEP_EMPTY_POOLS as usize);
            let at = heap.idle_look_at.get();
            assert_ne!(at, 0, "making and keeping pools schedules a look");
            // The first look marks the empty pools, the second releases
            // them; the pool holding a block stays, as the head.
            heap.release_idle_pools(at);
            assert_eq!(queued(heap), 2 + KEEP_EMPTY_POOLS as usize);
            heap.release_idle_pools(at + purge::delay_ms());
            assert_eq!(queued(heap), 1);
            assert_eq!(heap.kept_empty[class].get(), 0);
            // Emptied now, it goes at the second look after.
            // SAFETY: as above.
            unsafe { free::free(first, "free") };
            heap.release_idle_pools(at + 2 * purge::delay_ms());
            assert_eq!(queued(heap), 1, "marked, not released");
            heap.release_idle_pools(at + 3 * purge::delay_ms());
            assert_eq!(queued(heap), 0, "released at the second look");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_shrinking_heap_stays_bounded_and_reuses_purged_pools() {
        std::thread::spawn(|| {
            // 64 MiB of 1000-byte blocks: far more than the purge threshold.
            let n = 64 << 10;
            let fill = |i: usize| (i * 7 + 1) as u8;
            let mut blocks: Vec<usize> = Vec::with_capacity(n);
            for i in 0..n {
                let p = alloc::malloc(1000);
                assert!(!p.is_null());
                // SAFETY: a fresh 1000-byte block.
                unsafe { ptr::write_bytes(p, fill(i), 1000) };
                blocks.push(p as usize);
            }
            // SAFETY: our own live heap.
            let heap = unsafe { &*current() };
            let peak = heap.units_in_use.get();
            for &p in &blocks {
                // SAFETY: live blocks, freed once.
                unsafe { free::free(p as *mut u8, "free") };
            }
            // What the heap keeps with its pages is at most its peak.
            let kept = heap.dirty_units.get();
            assert!(kept <= peak, "{kept} of {peak} units");
            let class = size_class::class_of(1000).unwrap();
            if let Some(head) = heap.head(class) {
                assert!(head.is_empty());
            }
            // Purged and rewound: the free units and the empty head pool.
            assert!(heap.purge_all() >= kept * UNIT_SIZE);
            assert_eq!(heap.dirty_units.get(), 0);
            // SAFETY: this thread's own heap.
            unsafe { heap.rewind_empty_heads() };
            // Rewound pools and discarded units carve and fill correctly.
            for (i, slot) in blocks.iter_mut().enumerate() {
                let p = alloc::malloc(1000);
                assert!(!p.is_null());
                // SAFETY: a fresh 1000-byte block.
                unsafe { ptr::write_bytes(p, fill(i), 1000) };
                *slot = p as usize;
            }
            for (i, &p) in blocks.iter().enumerate() {
                // SAFETY: live 1000-byte blocks, each filled once.
                let b = unsafe { core::slice::from_raw_parts(p as *const u8, 1000) };
                assert!(b.iter().all(|&x| x == fill(i)), "block {i} overwritten");
            }
            for &p in &blocks {
                // SAFETY: live blocks, freed once.
                unsafe { free::free(p as *mut u8, "free") };
            }
        })
        .join()
        .unwrap();
    }
}
