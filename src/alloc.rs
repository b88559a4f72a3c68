//! The allocation path: malloc, calloc, realloc and aligned allocation,
//! as every entry point calls them (the free path is `free.rs`). `func`
//! names the C function for reports.
//!
//! Fast path (`malloc_fast`): the fast slot of the size (the size itself
//! up to 1 KiB, one per class above: `size_class::fast_slots`), so that
//! the sizes most programs ask for take one branch, whatever their mix,
//! then the thread's heap from TLS (the
//! placeholder heap if it has none), and a pop from the allocation list of
//! the slot's head pool, which takes the pool's local or remote free list
//! over if it is empty. The head pool is the placeholder pool, always
//! empty, if the class has none or the heap takes the slow paths
//! (`heap/`). Everything else (the first allocation of a thread, a head
//! pool with no free block, hooks, large blocks) goes to `malloc_slow`.

use crate::arena_map::{self, CHUNK_ARENA, CHUNK_NONE};
use crate::config::*;
use crate::counters;
use crate::free;
use crate::heap;
use crate::large;
use crate::os;
use crate::purge;
use crate::size_class::{self, class_of, fast_slot_of_class, DIRECT_MAX};
use core::ptr;

#[cold]
fn enomem() -> *mut u8 {
    os::set_errno(libc::ENOMEM);
    ptr::null_mut()
}

#[inline(always)]
fn alloc_class(class: usize) -> *mut u8 {
    let h = heap::current_or_init();
    if h.is_null() {
        return enomem();
    }
    // SAFETY: current_or_init returns this thread's live heap, so we own
    // it; both callers pass a class from `class_of`, < NUM_CLASSES.
    let p = unsafe { (*h).alloc(class) };
    if p.is_null() {
        return enomem();
    }
    p
}

/// A large block: from the spans the thread freed, else from the regions
/// or the OS (`alloc_large_uncached`).
#[inline(always)]
fn alloc_large(n: usize, align: usize) -> (*mut u8, bool) {
    if align <= large::HEADER {
        if let Some(p) = alloc_large_cached(n) {
            return (p, false);
        }
    }
    alloc_large_uncached(n, align)
}

/// `malloc` of a large block, out of `malloc_slow`'s register saves.
#[inline(never)]
fn malloc_large(n: usize) -> *mut u8 {
    alloc_large(n, ALIGNMENT).0
}

/// A large block of the default alignment from the calling thread's cache
/// of the spans it freed, if it has one for `n`. Kept to what needs few
/// registers, the rest out of line: a program that has just written a
/// cold line waits for that store once the CPU's store buffer fills, and
/// every register saved is a store (BENCHMARKS.md, nineteenth session).
#[inline(always)]
fn alloc_large_cached(n: usize) -> Option<*mut u8> {
    let spans = heap::current_spans()?;
    let p = large::alloc_cached(spans, n);
    (!p.is_null()).then_some(p)
}

/// `alloc_large` past the thread's cache of spans. Then, the regions'
/// lock and maybe a system call being costs anyway, this is also when a
/// thread takes back the small blocks other threads freed into its heap:
/// a thread that has moved on to large blocks would otherwise hold them.
#[cold]
#[inline(never)]
fn alloc_large_uncached(n: usize, align: usize) -> (*mut u8, bool) {
    // A thread that allocates only large blocks gets a heap for its cache.
    let spans = heap::current_spans_or_init();
    if let Some(spans) = spans.filter(|_| align <= large::HEADER) {
        spans.start_keeping();
    }
    heap::drain_current();
    let r = large::alloc(n, align, spans);
    give_back_for_fresh_pages();
    r
}

/// Large blocks took fresh pages while free units of arenas kept theirs:
/// gives back as many bytes of those (`purge::large_took_fresh`).
fn give_back_for_fresh_pages() {
    let bytes = purge::take_fresh_debt();
    if bytes != 0 {
        heap::give_back_units(bytes);
    }
}

/// A block of `n` bytes from the calling thread's head pool of its class,
/// or null if the fast path cannot serve it (nothing is done then).
#[inline(always)]
pub fn malloc_fast(n: usize) -> *mut u8 {
    if n > DIRECT_MAX {
        return match class_of(n) {
            Some(class) => pop_fast::<true>(fast_slot_of_class(class)),
            None => ptr::null_mut(),
        };
    }
    malloc_fast_direct(n)
}

/// `malloc_fast` for `n <= DIRECT_MAX`, which the caller has tested.
#[inline(always)]
pub fn malloc_fast_direct(n: usize) -> *mut u8 {
    debug_assert!(n <= DIRECT_MAX);
    pop_fast::<true>(n)
}

/// `malloc_fast` for small blocks (up to 512 bytes), without taking other
/// threads' frees, also giving the block's usable size; (null, 0) if it
/// cannot serve `n` (then call `malloc`). Kept to what needs no call and
/// few registers, so that its callers save none.
#[inline(always)]
pub fn malloc_fast_small_sized(n: usize) -> (*mut u8, usize) {
    if n > SMALL_MAX {
        return (ptr::null_mut(), 0);
    }
    // Small classes are 16 bytes apart: size n is served by blocks of n
    // rounded up to 16 (slot 0 has none: size 0 takes the slow path).
    (pop_fast::<false>(n), (n + ALIGNMENT - 1) & !(ALIGNMENT - 1))
}

/// A block from the head pool of fast slot `slot`'s allocation or local
/// free list, or, if `REMOTE`, from the blocks other threads freed into
/// it; null if none.
#[inline(always)]
fn pop_fast<const REMOTE: bool>(slot: usize) -> *mut u8 {
    let h = heap::current_or_placeholder();
    // SAFETY: slot < FAST_SLOTS (`malloc_fast` and `malloc_fast_small_sized`).
    let pool = unsafe { h.alloc_pool(slot) };
    // SAFETY: the pool is of this thread's own heap (or the placeholder,
    // which is never written: its lists are empty).
    let b = unsafe { pool.pop() };
    if !b.is_null() {
        // On the pool, whose line the pop touched anyway (a real pool: the
        // placeholder gives no block).
        counters::count(&pool.allocs);
        return b;
    }
    if REMOTE && pool.has_thread_free() {
        // SAFETY: as above; both lists are empty and thread_free is not.
        return unsafe { pool.pop_thread_free() }.as_ptr();
    }
    ptr::null_mut()
}

/// `n` bytes (16 for 0), 16-byte aligned; null with ENOMEM on failure.
#[inline(always)]
pub fn malloc(n: usize) -> *mut u8 {
    let b = malloc_fast(n);
    if !b.is_null() {
        return b;
    }
    malloc_slow(n)
}

/// `malloc` without the fast path.
#[cold]
#[inline(never)]
pub fn malloc_slow(n: usize) -> *mut u8 {
    match class_of(n) {
        Some(class) => alloc_class(class),
        None => malloc_large(n),
    }
}

/// Zeroed `nelem * elsize` bytes; null with ENOMEM on overflow or failure.
pub fn calloc(nelem: usize, elsize: usize) -> *mut u8 {
    let Some(n) = nelem.checked_mul(elsize) else {
        return enomem();
    };
    match class_of(n) {
        Some(class) => {
            let p = malloc(n);
            if !p.is_null() {
                // SAFETY: p is a fresh block of block_size(class) bytes.
                unsafe { ptr::write_bytes(p, 0, size_class::block_size(class)) };
            }
            p
        }
        None => {
            let (p, zeroed) = alloc_large(n, ALIGNMENT);
            if !p.is_null() && !zeroed {
                // SAFETY: p is a fresh block of at least n bytes.
                unsafe { ptr::write_bytes(p, 0, n) };
            }
            p
        }
    }
}

/// `n` bytes aligned to `align`, a power of two (validated by the caller).
pub fn aligned(align: usize, n: usize) -> *mut u8 {
    if align <= ALIGNMENT {
        return malloc(n);
    }
    if align <= UNIT_SIZE {
        // Pools start on unit boundaries, so a class whose block size is a
        // multiple of `align` has every block aligned to it.
        if let Some(first) = class_of(n) {
            for class in first..NUM_CLASSES {
                if size_class::block_size(class).is_multiple_of(align) {
                    return alloc_class(class);
                }
            }
        }
    }
    alloc_large(n, align).0
}

/// The size to allocate when `realloc` moves a block of `old` usable
/// bytes to `n` bytes. A block grown by a small step (less than an eighth)
/// gets room to grow, so that a buffer grown by small steps moves a
/// logarithmic number of times, not once per size class or granule it
/// passes (each move copies the whole block): a quarter as much again in
/// the pools (whose classes are an eighth apart), up to `MEDIUM_MAX`; half
/// as much again as a large span (`large::roomy_size`). A small block
/// gets exactly its class (pymalloc's shape, where most objects live),
/// and a block grown by a big step, as a program doubling its buffer
/// does, what it asked for.
fn moved_size(old: usize, n: usize) -> usize {
    if n <= SMALL_MAX || n <= old || n - old >= old / 8 {
        n
    } else if n <= MEDIUM_MAX {
        (n + n / 4).min(MEDIUM_MAX)
    } else {
        large::roomy_size(n)
    }
}

/// Resizes `p` to `n` bytes (n > 0; null p is malloc). On failure returns
/// null with ENOMEM and `p` is untouched.
///
/// # Safety
/// `p` is null or a live block obmem returned.
pub unsafe fn realloc(p: *mut u8, n: usize, func: &str) -> *mut u8 {
    if p.is_null() {
        return malloc(n);
    }
    // The calling thread's own pool block is found and checked as `free`'s
    // fast path does (its unit cache: no arena map, no header). Everything
    // else takes `realloc_other`, out of line: programs that call realloc
    // between other work (an interpreter growing its strings and lists)
    // then run few instruction-cache lines of it.
    // SAFETY: per the contract.
    let Ok(block) = (unsafe { free::local_block(p) }) else {
        // SAFETY: per the contract.
        return unsafe { realloc_other(p, n, func) };
    };
    let old = block.size();
    if stays(old, n) {
        return p;
    }
    // SAFETY: per the contract. The pool still holds the block (a live
    // block keeps its pool), so `block` still names it when it is freed.
    unsafe { move_block(p, old, n, || block.free()) }
}

/// `realloc` of a block that is not a pool block of the calling thread's:
/// a large block, another thread's block, or a pointer to check.
///
/// # Safety
/// As `realloc`; `p` is not null.
#[inline(never)]
unsafe fn realloc_other(p: *mut u8, n: usize, func: &str) -> *mut u8 {
    let kind = arena_map::lookup(p as usize);
    if kind != CHUNK_ARENA && kind != CHUNK_NONE && n > MEDIUM_MAX {
        // A large block resized in place, which `large::realloc` checks as
        // `realloc_size` would (one lookup of its header, not two).
        // SAFETY: kind is the arena map's for p, a large kind.
        let q = unsafe { large::realloc(p, kind, n, func, heap::current_spans()) };
        if !q.is_null() {
            give_back_for_fresh_pages();
            return q;
        }
    }
    let old = free::realloc_size(p, func);
    if kind == CHUNK_ARENA && stays(old, n) {
        return p;
    }
    // SAFETY: per the contract.
    unsafe { move_block(p, old, n, || free::free(p, func)) }
}

/// Whether a pool block of `old` usable bytes stays put when resized to
/// `n`: it fits and shrinking would save little (pymalloc keeps a block
/// unless the new size is under 3/4 of it).
#[inline(always)]
fn stays(old: usize, n: usize) -> bool {
    n <= old && 4 * n > 3 * old
}

/// Moves the live block `p` of `old` usable bytes to a new block for `n`
/// bytes (`alloc_moved`), copies, and frees `p` with `free_old`; null with
/// ENOMEM, and `p` untouched, if there is no memory.
///
/// # Safety
/// `p` is a live block of `old` usable bytes; `free_old` frees it.
#[inline(always)]
unsafe fn move_block(p: *mut u8, old: usize, n: usize, free_old: impl FnOnce()) -> *mut u8 {
    let q = alloc_moved(old, n);
    if q.is_null() {
        return q;
    }
    // SAFETY: both blocks are live and at least min(old, n) bytes long;
    // distinct blocks never overlap.
    unsafe { ptr::copy_nonoverlapping(p, q, old.min(n)) };
    free_old();
    q
}

/// The new block of a block of `old` usable bytes that `realloc` moves to
/// `n` bytes: `moved_size(old, n)` bytes if there is memory for them, else
/// `n`; null with ENOMEM if none.
#[inline(always)]
fn alloc_moved(old: usize, n: usize) -> *mut u8 {
    let roomy = moved_size(old, n);
    if roomy == n {
        return malloc(n);
    }
    alloc_roomy(roomy, n)
}

/// `alloc_moved` with room to grow: `roomy` bytes, or `n` without memory
/// for them (errno as it was).
#[inline(never)]
fn alloc_roomy(roomy: usize, n: usize) -> *mut u8 {
    let errno = os::errno();
    let q = malloc_slow(roomy);
    os::set_errno(errno);
    if q.is_null() {
        malloc(n)
    } else {
        q
    }
}
