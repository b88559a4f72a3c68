//! mimalloc v3 as a preloadable malloc for `make bench`: the static
//! mimalloc that the libmimalloc-sys crate compiles (with its `override`
//! feature, so it defines malloc, free, ... as aliases of mi_malloc, ...)
//! linked into a shared library.  build.rs adds exports.map, which makes
//! those definitions visible: rustc's own version script would hide them.

extern crate libmimalloc_sys;

extern "C" {
    fn mi_version() -> std::ffi::c_int;
}

/// Referencing mimalloc pulls its object file out of the static archive
/// (nothing else in the crate does); the bench asks `mi_version` itself.
#[no_mangle]
pub extern "C" fn obmem_bench_mimalloc_version() -> std::ffi::c_int {
    unsafe { mi_version() }
}
