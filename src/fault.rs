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
//! written once by `env` before the first allocation is served.

use crate::env::parse_usize;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::Relaxed};

/// The places obmem maps memory.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Site {
    /// A batch of arenas for the small-block pools (arena.rs).
    Arenas = 1,
    /// A large block's mapping (large.rs).
    Large,
    /// Growing a large block in place with mremap (large.rs).
    LargeGrow,
    /// Moving a large block that cannot grow in place (large.rs).
    LargeMove,
    /// A leaf of the arena map (arena_map.rs).
    ArenaMap,
    /// A slab of thread heaps (heap.rs).
    HeapSlab,
    /// The debug hooks' record table (debug/blocks.rs).
    DebugTable,
    /// The heap profiler's stack table (prof/table.rs).
    ProfTable,
}

const SITES: [(Site, &str); 8] = [
    (Site::Arenas, "arenas"),
    (Site::Large, "large"),
    (Site::LargeGrow, "large-grow"),
    (Site::LargeMove, "large-move"),
    (Site::ArenaMap, "arena-map"),
    (Site::HeapSlab, "heap-slab"),
    (Site::DebugTable, "debug-table"),
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

/// Applies an `OBMEM_FAIL_MMAP` value; false if it is malformed.
pub fn configure(v: &[u8]) -> bool {
    match parse(v) {
        Some(spec) => {
            FAIL_SITE.store(spec.site, Relaxed);
            FAIL_AT.store(spec.at, Relaxed);
            FAIL_COUNT.store(spec.count, Relaxed);
            TRACE.store(spec.trace, Relaxed);
            true
        }
        None => false,
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Spec {
    site: u8,
    at: usize,
    count: usize,
    trace: bool,
}

fn parse(v: &[u8]) -> Option<Spec> {
    let mut spec = Spec {
        site: 0,
        at: 0,
        count: 0,
        trace: false,
    };
    if v == b"trace" {
        spec.trace = true;
        return Some(spec);
    }
    let mut fields = v.split(|&c| c == b':');
    let mut first = fields.next()?;
    if let Some(&(site, _)) = SITES.iter().find(|(_, name)| name.as_bytes() == first) {
        spec.site = site as u8;
        spec.at = 1;
        match fields.next() {
            Some(f) => first = f,
            None => return Some(spec),
        }
    }
    spec.at = if first.is_empty() && spec.site == 0 {
        0
    } else {
        parse_usize(first)?
    };
    if let Some(count) = fields.next() {
        spec.count = parse_usize(count).filter(|&c| c > 0)?;
        if spec.at == 0 {
            return None;
        }
    }
    if fields.next().is_some() || (spec.site != 0 && spec.at == 0) {
        return None;
    }
    Some(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(site: u8, at: usize, count: usize) -> Option<Spec> {
        Some(Spec {
            site,
            at,
            count,
            trace: false,
        })
    }

    #[test]
    fn values() {
        assert_eq!(parse(b""), spec(0, 0, 0));
        assert_eq!(parse(b"0"), spec(0, 0, 0));
        assert_eq!(parse(b"5"), spec(0, 5, 0));
        assert_eq!(parse(b"5:2"), spec(0, 5, 2));
        assert_eq!(parse(b"arenas"), spec(Site::Arenas as u8, 1, 0));
        assert_eq!(parse(b"large-move:3"), spec(Site::LargeMove as u8, 3, 0));
        assert_eq!(parse(b"heap-slab:2:1"), spec(Site::HeapSlab as u8, 2, 1));
        assert!(parse(b"trace").unwrap().trace);
        for bad in [
            &b"x"[..],
            b"5:",
            b"5:0",
            b"0:3",
            b"1:2:3",
            b"arenas:0",
            b"arenas:",
            b"-1",
            b"large:x",
        ] {
            assert_eq!(parse(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }

    #[test]
    fn names_match_sites() {
        for (i, (site, name)) in SITES.iter().enumerate() {
            assert_eq!(*site as usize, i + 1);
            assert_eq!(site.name(), *name);
        }
    }
}
