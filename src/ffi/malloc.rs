//! The drop-in malloc family with glibc's semantics, and glibc's internal
//! aliases (compiled with the `override` feature only). Everything goes
//! through the object domain, so a hook installed on OBM_DOMAIN_OBJ sees
//! every malloc and free.
//!
//! C++: libstdc++'s `operator new`/`delete` (every size, aligned and nothrow
//! variant) call malloc, aligned_alloc and free, so they reach obmem through
//! these symbols; they are not redefined, which keeps their new_handler and
//! bad_alloc behaviour intact.

use crate::config::{ALIGNMENT, PAGE_SIZE};
use crate::domain::{self, obm_domain::OBM_DOMAIN_OBJ};
use crate::os;
use core::ffi::c_void;
use core::ptr;

#[no_mangle]
pub unsafe extern "C" fn malloc(n: usize) -> *mut c_void {
    domain::malloc(OBM_DOMAIN_OBJ, n) as *mut c_void
}

#[no_mangle]
pub unsafe extern "C" fn calloc(nelem: usize, elsize: usize) -> *mut c_void {
    domain::calloc(OBM_DOMAIN_OBJ, nelem, elsize) as *mut c_void
}

#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, n: usize) -> *mut c_void {
    if n == 0 && !p.is_null() {
        // SAFETY: the caller passes a live block.
        return unsafe { realloc_to_zero(p) };
    }
    // SAFETY: the caller passes a live block or null.
    unsafe { domain::realloc(OBM_DOMAIN_OBJ, p as *mut u8, n) as *mut c_void }
}

/// glibc's `realloc(p, 0)`: frees `p` and returns NULL. Out of line, so
/// that `realloc` saves no register and its usual path stays on one
/// cache line.
///
/// # Safety
/// `p` is a live block obmem returned.
#[cold]
#[inline(never)]
unsafe fn realloc_to_zero(p: *mut c_void) -> *mut c_void {
    // SAFETY: per the contract.
    unsafe { domain::free(OBM_DOMAIN_OBJ, p as *mut u8) };
    ptr::null_mut()
}

#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: the caller passes a live block or null. The core never
    // changes errno on a successful free (os preserves it around syscalls).
    unsafe { domain::free(OBM_DOMAIN_OBJ, p as *mut u8) }
}

#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, nmemb: usize, size: usize) -> *mut c_void {
    match nmemb.checked_mul(size) {
        // SAFETY: as realloc.
        Some(n) => unsafe { realloc(p, n) },
        None => {
            os::set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// Aligned allocation with glibc's checks done by the caller (sizes above
/// PTRDIFF_MAX fail with ENOMEM in the core).
fn aligned(align: usize, n: usize) -> *mut c_void {
    domain::aligned(OBM_DOMAIN_OBJ, align, n) as *mut c_void
}

#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, n: usize) -> i32 {
    if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<*mut c_void>()) {
        return libc::EINVAL;
    }
    let saved = os::errno();
    let p = aligned(align, n);
    os::set_errno(saved);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller passes a valid out pointer.
    unsafe { *out = p };
    0
}

#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, n: usize) -> *mut c_void {
    // glibc 2.38+ (C17 DR 460): the alignment must be a power of two.
    if !align.is_power_of_two() {
        os::set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    aligned(align, n)
}

#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, n: usize) -> *mut c_void {
    // glibc: small alignments mean the default, others round up to a power of two.
    if align <= ALIGNMENT {
        // SAFETY: malloc has no preconditions.
        return unsafe { malloc(n) };
    }
    if align > usize::MAX / 2 + 1 {
        os::set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    aligned(align.next_power_of_two(), n)
}

#[no_mangle]
pub unsafe extern "C" fn valloc(n: usize) -> *mut c_void {
    aligned(PAGE_SIZE, n)
}

#[no_mangle]
pub unsafe extern "C" fn pvalloc(n: usize) -> *mut c_void {
    match n.max(1).checked_add(PAGE_SIZE - 1) {
        Some(r) => aligned(PAGE_SIZE, r & !(PAGE_SIZE - 1)),
        None => {
            os::set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    usable_size(p as *const u8, "malloc_usable_size")
}

/// The usable size of any block: a debug block's requested size, or the
/// allocator's block size.
pub(crate) fn usable_size(p: *const u8, func: &str) -> usize {
    domain::usable_size(OBM_DOMAIN_OBJ, p, func)
}

// glibc's internal names, used by some programs and libraries to reach
// "the real malloc" directly; they must reach obmem too.

#[no_mangle]
pub unsafe extern "C" fn __libc_malloc(n: usize) -> *mut c_void {
    // SAFETY: forwards to the public function with the same contract.
    unsafe { malloc(n) }
}
#[no_mangle]
pub unsafe extern "C" fn __libc_calloc(nelem: usize, elsize: usize) -> *mut c_void {
    // SAFETY: as above.
    unsafe { calloc(nelem, elsize) }
}
#[no_mangle]
pub unsafe extern "C" fn __libc_realloc(p: *mut c_void, n: usize) -> *mut c_void {
    // SAFETY: as above.
    unsafe { realloc(p, n) }
}
#[no_mangle]
pub unsafe extern "C" fn __libc_free(p: *mut c_void) {
    // SAFETY: as above.
    unsafe { free(p) }
}
#[no_mangle]
pub unsafe extern "C" fn __libc_memalign(align: usize, n: usize) -> *mut c_void {
    // SAFETY: as above.
    unsafe { memalign(align, n) }
}
#[no_mangle]
pub unsafe extern "C" fn __libc_valloc(n: usize) -> *mut c_void {
    // SAFETY: as above.
    unsafe { valloc(n) }
}
#[no_mangle]
pub unsafe extern "C" fn __libc_pvalloc(n: usize) -> *mut c_void {
    // SAFETY: as above.
    unsafe { pvalloc(n) }
}
#[no_mangle]
pub unsafe extern "C" fn __posix_memalign(out: *mut *mut c_void, align: usize, n: usize) -> i32 {
    // SAFETY: as above.
    unsafe { posix_memalign(out, align, n) }
}
