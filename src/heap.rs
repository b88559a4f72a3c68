//! Thread heaps: each thread allocates from its own heap, reached through a
//! native thread-local pointer, so `malloc` and `free` of its own blocks take
//! no lock and no atomic read-modify-write.
//!
//! A heap owns arenas (and so their pools) and keeps, per size class, a
//! queue of its pools that may have a free block; the queue's head is the
//! pool allocations come from. Pools that fill up leave the queue; a free
//! into a full pool puts it back at the tail. At most one empty pool per
//! class is kept (the head); others go back to their arena at once.
//!
//! The fast paths read two things here, `alloc_pools` and the unit cache;
//! either can send the calling thread to the slow paths, and is set up so
//! that it does whenever it must: for a thread without a heap (its TLS slot
//! points to the placeholder heap `NO_HEAP`) and once hooks are installed
//! (`force_slow_paths`). `alloc_pools[class + 1]` is the queue head of
//! `class` (`heads`), or the placeholder pool `EMPTY_POOL`, whose
//! allocation list is always empty, when the class has no pool or the
//! heap takes the slow paths. The unit cache is a direct-mapped table from 16 KiB unit to the
//! heap's pool holding it: `unit_tags[u % UNIT_SLOTS] == u` for the unit
//! number `u = address >> 14` proves that the unit is mapped and holds a
//! live pool of this heap, `unit_pools` names it. A pool's units are
//! entered when it is made (evicting whatever shared their slots) and
//! removed when it is released; a unit missing from the cache sends its
//! frees to the general path. Slot 0 is never used: its tag stays 0, which
//! unit 0 (the addresses below 16 KiB, NULL among them) matches, and its
//! pool is the all-zero `EMPTY_POOL`, whose checks fail. Other slots with
//! tag 0 are empty: only unit 0 has number 0, and it maps to slot 0.
//!
//! Cross-thread frees go to the block's pool (`Pool::thread_free`); the
//! thread whose push makes that list non-empty also pushes the pool on the
//! heap's `remote` list. The owner takes the whole list with one swap when
//! a class queue runs dry, and moves each pool's blocks to the pool's local
//! free list in one splice.
//!
//! Life of a heap: created on a thread's first allocation (or adopted:
//! see below) and registered with a pthread key whose destructor runs at
//! thread exit. Then the heap is *abandoned*: it drains its remote list,
//! returns its empty pools to their arenas, keeps its live blocks and goes
//! on the abandoned list, still the owner of its arenas. Blocks freed into
//! it by other threads wake a reclaim that drains it under the registry
//! lock; an abandoned heap keeps no empty pool, so each goes back to its
//! arena as its last block does. Its free pages wait the purge delay for
//! the next new thread, which adopts the heap whole; any thread's slow path
//! purges them when the delay has run out. Heaps are never unmapped.
//!
//! Fork: the registry, arena reserve and large cache locks are held across
//! `fork`; in the child every heap that belonged to another running thread
//! is marked *orphaned* (its thread is gone mid-operation, so its lists may
//! be inconsistent): never adopted, its memory stays unused in the child.
//!
//! Owner-only fields are `Cell`s: only the owning thread (or the thread
//! holding the registry lock while the heap is abandoned) touches them;
//! other threads use only `slow`, `remote`, `state`, `next_all` and the
//! counters.

use crate::arena::{self, Arena};
use crate::config::*;
use crate::os;
use crate::pool::Pool;
use crate::purge;
use crate::report;
use crate::size_class;
use crate::stats::{self, HeapStats};
use crate::sync::SpinLock;
use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};

const FREE: u8 = 0;
const ACTIVE: u8 = 1;
const ABANDONED: u8 = 2;
const ORPHANED: u8 = 3;

#[repr(C, align(64))]
pub struct Heap {
    state: AtomicU8,
    /// `alloc_pools[class + 1]`: the pool `malloc`'s fast path pops from;
    /// see the module doc. Entry 0 is always `EMPTY_POOL`, so `malloc(0)`
    /// takes the slow path. Written by other threads in `force_slow_paths`.
    alloc_pools: [AtomicPtr<Pool>; NUM_CLASSES + 1],
    /// `heads[class + 1]`: the head of the queue of `class`, or `EMPTY_POOL`.
    heads: [Cell<*const Pool>; NUM_CLASSES + 1],
    /// The last pool of each class queue (null if the queue is empty).
    tails: [Cell<*mut Pool>; NUM_CLASSES],
    /// Held by the owner while it changes the fields below up to `units_peak`
    /// and the arenas' unit bitmaps (slow paths only), and by `obm_trim`
    /// when it purges another thread's heap.
    arena_lock: SpinLock<()>,
    /// Owned arenas with at least one free unit, doubly linked, in lists by
    /// their longest run of free units (`partial[r]`, r = 1..=15), so that
    /// a pool of n units finds an arena in `partial[n..]` at once.
    partial: [Cell<*mut Arena>; UNITS_PER_ARENA],
    /// How many arenas in `partial` are entirely free.
    empty_arenas: Cell<usize>,
    /// Arenas this heap owns.
    arenas: Cell<usize>,
    /// Units held by this heap's pools, and their most since the last purge.
    units_in_use: Cell<usize>,
    units_peak: Cell<usize>,
    /// Free units whose pages may be resident, over all arenas of `partial`.
    dirty_units: Cell<usize>,
    /// When the oldest dirty units' purge delay runs out (0: none pending).
    purge_due: Cell<u64>,
    /// Pools with blocks freed by other threads, linked by `remote_next`.
    remote: AtomicPtr<Pool>,
    /// Every heap ever made, newest first (push-only).
    next_all: AtomicPtr<Heap>,
    /// Link in the abandoned list (under the registry lock).
    next_abandoned: Cell<*mut Heap>,
    pub stats: HeapStats,
    /// The unit cache (see the module doc): a unit's number, or 0 for none.
    /// Last in the struct and zero when empty, so that a new heap's
    /// untouched pages stay untouched.
    unit_tags: [AtomicUsize; UNIT_SLOTS],
    unit_pools: [Cell<*const Pool>; UNIT_SLOTS],
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
                NUM_CLASSES + 1],
            heads: [const { Cell::new(&EMPTY_POOL.0 as *const Pool) }; NUM_CLASSES + 1],
            tails: [const { Cell::new(ptr::null_mut()) }; NUM_CLASSES],
            arena_lock: SpinLock::new(()),
            partial: [const { Cell::new(ptr::null_mut()) }; UNITS_PER_ARENA],
            empty_arenas: Cell::new(0),
            arenas: Cell::new(0),
            units_in_use: Cell::new(0),
            units_peak: Cell::new(0),
            dirty_units: Cell::new(0),
            purge_due: Cell::new(0),
            remote: AtomicPtr::new(ptr::null_mut()),
            next_all: AtomicPtr::new(ptr::null_mut()),
            next_abandoned: Cell::new(ptr::null_mut()),
            stats: HeapStats::new(),
            unit_tags: [const { AtomicUsize::new(0) }; UNIT_SLOTS],
            unit_pools: {
                let mut pools = [const { Cell::new(ptr::null()) }; UNIT_SLOTS];
                pools[0] = Cell::new(&EMPTY_POOL.0 as *const Pool);
                pools
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
            for slot in 0..=NUM_CLASSES {
                ptr::addr_of_mut!((*h).alloc_pools[slot])
                    .write(AtomicPtr::new(empty_pool() as *mut Pool));
                ptr::addr_of_mut!((*h).heads[slot]).write(Cell::new(empty_pool()));
            }
            for class in 0..NUM_CLASSES {
                ptr::addr_of_mut!((*h).tails[class]).write(Cell::new(ptr::null_mut()));
            }
            ptr::addr_of_mut!((*h).arena_lock).write(SpinLock::new(()));
            for r in 0..UNITS_PER_ARENA {
                ptr::addr_of_mut!((*h).partial[r]).write(Cell::new(ptr::null_mut()));
            }
            ptr::addr_of_mut!((*h).empty_arenas).write(Cell::new(0));
            ptr::addr_of_mut!((*h).arenas).write(Cell::new(0));
            ptr::addr_of_mut!((*h).units_in_use).write(Cell::new(0));
            ptr::addr_of_mut!((*h).units_peak).write(Cell::new(0));
            ptr::addr_of_mut!((*h).dirty_units).write(Cell::new(0));
            ptr::addr_of_mut!((*h).purge_due).write(Cell::new(0));
            ptr::addr_of_mut!((*h).remote).write(AtomicPtr::new(ptr::null_mut()));
            ptr::addr_of_mut!((*h).next_all).write(AtomicPtr::new(ptr::null_mut()));
            ptr::addr_of_mut!((*h).next_abandoned).write(Cell::new(ptr::null_mut()));
            ptr::addr_of_mut!((*h).stats).write(HeapStats::new());
            ptr::addr_of_mut!((*h).unit_pools[0]).write(Cell::new(empty_pool()));
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
        self.heads[class + 1].set(p);
        let fast = &self.alloc_pools[class + 1];
        // SeqCst, with the load of FORCE_SLOW after it and the two
        // operations of `force_slow_paths`: either that walk sees this
        // store, or this thread sees the flag.
        fast.store(p as *mut Pool, SeqCst);
        if FORCE_SLOW.load(SeqCst) {
            fast.store(empty_pool() as *mut Pool, SeqCst);
        }
    }

    /// The pool `malloc`'s fast path pops from for `slot` (class + 1).
    ///
    /// # Safety
    /// `slot <= NUM_CLASSES`.
    #[inline(always)]
    pub unsafe fn alloc_pool(&self, slot: usize) -> &Pool {
        // SAFETY: slot <= NUM_CLASSES per the contract; the entries hold
        // live pools of ours or the placeholder, which is never written.
        unsafe { &*self.alloc_pools.get_unchecked(slot).load(Relaxed) }
    }

    /// Whether the unit cache holds `p`'s unit (see the module doc), or `p`
    /// lies below 16 KiB (then the pool named is `EMPTY_POOL`).
    #[inline(always)]
    pub fn unit_cached(&self, p: *const u8) -> bool {
        let u = p as usize >> UNIT_SHIFT;
        // SAFETY: the index is reduced modulo UNIT_SLOTS.
        unsafe { self.unit_tags.get_unchecked(u % UNIT_SLOTS) }.load(Relaxed) == u
    }

    /// The pool the unit cache names for `p`'s unit.
    ///
    /// # Safety
    /// `unit_cached(p)`.
    #[inline(always)]
    pub unsafe fn cached_pool(&self, p: *const u8) -> &Pool {
        let slot = (p as usize >> UNIT_SHIFT) % UNIT_SLOTS;
        // SAFETY: the index is reduced modulo UNIT_SLOTS; a tagged slot
        // names a live pool of ours, slot 0 the placeholder (contract).
        unsafe { &*self.unit_pools.get_unchecked(slot).get() }
    }

    /// Enters the `n` units of `pool`, starting at `start`, in the unit cache.
    fn cache_units(&self, pool: &Pool, start: usize, n: usize) {
        for k in 0..n {
            let u = (start >> UNIT_SHIFT) + k;
            let slot = u % UNIT_SLOTS;
            if slot == 0 {
                continue;
            }
            let tag = &self.unit_tags[slot];
            self.unit_pools[slot].set(pool);
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
            let tag = &self.unit_tags[u % UNIT_SLOTS];
            if tag.load(Relaxed) == u && u % UNIT_SLOTS != 0 {
                tag.store(0, Relaxed);
            }
        }
    }

    /// Allocates a block of `class`; null (errno ENOMEM) if memory is exhausted.
    pub fn alloc(&self, class: usize) -> *mut u8 {
        // SAFETY: class + 1 <= NUM_CLASSES.
        let b = unsafe { self.head_pool(class + 1) }.pop();
        if !b.is_null() {
            stats::count(&self.stats.allocs[class + 1]);
            return b;
        }
        self.alloc_slow(class)
    }

    /// The allocation list of the head pool is empty: refill it, or move on
    /// to the next pool, blocks other threads freed, a new pool.
    #[cold]
    #[inline(never)]
    pub fn alloc_slow(&self, class: usize) -> *mut u8 {
        let b = self.alloc_from_queue(class);
        if !b.is_null() {
            return b;
        }
        purge_abandoned_if_due();
        let pool = self.new_pool(class);
        if pool.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: new_pool returns a live, empty pool we own.
        let pool = unsafe { &*pool };
        self.push_front(pool);
        stats::count(&self.stats.allocs[class + 1]);
        pool.pop_slow()
    }

    fn alloc_from_queue(&self, class: usize) -> *mut u8 {
        loop {
            // Drop exhausted pools off the head of the queue.
            while let Some(pool) = self.head(class) {
                let b = pool.pop_slow();
                if !b.is_null() {
                    stats::count(&self.stats.allocs[class + 1]);
                    return b;
                }
                self.unlink(pool);
            }
            // Blocks other threads gave back may refill a pool.
            if !self.drain_remote() {
                return ptr::null_mut();
            }
        }
    }

    /// Frees a block of a pool this heap owns.
    ///
    /// # Safety
    /// `pool` is a live pool of this heap, `p` a block of it handed out and
    /// not freed since, and the caller is the heap's owner.
    #[inline(always)]
    pub unsafe fn free_local(&self, pool: &Pool, p: *mut u8) {
        // SAFETY: per the contract.
        if unsafe { pool.push_local(p) } {
            // The commonest case, a malloc/free loop on one block: the head
            // of its queue became empty (and is queued). It stays, without
            // the call.
            if pool.state.load(Relaxed) == 0 && self.keeps_as_head(pool) {
                return;
            }
            self.pool_gained(pool);
        }
    }

    /// A pool got a block back while out of the queue, or became empty.
    #[cold]
    #[inline(never)]
    fn pool_gained(&self, pool: &Pool) {
        if !pool.in_queue() {
            self.push_back(pool);
        }
        // A live heap keeps one empty pool per class (the queue head) for the
        // next allocation; a heap without a thread keeps none. A pool on the
        // remote list waits until `drain_remote` takes it off. (Empty, it
        // has no live block, so no other thread can be registering it.)
        if pool.is_empty() && !self.keeps_as_head(pool) && !pool.remote_queued.load(Relaxed) {
            self.release_pool(pool);
        }
    }

    /// Whether `pool`, empty, stays for the next allocation: it is the head
    /// of its queue and the heap has a thread.
    #[inline(always)]
    fn keeps_as_head(&self, pool: &Pool) -> bool {
        ptr::eq(self.heads[pool.class() + 1].get(), pool) && self.is_active()
    }

    fn is_active(&self) -> bool {
        self.state.load(Relaxed) == ACTIVE
    }

    /// Registers `pool`, whose `thread_free` list a remote free just made
    /// non-empty, on this heap's remote list. Any thread.
    pub fn push_remote_pool(&self, pool: &Pool) {
        let p = pool as *const Pool as *mut Pool;
        let mut head = self.remote.load(Relaxed);
        loop {
            pool.remote_next.store(head, Relaxed);
            match self.remote.compare_exchange_weak(head, p, Release, Relaxed) {
                Ok(_) => break,
                Err(cur) => head = cur,
            }
        }
    }

    /// After a remote free into this heap: a heap whose thread has exited
    /// is drained by the freeing thread, if the registry lock is free.
    #[inline(always)]
    pub fn after_remote_free(&self) {
        if self.state.load(Acquire) == ABANDONED {
            reclaim(self);
        }
    }

    /// Puts `pool` at the head of its class queue. The previous head, if
    /// empty, is released: at most one empty pool per class is kept.
    fn push_front(&self, pool: &Pool) {
        let class = pool.class();
        if let Some(old) = self.head(class) {
            if old.is_empty() && !old.remote_queued.load(Relaxed) {
                self.release_pool(old);
            }
        }
        let old = self
            .head(class)
            .map_or(ptr::null_mut(), |o| o as *const Pool as *mut Pool);
        pool.prev.set(ptr::null_mut());
        pool.next.set(old);
        if old.is_null() {
            self.tails[class].set(pool as *const Pool as *mut Pool);
        } else {
            // SAFETY: queued pools are live pools we own.
            unsafe { &*old }.prev.set(pool as *const Pool as *mut Pool);
        }
        self.set_head(class, pool);
        pool.set_in_queue(true);
    }

    /// Puts `pool` at the tail of its class queue: the head stays the pool
    /// allocations come from until it runs out, and the pools behind it
    /// gather frees meanwhile, so each refill takes many blocks.
    fn push_back(&self, pool: &Pool) {
        let class = pool.class();
        let tail = self.tails[class].get();
        if tail.is_null() {
            return self.push_front(pool);
        }
        pool.next.set(ptr::null_mut());
        pool.prev.set(tail);
        // SAFETY: queued pools are live pools we own.
        unsafe { &*tail }.next.set(pool as *const Pool as *mut Pool);
        self.tails[class].set(pool as *const Pool as *mut Pool);
        pool.set_in_queue(true);
    }

    fn unlink(&self, pool: &Pool) {
        let (prev, next) = (pool.prev.get(), pool.next.get());
        if prev.is_null() {
            self.set_head(pool.class(), next);
        } else {
            // SAFETY: queue links point to live pools we own.
            unsafe { &*prev }.next.set(next);
        }
        if next.is_null() {
            self.tails[pool.class()].set(prev);
        } else {
            // SAFETY: as above.
            unsafe { &*next }.prev.set(prev);
        }
        pool.set_in_queue(false);
        pool.prev.set(ptr::null_mut());
        pool.next.set(ptr::null_mut());
    }

    /// Takes units for a pool of `class` from an owned arena, or a new one.
    fn new_pool(&self, class: usize) -> *mut Pool {
        let _g = self.arena_lock.lock();
        self.purge_expired(purge::now_ms());
        let units = size_class::info(class).units as usize;
        // The tightest fit first: the arena whose longest run is shortest.
        let mut arena = (units..UNITS_PER_ARENA)
            .map(|r| self.partial[r].get())
            .find(|a| !a.is_null())
            .unwrap_or(ptr::null_mut());
        let mut first = None;
        if !arena.is_null() {
            // SAFETY: arenas in `partial` are live arenas we own.
            let a = unsafe { &*arena };
            let was_empty = a.is_empty();
            let dirty = a.dirty_count();
            if let Some(f) = a.take_units(units) {
                if was_empty {
                    self.empty_arenas.set(self.empty_arenas.get() - 1);
                }
                self.add_dirty(a.dirty_count() as isize - dirty as isize);
                first = Some(f);
            }
        }
        let first = match first {
            Some(f) => f,
            None => {
                arena = arena::acquire(self as *const Heap as *mut ());
                if arena.is_null() {
                    return ptr::null_mut();
                }
                self.arenas.set(self.arenas.get() + 1);
                // SAFETY: a freshly acquired arena, owned by us.
                let a = unsafe { &*arena };
                self.link_partial(a);
                let Some(f) = a.take_units(units) else {
                    report::fatal(format_args!("internal error: new arena has no room"))
                };
                f
            }
        };
        // SAFETY: `arena` is live and ours.
        let a = unsafe { &*arena };
        self.rebucket(a);
        let head = a.make_pool(first, units, class);
        self.cache_units(head, a.unit_start(first) as usize, units);
        let in_use = self.units_in_use.get() + units;
        self.units_in_use.set(in_use);
        self.units_peak.set(self.units_peak.get().max(in_use));
        purge::units_taken(units);
        head as *const Pool as *mut Pool
    }

    /// Gives an empty pool's units back to its arena, their pages kept for
    /// the purge delay (an emptied arena stays too, until the purge gives
    /// it back to the reserve).
    fn release_pool(&self, pool: &Pool) {
        debug_assert!(pool.is_empty() && !pool.remote_queued.load(Relaxed));
        if pool.in_queue() {
            self.unlink(pool);
        }
        let class = pool.class();
        let units = size_class::info(class).units as usize;
        let start = pool.start.get() as *mut u8;
        let arena_ptr = arena::arena_of(start);
        // SAFETY: the pool is ours, so its arena is a live arena we own.
        let a = unsafe { &*arena_ptr };
        let first = (start as usize & ARENA_MASK) >> UNIT_SHIFT;
        self.uncache_units(start as usize, units);
        let _g = self.arena_lock.lock();
        a.unmake_pool(first, units);
        let now = purge::now_ms();
        a.give_units(first, units, now);
        self.add_dirty(units as isize);
        if self.purge_due.get() == 0 {
            self.purge_due.set(now + purge::delay_ms());
        }
        self.rebucket(a);
        self.units_in_use.set(self.units_in_use.get() - units);
        purge::units_released(units);
        if a.is_empty() {
            // Kept, pages and all, for the purge delay like any free unit.
            self.empty_arenas.set(self.empty_arenas.get() + 1);
        }
        if purge::delay_ms() == 0 {
            if a.is_empty() {
                self.unlink_partial(a);
                self.empty_arenas.set(self.empty_arenas.get() - 1);
                self.release_arena(arena_ptr);
            } else {
                let units = a.discard_dirty();
                self.add_dirty(-(units as isize));
            }
        } else if purge::over_bound() {
            // Bounded: a burst does not pin its whole peak until the delay.
            self.purge_down_to(now, self.dirty_units.get() / 2);
        } else {
            self.purge_expired(now);
        }
    }

    /// Gives an empty arena, unlinked from `partial`, back to the reserve;
    /// returns the bytes of its dirty units, whose pages go with it.
    fn release_arena(&self, a: *mut Arena) -> usize {
        self.arenas.set(self.arenas.get() - 1);
        // SAFETY: a live arena of ours.
        let dirty = unsafe { &*a }.dirty_count();
        self.add_dirty(-(dirty as isize));
        purge::given_back(dirty * UNIT_SIZE);
        // SAFETY: empty, unlinked, and no block of it is live.
        unsafe { arena::release(a) };
        dirty * UNIT_SIZE
    }

    /// Links `a` in the list of its longest free run (none if it has no
    /// free unit).
    fn link_partial(&self, a: &Arena) {
        let r = a.max_run.get() as usize;
        if r == 0 {
            return;
        }
        let list = &self.partial[r];
        let head = list.get();
        a.prev.set(ptr::null_mut());
        a.next.set(head);
        if !head.is_null() {
            // SAFETY: arenas in `partial` are live arenas we own.
            unsafe { &*head }.prev.set(a as *const Arena as *mut Arena);
        }
        list.set(a as *const Arena as *mut Arena);
        a.bucket.set(r as u8);
        a.in_partial.set(true);
    }

    /// Moves `a` to the list of its longest free run after its units changed.
    fn rebucket(&self, a: &Arena) {
        if a.in_partial.get() {
            if a.bucket.get() == a.max_run.get() {
                return;
            }
            self.unlink_partial(a);
        }
        self.link_partial(a);
    }

    fn unlink_partial(&self, a: &Arena) {
        let (prev, next) = (a.prev.get(), a.next.get());
        if prev.is_null() {
            self.partial[a.bucket.get() as usize].set(next);
        } else {
            // SAFETY: as in link_partial.
            unsafe { &*prev }.next.set(next);
        }
        if !next.is_null() {
            // SAFETY: as in link_partial.
            unsafe { &*next }.prev.set(prev);
        }
        a.in_partial.set(false);
    }

    /// Purges what has waited the purge delay, if anything may have.
    /// Caller holds `arena_lock`.
    fn purge_expired(&self, now: u64) {
        let due = self.purge_due.get();
        if due != 0 && now >= due && self.purge_locked(now, false) != 0 {
            purge::reset_peak();
        }
    }

    /// Gives back the pages of the dirty units of every arena of `partial`
    /// whose delay has run out, or of all of them if `all`, and the empty
    /// arenas themselves to the reserve; notes when the next ones are due.
    /// Caller holds `arena_lock`. Returns the bytes given back.
    fn purge_locked(&self, now: u64, all: bool) -> usize {
        let bytes = self.purge_walk(now, all, 0);
        if all {
            self.units_peak.set(self.units_in_use.get());
        }
        bytes
    }

    /// `dirty_units += n`, here and in the process-wide count.
    fn add_dirty(&self, n: isize) {
        self.dirty_units
            .set(self.dirty_units.get().wrapping_add_signed(n));
        purge::dirty_changed(n);
    }

    /// Gives back free units, expired or not, until at most `target` are
    /// dirty. The peak stays: it is what the bound is measured against.
    fn purge_down_to(&self, now: u64, target: usize) {
        self.purge_walk(now, true, target);
    }

    /// The walk of `purge_locked` and `purge_down_to`: stops once at most
    /// `target` units are dirty.
    fn purge_walk(&self, now: u64, all: bool, target: usize) -> usize {
        let mut bytes = 0;
        let mut due = 0;
        let mut complete = true;
        // Empty arenas (the longest runs) first.
        'walk: for r in (1..UNITS_PER_ARENA).rev() {
            let mut arena = self.partial[r].get();
            while !arena.is_null() {
                if self.dirty_units.get() <= target {
                    complete = false;
                    break 'walk;
                }
                // SAFETY: arenas in `partial` are live arenas we own.
                let a = unsafe { &*arena };
                let next = a.next.get();
                if a.is_empty() || a.dirty_count() != 0 {
                    if all || purge::expired(a.dirty_stamp.get(), now) {
                        if a.is_empty() {
                            self.unlink_partial(a);
                            self.empty_arenas.set(self.empty_arenas.get() - 1);
                            bytes += self.release_arena(arena);
                        } else {
                            let units = a.discard_dirty();
                            self.add_dirty(-(units as isize));
                            bytes += units * UNIT_SIZE;
                        }
                    } else {
                        let d = a.dirty_stamp.get() + purge::delay_ms();
                        due = if due == 0 { d } else { due.min(d) };
                    }
                }
                arena = next;
            }
        }
        if complete {
            self.purge_due.set(due);
        } else if due != 0 && (self.purge_due.get() == 0 || due < self.purge_due.get()) {
            self.purge_due.set(due);
        }
        bytes
    }

    /// Gives back the pages of the empty pools kept as queue heads (rewound,
    /// so they are carved afresh when used again). Owner only.
    fn rewind_empty_heads(&self) -> usize {
        let mut bytes = 0;
        for class in 0..NUM_CLASSES {
            if let Some(pool) = self.head(class) {
                if pool.is_empty() && pool.rewind() {
                    let b = size_class::info(class).units as usize * UNIT_SIZE;
                    // SAFETY: the pool is ours and holds no live block.
                    unsafe { os::discard(pool.start.get() as *mut u8, b) };
                    purge::given_back(b);
                    bytes += b;
                }
            }
        }
        bytes
    }

    /// Gives back everything this heap keeps for reuse that another thread
    /// may touch: the pages of every free unit and the empty arenas. Any
    /// thread (`obm_trim`); not the empty pools kept as queue heads, which
    /// only the owner may rewind. Returns the bytes given back.
    pub fn purge_all(&self) -> usize {
        let _g = self.arena_lock.lock();
        self.purge_locked(purge::now_ms(), true)
    }

    /// Takes back every block other threads freed into this heap. True if
    /// there was any.
    pub fn drain_remote(&self) -> bool {
        let mut p = self.remote.swap(ptr::null_mut(), Acquire);
        if p.is_null() {
            return false;
        }
        while !p.is_null() {
            // SAFETY: pools on the remote list are live pools of ours: each
            // holds at least one block on its `thread_free` list.
            let pool = unsafe { &*p };
            // Read the link before clearing the flag: from then on another
            // thread may register the pool again (see `Pool::push_thread_free`).
            p = pool.remote_next.load(Relaxed);
            pool.remote_queued.store(false, SeqCst);
            pool.take_thread_free();
            if pool.is_empty() || !pool.in_queue() {
                self.pool_gained(pool);
            }
        }
        true
    }

    /// At thread exit: the empty pools kept as queue heads go back to their
    /// arenas (an abandoned heap keeps none); their pages, like the other
    /// free units', wait for the purge delay, so that a thread that adopts
    /// the heap soon finds them resident.
    fn release_empty_heads(&self) {
        for class in 0..NUM_CLASSES {
            if let Some(pool) = self.head(class) {
                if pool.is_empty() && !pool.remote_queued.load(Relaxed) {
                    self.release_pool(pool);
                }
            }
        }
    }
}

/// The heap owning the arena of a pool: arenas name their owner by address.
pub fn owner_of(a: &Arena) -> *mut Heap {
    a.owner.load(Relaxed) as *mut Heap
}

/// Drains an abandoned heap, acting as its owner under the registry lock.
/// An abandoned heap releases pools and arenas as they empty, so draining
/// is all it takes, and the cost is that of the blocks drained.
fn reclaim(h: &Heap) {
    if let Some(_g) = REGISTRY.try_lock() {
        if h.state.load(Relaxed) == ABANDONED {
            h.drain_remote();
        }
    }
}

/// When the free pages of abandoned heaps are next due to go back (0: none).
static ABANDONED_DUE: AtomicU64 = AtomicU64::new(0);

fn note_abandoned_due(t: u64) {
    let mut cur = ABANDONED_DUE.load(Relaxed);
    while cur == 0 || t < cur {
        match ABANDONED_DUE.compare_exchange_weak(cur, t, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(c) => cur = c,
        }
    }
}

/// Gives back the expired free pages of the abandoned heaps, whose threads
/// are gone and will not do it: the slow path of any thread looks at the
/// clock for them. Skipped if another thread holds the registry lock.
fn purge_abandoned_if_due() {
    let due = ABANDONED_DUE.load(Relaxed);
    if due == 0 {
        return;
    }
    let now = purge::now_ms();
    if now < due {
        return;
    }
    let Some(r) = REGISTRY.try_lock() else {
        return;
    };
    ABANDONED_DUE.store(0, Relaxed);
    let mut h = r.abandoned;
    while !h.is_null() {
        // SAFETY: abandoned heaps are valid; we hold the registry lock.
        let heap = unsafe { &*h };
        let _g = heap.arena_lock.lock();
        heap.purge_expired(now);
        if heap.purge_due.get() != 0 {
            note_abandoned_due(heap.purge_due.get());
        }
        h = heap.next_abandoned.get();
    }
}

/// Gives back to the OS every free page obmem keeps for reuse, of every
/// heap (`obm_trim`, `malloc_trim`): the free units and spare arenas of
/// every heap, the calling thread's empty pools, and the cached large
/// mappings. Another thread's empty pools kept as queue heads (at most one
/// per class) stay, since only their owner may touch them. Returns the
/// bytes given back.
pub fn trim_all() -> usize {
    let _t = TRIM.lock();
    let mut bytes = 0;
    let me = current();
    if !me.is_null() {
        // SAFETY: our own live heap.
        let h = unsafe { &*me };
        h.drain_remote();
        bytes += h.rewind_empty_heads();
    }
    reclaim_abandoned();
    for_each_heap(|h| {
        let state = h.state.load(Acquire);
        if state == ACTIVE || state == ABANDONED {
            bytes += h.purge_all();
        }
    });
    bytes += crate::large::trim();
    purge::reset_peak();
    bytes
}

/// Held by `trim_all` for its whole walk, and across `fork`, so that a
/// child never inherits a heap's arena lock held by a trimming thread.
static TRIM: SpinLock<()> = SpinLock::new(());

/// From now on every heap takes the slow paths (hooks were installed): its
/// fast-path pools become the placeholder and its unit cache is emptied.
/// The owners race with this only in `set_head` and `cache_units`, which
/// check the flag after their store (see there).
pub fn force_slow_paths() {
    FORCE_SLOW.store(true, SeqCst);
    for_each_heap(|h| {
        for p in &h.alloc_pools {
            p.store(empty_pool() as *mut Pool, SeqCst);
        }
        for tag in &h.unit_tags {
            // Read first: most slots were never written, and writing them
            // would make their pages resident.
            if tag.load(SeqCst) != 0 {
                tag.store(0, SeqCst);
            }
        }
    });
}

// ---- The registry: heap creation, thread exit, adoption, fork ----

struct Registry {
    abandoned: *mut Heap,
    slab: *mut u8,
    slab_end: *mut u8,
}

// SAFETY: the raw pointers are only used under the lock.
unsafe impl Send for Registry {}

static REGISTRY: SpinLock<Registry> = SpinLock::new(Registry {
    abandoned: ptr::null_mut(),
    slab: ptr::null_mut(),
    slab_end: ptr::null_mut(),
});
static ALL_HEAPS: AtomicPtr<Heap> = AtomicPtr::new(ptr::null_mut());
/// pthread key + 1 (0: not created yet).
static KEY: AtomicUsize = AtomicUsize::new(0);

/// The calling thread's heap, or the placeholder `NO_HEAP` if it has none
/// yet (never null, never written through).
#[inline(always)]
pub fn current_or_placeholder() -> &'static Heap {
    // SAFETY: the TLS slot holds the placeholder or a live heap, and heaps
    // are never unmapped.
    unsafe { &*crate::tls::get() }
}

/// The calling thread's heap, or null if it has none yet.
#[inline(always)]
pub fn current() -> *mut Heap {
    let h = crate::tls::get();
    if h == no_heap() {
        ptr::null_mut()
    } else {
        h
    }
}

/// The calling thread's heap, made or adopted on first use; null if the
/// OS refuses memory for it.
#[inline(always)]
pub fn current_or_init() -> *mut Heap {
    let h = current();
    if !h.is_null() {
        return h;
    }
    init_current()
}

/// Heaps are carved from mappings of this size (fresh, so zero-filled).
const SLAB_SIZE: usize = 1 << 20;

#[cold]
#[inline(never)]
fn init_current() -> *mut Heap {
    crate::env::init();
    let (heap, adopted) = {
        let mut r = REGISTRY.lock();
        if KEY.load(Relaxed) == 0 {
            let mut key: libc::pthread_key_t = 0;
            // SAFETY: pthread_key_create does not allocate in glibc; the
            // destructor is an extern "C" fn valid for the process lifetime.
            if unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) } == 0 {
                KEY.store(key as usize + 1, Relaxed);
            }
        }
        if !r.abandoned.is_null() {
            let h = r.abandoned;
            // SAFETY: heaps on the abandoned list are valid and unowned.
            unsafe {
                r.abandoned = (*h).next_abandoned.get();
                (*h).next_abandoned.set(ptr::null_mut());
                (*h).state.store(ACTIVE, Release);
            }
            (h, true)
        } else {
            let size = core::mem::size_of::<Heap>();
            if (r.slab as usize) + size > r.slab_end as usize {
                let s = os::map(SLAB_SIZE, crate::fault::Site::HeapSlab);
                if s.is_null() {
                    os::set_errno(libc::ENOMEM);
                    return ptr::null_mut();
                }
                stats::add_mapped(SLAB_SIZE);
                r.slab = s;
                // SAFETY: s..s+SLAB_SIZE is the mapping just made.
                r.slab_end = unsafe { s.add(SLAB_SIZE) };
            }
            let h = r.slab as *mut Heap;
            // SAFETY: the slab has room for a Heap (checked above) at an
            // address aligned to 64 (slab page-aligned, Heap size a multiple of 64).
            unsafe {
                Heap::init_in_place(h);
                r.slab = r.slab.add(size);
                (*h).state.store(ACTIVE, Relaxed);
            }
            let mut head = ALL_HEAPS.load(Relaxed);
            loop {
                // SAFETY: h is valid and not yet published.
                unsafe { (*h).next_all.store(head, Relaxed) };
                match ALL_HEAPS.compare_exchange_weak(head, h, Release, Relaxed) {
                    Ok(_) => break,
                    Err(cur) => head = cur,
                }
            }
            (h, false)
        }
    };
    crate::tls::set(heap);
    let key = KEY.load(Relaxed);
    if key != 0 {
        // SAFETY: the key was created above. For keys >= 32 glibc may calloc
        // here, which re-enters malloc and finds the TLS slot already set.
        unsafe {
            libc::pthread_setspecific(
                (key - 1) as libc::pthread_key_t,
                heap as *const libc::c_void,
            )
        };
    }
    if adopted {
        // SAFETY: we own the heap now.
        unsafe { &*heap }.drain_remote();
    }
    heap
}

/// The pthread key destructor: abandons the exiting thread's heap.
extern "C" fn thread_exit(arg: *mut libc::c_void) {
    let heap = arg as *mut Heap;
    if crate::tls::get() == heap {
        crate::tls::set(no_heap());
    }
    let mut r = REGISTRY.lock();
    // SAFETY: the heap was this thread's; it is valid forever.
    let h = unsafe { &*heap };
    // Abandoned first, so what the drain empties is released at once.
    h.state.store(ABANDONED, Release);
    h.drain_remote();
    h.release_empty_heads();
    if h.purge_due.get() != 0 {
        note_abandoned_due(h.purge_due.get());
    }
    h.next_abandoned.set(r.abandoned);
    r.abandoned = heap;
}

/// Takes back the blocks other threads freed into the calling thread's heap.
pub fn drain_current() {
    let h = current();
    if !h.is_null() {
        // SAFETY: our own live heap.
        unsafe { &*h }.drain_remote();
    }
}

/// Drains every abandoned heap (so statistics count what was freed into them).
pub fn reclaim_abandoned() {
    let r = REGISTRY.lock();
    let mut h = r.abandoned;
    while !h.is_null() {
        // SAFETY: abandoned heaps are valid; we hold the registry lock.
        let heap = unsafe { &*h };
        heap.drain_remote();
        h = heap.next_abandoned.get();
    }
}

/// Calls `f` on every heap ever made (their counters are readable by anyone).
pub fn for_each_heap(mut f: impl FnMut(&Heap)) {
    let mut h = ALL_HEAPS.load(SeqCst);
    while !h.is_null() {
        // SAFETY: heaps are never freed; next_all is written before publication.
        let heap = unsafe { &*h };
        f(heap);
        h = heap.next_all.load(Relaxed);
    }
}

extern "C" fn before_fork() {
    TRIM.lock_for_fork();
    crate::debug::lock_for_fork();
    crate::domain::lock_for_fork();
    REGISTRY.lock_for_fork();
    arena::lock_for_fork();
    crate::large::lock_for_fork();
}

extern "C" fn after_fork_parent() {
    // SAFETY: before_fork took these locks in this thread.
    unsafe {
        crate::large::unlock_after_fork();
        arena::unlock_after_fork();
        REGISTRY.unlock_after_fork();
        crate::domain::unlock_after_fork();
        crate::debug::unlock_after_fork();
        TRIM.unlock_after_fork();
    }
}

extern "C" fn after_fork_child() {
    // SAFETY: as in the parent; the child has only this thread.
    unsafe {
        crate::large::unlock_after_fork();
        arena::unlock_after_fork();
        REGISTRY.unlock_after_fork();
        crate::domain::unlock_after_fork();
        crate::debug::unlock_after_fork();
        TRIM.unlock_after_fork();
    }
    crate::gc::lock::after_fork_child();
    let me = current();
    for_each_heap(|h| {
        if !std::ptr::eq(h, me) && h.state.load(Relaxed) == ACTIVE {
            h.state.store(ORPHANED, Relaxed);
        }
    });
}

/// Registers the fork handlers; called once from the library constructor.
pub fn install_fork_handlers() {
    // SAFETY: the handlers are extern "C" fns valid for the process lifetime.
    unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_parent),
            Some(after_fork_child),
        )
    };
}

const _: () = assert!(core::mem::size_of::<Heap>().is_multiple_of(64));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{alloc, free};

    #[test]
    fn the_unit_cache_names_pools_evicts_and_forgets() {
        let h = Heap::new();
        let (a, b) = (Pool::unused(), Pool::unused());
        let at = |addr: usize| addr as *const u8;
        let u = 0x7000_0000_0000usize + UNIT_SIZE; // slot 1
        h.cache_units(&a, u, 2);
        for p in [u, u + 100, u + UNIT_SIZE, u + 2 * UNIT_SIZE - 1] {
            assert!(h.unit_cached(at(p)), "{p:#x}");
            // SAFETY: cached just above.
            assert!(ptr::eq(unsafe { h.cached_pool(at(p)) }, &a));
        }
        assert!(!h.unit_cached(at(u + 2 * UNIT_SIZE)));
        // A unit UNIT_SLOTS units away takes the first unit's slot.
        let far = u + UNIT_SLOTS * UNIT_SIZE;
        h.cache_units(&b, far, 1);
        assert!(!h.unit_cached(at(u)) && h.unit_cached(at(u + UNIT_SIZE)));
        // SAFETY: cached just above.
        assert!(ptr::eq(unsafe { h.cached_pool(at(far)) }, &b));
        // Forgetting a's units leaves the slot b took.
        h.uncache_units(u, 2);
        assert!(!h.unit_cached(at(u + UNIT_SIZE)) && h.unit_cached(at(far)));
        // Slot 0 is never used; unit 0 (NULL) resolves to the placeholder pool.
        let zero_slot = 5 * UNIT_SLOTS * UNIT_SIZE;
        h.cache_units(&a, zero_slot, 1);
        assert!(!h.unit_cached(at(zero_slot)));
        assert!(h.unit_cached(ptr::null()));
        // SAFETY: unit 0 always "hits" slot 0.
        let p0 = unsafe { h.cached_pool(ptr::null()) };
        assert!(ptr::eq(p0, empty_pool()) && !p0.is_carved_block(ptr::null()));
        // The placeholder heap caches nothing but unit 0, and pops nothing.
        assert!(!NO_HEAP.0.unit_cached(at(u)));
        // SAFETY: slot 1 <= NUM_CLASSES.
        assert!(unsafe { NO_HEAP.0.alloc_pool(1) }.pop().is_null());
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
                let mut b = unsafe { (*pool).thread_free.load(Acquire) };
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
            assert!(heap.drain_remote());
            assert!(heap.remote.load(Acquire).is_null());
            assert_eq!(in_use(heap), before - 100);
            assert!(!heap.drain_remote(), "nothing left to drain");
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
            heap.rewind_empty_heads();
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
