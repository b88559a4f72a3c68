//! # obmem: CPython's memory management for any C or C++ program
//!
//! ```text
//!   C program ──► malloc/free/...        obm_raw_* / obm_mem_* / obm_object_*
//!                 (ffi::malloc)          (ffi::domains)
//!                        │                      │
//!                        └──► domain: per-domain allocator table (hooks) ◄── debug hooks
//!                                   │ (default)
//!                                   ▼
//!        alloc: malloc/calloc/realloc/aligned     free: free/usable_size
//!                        │                         │
//!               size ≤ 128 KiB                size > 128 KiB
//!                        ▼                         ▼
//!   heap (per thread, TLS) ─► pool queue per class    large: the heap's freed spans, spans of
//!                        │                               regions, own mapping > 32 MiB
//!                        ▼
//!   arena (256 KiB, aligned) ─► 15 pool units of 16 KiB; header in unit 0
//!                        │
//!                        ▼
//!   os (mmap/munmap/madvise/mremap)     arena_map: radix tree "is this pointer ours?"
//! ```
//!
//! Vocabulary (as in CPython's obmalloc.c): a *block* is what malloc returns;
//! a *size class* is a block size (16-byte steps to 512, then 8 steps per
//! power of two to 128 KiB); a *pool* is a run of 16 KiB units in an arena
//! serving one class; an *arena* is a 256 KiB chunk aligned to its size; a
//! *heap* is a thread's set of arenas and its per-class pool queues.
//!
//! Life of a block: `malloc(n)` finds the class of `n`, takes the calling
//! thread's heap from TLS and pops a block from the free list of the head
//! pool of that class (`free`, which the owner's frees also go to). When
//! that list is empty it is refilled from the blocks other threads freed
//! to the pool (`thread_free`, taken with one atomic swap), or by carving
//! a page's worth of untouched blocks; when the pool has nothing left it
//! leaves the queue, and the next pool, blocks handed back by other
//! threads, a free unit run in an owned arena, or a new arena from the
//! reserve serve, in that order.
//! `free(p)` looks `p`'s 16 KiB unit up in the calling thread's unit cache,
//! which names the heap's pool holding it, checks that `p` is a carved
//! block start and not already free, and pushes it on the pool's `free`
//! list. A block of another heap is found through the global arena map,
//! checked the same way and pushed on its pool's `thread_free` list.
//! An emptied pool returns its units to the arena; an emptied arena returns
//! to the reserve with its pages kept resident (warm, for the next heap to
//! take an arena) until the purge delay runs out, then discarded; the
//! reserve unmaps discarded arenas beyond a bound. Every module states the
//! invariants of its own structures.
//!
//! Rules the whole crate keeps: nothing allocates through Rust's global
//! allocator (this library *is* malloc), nothing panics across the C
//! boundary (`panic = "abort"`, no unwrap on these paths), and the fast
//! paths take no lock.

#![deny(unsafe_op_in_unsafe_fn)]
// The C library needs nothing from std on x86-64 (report.rs has its panic
// handler): without it libobmem.so is half the size and does not load
// libgcc_s. Elsewhere the thread's heap is found through std's
// `thread_local!` (heap/tls.rs), so std stays.
#![cfg_attr(all(feature = "c-library", not(test), target_arch = "x86_64"), no_std)]

pub(crate) mod addr_table;
pub(crate) mod alloc;
pub(crate) mod arena;
pub(crate) mod arena_map;
pub(crate) mod census;
pub(crate) mod config;
pub(crate) mod counters;
pub(crate) mod debug;
pub(crate) mod domain;
pub(crate) mod env;
pub(crate) mod fault;
pub(crate) mod ffi;
pub(crate) mod free;
pub(crate) mod gc;
pub(crate) mod heap;
pub(crate) mod large;
pub(crate) mod lifecycle;
pub(crate) mod object;
pub(crate) mod os;
pub(crate) mod pool;
pub(crate) mod prof;
pub(crate) mod purge;
pub(crate) mod report;
mod rust_alloc;
pub(crate) mod size_class;
pub(crate) mod stacks;
pub(crate) mod stats;
pub(crate) mod sync;
pub(crate) mod valgrind;

pub use rust_alloc::Obmem;

/// The allocator core for Rust code, and the crate's integration tests:
/// the functions the C `malloc` family ends in, without the domain hooks,
/// and the statistics snapshot. Everything else is internal to the crate.
///
/// Each is a call, never inlined into another crate: what an inlinable
/// public function reaches becomes an exported symbol of the rlib, and the
/// library's own code then reaches it through the GOT, as it would a
/// symbol another object may interpose (a load more for every static the
/// fast paths read, an indirect jump for every call out of them).
pub mod direct {
    pub use crate::stats::obm_stats;

    /// `n` bytes (16 for 0), 16-byte aligned; null with ENOMEM on failure.
    #[inline(never)]
    pub fn malloc(n: usize) -> *mut u8 {
        crate::alloc::malloc(n)
    }

    /// Zeroed `nelem * elsize` bytes; null with ENOMEM on overflow or failure.
    #[inline(never)]
    pub fn calloc(nelem: usize, elsize: usize) -> *mut u8 {
        crate::alloc::calloc(nelem, elsize)
    }

    /// `n` bytes aligned to `align`, a power of two.
    #[inline(never)]
    pub fn aligned(align: usize, n: usize) -> *mut u8 {
        crate::alloc::aligned(align, n)
    }

    /// Resizes `p` to `n` bytes (n > 0; null p is malloc); null with
    /// ENOMEM on failure, `p` untouched. `func` names the caller in reports.
    ///
    /// # Safety
    /// `p` is null or a live block obmem returned.
    #[inline(never)]
    pub unsafe fn realloc(p: *mut u8, n: usize, func: &str) -> *mut u8 {
        // SAFETY: per the contract.
        unsafe { crate::alloc::realloc(p, n, func) }
    }

    /// Frees `p` (null: nothing); an invalid or double free is reported
    /// and aborts. `func` names the caller in reports.
    ///
    /// # Safety
    /// `p` is null or a block obmem returned, not used afterwards.
    #[inline(never)]
    pub unsafe fn free(p: *mut u8, func: &str) {
        // SAFETY: per the contract.
        unsafe { crate::free::free(p, func) }
    }

    /// The usable size of the live block `p` (0 for null).
    #[inline(never)]
    pub fn usable_size(p: *const u8, func: &str) -> usize {
        crate::free::usable_size(p, func)
    }

    /// A snapshot of the allocator's statistics.
    #[inline(never)]
    pub fn snapshot() -> obm_stats {
        crate::stats::snapshot()
    }
}
