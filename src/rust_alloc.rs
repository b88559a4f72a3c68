//! `Obmem`, obmem as Rust's global allocator:
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: obmem::Obmem = obmem::Obmem;
//! ```
//!
//! Blocks come from the object domain, as C's malloc does with the library
//! (so the debug hooks and `obm_get_stats` see them): requests aligned to
//! 16 bytes or less take malloc's fast path, larger alignments obmem's
//! aligned path. A Rust program depending on the crate keeps the C
//! library's malloc for its C code; with the `override` feature (off by
//! default) both are obmem.
//!
//! The methods are not `#[inline]`: inlinable across crates, they would
//! make the domains' private statics visible to other crates, which turns
//! every access to them in the C library into a GOT load (one instruction
//! more on each remote free, measured with benches/instr.sh's prodcons).

use crate::config::ALIGNMENT;
use crate::domain::{self, obm_domain::OBM_DOMAIN_OBJ};
use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

/// obmem as a `#[global_allocator]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Obmem;

// SAFETY: every block is at least `layout.size()` bytes aligned to
// `layout.align()` (obmem's blocks are 16-byte aligned; larger alignments
// go to the aligned path), is never handed out twice while live, and
// failure returns null; obmem never allocates through the global allocator,
// so there is no re-entrance.
unsafe impl GlobalAlloc for Obmem {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= ALIGNMENT {
            domain::malloc(OBM_DOMAIN_OBJ, layout.size())
        } else {
            domain::aligned(OBM_DOMAIN_OBJ, layout.align(), layout.size())
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a live block of this allocator.
        unsafe { domain::free(OBM_DOMAIN_OBJ, p) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= ALIGNMENT {
            return domain::calloc(OBM_DOMAIN_OBJ, 1, layout.size());
        }
        let p = domain::aligned(OBM_DOMAIN_OBJ, layout.align(), layout.size());
        if !p.is_null() {
            // SAFETY: a fresh block of at least layout.size() bytes.
            unsafe { ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= ALIGNMENT {
            // SAFETY: p is a live block of this allocator and new_size > 0
            // (GlobalAlloc's contract), which realloc needs.
            return unsafe { domain::realloc(OBM_DOMAIN_OBJ, p, new_size) };
        }
        let q = domain::aligned(OBM_DOMAIN_OBJ, layout.align(), new_size);
        if !q.is_null() {
            // SAFETY: both blocks are live, distinct, and at least
            // min(old, new) bytes long; p is not used after dealloc.
            unsafe {
                ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                self.dealloc(p, layout);
            }
        }
        q
    }
}
