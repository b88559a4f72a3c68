//! A heap's arenas: the partial list by longest free run, which new pools
//! are carved from, and the purge of free units after the purge delay
//! (see `crate::purge` for the policy's process-wide state).

use super::*;

impl Heap {
    /// Gives an empty arena, unlinked from `partial`, back to the reserve.
    /// With `keep`, the pages of its dirty units stay resident there for
    /// any heap to reuse until the purge delay runs out (unless the delay
    /// is 0 or the process keeps more than its bound); otherwise they are
    /// discarded. Returns the bytes discarded.
    pub(super) fn release_arena(&self, a: *mut Arena, keep: bool) -> usize {
        self.arenas.set(self.arenas.get() - 1);
        // SAFETY: a live arena of ours.
        let dirty = unsafe { &*a }.dirty_count();
        self.add_dirty(-(dirty as isize));
        let keep_since =
            (keep && purge::delay_ms() != 0 && !purge::over_bound()).then(purge::now_ms);
        // SAFETY: empty, unlinked, and no block of it is live.
        unsafe { arena::release(a, keep_since) }
    }

    /// Links `a` in the list of its longest free run (none if it has no
    /// free unit).
    pub(super) fn link_partial(&self, a: &Arena) {
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
    pub(super) fn rebucket(&self, a: &Arena) {
        if a.in_partial.get() {
            if a.bucket.get() == a.max_run.get() {
                return;
            }
            self.unlink_partial(a);
        }
        self.link_partial(a);
    }

    pub(super) fn unlink_partial(&self, a: &Arena) {
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
    pub(super) fn purge_expired(&self, now: u64) {
        let due = self.purge_due.load(Relaxed);
        if due != 0 && now >= due && self.purge_locked(now, false) != 0 {
            purge::reset_peak();
        }
    }

    /// Gives back the pages of the dirty units of every arena of `partial`
    /// whose delay has run out, or of all of them if `all`, and the empty
    /// arenas themselves to the reserve; notes when the next ones are due.
    /// Caller holds `arena_lock`. Returns the bytes given back.
    pub(super) fn purge_locked(&self, now: u64, all: bool) -> usize {
        let bytes = self.purge_walk(now, all, 0);
        if all {
            self.units_peak.set(self.units_in_use.get());
        }
        bytes
    }

    /// When the next dirty units are due (0: none), here and in the
    /// process-wide due time. Caller holds `arena_lock`.
    pub(super) fn set_purge_due(&self, t: u64) {
        self.purge_due.store(t, Relaxed);
        if t != 0 {
            purge::note_due(t);
        }
    }

    /// `dirty_units += n`, here and in the process-wide count.
    pub(super) fn add_dirty(&self, n: isize) {
        self.dirty_units
            .set(self.dirty_units.get().wrapping_add_signed(n));
        purge::dirty_changed(n);
    }

    /// Gives back free units, expired or not, until at most `target` are
    /// dirty. The peak stays: it is what the bound is measured against.
    pub(super) fn purge_down_to(&self, now: u64, target: usize) {
        self.purge_walk(now, true, target);
    }

    /// The walk of `purge_locked` and `purge_down_to`: stops once at most
    /// `target` units are dirty.
    pub(super) fn purge_walk(&self, now: u64, all: bool, target: usize) -> usize {
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
                            self.has_empty_arena.set(false);
                            bytes += self.release_arena(arena, false);
                        } else {
                            // SAFETY: an arena of ours, and the caller holds
                            // our `arena_lock` (see `purge_locked`).
                            let units = unsafe { a.discard_dirty() };
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
        let old = self.purge_due.load(Relaxed);
        if complete || (due != 0 && (old == 0 || due < old)) {
            self.set_purge_due(due);
        }
        bytes
    }

    /// Gives back the pages of the empty pools kept as queue heads (rewound,
    /// so they are carved afresh when used again).
    ///
    /// # Safety
    /// Called by the heap's owner (the thread whose TLS slot names it), or
    /// by the thread holding the registry lock while the heap is abandoned.
    pub(super) unsafe fn rewind_empty_heads(&self) -> usize {
        let mut bytes = 0;
        for class in 0..NUM_CLASSES {
            if let Some(pool) = self.head(class) {
                // SAFETY: the heads of our own heap, whose owner we are
                // (contract).
                if pool.is_empty() && unsafe { pool.rewind() } {
                    // SAFETY: class < NUM_CLASSES.
                    let b = unsafe { size_class::info(class) }.units as usize * UNIT_SIZE;
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
}
