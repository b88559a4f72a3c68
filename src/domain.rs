//! The three allocation domains (raw, mem, object). Placeholder until the
//! allocator core lands: it forwards to the C library.

/// Allocates `n` bytes (a unique block for 0) in the object domain, 16-byte
/// aligned; null on failure.
pub fn object_malloc(n: usize) -> *mut u8 {
    // SAFETY: malloc accepts any size.
    unsafe { libc::malloc(n.max(1)) as *mut u8 }
}

/// Frees a block from `object_malloc` (null is ignored).
///
/// # Safety
/// `p` is null or a live block from `object_malloc`.
pub unsafe fn object_free(p: *mut u8) {
    // SAFETY: per the contract, p came from malloc.
    unsafe { libc::free(p as *mut libc::c_void) }
}
