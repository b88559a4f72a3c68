//! The statistics' counters: per-heap counters bumped by their owner with
//! plain relaxed stores (no read-modify-write on the fast path), and global
//! atomics for the slow paths. The lowest layer, so every module can count;
//! `stats` (at the top) merges them into a snapshot and prints the table.

use crate::config::NUM_CLASSES;
use crate::sync::raise_to;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Counters owned by one heap: only the thread owning the heap writes them,
/// so a relaxed load+store is an exact increment; anyone may read them.
/// Blocks in use and pools per class are not counted on the way: the
/// snapshot reads them from the pools themselves (`Pool::used`).
pub struct HeapStats {
    /// Allocations per class, indexed by class + 1; entry 0 unused. The
    /// slow paths count here; the fast path counts on the pool
    /// (`Pool::allocs`), whose count comes here when the pool is released.
    pub allocs: [AtomicU64; NUM_CLASSES + 1],
}

impl HeapStats {
    pub const fn new() -> Self {
        HeapStats {
            allocs: [const { AtomicU64::new(0) }; NUM_CLASSES + 1],
        }
    }
}

impl Default for HeapStats {
    fn default() -> Self {
        Self::new()
    }
}

/// `c += 1` by the only writer of `c` (a relaxed load and store, one
/// `inc` on x86): counts an allocation on the fast path. Compiled out
/// without the `stats` feature.
#[inline(always)]
pub fn count(c: &AtomicU64) {
    add(c, 1);
}

/// `c += n` by the only writer of `c`, as `count`.
#[inline(always)]
pub fn add(c: &AtomicU64, n: u64) {
    if cfg!(feature = "stats") {
        c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
    }
}

pub static MAPPED: AtomicUsize = AtomicUsize::new(0);
pub static PEAK_MAPPED: AtomicUsize = AtomicUsize::new(0);
pub static ARENAS_ALLOCATED: AtomicUsize = AtomicUsize::new(0);
pub static ARENAS_FREED: AtomicUsize = AtomicUsize::new(0);
pub static ARENAS_PEAK: AtomicUsize = AtomicUsize::new(0);
pub static LARGE_BLOCKS: AtomicUsize = AtomicUsize::new(0);
pub static LARGE_BYTES: AtomicUsize = AtomicUsize::new(0);
pub static LARGE_ALLOCS: AtomicUsize = AtomicUsize::new(0);
/// Bytes between large mappings' headers and their blocks (over-alignment).
pub static LARGE_ALIGN_LOSS: AtomicUsize = AtomicUsize::new(0);

pub fn add_mapped(n: usize) {
    let now = MAPPED.fetch_add(n, Relaxed) + n;
    raise_to(&PEAK_MAPPED, now);
}

pub fn sub_mapped(n: usize) {
    MAPPED.fetch_sub(n, Relaxed);
}

/// `add_mapped(add)` and `sub_mapped(sub)` in one atomic update.
pub fn remap(add: usize, sub: usize) {
    if add > sub {
        add_mapped(add - sub);
    } else if sub > add {
        sub_mapped(sub - add);
    }
}

pub fn arena_acquired() {
    let n = ARENAS_ALLOCATED.fetch_add(1, Relaxed) + 1;
    raise_to(&ARENAS_PEAK, n - ARENAS_FREED.load(Relaxed));
}

pub fn arena_released() {
    ARENAS_FREED.fetch_add(1, Relaxed);
}
