//! Every `OBMEM_*` variable is parsed here, without allocating, with one
//! warning format: a bad value prints one `obmem: NAME: invalid value ...`
//! line and the default is kept, so the host program is never stopped by
//! its environment. A leaf: each function reads and parses one variable
//! and returns what it says; the caller acts on it, once (the library's
//! settings in `lifecycle::init`, before the first allocation is served;
//! the collector's thresholds when the collector is first used).

use crate::config::{PROF_DUMP_PREFIX_MAX, PROF_MAX_SAMPLE_BYTES, PURGE_DELAY_MS_DEFAULT};
use crate::fault::{self, Spec};
use crate::os;
use crate::report;

/// `OBMEM_MALLOC`: true for `debug` (or `pymalloc_debug`, `malloc_debug`).
/// `malloc` routes every domain to the raw allocator, which in obmem is
/// the same pool allocator (it replaces the C library's malloc), so it
/// needs no switch.
pub fn debug_hooks() -> bool {
    let Some(v) = os::getenv(c"OBMEM_MALLOC") else {
        return false;
    };
    match v {
        b"" | b"pymalloc" | b"malloc" => false,
        b"debug" | b"pymalloc_debug" | b"malloc_debug" => true,
        _ => {
            warn(
                "OBMEM_MALLOC",
                v,
                "pymalloc, pymalloc_debug, malloc or debug",
                "pymalloc",
            );
            false
        }
    }
}

/// `OBMEM_SHOW_STATS=1`: print the statistics table to stderr at exit.
pub fn show_stats() -> bool {
    flag(c"OBMEM_SHOW_STATS")
}

/// `OBMEM_ARENA_HUGEPAGES=1`: ask for transparent huge pages on the
/// batches of arenas (fewer page faults, more resident memory).
pub fn arena_huge_pages() -> bool {
    flag(c"OBMEM_ARENA_HUGEPAGES")
}

/// A variable that is `0` (or empty, or unset) or `1`.
fn flag(var: &core::ffi::CStr) -> bool {
    match os::getenv(var) {
        None | Some(b"" | b"0") => false,
        Some(b"1") => true,
        Some(v) => {
            warn(var.to_str().unwrap_or("?"), v, "0 or 1", "0");
            false
        }
    }
}

/// The largest purge delay accepted: a day.
const PURGE_DELAY_MS_MAX: usize = 86_400_000;

/// `OBMEM_PURGE_DELAY_MS`, if set to a valid value.
pub fn purge_delay_ms() -> Option<u64> {
    let v = os::getenv(c"OBMEM_PURGE_DELAY_MS")?;
    match parse_usize(v) {
        Some(ms) if ms <= PURGE_DELAY_MS_MAX => Some(ms as u64),
        _ => {
            warn_fmt(
                "OBMEM_PURGE_DELAY_MS",
                v,
                "milliseconds from 0 to 86400000",
                format_args!("{PURGE_DELAY_MS_DEFAULT}"),
            );
            None
        }
    }
}

/// `OBMEM_FAIL_MMAP`, if set to a valid value (see `fault`).
pub fn fail_mmap() -> Option<Spec> {
    let v = os::getenv(c"OBMEM_FAIL_MMAP")?;
    let spec = parse_fail_mmap(v);
    if spec.is_none() {
        warn("OBMEM_FAIL_MMAP", v, "N, N:C, SITE[:N[:C]] or trace", "0");
    }
    spec
}

/// `OBMEM_PROF=<sample bytes>`, if set to a valid value: start the heap
/// profiler at load time.
pub fn prof_sample_bytes() -> Option<usize> {
    let v = os::getenv(c"OBMEM_PROF")?;
    match parse_usize(v) {
        Some(n) if n > 0 && n <= PROF_MAX_SAMPLE_BYTES => Some(n),
        _ => {
            warn_fmt(
                "OBMEM_PROF",
                v,
                "sample bytes",
                format_args!("no profiling (1 to {PROF_MAX_SAMPLE_BYTES})"),
            );
            None
        }
    }
}

/// `OBMEM_PROF_DUMP=<path prefix>`, if set to a usable value.
pub fn prof_dump_prefix() -> Option<&'static [u8]> {
    let v = os::getenv(c"OBMEM_PROF_DUMP")?;
    if v.is_empty() || v.len() > PROF_DUMP_PREFIX_MAX {
        warn_fmt(
            "OBMEM_PROF_DUMP",
            v,
            "a path prefix",
            format_args!("no dump (1 to {PROF_DUMP_PREFIX_MAX} bytes)"),
        );
        return None;
    }
    Some(v)
}

/// How the heap profiler captures stacks (`OBMEM_PROF_UNWIND`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ProfUnwind {
    /// `dwarf`, the default: DWARF call-frame information, rules cached.
    Dwarf,
    /// `libgcc`: libgcc's `_Unwind_Backtrace` for every sample.
    Libgcc,
    /// `fp`: walk frame pointers.
    Fp,
}

/// `OBMEM_PROF_UNWIND`: `dwarf` (default), `libgcc` or `fp`.
pub fn prof_unwind() -> ProfUnwind {
    match os::getenv(c"OBMEM_PROF_UNWIND") {
        None | Some(b"" | b"dwarf") => ProfUnwind::Dwarf,
        Some(b"libgcc") => ProfUnwind::Libgcc,
        Some(b"fp") => ProfUnwind::Fp,
        Some(v) => {
            warn("OBMEM_PROF_UNWIND", v, "dwarf, libgcc or fp", "dwarf");
            ProfUnwind::Dwarf
        }
    }
}

/// `OBMEM_GC_THRESHOLD=t0[,t1[,t2]]`, if set to a valid value; missing
/// values keep `defaults`, as `gc.set_threshold` does.
pub fn gc_thresholds(defaults: [i32; 3]) -> Option<[i32; 3]> {
    let v = os::getenv(c"OBMEM_GC_THRESHOLD")?;
    let t = parse_thresholds(v, defaults);
    if t.is_none() {
        let [a, b, c] = defaults;
        warn_fmt(
            "OBMEM_GC_THRESHOLD",
            v,
            "t0[,t1[,t2]], non-negative integers",
            format_args!("{a},{b},{c}"),
        );
    }
    t
}

/// Parses an `OBMEM_FAIL_MMAP` value (see `fault`).
fn parse_fail_mmap(v: &[u8]) -> Option<Spec> {
    let mut spec = Spec::default();
    if v == b"trace" {
        spec.trace = true;
        return Some(spec);
    }
    let mut fields = v.split(|&c| c == b':');
    let mut first = fields.next()?;
    if let Some(site) = fault::site_named(first) {
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

/// Parses an `OBMEM_GC_THRESHOLD` value, `t0[,t1[,t2]]` (decimal, each 0..=i32::MAX); missing values keep
/// their defaults, as `gc.set_threshold` does.
fn parse_thresholds(s: &[u8], defaults: [i32; 3]) -> Option<[i32; 3]> {
    let mut out = defaults;
    for (n, field) in s.split(|&b| b == b',').enumerate() {
        if n == out.len() || field.is_empty() || field.len() > 10 {
            return None;
        }
        let mut v: i64 = 0;
        for &b in field {
            if !b.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(b - b'0');
        }
        out[n] = i32::try_from(v).ok()?;
    }
    Some(out)
}

/// Parses a decimal number without allocating.
fn parse_usize(v: &[u8]) -> Option<usize> {
    if v.is_empty() || v.len() > 18 {
        return None;
    }
    v.iter().try_fold(0usize, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as usize)
    })
}

/// Prints the one-line warning for a bad value.
fn warn(name: &str, value: &[u8], expected: &str, default: &str) {
    warn_fmt(name, value, expected, format_args!("{default}"));
}

fn warn_fmt(name: &str, value: &[u8], expected: &str, default: core::fmt::Arguments<'_>) {
    let shown = core::str::from_utf8(&value[..value.len().min(64)]).unwrap_or("<not UTF-8>");
    report::eprint(format_args!(
        "obmem: {name}: invalid value '{shown}' (expected {expected}); using {default}\n"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Site;

    const D: [i32; 3] = [700, 10, 10];

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
        assert_eq!(parse_fail_mmap(b""), spec(0, 0, 0));
        assert_eq!(parse_fail_mmap(b"0"), spec(0, 0, 0));
        assert_eq!(parse_fail_mmap(b"5"), spec(0, 5, 0));
        assert_eq!(parse_fail_mmap(b"5:2"), spec(0, 5, 2));
        assert_eq!(parse_fail_mmap(b"arenas"), spec(Site::Arenas as u8, 1, 0));
        assert_eq!(
            parse_fail_mmap(b"large-move:3"),
            spec(Site::LargeMove as u8, 3, 0)
        );
        assert_eq!(
            parse_fail_mmap(b"heap-slab:2:1"),
            spec(Site::HeapSlab as u8, 2, 1)
        );
        assert!(parse_fail_mmap(b"trace").unwrap().trace);
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
            assert_eq!(
                parse_fail_mmap(bad),
                None,
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
    }

    #[test]
    fn thresholds_parse_like_set_threshold() {
        assert_eq!(parse_thresholds(b"5,3,2", D), Some([5, 3, 2]));
        assert_eq!(parse_thresholds(b"100", D), Some([100, 10, 10]));
        assert_eq!(parse_thresholds(b"0,1", D), Some([0, 1, 10]));
        assert_eq!(parse_thresholds(b"2147483647", D), Some([i32::MAX, 10, 10]));
        for bad in [
            &b""[..],
            b"abc",
            b"1,2,3,4",
            b"-1",
            b"5,,3",
            b"2147483648",
            b"99999999999",
            b" 7",
            b"7,",
        ] {
            assert_eq!(
                parse_thresholds(bad, D),
                None,
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_usize(b"0"), Some(0));
        assert_eq!(parse_usize(b"700"), Some(700));
        assert_eq!(parse_usize(b""), None);
        assert_eq!(parse_usize(b"7x"), None);
        assert_eq!(parse_usize(b"-1"), None);
        assert_eq!(parse_usize(b"9999999999999999999999"), None);
    }
}
