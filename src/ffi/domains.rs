//! The PyMem_Raw / PyMem / PyObject-style domains and the allocator hooks.
//! CPython semantics: a request of 0 bytes (also `*_realloc(p, 0)`) returns
//! a unique non-NULL pointer; failure returns NULL.

use crate::alloc;
use crate::domain::{self, obm_allocator, obm_domain};
use core::ffi::c_void;

macro_rules! domain_api {
    ($d:expr, $malloc:ident, $calloc:ident, $realloc:ident, $free:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $malloc(n: usize) -> *mut c_void {
            domain::malloc($d, n) as *mut c_void
        }
        #[no_mangle]
        pub unsafe extern "C" fn $calloc(nelem: usize, elsize: usize) -> *mut c_void {
            domain::calloc($d, nelem, elsize) as *mut c_void
        }
        #[no_mangle]
        pub unsafe extern "C" fn $realloc(p: *mut c_void, n: usize) -> *mut c_void {
            // SAFETY: the caller passes null or a live block of this domain.
            unsafe { domain::realloc($d, p as *mut u8, n) as *mut c_void }
        }
        #[no_mangle]
        pub unsafe extern "C" fn $free(p: *mut c_void) {
            // SAFETY: the caller passes null or a live block of this domain.
            unsafe { domain::free($d, p as *mut u8) }
        }
    };
}

domain_api!(
    obm_domain::OBM_DOMAIN_RAW,
    obm_raw_malloc,
    obm_raw_calloc,
    obm_raw_realloc,
    obm_raw_free
);
domain_api!(
    obm_domain::OBM_DOMAIN_MEM,
    obm_mem_malloc,
    obm_mem_calloc,
    obm_mem_realloc,
    obm_mem_free
);
domain_api!(
    obm_domain::OBM_DOMAIN_OBJ,
    obm_object_malloc,
    obm_object_calloc,
    obm_object_realloc,
    obm_object_free
);

/// The usable size of a block from any domain or from malloc (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn obm_usable_size(p: *const c_void) -> usize {
    alloc::usable_size(p as *const u8, "obm_usable_size")
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
