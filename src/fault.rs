//! Test-only fault injection for the OS mapping layer (`OBMEM_FAIL_MMAP`).
//!
//! Every call that asks the kernel for memory names its *site*, so a test
//! can fail each place obmem maps memory and check that the allocation
//! fails cleanly (NULL and ENOMEM) and that obmem recovers once the kernel
//! gives memory again. The value is one of:
//!
//! - `N`: the N-th mapping call and every later one fail;
//! - `N:C`: C calls from the N-th on fail, later ones succeed;
//! - `SITE`, `SITE:N` or `SITE:N:C`: the same, counting only calls of one
//!   site (`SITE` alone is `SITE:1`, every call of that site fails);
//! - `trace`: nothing fails; each call prints `obmem: mmap #K SITE BYTES`.
//!
//! `0` or empty disables it (the default). The settings are plain atomics
//! written once by `env`, which parses the value, before the first
//! allocation is served.

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::Relaxed};

/// The places obmem maps memory.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Site {
    /// A batch of arenas for the small-block pools (arena.rs).
    Arenas = 1,
    /// A large block's mapping, or a region of large spans (large/).
    Large,
    /// Growing a large block in place with mremap (large/).
    LargeGrow,
    /// Moving a large block that cannot grow in place (large/).
    LargeMove,
    /// A leaf of the arena map (arena_map.rs).
    ArenaMap,
    /// A slab of thread heaps (heap/registry.rs).
    HeapSlab,
    /// The debug hooks' record table (debug/blocks.rs).
    DebugTable,
    /// The table of over-aligned blocks in hooked domains (domain/aligned.rs).
    HookTable,
    /// The heap profiler's table of stacks (stacks.rs).
    ProfTable,
}

const SITES: [(Site, &str); 9] = [
    (Site::Arenas, "arenas"),
    (Site::Large, "large"),
    (Site::LargeGrow, "large-grow"),
    (Site::LargeMove, "large-move"),
    (Site::ArenaMap, "arena-map"),
    (Site::HeapSlab, "heap-slab"),
    (Site::DebugTable, "debug-table"),
    (Site::HookTable, "hook-table"),
    (Site::ProfTable, "prof-table"),
];

impl Site {
    pub fn name(self) -> &'static str {
        SITES[self as usize - 1].1
    }
}

/// First failing call (1-based; 0: injection off).
static FAIL_AT: AtomicUsize = AtomicUsize::new(0);
/// How many calls fail from FAIL_AT on (0: all of them).
static FAIL_COUNT: AtomicUsize = AtomicUsize::new(0);
/// The only site counted (0: every site).
static FAIL_SITE: AtomicU8 = AtomicU8::new(0);
static TRACE: AtomicBool = AtomicBool::new(false);
static CALLS: AtomicUsize = AtomicUsize::new(0);

/// Called by the OS layer before each mapping call: true if it must fail.
#[inline]
pub fn inject(site: Site, bytes: usize) -> bool {
    let at = FAIL_AT.load(Relaxed);
    if at == 0 && !TRACE.load(Relaxed) {
        return false;
    }
    injected(site, bytes, at)
}

#[cold]
fn injected(site: Site, bytes: usize, at: usize) -> bool {
    let only = FAIL_SITE.load(Relaxed);
    if only != 0 && only != site as u8 {
        return false;
    }
    let k = CALLS.fetch_add(1, Relaxed) + 1;
    if TRACE.load(Relaxed) {
        crate::report::eprint(format_args!("obmem: mmap #{k} {} {bytes}\n", site.name()));
        return false;
    }
    let count = FAIL_COUNT.load(Relaxed);
    k >= at && (count == 0 || k - at < count)
}

/// A parsed `OBMEM_FAIL_MMAP` value (parsed by `env`).
#[derive(Debug, PartialEq, Eq, Default)]
pub struct Spec {
    /// The only site counted (0: every site).
    pub site: u8,
    /// First failing call (1-based; 0: injection off).
    pub at: usize,
    /// How many calls fail from `at` on (0: all of them).
    pub count: usize,
    pub trace: bool,
}

/// The site called `name` in `OBMEM_FAIL_MMAP` values.
pub fn site_named(name: &[u8]) -> Option<Site> {
    SITES
        .iter()
        .find(|(_, n)| n.as_bytes() == name)
        .map(|&(s, _)| s)
}

/// Applies an `OBMEM_FAIL_MMAP` setting.
pub fn configure(spec: Spec) {
    FAIL_SITE.store(spec.site, Relaxed);
    FAIL_AT.store(spec.at, Relaxed);
    FAIL_COUNT.store(spec.count, Relaxed);
    TRACE.store(spec.trace, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_sites() {
        for (i, (site, name)) in SITES.iter().enumerate() {
            assert_eq!(*site as usize, i + 1);
            assert_eq!(site.name(), *name);
            assert_eq!(site_named(name.as_bytes()), Some(*site));
        }
    }
}
