//! Thread heaps: each thread allocates from its own heap, reached through a
//! native thread-local pointer, so `malloc` and `free` of its own blocks take
//! no lock and no atomic read-modify-write.
//!
//! A heap owns arenas (and so their pools) and keeps, per size class, a
//! queue of its pools that may have a free block; the queue's head is the
//! pool allocations come from. Pools that fill up leave the queue; a free
//! into a full pool puts it back at the head. At most one empty pool per
//! class is kept (the head); others go back to their arena at once.
//!
//! Cross-thread frees: a thread freeing a block of another heap pushes it on
//! that heap's `remote` list (a lock-free stack). The owner takes the whole
//! list with one swap when a class queue runs dry, and frees each block as
//! its own.
//!
//! Life of a heap: created on a thread's first allocation (or adopted:
//! see below) and registered with a pthread key whose destructor runs at
//! thread exit. Then the heap is *abandoned*: it drains its remote list,
//! returns empty pools and arenas, keeps its live blocks and goes on the
//! abandoned list, still the owner of its arenas. Blocks freed into it by
//! other threads wake a reclaim that drains it under the registry lock; an
//! abandoned heap keeps no empty pool or spare arena, so each goes back as
//! its last block does. The next new thread adopts the heap whole. Heaps
//! are never unmapped.
//!
//! Fork: the registry, arena reserve and large cache locks are held across
//! `fork`; in the child every heap that belonged to another running thread
//! is marked *orphaned* (its thread is gone mid-operation, so its lists may
//! be inconsistent): never adopted, its memory stays unused in the child.
//!
//! Owner-only fields are `Cell`s: only the owning thread (or the thread
//! holding the registry lock while the heap is abandoned) touches them;
//! other threads use only `remote`, `state`, `next_all` and the counters.

use crate::arena::{self, Arena};
use crate::config::*;
use crate::os;
use crate::pool::{Block, Pool, NO_CLASS};
use crate::report;
use crate::size_class;
use crate::stats::{self, owner_dec, owner_inc, HeapStats};
use crate::sync::SpinLock;
use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering::*};

const FREE: u8 = 0;
const ACTIVE: u8 = 1;
const ABANDONED: u8 = 2;
const ORPHANED: u8 = 3;

#[repr(C, align(64))]
pub struct Heap {
    queues: [Cell<*mut Pool>; NUM_CLASSES],
    /// Owned arenas with at least one free unit (doubly linked).
    partial: Cell<*mut Arena>,
    /// How many arenas in `partial` are entirely free.
    empty_arenas: Cell<usize>,
    /// Arenas this heap owns.
    arenas: Cell<usize>,
    /// Units held by this heap's pools, and their most since the last purge.
    units_in_use: Cell<usize>,
    units_peak: Cell<usize>,
    /// Blocks freed by other threads, linked through their first word.
    remote: AtomicPtr<Block>,
    state: AtomicU8,
    /// Every heap ever made, newest first (push-only).
    next_all: AtomicPtr<Heap>,
    /// Link in the abandoned list (under the registry lock).
    next_abandoned: Cell<*mut Heap>,
    pub stats: HeapStats,
}

impl Heap {
    const fn new() -> Heap {
        Heap {
            queues: [const { Cell::new(ptr::null_mut()) }; NUM_CLASSES],
            partial: Cell::new(ptr::null_mut()),
            empty_arenas: Cell::new(0),
            arenas: Cell::new(0),
            units_in_use: Cell::new(0),
            units_peak: Cell::new(0),
            remote: AtomicPtr::new(ptr::null_mut()),
            state: AtomicU8::new(FREE),
            next_all: AtomicPtr::new(ptr::null_mut()),
            next_abandoned: Cell::new(ptr::null_mut()),
            stats: HeapStats::new(),
        }
    }

    #[inline(always)]
    fn queue(&self, class: usize) -> &Cell<*mut Pool> {
        // SAFETY: class < NUM_CLASSES for every caller (from class_of or a pool).
        unsafe { self.queues.get_unchecked(class) }
    }

    /// Allocates a block of `class`; null (errno ENOMEM) if memory is exhausted.
    #[inline(always)]
    pub fn alloc(&self, class: usize) -> *mut u8 {
        let pool = self.queue(class).get();
        if !pool.is_null() {
            // SAFETY: pools in our queues are live pools we own.
            let b = unsafe { &*pool }.pop();
            if !b.is_null() {
                // SAFETY: class < NUM_CLASSES.
                stats::count(unsafe { self.stats.allocs.get_unchecked(class) });
                return b;
            }
        }
        self.alloc_slow(class)
    }

    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, class: usize) -> *mut u8 {
        loop {
            // Drop exhausted pools off the head of the queue.
            loop {
                let pool = self.queue(class).get();
                if pool.is_null() {
                    break;
                }
                // SAFETY: queued pools are live pools we own.
                let pool = unsafe { &*pool };
                let b = pool.pop();
                if !b.is_null() {
                    stats::count(&self.stats.allocs[class]);
                    return b;
                }
                self.unlink(pool);
            }
            // Blocks other threads gave back may refill a pool.
            if !self.drain_remote() {
                break;
            }
        }
        let pool = self.new_pool(class);
        if pool.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: new_pool returns a live, empty pool we own.
        let pool = unsafe { &*pool };
        self.push_front(pool);
        stats::count(&self.stats.allocs[class]);
        pool.pop()
    }

    /// Frees a block of a pool this heap owns.
    ///
    /// # Safety
    /// `pool` is a live pool of this heap, `p` a block of it handed out and
    /// not freed since, and the caller is the heap's owner.
    #[inline(always)]
    pub unsafe fn free_local(&self, pool: &Pool, p: *mut u8) {
        // SAFETY: per the contract.
        unsafe { pool.push(p) };
        let class = pool.class();
        // SAFETY: class < NUM_CLASSES.
        stats::count(unsafe { self.stats.frees.get_unchecked(class) });
        if !pool.in_queue.get() {
            self.push_front(pool);
        }
        if pool.is_empty() {
            self.pool_emptied(pool);
        }
    }

    /// A live heap keeps one empty pool per class (the queue head) for the
    /// next allocation; a heap without a thread keeps none.
    #[cold]
    fn pool_emptied(&self, pool: &Pool) {
        if !std::ptr::eq(self.queue(pool.class()).get(), pool) || !self.is_active() {
            self.release_pool(pool);
        }
    }

    fn is_active(&self) -> bool {
        self.state.load(Relaxed) == ACTIVE
    }

    /// Validates `p` (a pointer into one of our arenas) and frees it.
    ///
    /// # Safety
    /// The caller is the owner; `pool` is `arena::pool_of(p)` of an arena we own.
    #[inline(always)]
    pub unsafe fn free_checked(&self, pool: &Pool, p: *mut u8, func: &str) {
        let start = arena::pool_start(pool);
        if !pool.is_block_start(start, p, true) {
            report::invalid_pointer(func, p);
        }
        // SAFETY: p is a block start of a live pool, so >= 16 readable bytes.
        if unsafe { (*(p as *const Block)).freed_key } == crate::pool::freed_key() {
            self.confirm_not_freed(pool, start, p, func);
        }
        // SAFETY: validated above as a handed-out block that is not free.
        unsafe { self.free_local(pool, p) }
    }

    /// `p` carries the freed key: it may be free already, by us (on the
    /// free list) or by another thread (on our remote list: drain it, which
    /// moves it to the free list, or releases its pool or arena if it was
    /// the last block). Reports a double free; returns if `p` is live (a
    /// program stored the key's value there). Kept out of line so the
    /// common free path stays short.
    #[cold]
    #[inline(never)]
    fn confirm_not_freed(&self, pool: &Pool, start: *mut u8, p: *mut u8, func: &str) {
        let freed_again = pool.free_list_contains(p)
            || (self.drain_remote()
                && (crate::arena_map::lookup(p as usize) != crate::arena_map::CHUNK_ARENA
                    // SAFETY: the map says the arena is still mapped.
                    || !unsafe { &*arena::arena_of(p) }.is_live()
                    || !pool.is_block_start(start, p, true)
                    || pool.free_list_contains(p)));
        if freed_again {
            report::fatal(format_args!("{func}(): double free of {p:p}"));
        }
    }

    /// Puts `pool` at the head of its class queue. The previous head, if
    /// empty, is released: at most one empty pool per class is kept.
    fn push_front(&self, pool: &Pool) {
        let q = self.queue(pool.class());
        let old = q.get();
        if !old.is_null() {
            // SAFETY: queued pools are live pools we own.
            let old_ref = unsafe { &*old };
            if old_ref.is_empty() {
                self.release_pool(old_ref);
            }
        }
        let old = q.get();
        pool.prev.set(ptr::null_mut());
        pool.next.set(old);
        if !old.is_null() {
            // SAFETY: as above.
            unsafe { &*old }.prev.set(pool as *const Pool as *mut Pool);
        }
        q.set(pool as *const Pool as *mut Pool);
        pool.in_queue.set(true);
    }

    fn unlink(&self, pool: &Pool) {
        let (prev, next) = (pool.prev.get(), pool.next.get());
        if prev.is_null() {
            self.queue(pool.class()).set(next);
        } else {
            // SAFETY: queue links point to live pools we own.
            unsafe { &*prev }.next.set(next);
        }
        if !next.is_null() {
            // SAFETY: as above.
            unsafe { &*next }.prev.set(prev);
        }
        pool.in_queue.set(false);
        pool.prev.set(ptr::null_mut());
        pool.next.set(ptr::null_mut());
    }

    /// Takes units for a pool of `class` from an owned arena, or a new one.
    fn new_pool(&self, class: usize) -> *mut Pool {
        let units = size_class::info(class).units as usize;
        let mut arena = self.partial.get();
        let mut first = None;
        while !arena.is_null() {
            // SAFETY: arenas in `partial` are live arenas we own.
            let a = unsafe { &*arena };
            let was_empty = a.is_empty();
            if let Some(f) = a.take_units(units) {
                if was_empty {
                    self.empty_arenas.set(self.empty_arenas.get() - 1);
                }
                first = Some(f);
                break;
            }
            arena = a.next.get();
        }
        let first = match first {
            Some(f) => f,
            None => {
                arena = arena::acquire(self as *const Heap as *mut Heap);
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
        if a.free_units.get() == 0 {
            self.unlink_partial(a);
        }
        let head = a.pool(first);
        head.init(class, arena::pool_start(head));
        for k in 1..units {
            let tail = a.pool(first + k);
            tail.class.store(NO_CLASS, Relaxed);
            tail.head_offset.store(k as u8, Relaxed);
        }
        owner_inc(&self.stats.pools[class]);
        let in_use = self.units_in_use.get() + units;
        self.units_in_use.set(in_use);
        self.units_peak.set(self.units_peak.get().max(in_use));
        head as *const Pool as *mut Pool
    }

    /// Gives an empty pool's units back to its arena, and the arena back to
    /// the reserve once empty (beyond the spare-arena bound in config.rs).
    fn release_pool(&self, pool: &Pool) {
        debug_assert!(pool.is_empty());
        if pool.in_queue.get() {
            self.unlink(pool);
        }
        let class = pool.class();
        let units = size_class::info(class).units as usize;
        owner_dec(&self.stats.pools[class]);
        let start = arena::pool_start(pool);
        let arena_ptr = arena::arena_of(start);
        // SAFETY: the pool is ours, so its arena is a live arena we own.
        let a = unsafe { &*arena_ptr };
        let first = (start as usize & ARENA_MASK) >> UNIT_SHIFT;
        for k in 0..units {
            let d = a.pool(first + k);
            d.class.store(NO_CLASS, Relaxed);
            d.head_offset.store(0, Relaxed);
        }
        a.give_units(first, units);
        if !a.in_partial.get() {
            self.link_partial(a);
        }
        let in_use = self.units_in_use.get() - units;
        self.units_in_use.set(in_use);
        if !a.is_empty() {
            if !self.is_active() {
                // No thread will reuse the units: their pages go back now.
                a.discard_dirty(true);
            } else if self.units_peak.get() - in_use
                > HEAP_PURGE_UNITS.max(self.units_peak.get() / HEAP_PURGE_DIVISOR)
            {
                self.purge(false);
            }
        } else {
            // Hysteresis: keep a few empty arenas, more for a bigger heap, so
            // a workload that oscillates does not discard and re-fault pages.
            // A heap without a thread keeps none.
            let spare = if self.is_active() {
                (self.arenas.get() / HEAP_SPARE_DIVISOR).clamp(HEAP_SPARE_MIN, HEAP_SPARE_MAX)
            } else {
                0
            };
            if self.empty_arenas.get() < spare {
                self.empty_arenas.set(self.empty_arenas.get() + 1);
            } else {
                self.unlink_partial(a);
                self.arenas.set(self.arenas.get() - 1);
                // SAFETY: empty, unlinked, and no block of it is live.
                unsafe { arena::release(arena_ptr) };
            }
        }
    }

    fn link_partial(&self, a: &Arena) {
        let head = self.partial.get();
        a.prev.set(ptr::null_mut());
        a.next.set(head);
        if !head.is_null() {
            // SAFETY: arenas in `partial` are live arenas we own.
            unsafe { &*head }.prev.set(a as *const Arena as *mut Arena);
        }
        self.partial.set(a as *const Arena as *mut Arena);
        a.in_partial.set(true);
    }

    fn unlink_partial(&self, a: &Arena) {
        let (prev, next) = (a.prev.get(), a.next.get());
        if prev.is_null() {
            self.partial.set(next);
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

    /// Gives back the pages of the free units of every arena with one (only
    /// those free since the previous purge, unless `all`), the spare empty
    /// arenas included, and of the empty pools kept as queue heads. Runs
    /// when the pools have shrunk well below their peak (see
    /// HEAP_PURGE_UNITS), so a heap that only fluctuates keeps its pages,
    /// and the walk is paid for by the units freed.
    fn purge(&self, all: bool) {
        // The empty pool kept at the head of each class queue: rewound, so
        // its pages go back too, and carved afresh when next used.
        for class in 0..NUM_CLASSES {
            let pool = self.queue(class).get();
            // SAFETY: queued pools are live pools we own.
            if let Some(pool) = unsafe { pool.as_ref() } {
                let start = arena::pool_start(pool);
                if pool.is_empty() && pool.rewind(start) {
                    let bytes = size_class::info(class).units as usize * UNIT_SIZE;
                    // SAFETY: the pool is ours and holds no live block.
                    unsafe { os::discard(start, bytes) };
                }
            }
        }
        let mut arena = self.partial.get();
        while !arena.is_null() {
            // SAFETY: arenas in `partial` are live arenas we own.
            let a = unsafe { &*arena };
            a.discard_dirty(all);
            arena = a.next.get();
        }
        self.units_peak.set(self.units_in_use.get());
    }

    /// Frees every block other threads handed back. True if there was any.
    pub fn drain_remote(&self) -> bool {
        let mut b = self.remote.swap(ptr::null_mut(), Acquire);
        if b.is_null() {
            return false;
        }
        while !b.is_null() {
            // SAFETY: blocks on the remote list were validated as block
            // starts of our pools, and checked against a double free, by
            // the thread that pushed them (see `free_remote`).
            unsafe {
                let next = (*b).next;
                let p = b as *mut u8;
                let pool = &*arena::pool_of(p);
                self.free_local(pool, p);
                b = next;
            }
        }
        true
    }

    /// Returns what an idle heap does not need: empty head pools, spare
    /// empty arenas and the pages of free units.
    fn trim(&self) {
        for class in 0..NUM_CLASSES {
            let pool = self.queue(class).get();
            if !pool.is_null() {
                // SAFETY: queued pools are live pools we own.
                let pool = unsafe { &*pool };
                if pool.is_empty() {
                    self.release_pool(pool);
                }
            }
        }
        let mut arena = self.partial.get();
        while !arena.is_null() && self.empty_arenas.get() > 0 {
            // SAFETY: arenas in `partial` are live arenas we own.
            let a = unsafe { &*arena };
            let next = a.next.get();
            if a.is_empty() {
                self.unlink_partial(a);
                self.empty_arenas.set(self.empty_arenas.get() - 1);
                self.arenas.set(self.arenas.get() - 1);
                // SAFETY: empty and unlinked.
                unsafe { arena::release(arena) };
            }
            arena = next;
        }
        self.purge(true);
    }
}

/// Pushes a block of `owner`'s onto its remote list.
///
/// # Safety
/// `p` is a validated block start of a live pool owned by `owner`.
pub unsafe fn free_remote(owner: *mut Heap, p: *mut u8) {
    // SAFETY: heaps are never unmapped, so `owner` stays valid.
    let h = unsafe { &*owner };
    let b = p as *mut Block;
    let key = crate::pool::freed_key();
    // SAFETY: p is a block start, so >= 16 bytes are ours to read and write.
    unsafe {
        // The owner's lists cannot be inspected from here: a block already
        // marked free is reported (the key is cleared on every hand-out).
        if (*b).freed_key == key {
            report::fatal(format_args!("free(): double free of {p:p}"));
        }
        (*b).freed_key = key;
    }
    let mut head = h.remote.load(Relaxed);
    loop {
        // SAFETY: the block is ours to link until the owner drains it.
        unsafe { (*b).next = head };
        match h.remote.compare_exchange_weak(head, b, Release, Relaxed) {
            Ok(_) => break,
            Err(cur) => head = cur,
        }
    }
    if h.state.load(Acquire) == ABANDONED {
        reclaim(h);
    }
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

/// The calling thread's heap, or null if it has none yet.
#[inline(always)]
pub fn current() -> *mut Heap {
    crate::tls::get()
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

const SLAB_SIZE: usize = 64 * 1024;

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
                h.write(Heap::new());
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
        crate::tls::set(ptr::null_mut());
    }
    let mut r = REGISTRY.lock();
    // SAFETY: the heap was this thread's; it is valid forever.
    let h = unsafe { &*heap };
    // Abandoned first, so what the drain empties is released at once.
    h.state.store(ABANDONED, Release);
    h.drain_remote();
    h.trim();
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
    let mut h = ALL_HEAPS.load(Acquire);
    while !h.is_null() {
        // SAFETY: heaps are never freed; next_all is written before publication.
        let heap = unsafe { &*h };
        f(heap);
        h = heap.next_all.load(Relaxed);
    }
}

extern "C" fn before_fork() {
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
    use crate::alloc;

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
            let in_use = |heap: &Heap| {
                heap.stats.allocs[class].load(Relaxed) - heap.stats.frees[class].load(Relaxed)
            };
            let before = in_use(heap);
            std::thread::spawn(move || {
                for p in blocks {
                    // SAFETY: live blocks of the other thread, freed once.
                    unsafe { alloc::free(p as *mut u8, "free") };
                }
            })
            .join()
            .unwrap();
            // The blocks wait on our remote list (with whatever the thread
            // machinery freed remotely), still counted as in use.
            let mut n = 0;
            let mut b = heap.remote.load(Acquire);
            while !b.is_null() {
                n += 1;
                // SAFETY: remote-list blocks are free blocks linked by their first word.
                b = unsafe { (*b).next };
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
    fn a_shrinking_heap_purges_and_reuses_its_pools() {
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
                unsafe { alloc::free(p as *mut u8, "free") };
            }
            assert!(heap.units_peak.get() < peak, "a purge reset the peak");
            let class = size_class::class_of(1000).unwrap();
            // SAFETY: the head, if any, is a live pool of ours.
            if let Some(head) = unsafe { heap.queue(class).get().as_ref() } {
                assert!(head.is_empty());
            }
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
                unsafe { alloc::free(p as *mut u8, "free") };
            }
        })
        .join()
        .unwrap();
    }
}
