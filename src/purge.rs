//! When free memory goes back to the OS: the purge delay, the clock it is
//! measured with, and the counts of what is kept and what was given back.
//!
//! Free pages (the free units of arenas, empty pools, cached large
//! mappings) are kept for reuse and given back (`MADV_DONTNEED`, or
//! `munmap` for large mappings) once they have not been used for
//! `OBMEM_PURGE_DELAY_MS` milliseconds, as jemalloc's `dirty_decay_ms` and
//! mimalloc's purge delay do. There is no thread of its own: the slow paths
//! of the allocator look at the clock (`CLOCK_MONOTONIC_COARSE`, a vDSO
//! read) and purge what has expired. A process that stops allocating
//! altogether calls `obm_trim()` (or `malloc_trim`) to give everything back.
//! A delay of 0 gives pages back as soon as they are free.

use crate::config::{KEEP_MIN_UNITS, PURGE_DELAY_MS_DEFAULT};
use crate::sync::raise_to;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

static DELAY_MS: AtomicU64 = AtomicU64::new(PURGE_DELAY_MS_DEFAULT);

/// Bytes given back to the OS so far (pages discarded or unmapped while free).
pub static PURGED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The purge delay in milliseconds.
#[inline]
pub fn delay_ms() -> u64 {
    DELAY_MS.load(Relaxed)
}

pub fn set_delay_ms(ms: u64) {
    DELAY_MS.store(ms, Relaxed);
}

/// Milliseconds of a coarse monotonic clock (a few ms of resolution, no
/// system call on Linux).
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; the clock id exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Whether memory freed at `stamp` has waited long enough at `now`.
#[inline]
pub fn expired(stamp: u64, now: u64) -> bool {
    now.saturating_sub(stamp) >= delay_ms()
}

/// The earliest time some free memory is due to go back (0: none known).
/// The heaps and the large regions note theirs (`note_due`); the sweep
/// (`heap::purge_if_due`) clears it, purges what has expired, and each
/// notes again what it keeps.
static DUE: AtomicU64 = AtomicU64::new(0);

/// Some free memory is due at `t` (a time of `now_ms`).
pub fn note_due(t: u64) {
    let mut cur = DUE.load(Relaxed);
    while cur == 0 || t < cur {
        match DUE.compare_exchange_weak(cur, t, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(c) => cur = c,
        }
    }
}

/// Whether some free memory waits for its delay.
#[inline(always)]
pub fn pending() -> bool {
    DUE.load(Relaxed) != 0
}

/// The earliest due time noted (0: none).
pub fn due() -> u64 {
    DUE.load(Relaxed)
}

/// Forgets the due times noted: the sweep about to look at everything.
pub fn clear_due() {
    DUE.store(0, Relaxed);
}

/// Counts `bytes` given back to the OS.
pub fn given_back(bytes: usize) {
    PURGED_BYTES.fetch_add(bytes, Relaxed);
}

// Process-wide unit counts, for the bound on what is kept: the heaps update
// them on their slow paths (pools made and released, units purged).
static IN_USE_UNITS: AtomicUsize = AtomicUsize::new(0);
static PEAK_UNITS: AtomicUsize = AtomicUsize::new(0);
static DIRTY_UNITS: AtomicUsize = AtomicUsize::new(0);

/// `n` units went to pools.
pub fn units_taken(n: usize) {
    let now = IN_USE_UNITS.fetch_add(n, Relaxed) + n;
    raise_to(&PEAK_UNITS, now);
}

/// `n` units came back from pools.
pub fn units_released(n: usize) {
    IN_USE_UNITS.fetch_sub(n, Relaxed);
}

/// `n` more (or, negative, fewer) free units hold resident pages.
pub fn dirty_changed(n: isize) {
    if n >= 0 {
        DIRTY_UNITS.fetch_add(n as usize, Relaxed);
    } else {
        DIRTY_UNITS.fetch_sub(n.unsigned_abs(), Relaxed);
    }
}

/// One kind of kept memory for the other. Free units of arenas serve only
/// pools, and free granules of the large regions only large blocks: when
/// a program's demand moves from one kind to the other, it would hold the
/// kept memory of the first while faulting in fresh pages of the second,
/// until the delay runs out. So fresh pages of one kind are matched by
/// giving back as many bytes of the other kind's kept memory, if that kind
/// has not itself taken fresh pages for `TRADE_IDLE_MS`: memory both kinds
/// keep needing is not moved back and forth (mstress, where both churn,
/// took 25 times the page faults without that condition, and 1.2 times
/// with it; python3's peak RSS is 1-2 MB lower, BENCHMARKS.md). The bytes to
/// give back are a debt, paid by the next thread through the path that
/// made it (`take_fresh_debt`, `take_fresh_unit_debt`).
const TRADE_IDLE_MS: u64 = 10;

/// When large blocks, and pools, last took fresh pages (`now_ms`).
static LARGE_FRESH_AT: AtomicU64 = AtomicU64::new(0);
static UNITS_FRESH_AT: AtomicU64 = AtomicU64::new(0);

/// Bytes of free units to give back for large blocks' fresh pages.
static FRESH_DEBT: AtomicUsize = AtomicUsize::new(0);
/// Bytes of large blocks' kept pages to give back for pools' fresh units.
static FRESH_UNIT_DEBT: AtomicUsize = AtomicUsize::new(0);

/// Notes that one kind took `bytes` of fresh pages at `now` (the last time
/// it did is `mine`), and adds them to `debt` if the other kind keeps
/// something (`theirs_keep`) and has not taken fresh pages (`theirs`) for
/// `TRADE_IDLE_MS`.
fn took_fresh(
    now: u64,
    bytes: usize,
    mine: &AtomicU64,
    theirs: &AtomicU64,
    theirs_keep: bool,
    debt: &AtomicUsize,
) {
    if mine.load(Relaxed) != now {
        mine.store(now, Relaxed);
    }
    if theirs_keep && now.saturating_sub(theirs.load(Relaxed)) >= TRADE_IDLE_MS {
        debt.fetch_add(bytes, Relaxed);
    }
}

/// Large blocks took `bytes` of pages that were not resident.
pub fn large_took_fresh(bytes: usize) {
    if bytes != 0 && delay_ms() != 0 {
        let keep = DIRTY_UNITS.load(Relaxed) != 0;
        took_fresh(
            now_ms(),
            bytes,
            &LARGE_FRESH_AT,
            &UNITS_FRESH_AT,
            keep,
            &FRESH_DEBT,
        );
    }
}

/// Pools took `bytes` of units that were not resident. (Whether large
/// blocks keep pages is for `large::give_back` to see.)
pub fn units_took_fresh(bytes: usize) {
    if bytes != 0 && delay_ms() != 0 {
        took_fresh(
            now_ms(),
            bytes,
            &UNITS_FRESH_AT,
            &LARGE_FRESH_AT,
            true,
            &FRESH_UNIT_DEBT,
        );
    }
}

/// Takes the bytes of free units to give back (see `large_took_fresh`).
pub fn take_fresh_debt() -> usize {
    take(&FRESH_DEBT)
}

/// Takes the bytes of large blocks' kept pages to give back (see
/// `units_took_fresh`).
pub fn take_fresh_unit_debt() -> usize {
    take(&FRESH_UNIT_DEBT)
}

fn take(debt: &AtomicUsize) -> usize {
    if debt.load(Relaxed) == 0 {
        return 0;
    }
    debt.swap(0, Relaxed)
}

/// Whether the process keeps more free units with their pages than it may:
/// at most three quarters of its peak of units in pools since the last
/// purge by time or by `obm_trim`, and never less than KEEP_MIN_UNITS.
pub fn over_bound() -> bool {
    excess_units() != 0
}

/// How many free units with their pages the process keeps beyond its bound
/// (see `over_bound`).
pub fn excess_units() -> usize {
    DIRTY_UNITS
        .load(Relaxed)
        .saturating_sub(KEEP_MIN_UNITS.max(PEAK_UNITS.load(Relaxed) * 3 / 4))
}

/// What was kept has gone back: demand is measured again from now.
pub fn reset_peak() {
    PEAK_UNITS.store(IN_USE_UNITS.load(Relaxed), Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_pages_of_one_kind_count_only_while_the_other_is_idle() {
        let (mine, theirs, debt) = (AtomicU64::new(0), AtomicU64::new(0), AtomicUsize::new(0));
        theirs.store(1000, Relaxed);
        took_fresh(1000 + TRADE_IDLE_MS - 1, 4096, &mine, &theirs, true, &debt);
        assert_eq!(
            debt.load(Relaxed),
            0,
            "the other kind took fresh pages just now"
        );
        assert_eq!(mine.load(Relaxed), 1000 + TRADE_IDLE_MS - 1);
        took_fresh(1000 + TRADE_IDLE_MS, 4096, &mine, &theirs, true, &debt);
        took_fresh(1000 + TRADE_IDLE_MS + 1, 8192, &mine, &theirs, true, &debt);
        took_fresh(1000 + TRADE_IDLE_MS + 2, 512, &mine, &theirs, false, &debt);
        assert_eq!(
            mine.load(Relaxed),
            1000 + TRADE_IDLE_MS + 2,
            "noted, kept or not"
        );
        assert_eq!(
            debt.load(Relaxed),
            12288,
            "nothing to give back when it keeps nothing"
        );
        assert_eq!(take(&debt), 12288);
        assert_eq!(take(&debt), 0);
    }
}
