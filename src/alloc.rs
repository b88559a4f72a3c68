//! The internal allocation functions every entry point calls: malloc,
//! calloc, realloc, aligned allocation, free and usable size, with the
//! validation of foreign pointers. `func` names the C function for reports.

use crate::arena::{arena_of, pool_of, pool_start};
use crate::arena_map::{self, CHUNK_ARENA, CHUNK_NONE};
use crate::config::*;
use crate::heap;
use crate::large;
use crate::os;
use crate::report;
use crate::size_class::{self, class_of};
use core::ptr;
use core::sync::atomic::Ordering::Relaxed;

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
    // SAFETY: current_or_init returns this thread's live heap.
    let p = unsafe { &*h }.alloc(class);
    if p.is_null() {
        return enomem();
    }
    p
}

/// A large block. Mapping costs a system call anyway, so this is also when
/// a thread takes back the small blocks other threads freed into its heap:
/// a thread that has moved on to large blocks would otherwise hold them.
#[cold]
fn alloc_large(n: usize, align: usize) -> (*mut u8, bool) {
    heap::drain_current();
    large::alloc(n, align)
}

/// `n` bytes (16 for 0), 16-byte aligned; null with ENOMEM on failure.
#[inline(always)]
pub fn malloc(n: usize) -> *mut u8 {
    match class_of(n) {
        Some(class) => alloc_class(class),
        None => alloc_large(n, ALIGNMENT).0,
    }
}

/// Zeroed `nelem * elsize` bytes; null with ENOMEM on overflow or failure.
pub fn calloc(nelem: usize, elsize: usize) -> *mut u8 {
    let Some(n) = nelem.checked_mul(elsize) else {
        return enomem();
    };
    match class_of(n) {
        Some(class) => {
            let p = alloc_class(class);
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

/// Frees `p` (null is ignored); aborts with a report for a pointer obmem
/// never returned or already freed.
///
/// # Safety
/// If `p` is a block obmem returned, nobody uses it after this call.
#[inline(always)]
pub unsafe fn free(p: *mut u8, func: &str) {
    if p.is_null() {
        return;
    }
    let kind = arena_map::lookup(p as usize);
    if kind == CHUNK_ARENA {
        // SAFETY: the map says p's chunk is an arena, so its header is mapped.
        let a = unsafe { &*arena_of(p) };
        if !a.is_live() {
            report::invalid_pointer(func, p);
        }
        let owner = a.owner.load(Relaxed);
        // SAFETY: p lies in a mapped arena.
        let pool = unsafe { &*pool_of(p) };
        if owner == heap::current() {
            // SAFETY: the arena is ours, so we own its pools.
            unsafe { (*owner).free_checked(pool, p, func) };
        } else {
            if !pool.is_block_start(pool_start(pool), p, false) {
                report::invalid_pointer(func, p);
            }
            // SAFETY: p is a block start of a pool of `owner`'s.
            unsafe { heap::free_remote(owner, p) };
        }
    } else if kind != CHUNK_NONE {
        large::free(p, kind, func);
    } else {
        report::invalid_pointer(func, p);
    }
}

/// The usable size of `p` (0 for null); aborts on a foreign pointer.
/// Safe for any address: `p` is only dereferenced once the arena map says
/// its chunk is ours, and then only in headers that are always mapped.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn usable_size(p: *const u8, func: &str) -> usize {
    if p.is_null() {
        return 0;
    }
    let kind = arena_map::lookup(p as usize);
    if kind == CHUNK_ARENA {
        // SAFETY: the map says p's chunk is an arena, so its header is mapped.
        let a = unsafe { &*arena_of(p) };
        // SAFETY: as above.
        let pool = unsafe { &*pool_of(p) };
        if !a.is_live() || !pool.is_block_start(pool_start(pool), p, false) {
            report::invalid_pointer(func, p);
        }
        pool.block_size()
    } else if kind != CHUNK_NONE {
        large::usable_size(p, kind, func)
    } else {
        report::invalid_pointer(func, p)
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
    let kind = arena_map::lookup(p as usize);
    let old = usable_size(p, func);
    if kind == CHUNK_ARENA {
        // Keep the block when it fits and shrinking would save little
        // (pymalloc keeps it unless the new size is under 3/4).
        if n <= old && 4 * n > 3 * old {
            return p;
        }
    } else if n > MEDIUM_MAX {
        let q = large::realloc(p, kind, n, func);
        if !q.is_null() {
            return q;
        }
    }
    let q = malloc(n);
    if q.is_null() {
        return q;
    }
    // SAFETY: both blocks are live and at least min(old, n) bytes long;
    // distinct blocks never overlap.
    unsafe {
        ptr::copy_nonoverlapping(p, q, old.min(n));
        free(p, func);
    }
    q
}
