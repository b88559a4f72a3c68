//! Life of a heap: created on a thread's first allocation (or adopted:
//! see below) and registered with a pthread key whose destructor runs at
//! thread exit. Then the heap is *abandoned*: it drains its remote list,
//! returns its empty pools to their arenas, keeps its live blocks and goes
//! on the abandoned list, still the owner of its arenas (or, owning none,
//! on the spare list, adopted only when no heap with memory waits). Blocks
//! freed into it by other threads wake a reclaim that drains it under the
//! registry lock; an abandoned heap keeps no empty pool, so each goes back to its
//! arena as its last block does. Its free pages wait the purge delay for
//! the next new thread, which adopts the heap whole; any thread's slow path
//! purges them when the delay has run out. Heaps are never unmapped.
//!
//! Fork: the registry, arena reserve and large regions' locks are held across
//! `fork`; in the child every heap that belonged to another running thread
//! is marked *orphaned* (its thread is gone mid-operation, so its lists may
//! be inconsistent): never adopted, its memory stays unused in the child.

use super::*;

/// Drains an abandoned heap, acting as its owner under the registry lock.
/// An abandoned heap releases pools and arenas as they empty, so draining
/// is all it takes, and the cost is that of the blocks drained. Out of
/// line: inlined, the drain made every remote free save registers.
#[cold]
#[inline(never)]
pub(super) fn reclaim(h: &Heap) {
    if let Some(_g) = REGISTRY.try_lock() {
        if h.state.load(Relaxed) == ABANDONED {
            // SAFETY: an abandoned heap, under the registry lock.
            unsafe { h.drain_remote() };
        }
    }
}

/// Gives back the expired free pages of every heap, whatever thread owns
/// it, and of the large regions: the threads that freed them may be idle,
/// blocked or gone, and only the threads still allocating look at the
/// clock. Called from slow paths; skipped if another thread sweeps, and a
/// heap whose arena lock is taken is left to its owner, who purges on its
/// own slow paths.
pub(super) fn purge_if_due(now: u64) {
    let due = purge::due();
    if due == 0 || now < due {
        return;
    }
    let Some(_r) = REGISTRY.try_lock() else {
        return;
    };
    purge::clear_due();
    for_each_heap(|h| {
        let state = h.state.load(Acquire);
        if state != ACTIVE && state != ABANDONED {
            return; // free, or orphaned by fork
        }
        if let Some(_g) = h.arena_lock.try_lock() {
            h.purge_expired(now);
        }
        crate::large::flush_cache(&h.spans, Some(now));
        let d = h.purge_due.load(Relaxed);
        if d != 0 {
            purge::note_due(d);
        }
        // Only the owner releases its marked empty pools. If it is late
        // (its thread is blocked), they are noted a delay on, so that the
        // sweep does not run on every slow path meanwhile.
        let release = h.idle_release_at.load(Relaxed);
        if release != 0 {
            purge::note_due(if release > now {
                release
            } else {
                now + purge::delay_ms().max(1)
            });
        }
    });
    crate::large::purge_expired(now);
    arena::purge_reserve(now, usize::MAX);
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
        // SAFETY: our own heap.
        unsafe {
            h.drain_remote();
            h.release_kept();
            bytes += h.rewind_empty_heads();
        }
    }
    reclaim_abandoned();
    for_each_heap(|h| {
        let state = h.state.load(Acquire);
        if state == ACTIVE || state == ABANDONED {
            crate::large::flush_cache(&h.spans, None);
            bytes += h.purge_all();
        }
    });
    bytes += crate::large::trim();
    bytes += arena::purge_reserve(purge::now_ms(), 0);
    purge::reset_peak();
    bytes
}

/// Held by `trim_all` for its whole walk, and across `fork`, so that a
/// child never inherits a heap's arena lock held by a trimming thread.
static TRIM: SpinLock<()> = SpinLock::new(());

struct Registry {
    /// Abandoned heaps that own arenas, most recent first: adopted first,
    /// so that a new thread reuses an exited one's memory.
    abandoned: *mut Heap,
    /// Abandoned heaps that own nothing (a thread that only freed), adopted
    /// when no heap with memory waits.
    spare: *mut Heap,
    slab: *mut u8,
    slab_end: *mut u8,
}

// SAFETY: the raw pointers are only used under the lock.
unsafe impl Send for Registry {}

static REGISTRY: SpinLock<Registry> = SpinLock::new(Registry {
    abandoned: ptr::null_mut(),
    spare: ptr::null_mut(),
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
    unsafe { &*crate::heap::tls::get() }
}

/// The calling thread's heap, or null if it has none yet.
#[inline(always)]
pub fn current() -> *mut Heap {
    let h = crate::heap::tls::get();
    if h == no_heap() {
        ptr::null_mut()
    } else {
        h
    }
}

/// The calling thread's cache of freed large spans, if it has a heap.
#[inline(always)]
pub fn current_spans() -> Option<&'static SpanCache> {
    let h = current();
    // SAFETY: the thread's live heap; heaps are never unmapped.
    (!h.is_null()).then(|| unsafe { &(*h).spans })
}

/// `current_spans` for a large allocation: a thread that allocates only
/// large blocks gets a heap for its cache, as its first small block would
/// make one. None if memory for a heap is refused.
pub fn current_spans_or_init() -> Option<&'static SpanCache> {
    let h = current_or_init();
    // SAFETY: as above.
    (!h.is_null()).then(|| unsafe { &(*h).spans })
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
    crate::lifecycle::init();
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
        let list = if r.abandoned.is_null() {
            &mut r.spare
        } else {
            &mut r.abandoned
        };
        if !list.is_null() {
            let h = *list;
            // SAFETY: heaps on the abandoned lists are valid and unowned.
            unsafe {
                *list = (*h).next_abandoned.get();
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
                counters::add_mapped(SLAB_SIZE);
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
            // Before any heap can cache a descriptor of another's pool.
            arena::set_before_unmap(super::forget_remote_pools);
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
    crate::heap::tls::set(heap);
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
        unsafe { (*heap).drain_remote() };
    }
    heap
}

/// The pthread key destructor: abandons the exiting thread's heap.
extern "C" fn thread_exit(arg: *mut libc::c_void) {
    let heap = arg as *mut Heap;
    if crate::heap::tls::get() == heap {
        crate::heap::tls::set(no_heap());
    }
    let mut r = REGISTRY.lock();
    // SAFETY: the heap was this thread's; it is valid forever.
    let h = unsafe { &*heap };
    // Abandoned first, so what the drain empties is released at once.
    h.state.store(ABANDONED, Release);
    // SAFETY: we hold the registry lock and the heap is abandoned.
    unsafe { h.drain_remote() };
    // The kept pools first: releasing an empty head would promote a kept
    // one to head, which would then stay.
    // SAFETY: as above.
    unsafe { h.release_kept() };
    h.release_empty_heads();
    h.idle_release_at.store(0, Relaxed);
    crate::large::flush_cache(&h.spans, None);
    let list = if h.arenas.get() == 0 {
        &mut r.spare
    } else {
        &mut r.abandoned
    };
    h.next_abandoned.set(*list);
    *list = heap;
}

/// Enters `pool` in the calling thread's cache of other heaps' pools
/// (`Heap::remote_pool`) for `p`'s unit. A thread that only frees (the
/// consumer of a producer/consumer pair) gets a heap for it, as its first
/// malloc would make one. Nothing if memory for a heap is refused.
#[cold]
#[inline(never)]
pub fn cache_remote_pool(p: *const u8, pool: &Pool) {
    let h = current_or_init();
    if !h.is_null() {
        // SAFETY: this thread's live heap.
        unsafe { &*h }.cache_remote_pool(p, pool);
    }
}

/// Takes back the blocks other threads freed into the calling thread's heap.
pub fn drain_current() {
    let h = current();
    if !h.is_null() {
        // SAFETY: our own live heap.
        unsafe { (*h).drain_remote() };
    }
}

/// Gives back about `bytes` of free units, expired or not: those of the
/// calling thread's heap (whole arenas' free units at a time, largest free
/// runs first, as `purge_down_to` does), then the oldest warm arenas of
/// the reserve, where a heap's empty arenas go.
pub fn give_back_units(bytes: usize) {
    let now = purge::now_ms();
    let mut units = bytes.div_ceil(UNIT_SIZE);
    let h = current();
    if !h.is_null() {
        // SAFETY: our own live heap.
        let h = unsafe { &*h };
        let _g = h.arena_lock.lock();
        let before = h.dirty_units.get();
        h.purge_down_to(now, before.saturating_sub(units));
        units = units.saturating_sub(before - h.dirty_units.get());
    }
    if units != 0 {
        arena::purge_reserve(now, arena::reserve_warm_units().saturating_sub(units));
    }
}

/// Drains every abandoned heap (so statistics count what was freed into them).
pub fn reclaim_abandoned() {
    let r = REGISTRY.lock();
    let mut h = r.abandoned;
    while !h.is_null() {
        // SAFETY: abandoned heaps are valid; we hold the registry lock.
        let heap = unsafe { &*h };
        // SAFETY: as above: an abandoned heap, under the registry lock.
        unsafe { heap.drain_remote() };
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

/// Takes the registry's locks before `fork` (see `crate::lifecycle`).
pub(crate) fn lock_for_fork() {
    TRIM.lock_for_fork();
    REGISTRY.lock_for_fork();
}

/// # Safety
/// Called after `lock_for_fork`, in the parent or the child.
pub(crate) unsafe fn unlock_after_fork() {
    // SAFETY: per the contract.
    unsafe {
        REGISTRY.unlock_after_fork();
        TRIM.unlock_after_fork();
    }
}

/// In a fork child: the heaps of the parent's other threads, caught
/// mid-operation, are orphaned (never adopted; see the module doc).
pub(crate) fn orphan_other_heaps() {
    let me = current();
    for_each_heap(|h| {
        if !core::ptr::eq(h, me) && h.state.load(Relaxed) == ACTIVE {
            h.state.store(ORPHANED, Relaxed);
        }
    });
}
