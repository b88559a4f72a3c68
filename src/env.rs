//! Configuration from the environment, read once, without allocating,
//! before the first allocation is served (from the first heap's creation
//! or the library constructor, whichever comes first).
//!
//! A bad value prints one `obmem: ` warning and the default is kept: the
//! host program is never stopped by its environment.

use crate::os;
use crate::report;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering::*};

/// `OBMEM_SHOW_STATS=1`: print the statistics table to stderr at exit.
pub static SHOW_STATS: AtomicBool = AtomicBool::new(false);

/// The largest purge delay accepted: a day.
const PURGE_DELAY_MS_MAX: usize = 86_400_000;
const PURGE_DELAY_MS_DEFAULT_TEXT: &str = "1000";
const _: () = assert!(crate::config::PURGE_DELAY_MS_DEFAULT == 1000);

const UNREAD: u8 = 0;
const READING: u8 = 1;
const READ: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNREAD);

/// Reads the environment once. Re-entrant calls (the reading thread
/// allocating) and concurrent ones return at once.
#[inline]
pub fn init() {
    if STATE.load(Acquire) != UNREAD {
        return;
    }
    if STATE
        .compare_exchange(UNREAD, READING, AcqRel, Acquire)
        .is_err()
    {
        return;
    }
    read_all();
    STATE.store(READ, Release);
}

fn read_all() {
    if let Some(v) = os::getenv(c"OBMEM_MALLOC") {
        match v {
            // `malloc` routes every domain to the raw allocator, which in
            // obmem is the same pool allocator (it replaces the C library's
            // malloc), so it needs no switch.
            b"" | b"pymalloc" | b"malloc" => {}
            b"debug" | b"pymalloc_debug" | b"malloc_debug" => crate::debug::setup(),
            _ => warn(
                "OBMEM_MALLOC",
                v,
                "pymalloc, pymalloc_debug, malloc or debug",
                "pymalloc",
            ),
        }
    }
    if let Some(v) = os::getenv(c"OBMEM_SHOW_STATS") {
        match v {
            b"" | b"0" => {}
            b"1" => SHOW_STATS.store(true, Relaxed),
            _ => warn("OBMEM_SHOW_STATS", v, "0 or 1", "0"),
        }
    }
    if let Some(v) = os::getenv(c"OBMEM_PURGE_DELAY_MS") {
        match parse_usize(v) {
            Some(ms) if ms <= PURGE_DELAY_MS_MAX => crate::purge::set_delay_ms(ms as u64),
            _ => warn(
                "OBMEM_PURGE_DELAY_MS",
                v,
                "milliseconds from 0 to 86400000",
                PURGE_DELAY_MS_DEFAULT_TEXT,
            ),
        }
    }
    if let Some(v) = os::getenv(c"OBMEM_PROF_UNWIND") {
        match v {
            b"" | b"dwarf" => {}
            b"fp" => crate::prof::UNWIND.store(crate::prof::UNWIND_FP, Relaxed),
            _ => warn("OBMEM_PROF_UNWIND", v, "dwarf or fp", "dwarf"),
        }
    }
    if let Some(v) = os::getenv(c"OBMEM_PROF_DUMP") {
        if !crate::prof::set_dump_prefix(v) {
            warn(
                "OBMEM_PROF_DUMP",
                v,
                "a path prefix of 1 to 4000 bytes",
                "no dump",
            );
        }
    }
    if let Some(v) = os::getenv(c"OBMEM_PROF") {
        match parse_usize(v) {
            Some(n) if n > 0 && n <= crate::prof::MAX_SAMPLE_BYTES => {
                if !crate::prof::start(n) {
                    report::eprint(format_args!(
                        "obmem: OBMEM_PROF: cannot map the profile's table; profiling off\n"
                    ));
                }
            }
            _ => warn(
                "OBMEM_PROF",
                v,
                "sample bytes from 1 to 1099511627776",
                "no profiling",
            ),
        }
    }
    if let Some(v) = os::getenv(c"OBMEM_FAIL_MMAP") {
        if !crate::fault::configure(v) {
            warn("OBMEM_FAIL_MMAP", v, "N, N:C, SITE[:N[:C]] or trace", "0");
        }
    }
}

/// Parses a decimal number without allocating.
pub fn parse_usize(v: &[u8]) -> Option<usize> {
    if v.is_empty() || v.len() > 18 {
        return None;
    }
    v.iter().try_fold(0usize, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as usize)
    })
}

/// Prints the one-line warning for a bad value.
pub fn warn(name: &str, value: &[u8], expected: &str, default: &str) {
    let shown = core::str::from_utf8(&value[..value.len().min(64)]).unwrap_or("<not UTF-8>");
    report::eprint(format_args!(
        "obmem: {name}: invalid value '{shown}' (expected {expected}); using {default}\n"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

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
