//! The PyMem_Raw / PyMem / PyObject-style domains and the allocator hooks.
//! CPython semantics: a request of 0 bytes (also `*_realloc(p, 0)`) returns
//! a unique non-NULL pointer; failure returns NULL.

use crate::domain::{self, obm_allocator, obm_domain, obm_domain::*};
use core::ffi::c_void;

/// `n` bytes from the raw domain (PyMem_RawMalloc style); a unique block for 0, NULL on failure.
#[no_mangle]
pub unsafe extern "C" fn obm_raw_malloc(n: usize) -> *mut c_void {
    domain::malloc(OBM_DOMAIN_RAW, n) as *mut c_void
}

/// Zeroed `nelem * elsize` bytes from the raw domain; NULL on overflow or failure.
#[no_mangle]
pub unsafe extern "C" fn obm_raw_calloc(nelem: usize, elsize: usize) -> *mut c_void {
    domain::calloc(OBM_DOMAIN_RAW, nelem, elsize) as *mut c_void
}

/// Resizes a block of the raw domain; `n == 0` gives a unique block.
#[no_mangle]
pub unsafe extern "C" fn obm_raw_realloc(p: *mut c_void, n: usize) -> *mut c_void {
    // SAFETY: the caller passes null or a live block of this domain.
    unsafe { domain::realloc(OBM_DOMAIN_RAW, p as *mut u8, n) as *mut c_void }
}

/// Frees a block of the raw domain (NULL is ignored).
#[no_mangle]
pub unsafe extern "C" fn obm_raw_free(p: *mut c_void) {
    // SAFETY: the caller passes null or a live block of this domain.
    unsafe { domain::free(OBM_DOMAIN_RAW, p as *mut u8) }
}

/// `n` bytes from the mem domain (PyMem_Malloc style); a unique block for 0, NULL on failure.
#[no_mangle]
pub unsafe extern "C" fn obm_mem_malloc(n: usize) -> *mut c_void {
    domain::malloc(OBM_DOMAIN_MEM, n) as *mut c_void
}

/// Zeroed `nelem * elsize` bytes from the mem domain; NULL on overflow or failure.
#[no_mangle]
pub unsafe extern "C" fn obm_mem_calloc(nelem: usize, elsize: usize) -> *mut c_void {
    domain::calloc(OBM_DOMAIN_MEM, nelem, elsize) as *mut c_void
}

/// Resizes a block of the mem domain; `n == 0` gives a unique block.
#[no_mangle]
pub unsafe extern "C" fn obm_mem_realloc(p: *mut c_void, n: usize) -> *mut c_void {
    // SAFETY: the caller passes null or a live block of this domain.
    unsafe { domain::realloc(OBM_DOMAIN_MEM, p as *mut u8, n) as *mut c_void }
}

/// Frees a block of the mem domain (NULL is ignored).
#[no_mangle]
pub unsafe extern "C" fn obm_mem_free(p: *mut c_void) {
    // SAFETY: the caller passes null or a live block of this domain.
    unsafe { domain::free(OBM_DOMAIN_MEM, p as *mut u8) }
}

// The object domain's functions have the same code as malloc, calloc and
// free (the drop-in family is the object domain), and LLVM gives functions
// with identical code one address (MergeFunctions, as aliases). Valgrind
// redirects addresses: memcheck replaces `malloc` in every library, so
// obm_object_malloc would reach Valgrind's malloc with it, bypassing the
// object domain and its hooks. Each is put in a section of its own (the one
// -ffunction-sections gives it anyway, so the layout does not change): LLVM
// merges only functions of the same section, so each keeps its own address
// and its code, identical to malloc's.

/// `n` bytes from the object domain (PyObject_Malloc style); a unique block for 0, NULL on failure.
#[no_mangle]
#[link_section = ".text.obm_object_malloc"]
pub unsafe extern "C" fn obm_object_malloc(n: usize) -> *mut c_void {
    domain::malloc(OBM_DOMAIN_OBJ, n) as *mut c_void
}

/// Zeroed `nelem * elsize` bytes from the object domain; NULL on overflow or failure.
#[no_mangle]
#[link_section = ".text.obm_object_calloc"]
pub unsafe extern "C" fn obm_object_calloc(nelem: usize, elsize: usize) -> *mut c_void {
    domain::calloc(OBM_DOMAIN_OBJ, nelem, elsize) as *mut c_void
}

/// Resizes a block of the object domain; `n == 0` gives a unique block.
#[no_mangle]
#[link_section = ".text.obm_object_realloc"]
pub unsafe extern "C" fn obm_object_realloc(p: *mut c_void, n: usize) -> *mut c_void {
    // SAFETY: the caller passes null or a live block of this domain.
    unsafe { domain::realloc(OBM_DOMAIN_OBJ, p as *mut u8, n) as *mut c_void }
}

/// Frees a block of the object domain (NULL is ignored).
#[no_mangle]
#[link_section = ".text.obm_object_free"]
pub unsafe extern "C" fn obm_object_free(p: *mut c_void) {
    // SAFETY: the caller passes null or a live block of this domain.
    unsafe { domain::free(OBM_DOMAIN_OBJ, p as *mut u8) }
}

/// The usable size of a block from any domain or from malloc (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn obm_usable_size(p: *const c_void) -> usize {
    domain::usable_size(OBM_DOMAIN_OBJ, p as *const u8, "obm_usable_size")
}

/// Copies the allocator of domain `d` into `*out` (PyMem_GetAllocator).
#[no_mangle]
pub unsafe extern "C" fn obm_get_allocator(d: obm_domain, out: *mut obm_allocator) {
    if !out.is_null() {
        // SAFETY: the caller passes a writable obm_allocator.
        unsafe { *out = domain::get(d) };
    }
}

/// Installs `*a` as the allocator of domain `d` (PyMem_SetAllocator). To
/// wrap the current allocator, get it first and call it from the new one.
#[no_mangle]
pub unsafe extern "C" fn obm_set_allocator(d: obm_domain, a: *const obm_allocator) {
    if !a.is_null() {
        // SAFETY: the caller passes a readable obm_allocator.
        domain::set(d, unsafe { &*a });
    }
}

/// Installs the debug hooks on the three domains (PyMem_SetupDebugHooks):
/// guard bytes, 0xCD/0xDD fills, serial numbers, a quarantine of freed
/// blocks, and a report and abort on the first misuse. Blocks allocated
/// before the call keep working. Calling it again does nothing.
#[no_mangle]
pub extern "C" fn obm_setup_debug_hooks() {
    crate::lifecycle::setup_debug_hooks();
}
