//! The free path: every check `free` makes, local or remote, in the order
//! it makes them, and the lookup `realloc` and `malloc_usable_size` share.
//!
//! Fast path (`free_fast`), the calling thread's own block:
//! 1. the block's 16 KiB unit is in the calling thread's unit cache, which
//!    names the heap's live pool holding it (so the memory is mapped and
//!    ours: no global lookup, no arena header). The cache is empty for a
//!    thread without a heap and once hooks are installed;
//! 2. the pool has carved a block starting exactly at `p`: one
//!    multiplication and one comparison check both that `p` is a block
//!    start and that it is in range (`size_class::block_key`);
//! 3. the block does not hold the freed key (else: a suspected double free);
//! 4. push on the pool's free list; count; the pool's state changes
//!    only if it became empty or was full.
//!
//! Any check that fails sends the pointer to the general path, which
//! repeats them in full and reports what is wrong. Steps 1-3 are
//! `local_block`, step 4 `LocalBlock::free`: an object's release counts
//! the object out of the census in between, so that the free comes last.
//!
//! A block of another thread's heap goes through the same checks in
//! `free_remote_cached`, with the thread's cache of other heaps' pools
//! (`Heap::remote_pool`) or the global arena map instead of the unit
//! cache, and onto its pool's `thread_free` list.
//!
//! General path (`free_slow`): NULL is ignored; the global arena map says
//! whether `p`'s chunk is an arena, a large block or not ours; an arena
//! must be live and `p`'s unit must hold a pool; then, by owner: the
//! calling thread's heap frees as above (confirming a suspected double free
//! by looking for the block on the pool's lists), another heap's block goes
//! on its pool's `thread_free` list (a block already holding the key is
//! reported as a double free, since the owner's lists cannot be inspected).

use crate::arena::{self, Arena};
use crate::arena_map::{self, CHUNK_ARENA, CHUNK_NONE};
use crate::config::UNIT_SHIFT;
use crate::heap::{self, Heap};
use crate::large;
use crate::pool::{Block, Pool};
use crate::report;

/// Frees `p` (null is ignored); aborts with a report for a pointer obmem
/// never returned or already freed.
///
/// # Safety
/// If `p` is a block obmem returned, nobody uses it after this call.
#[inline(always)]
pub unsafe fn free(p: *mut u8, func: &str) {
    // SAFETY: per the contract.
    if !unsafe { free_fast(p) } {
        // SAFETY: per the contract.
        unsafe { free_slow(p, func) }
    }
}

/// Frees `p` if it is a block of the calling thread's heap that passes
/// every check; false (nothing done) otherwise.
///
/// # Safety
/// As `free`.
#[inline(always)]
pub unsafe fn free_fast(p: *mut u8) -> bool {
    // SAFETY: per the contract.
    let Ok(local) = (unsafe { local_block(p) }) else {
        return false;
    };
    // SAFETY: per the contract.
    unsafe { local.free() };
    true
}

/// A block of the calling thread's heap that passed every check of the
/// fast path (`local_block`), not yet freed.
pub struct LocalBlock {
    heap: &'static Heap,
    pool: &'static Pool,
    p: *mut u8,
}

impl LocalBlock {
    /// The block's usable size.
    #[inline(always)]
    pub fn size(&self) -> usize {
        self.pool.block_size()
    }

    /// Frees the block.
    ///
    /// # Safety
    /// As `free` of the block.
    #[inline(always)]
    pub unsafe fn free(self) {
        // SAFETY: a handed-out block of a live pool of our heap, not free
        // (`local_block`), freed once (this consumes self).
        unsafe { self.heap.free_local(self.pool, self.p) }
    }
}

/// The checks of the fast path: `p` is a block start of a pool of the
/// calling thread's heap (its unit cache) and does not hold the freed key.
/// Err, with the calling thread's heap (or the placeholder) and `p`'s
/// unit number for the general path, which then need not compute them
/// again. Split from the free itself so that a caller with more to do
/// (the census) does it before the free, which then ends in a tail call.
///
/// # Safety
/// As `free`.
#[inline(always)]
pub unsafe fn local_block(p: *mut u8) -> Result<LocalBlock, (&'static Heap, usize)> {
    let heap = heap::current_or_placeholder();
    let unit = p as usize >> UNIT_SHIFT;
    // SAFETY: the calling thread's heap, or the placeholder.
    let Some(pool) = (unsafe { heap.cached_pool(unit) }) else {
        return Err((heap, unit));
    };
    // SAFETY: the calling thread's unit cache names a pool of its own heap,
    // or the placeholder pool (slot 0, and the placeholder heap's cache).
    if !unsafe { pool.is_carved_block(p) } {
        return Err((heap, unit));
    }
    // SAFETY: p is a carved block start, so >= 16 bytes of ours to read.
    if unsafe { (*(p as *const Block)).freed_key } == pool.freed_key() {
        return Err((heap, unit));
    }
    Ok(LocalBlock { heap, pool, p })
}

/// Frees `p`, which the calling thread's unit cache does not hold, if its
/// pool is in the thread's cache of other heaps' pools: a valid block of
/// another thread's heap that does not hold the freed key goes on its
/// pool's list of remote frees (the checks of `free_slow`, without
/// reports), anything else to `free_slow`. False, nothing done, if `p`'s
/// pool is not in the cache: the caller goes on with the hooks, if any
/// (the cache is empty once they are installed: `heap::force_slow_paths`),
/// else with `free_remote_uncached`. Inlined, every fallback is a tail
/// call, so the remote free keeps no stack frame.
///
/// # Safety
/// As `free`; `me` is the calling thread's heap or the placeholder, `unit`
/// is `p`'s unit number.
#[inline(always)]
pub unsafe fn free_remote_cached(p: *mut u8, me: &'static Heap, unit: usize) -> bool {
    // SAFETY: the calling thread's heap, or the placeholder.
    match unsafe { me.remote_pool(unit) } {
        Some(pool) if pool.is_block(p) => {
            // SAFETY: per the contract.
            unsafe { free_remote_block(pool, p) };
            true
        }
        _ => false,
    }
}

/// `free_remote_cached` when the calling thread's cache of other heaps' pools
/// does not have `p`'s: through the arena map, then cached. A large block
/// goes to `large::free` from that lookup; a block of the calling thread's
/// own heap (its unit evicted from the unit cache) to `free_slow`, which
/// frees it locally. Out of line, so that the cached path keeps no stack
/// frame.
///
/// # Safety
/// As `free`.
#[inline(never)]
pub unsafe fn free_remote_uncached(p: *mut u8) {
    // A large block first, with nothing to keep across the call: a program
    // freeing it has often just written a cold line, and every register
    // saved is one more store waiting behind that one (BENCHMARKS.md,
    // nineteenth session).
    let kind = arena_map::lookup(p as usize);
    if kind != CHUNK_ARENA && kind != CHUNK_NONE {
        // Without a second lookup in `free_slow`.
        // SAFETY: kind is the arena map's, a large kind.
        return unsafe { large::free(p, kind, "free", heap::current_spans()) };
    }
    // SAFETY: per the contract.
    unsafe { free_remote_arena(p, kind) }
}

/// `free_remote_uncached` of a pointer that is no large block: `kind` is
/// what the arena map says of it.
///
/// # Safety
/// As `free`.
#[inline(never)]
unsafe fn free_remote_arena(p: *mut u8, kind: u8) {
    let me = heap::current_or_placeholder();
    let pool = match resolve_kind(p, kind) {
        Resolved::Pool(a, pool) if pool.is_block(p) && !core::ptr::eq(heap::owner_of(a), me) => {
            pool
        }
        // SAFETY: per the contract.
        _ => return unsafe { free_slow(p, "free") },
    };
    heap::cache_remote_pool(p, pool);
    // SAFETY: per the contract; p is a block of `pool`.
    unsafe { free_remote_block(pool, p) }
}

/// The end of `free_remote_cached`: `p` is a block start of `pool`. Its
/// heap may be the calling thread's after all (the cache's entry was made
/// before this heap took the arena over): the block then goes on the
/// pool's remote list too, which its owner takes from like any other.
///
/// # Safety
/// As `free`; `pool.is_block(p)`.
#[inline(always)]
unsafe fn free_remote_block(pool: &Pool, p: *mut u8) {
    // p is a block of `pool`, whose descriptor is in the header of p's
    // arena: that header is mapped (the arena map said so, or the cache
    // had the entry, which it loses before an arena is unmapped).
    let owner = heap::owner_of_pool(pool);
    let b = p as *mut Block;
    // SAFETY: p is a block start, checked above.
    if unsafe { (*b).freed_key } == pool.freed_key() {
        // SAFETY: per the contract.
        return unsafe { free_slow(p, "free") };
    }
    // SAFETY: a live block of `owner`'s pool, not marked free; heaps are
    // never unmapped.
    unsafe { push_remote(&*owner, pool, b) };
}

/// Marks `b` free and pushes it on its pool's list of remote frees,
/// registering the pool with `owner` if needed.
///
/// # Safety
/// `b` is a live block start of `pool`, whose arena `owner` owns.
#[inline(always)]
unsafe fn push_remote(owner: &Heap, pool: &Pool, b: *mut Block) {
    // SAFETY: per the contract, b is a block of >= 16 bytes that is ours
    // to write until the owner takes it.
    unsafe {
        (*b).freed_key = pool.freed_key();
        if pool.push_thread_free(b) {
            owner.push_remote_pool(pool);
        }
    }
    owner.after_remote_free();
}

/// The general path: see the module documentation.
///
/// # Safety
/// As `free`.
#[cold]
#[inline(never)]
pub unsafe fn free_slow(p: *mut u8, func: &str) {
    if p.is_null() {
        return;
    }
    let (arena, pool) = match resolve(p) {
        Resolved::Pool(a, pool) => (a, pool),
        // SAFETY: resolve returns the arena map's large kind for p.
        Resolved::Large(kind) => {
            return unsafe { large::free(p, kind, func, heap::current_spans()) }
        }
        Resolved::Unknown => report::invalid_pointer(func, p),
    };
    let owner = heap::owner_of(arena);
    let h = heap::current();
    if owner == h {
        // SAFETY: the arena is ours, so we own its pools.
        unsafe { free_owned(&*h, pool, p, func) }
    } else {
        // SAFETY: heaps are never unmapped; the arena is live, so its owner is valid.
        unsafe { free_remote(&*owner, pool, p, func) }
    }
}

/// A block of the calling thread's heap, checked in full.
///
/// # Safety
/// The caller owns `h`, which owns `pool`; `p` points into `pool`'s units.
unsafe fn free_owned(h: &Heap, pool: &Pool, p: *mut u8, func: &str) {
    // SAFETY: we own `pool` (contract).
    if !unsafe { pool.is_carved_block(p) } {
        report::invalid_pointer(func, p);
    }
    // SAFETY: a carved block start: >= 16 bytes of ours to read; we own
    // `pool`, so we may walk its lists.
    if unsafe { (*(p as *const Block)).freed_key == pool.freed_key() && pool.is_free(p) } {
        report::fatal(format_args!("{func}(): double free of {p:p}"));
    }
    // Here because p's unit is not in the unit cache (or, rarely, p held
    // the freed key by chance): the next frees there take the fast path.
    // SAFETY: we own `h`, which owns `pool`, a live pool holding p.
    unsafe { h.recache_unit(pool, p) };
    // SAFETY: validated above as a handed-out block that is not free.
    unsafe { h.free_local(pool, p) }
}

/// A block of another heap: onto its pool's list of remote frees.
///
/// # Safety
/// `owner` owns `pool`'s arena and `p` points into `pool`'s units.
unsafe fn free_remote(owner: &Heap, pool: &Pool, p: *mut u8, func: &str) {
    if !pool.is_block(p) {
        report::invalid_pointer(func, p);
    }
    let b = p as *mut Block;
    // SAFETY: p is a block start, so >= 16 bytes are ours to read. The
    // owner's lists cannot be inspected from here: a block that already
    // holds the key is reported (every hand-out clears it).
    if unsafe { (*b).freed_key } == pool.freed_key() {
        report::fatal(format_args!("{func}(): double free of {p:p}"));
    }
    // SAFETY: a live block start of `pool`, whose arena `owner` owns.
    unsafe { push_remote(owner, pool, b) }
}

enum Resolved<'a> {
    /// A pointer into a live arena's pool (not yet checked as a block start).
    Pool(&'a Arena, &'a Pool),
    /// A chunk the arena map records as a large block, of this kind.
    Large(u8),
    /// Not obmem's: no chunk, a reserve arena, or a unit without a pool.
    Unknown,
}

/// Which arena and pool, or which kind of large chunk, `p` belongs to.
#[inline(always)]
fn resolve(p: *const u8) -> Resolved<'static> {
    resolve_kind(p, arena_map::lookup(p as usize))
}

/// `resolve` of `p`, whose arena map entry is `kind`.
#[inline(always)]
fn resolve_kind(p: *const u8, kind: u8) -> Resolved<'static> {
    if kind != CHUNK_ARENA {
        return if kind == CHUNK_NONE {
            Resolved::Unknown
        } else {
            Resolved::Large(kind)
        };
    }
    // SAFETY: the map says p's chunk is an arena, so its header is mapped.
    let a = unsafe { &*arena::arena_of(p) };
    // SAFETY: as above.
    let pool = unsafe { arena::pool_of(p) };
    if !a.is_live() || pool as usize == a.base() {
        return Resolved::Unknown;
    }
    // SAFETY: a descriptor other than descriptor 0 in a live arena's header.
    Resolved::Pool(a, unsafe { &*pool })
}

/// The usable size of `p` if it is the start of a live block of obmem's,
/// else 0; never reports (for callers that only count, such as the census).
pub fn size_if_block(p: *const u8) -> usize {
    match resolve(p) {
        Resolved::Pool(_, pool) if pool.is_block(p) => pool.block_size(),
        Resolved::Large(kind) => large::size_if_block(p, kind),
        _ => 0,
    }
}

/// The usable size of `p` for `realloc`, which frees it: as `usable_size`,
/// and a pool block that holds the freed key is reported as a double
/// free, as `free` reports it (confirmed on the pool's lists for the
/// calling thread's own block; at once for another thread's, whose lists
/// cannot be inspected). `p` is not null.
pub fn realloc_size(p: *const u8, func: &str) -> usize {
    let Resolved::Pool(a, pool) = resolve(p) else {
        return usable_size(p, func);
    };
    let mine = check_block(a, pool, p, func);
    // SAFETY: a block start: >= 16 bytes of ours to read; our own pool's
    // lists may be walked by its owner (`mine`).
    if unsafe { (*(p as *const Block)).freed_key == pool.freed_key() && (!mine || pool.is_free(p)) }
    {
        report::fatal(format_args!("{func}(): double free of {p:p}"));
    }
    pool.block_size()
}

/// Reports `p` as an invalid pointer unless it is a block start of `pool`
/// (of arena `a`); returns whether the block is the calling thread's.
fn check_block(a: &Arena, pool: &Pool, p: *const u8, func: &str) -> bool {
    let mine = heap::owner_of(a) == heap::current();
    let block = if mine {
        // SAFETY: the arena is the calling thread's heap's, so the pool is ours.
        unsafe { pool.is_carved_block(p) }
    } else {
        pool.is_block(p)
    };
    if !block {
        report::invalid_pointer(func, p);
    }
    mine
}

/// The usable size of `p` (0 for null); aborts on a foreign pointer.
/// Safe for any address: `p` is only dereferenced once the arena map says
/// its chunk is ours, and then only in headers that are always mapped.
pub fn usable_size(p: *const u8, func: &str) -> usize {
    if p.is_null() {
        return 0;
    }
    match resolve(p) {
        Resolved::Pool(a, pool) => {
            check_block(a, pool, p, func);
            pool.block_size()
        }
        // SAFETY: as in `free_slow`.
        Resolved::Large(kind) => unsafe { large::usable_size(p, kind, func) },
        Resolved::Unknown => report::invalid_pointer(func, p),
    }
}
