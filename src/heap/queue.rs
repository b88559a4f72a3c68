//! The per-class pool queues of a heap. The queue's head is the pool
//! allocations come from. Pools that fill up leave the queue; a free into
//! a full pool puts it back at the tail. In a small class, a head whose
//! freed blocks ran out goes to the tail, rather than carve, while the
//! pool behind it has freed blocks. An empty pool is kept if it is
//! the head, or, for classes whose pools hold few blocks, as one of up to
//! `keep_empty_limit` kept ones (`keep_empty`); others go back to their
//! arena at once. Kept pools and empty heads go back once two looks have
//! found them empty (`release_idle_pools`): a purge delay apart, or sooner
//! when the heap grows.

use super::registry::purge_if_due;
use super::*;

impl Heap {
    /// Allocates a block of `class`; null (errno ENOMEM) if memory is exhausted.
    ///
    /// # Safety
    /// Called by the heap's owner (the thread whose TLS slot names it), or
    /// by the thread holding the registry lock while the heap is abandoned;
    /// `class < NUM_CLASSES`.
    pub unsafe fn alloc(&self, class: usize) -> *mut u8 {
        // SAFETY: class + 1 <= NUM_CLASSES; we own the heap (contract).
        let b = unsafe { self.head_pool(class + 1).pop() };
        if !b.is_null() {
            counters::count(&self.stats.allocs[class + 1]);
            return b;
        }
        // SAFETY: per the contract.
        unsafe { self.alloc_slow(class) }
    }

    /// The allocation list of the head pool is empty: refill it, or move on
    /// to the next pool, blocks other threads freed, a new pool.
    ///
    /// # Safety
    /// As `alloc`.
    #[cold]
    #[inline(never)]
    pub unsafe fn alloc_slow(&self, class: usize) -> *mut u8 {
        // SAFETY: per the contract.
        let b = unsafe { self.alloc_from_queue(class) };
        if !b.is_null() {
            return b;
        }
        let now = purge::now_ms();
        purge_if_due(now);
        self.release_idle_pools_if_due(now);
        // SAFETY: per the contract.
        let (pool, grew) = unsafe { self.new_pool(class, now) };
        if pool.is_null() {
            return ptr::null_mut();
        }
        let fresh = purge::take_fresh_unit_debt();
        if fresh != 0 {
            // The large blocks this thread keeps for itself first: they go
            // back to their regions, whose kept pages then go back.
            crate::large::flush_cache(&self.spans, None);
            crate::large::give_back(fresh);
        }
        // SAFETY: new_pool returns a live, empty pool we own.
        let pool = unsafe { &*pool };
        self.push_front(pool);
        counters::count(&self.stats.allocs[class + 1]);
        // SAFETY: a pool of our own heap (contract).
        let b = unsafe { pool.pop_slow() };
        // After the pop: the new pool is no empty head.
        if grew && self.is_active() {
            self.grew(now);
        }
        b
    }

    /// A block from the class queue's pools, after the blocks other threads
    /// freed if need be; null if the queue has none.
    ///
    /// # Safety
    /// As `alloc`.
    pub(super) unsafe fn alloc_from_queue(&self, class: usize) -> *mut u8 {
        loop {
            // Drop exhausted pools off the head of the queue.
            while let Some(pool) = self.head(class) {
                // SAFETY: a pool of our own heap (the callers own it).
                let mut b = unsafe { pool.pop_freed() };
                if b.is_null() && pool.can_carve() {
                    if class < SMALL_CLASSES && self.next_has_freed(pool) {
                        // A small class uses its freed blocks before it
                        // carves, as pymalloc does: it then holds the
                        // pages of its peak, not its pools' capacity.
                        // (Above 512 B, spreading the allocations over
                        // more pools left fewer to empty and reuse, and
                        // took peak RSS up.)
                        self.unlink(pool);
                        self.push_back(pool);
                        continue;
                    }
                    // SAFETY: as above; `pop_freed` found both lists empty.
                    b = unsafe { pool.pop_carved() };
                }
                if !b.is_null() {
                    counters::count(&self.stats.allocs[class + 1]);
                    return b;
                }
                self.unlink(pool);
            }
            // Blocks other threads gave back may refill a pool.
            // SAFETY: as above.
            if !unsafe { self.drain_remote() } {
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
            // of its queue became empty. It stays, without the call. The
            // head is in the queue, so here it is empty, and the caller
            // owns this heap, so the heap has a thread: `keeps_as_head`
            // comes down to the head test.
            debug_assert!(self.is_active());
            if self.is_head(pool) {
                debug_assert!(pool.is_empty());
                if purge::pending() {
                    self.purge_tick();
                }
                return;
            }
            pool_gained(pool, self);
        }
    }

    /// Free pages of some heap wait for their delay and this thread freed
    /// the last block of a queue head: every PURGE_TICK_EVERY such events,
    /// look at the clock. A thread in a malloc/free loop on a few blocks
    /// never reaches the slow paths that look at it otherwise, and it may
    /// be the only thread still running (the others idle, their pages free).
    #[cold]
    #[inline(never)]
    fn purge_tick(&self) {
        let t = self.purge_ticks.get();
        if t != 0 {
            self.purge_ticks.set(t - 1);
            return;
        }
        self.purge_ticks.set(PURGE_TICK_EVERY);
        let now = purge::now_ms();
        purge_if_due(now);
        self.release_idle_pools_if_due(now);
    }

    /// Keeps `pool`, empty, in its queue instead of releasing it, if the
    /// heap keeps fewer than `keep_empty_limit` of its class and fewer
    /// than `KEEP_EMPTY_UNITS` units in all (and the heap has a thread).
    /// Allocation reaches it when it becomes the head (`unkeep`).
    fn keep_empty(&self, pool: &Pool) -> bool {
        if pool.kept.get() {
            return true;
        }
        let class = pool.class();
        let kept = &self.kept_empty[class];
        let units = self.kept_units.get() + pool_units(class);
        if !self.is_active() || kept.get() >= keep_empty_limit(class) || units > KEEP_EMPTY_UNITS {
            return false;
        }
        self.kept_units.set(units);
        self.kept_pools[class][kept.get() as usize].set(pool);
        kept.set(kept.get() + 1);
        pool.kept.set(true);
        if self.idle_look_at.get() == 0 {
            self.schedule_idle_look(purge::now_ms());
        }
        true
    }

    /// Has the owner look at its empty pools a purge delay from `now`,
    /// unless a look is due already. Not noted as due: a thread in a
    /// malloc/free loop on one block would otherwise take its purge ticks
    /// (`free_local`) for as long as it runs. Slow paths, and the ticks
    /// while other memory waits, run the look.
    fn schedule_idle_look(&self, now: u64) {
        if self.idle_look_at.get() == 0 {
            self.idle_look_at.set(now + purge::delay_ms().max(1));
        }
    }

    /// Looks at the heap's empty pools if a look is due at `now`.
    fn release_idle_pools_if_due(&self, now: u64) {
        let at = self.idle_look_at.get();
        if at != 0 && now >= at && self.is_active() {
            self.release_idle_pools(now);
        }
    }

    /// Releases the empty pools, kept ones and queue heads, that the
    /// previous look found empty (a purge delay ago, or at the heap's
    /// previous growth): their units go back to their arenas as free since
    /// that look, for new pools to take or the purge to give back. Marks
    /// the other empty pools for the next look. (Without the
    /// looks, a thread that once used many classes kept up to three empty
    /// pools of each for as long as it lived: BENCHMARKS.md, eleventh
    /// session.) A pool that served between two looks on fast paths only
    /// and is empty at both goes too, to be remade at its next use: once
    /// per delay at most. Owner only, while the heap is active.
    pub(super) fn release_idle_pools(&self, now: u64) {
        debug_assert!(self.is_active());
        self.idle_look_at.set(0);
        let marked = self.look_at_empty_pools(now);
        // Marked pools are memory waiting to go back: due, like free units.
        let release_at = if marked {
            let at = now + purge::delay_ms().max(1);
            self.idle_look_at.set(at);
            purge::note_due(at);
            at
        } else {
            0
        };
        self.idle_release_at.store(release_at, Relaxed);
    }

    /// The heap took units without resident pages for a new pool: it looks
    /// at its empty pools now, whatever the time. Those found empty at the
    /// look before go back to their arenas, whose free units the next pools
    /// then take instead of fresh ones; a program that frees one kind of
    /// block and then allocates another does not hold the first kind's
    /// empty pools at its peak (python3 between its phases). A heap that
    /// does not grow never looks this way. Owner only, while the heap is
    /// active.
    pub(super) fn grew(&self, now: u64) {
        if self.look_at_empty_pools(now) {
            self.schedule_idle_look(now);
        }
    }

    /// A look (`release_idle_pools`, `grew`): releases the empty pools,
    /// kept ones and queue heads, that the previous look marked `idle`,
    /// their units free since that look; marks the other empty ones.
    /// Returns whether it marked any.
    fn look_at_empty_pools(&self, now: u64) -> bool {
        let since = self.idle_looked.replace(now);
        let mut marked = false;
        let mut look = |pool: &Pool| {
            if !pool.is_empty() || pool.is_remote_queued() {
                pool.idle.set(false);
            } else if pool.idle.get() {
                self.release_pool_idle_since(pool, since);
            } else {
                pool.idle.set(true);
                marked = true;
            }
        };
        for class in 0..NUM_CLASSES {
            // The kept pools first: releasing the head promotes the next
            // pool, maybe a kept one, to head.
            self.for_each_kept(class, &mut look);
            if let Some(head) = self.head(class) {
                look(head);
            }
        }
        marked
    }

    /// `pool` is no longer a kept empty pool (it became the head, or is
    /// being released).
    pub(super) fn unkeep(&self, pool: &Pool) {
        if pool.kept.get() {
            pool.kept.set(false);
            let class = pool.class();
            let kept = &self.kept_empty[class];
            let n = kept.get() as usize - 1;
            // Out of the row: the last one takes its slot.
            let row = &self.kept_pools[class];
            debug_assert!(row[..=n].iter().any(|p| ptr::eq(p.get(), pool)));
            if let Some(i) = row[..n].iter().position(|p| ptr::eq(p.get(), pool)) {
                row[i].set(row[n].get());
            }
            kept.set(n as u8);
            self.kept_units
                .set(self.kept_units.get() - pool_units(class));
        }
    }

    /// Releases the empty pools kept beyond the queue heads (`obm_trim`,
    /// thread exit): their units become free units of their arenas, which
    /// the purge then gives back.
    ///
    /// # Safety
    /// As `alloc`: called by the heap's owner, or by the thread holding the
    /// registry lock while the heap is abandoned.
    pub(super) unsafe fn release_kept(&self) {
        for class in 0..NUM_CLASSES {
            self.for_each_kept(class, |pool| self.release_pool(pool));
        }
    }

    /// Calls `f` on each kept empty pool of `class`, which `f` may
    /// release. Owner only.
    pub(super) fn for_each_kept(&self, class: usize, mut f: impl FnMut(&Pool)) {
        // Copied first: releasing a pool takes it out of `kept_pools`.
        let n = self.kept_empty[class].get() as usize;
        let kept: [*const Pool; KEEP_EMPTY_POOLS as usize] =
            core::array::from_fn(|i| self.kept_pools[class][i].get());
        for &p in &kept[..n] {
            // SAFETY: kept pools are live, queued pools we own, until
            // released, which only `f` does, each pool once.
            let pool = unsafe { &*p };
            debug_assert!(pool.kept.get());
            f(pool);
        }
    }

    /// Whether `pool`, empty, stays for the next allocation: it is the head
    /// of its queue and the heap has a thread.
    #[inline(always)]
    pub(super) fn keeps_as_head(&self, pool: &Pool) -> bool {
        self.is_head(pool) && self.is_active()
    }

    /// Whether `pool` is the head of its class queue.
    #[inline(always)]
    fn is_head(&self, pool: &Pool) -> bool {
        // SAFETY: a live pool's class is below NUM_CLASSES (`Pool::init`
        // takes it from a size class). Unchecked: a bounds check's panic
        // call would make `free` save a register on every call.
        let head = unsafe { self.heads.get_unchecked(pool.class() + 1) };
        ptr::eq(head.get(), pool)
    }

    pub(super) fn is_active(&self) -> bool {
        self.state.load(Relaxed) == ACTIVE
    }

    /// Puts `pool` at the head of its class queue. The previous head, if
    /// empty, is released: at most one empty pool per class is kept.
    pub(super) fn push_front(&self, pool: &Pool) {
        let class = pool.class();
        if let Some(old) = self.head(class) {
            if old.is_empty() && !old.is_remote_queued() {
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
        // SAFETY: a pool of this heap; its queue is only worked on by the
        // heap's owner, like the queued pools above.
        unsafe { pool.set_in_queue(true) };
    }

    /// Puts `pool` at the tail of its class queue: the head stays the pool
    /// allocations come from until it runs out, and the pools behind it
    /// gather frees meanwhile, so each refill takes many blocks.
    pub(super) fn push_back(&self, pool: &Pool) {
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
        // SAFETY: a pool of this heap; its queue is only worked on by the
        // heap's owner, like the queued pools above.
        unsafe { pool.set_in_queue(true) };
    }

    /// Whether the pool behind `pool` in its queue has freed blocks.
    fn next_has_freed(&self, pool: &Pool) -> bool {
        let next = pool.next.get();
        // SAFETY: queue links point to live pools we own.
        !next.is_null() && unsafe { &*next }.has_freed()
    }

    pub(super) fn unlink(&self, pool: &Pool) {
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
        // SAFETY: a pool of this heap; its queue is only worked on by the
        // heap's owner, like the queued pools above.
        unsafe { pool.set_in_queue(false) };
        pool.prev.set(ptr::null_mut());
        pool.next.set(ptr::null_mut());
    }

    /// Takes units for a pool of `class` from an owned arena, or a new one;
    /// null if memory is exhausted. With it, whether some of those units
    /// had no resident pages: the heap grew.
    ///
    /// # Safety
    /// As `alloc`.
    pub(super) unsafe fn new_pool(&self, class: usize, now: u64) -> (*mut Pool, bool) {
        let _g = self.arena_lock.lock();
        self.purge_expired(now);
        // SAFETY: class < NUM_CLASSES (contract).
        let units = unsafe { size_class::info(class) }.units as usize;
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
            // SAFETY: we own the arena and hold our `arena_lock`.
            if let Some(f) = unsafe { a.take_units(units) } {
                if was_empty {
                    self.has_empty_arena.set(false);
                }
                let warm = dirty - a.dirty_count();
                self.add_dirty(-(warm as isize));
                first = Some((f, warm));
            }
        }
        // The first unit, and how many of the units had resident pages.
        let (first, warm) = match first {
            Some(taken) => taken,
            None => {
                let got = arena::acquire(self as *const Heap as *mut ());
                arena = got.arena;
                if arena.is_null() {
                    return (ptr::null_mut(), false);
                }
                self.arenas.set(self.arenas.get() + 1);
                // SAFETY: a freshly acquired arena, owned by us.
                let a = unsafe { &*arena };
                self.link_partial(a);
                let dirty = a.dirty_count();
                // SAFETY: as above.
                let Some(f) = (unsafe { a.take_units(units) }) else {
                    report::fatal(format_args!("internal error: new arena has no room"))
                };
                // A warm arena's resident free units are this heap's to
                // reuse or purge now.
                let left = a.dirty_count();
                if left != 0 {
                    self.add_dirty(left as isize);
                    if self.purge_due.load(Relaxed) == 0 {
                        self.set_purge_due(got.dirty_since + purge::delay_ms());
                    }
                }
                (f, dirty - left)
            }
        };
        purge::units_took_fresh((units - warm) * UNIT_SIZE);
        // SAFETY: `arena` is live and ours.
        let a = unsafe { &*arena };
        self.rebucket(a);
        // SAFETY: we own the arena and hold our `arena_lock`; units
        // `first..first + units` were just taken for a pool of `class`,
        // < NUM_CLASSES (contract).
        let head = unsafe { a.make_pool(first, units, class) };
        self.cache_units(head, a.unit_start(first) as usize, units);
        let in_use = self.units_in_use.get() + units;
        self.units_in_use.set(in_use);
        self.units_peak.set(self.units_peak.get().max(in_use));
        purge::units_taken(units);
        // It may end as an empty queue head, which the look gives back.
        self.schedule_idle_look(now);
        (head as *const Pool as *mut Pool, units > warm)
    }

    /// Gives an empty pool's units back to its arena, their pages kept for
    /// the purge delay (an emptied arena stays too, until the purge gives
    /// it back to the reserve).
    pub(super) fn release_pool(&self, pool: &Pool) {
        self.release_pool_idle_since(pool, u64::MAX);
    }

    /// `release_pool` of a pool not used since `since` (a time of
    /// `purge::now_ms`, or later than now): its units count as free since
    /// then.
    fn release_pool_idle_since(&self, pool: &Pool, since: u64) {
        debug_assert!(pool.is_empty() && !pool.is_remote_queued());
        self.unkeep(pool);
        // The pool's allocation count goes to the heap's, for the class.
        counters::add(
            &self.stats.allocs[pool.class() + 1],
            pool.allocs.load(Relaxed),
        );
        if pool.in_queue() {
            self.unlink(pool);
        }
        let class = pool.class();
        // SAFETY: a pool's class is < NUM_CLASSES (`Pool::block_size`).
        let units = unsafe { size_class::info(class) }.units as usize;
        let start = pool.start.get() as *mut u8;
        let arena_ptr = arena::arena_of(start);
        // SAFETY: the pool is ours, so its arena is a live arena we own.
        let a = unsafe { &*arena_ptr };
        let first = (start as usize & ARENA_MASK) >> UNIT_SHIFT;
        self.uncache_units(start as usize, units);
        let _g = self.arena_lock.lock();
        // SAFETY: we own the arena and hold our `arena_lock`; the pool is
        // ours, empty (released only when empty, by the owner), unlinked
        // above and not used again.
        unsafe { a.unmake_pool(first, units) };
        let now = purge::now_ms();
        let freed_at = since.min(now);
        // SAFETY: as above; the units of an empty pool hold no live block.
        unsafe { a.give_units(first, units, freed_at) };
        self.add_dirty(units as isize);
        let due = freed_at + purge::delay_ms();
        let cur = self.purge_due.load(Relaxed);
        if cur == 0 || due < cur {
            self.set_purge_due(due);
        }
        self.rebucket(a);
        self.units_in_use.set(self.units_in_use.get() - units);
        purge::units_released(units);
        // The class's head may be left empty in its turn (a program
        // winding down): a look will see to it.
        self.schedule_idle_look(now);
        if a.is_empty() && (self.has_empty_arena.get() || purge::delay_ms() == 0) {
            // Back to the reserve, where any heap may take it; its pages
            // stay resident for the purge delay (`release_arena`).
            self.unlink_partial(a);
            self.release_arena(arena_ptr, true);
            return;
        }
        if a.is_empty() {
            // Kept, pages and all, for the purge delay like any free unit.
            self.has_empty_arena.set(true);
        }
        if purge::delay_ms() == 0 {
            // SAFETY: we own the arena and still hold our `arena_lock`.
            let units = unsafe { a.discard_dirty() };
            self.add_dirty(-(units as isize));
        } else if purge::over_bound() {
            // Bounded: a burst does not pin its whole peak until the delay.
            self.purge_down_to(now, self.dirty_units.get() / 2);
            // Then the oldest warm arenas of the reserve, down to the bound:
            // the rest is what the bound keeps for reuse by any thread.
            let excess = purge::excess_units();
            if excess > 0 {
                arena::purge_reserve(now, arena::reserve_warm_units().saturating_sub(excess));
            }
        } else {
            self.purge_expired(now);
        }
    }
}

/// A pool of `heap` got a block back while out of the queue, or became
/// empty. The pool comes first: `free`'s fast path, whose tail call this
/// is, then keeps the freed pointer in its first argument register (one
/// register move fewer on every free).
#[cold]
#[inline(never)]
pub(super) fn pool_gained(pool: &Pool, heap: &Heap) {
    if !pool.in_queue() {
        heap.push_back(pool);
    }
    // A live heap keeps the queue head, empty, for the next allocation,
    // and maybe a few more (`keep_empty`); a heap without a thread keeps
    // none. A pool on the remote list, or about to be (a pusher may have
    // linked a block the owner has since taken, and not yet registered the
    // pool), waits until `drain_remote` takes it off.
    if pool.is_empty() && !heap.keeps_as_head(pool) && !pool.is_remote_queued() {
        if heap.keep_empty(pool) {
            return;
        }
        heap.release_pool(pool);
    }
}

/// The units of a pool of `class`.
pub(super) fn pool_units(class: usize) -> usize {
    // SAFETY: a pool's class is < NUM_CLASSES (`Pool::block_size`).
    unsafe { size_class::info(class) }.units as usize
}

/// How many empty pools of `class` a heap keeps beyond the head: a few
/// for pools of few blocks; one for the one-unit pools of at most 64
/// blocks (256 to 512 B: on a ring of 16-512 B blocks, releasing and
/// remaking them cost 3.6 instructions per malloc+free); none for the
/// others. Kept for every small class, the pools also saved 0.9 on a ring
/// of 16-64 B blocks but took python3's peak RSS up by about 1 MB, and
/// kept only for classes seen churning, or at most eight, still by 0.5 MB
/// (BENCHMARKS.md, sixth session).
pub(super) fn keep_empty_limit(class: usize) -> u8 {
    // SAFETY: a pool's class is < NUM_CLASSES (`Pool::block_size`).
    let info = unsafe { size_class::info(class) };
    if info.capacity <= KEEP_EMPTY_CAPACITY {
        KEEP_EMPTY_POOLS
    } else if info.units == 1 && info.capacity <= KEEP_ONE_EMPTY_CAPACITY {
        1
    } else {
        0
    }
}
