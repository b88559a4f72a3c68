//! Regions: address space reserved for large blocks, cut into granules of
//! `LARGE_GRANULE` (64 KiB). A large block of up to `LARGE_SPAN_MAX` takes
//! a span of whole granules in a free run that fits: where it covers the
//! most dirty granules, then at an end of its run, then in the smallest
//! run (`Regions::best_fit`, over each region's table of free runs). A
//! freed span's granules are free again and join the free granules around
//! them (`Meta::mark_free`): a big freed span serves a smaller request and
//! leaves the rest free, and neighbouring freed spans serve a bigger one.
//!
//! Every chunk of a region but its first is marked `CHUNK_SPAN` in the
//! arena map for as long as the process lives: a block's header is the 64
//! bytes before it. Chunk 0 holds the bookkeeping (bitmaps, when each
//! dirty granule was freed), under one lock, which is held across a
//! system call only to reserve a region.
//!
//! A free granule is dirty, its pages resident and kept for reuse, given
//! back (`MADV_DONTNEED`) once they have waited the purge delay
//! (purge.rs), checked whenever a large block is allocated or freed and
//! by the process-wide sweep (`heap::purge_if_due`); or
//! clean, reading as zero. What stays dirty is bounded by `LARGE_KEEP_MIN`
//! or the most bytes of live large blocks since dirty granules last
//! expired (recent demand); beyond it, or with a purge delay of 0, a freed
//! span's pages go back at once. (Three quarters of the demand, the bound
//! for pool units, gave a program that frees and regrows its large
//! buffers 1.6 times the page faults: BENCHMARKS.md, seventh session.
//! Since blocks go to dirty granules first, kept pages are reused before
//! any fresh page is taken.) `trim` gives back every
//! free page. Regions are never unmapped: their free granules cost address
//! space, not memory.
//!
//! A freed block's first granule is marked (`hdr`) until it is reused, so
//! that a double free is reported as such even once its header, marked
//! FREED, has gone back with its pages (`freed_block_at`). No page is kept
//! for that: with transparent huge pages, khugepaged would fill the huge
//! page around any resident page.
//!
//! Regions are aligned to their size (so one never straddles two leaves of
//! the arena map) and are of two kinds. Spans of 2 MiB or more go to
//! regions that ask for transparent huge pages beyond their first 2 MiB,
//! so they fault in 2 MiB at a time where the system allows it
//! (BENCHMARKS.md, "Large spans and faults"); the first huge page, with the
//! bookkeeping, stays in small pages. Smaller spans go to regions of small
//! pages: in huge pages, a program holding thousands of 200 KB blocks
//! and writing a few bytes of each had all of them resident (BENCHMARKS.md,
//! eleventh session). A span goes to a region of the other kind only where
//! all its granules are dirty, pages resident. Under an address-space
//! limit (RLIMIT_AS) no region
//! is reserved: its unused part would count against the limit, and large
//! blocks get mappings of their own.
//!
//! `bytes_mapped` counts a live block's pages and a dirty granule whole;
//! not the rest of a region (reserved, never written) nor its bookkeeping.

use crate::arena_map::{self, CHUNK_SPAN};
use crate::config::*;
use crate::counters;
use crate::fault::{self, Site};
use crate::os;
use crate::purge;
use crate::sync::SpinLock;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

pub(crate) const GRANULE: usize = LARGE_GRANULE;
/// Where a block's header is in its span (large/mod.rs's HEADER).
const HEADER_BYTES: usize = 64;
const MAX_GRANULES: usize = LARGE_REGION_SIZE / GRANULE;
const WORDS: usize = MAX_GRANULES / 64;
/// Granules of chunk 0, the bookkeeping's.
const META_GRANULES: usize = ARENA_SIZE / GRANULE;
/// Granules in a huge page (2 MiB): spans of at least this many live in
/// regions of huge pages, the smaller ones in regions of small pages
/// (`Regions::huge`).
const PER_HUGE: usize = HUGE_PAGE_SIZE / GRANULE;
/// Runs of granules one purge pass gives back; more wait for the next pass.
const PURGE_RUNS: usize = 32;

type Bits = [u64; WORDS];

/// The bookkeeping of a region, in its chunk 0.
struct Meta {
    /// Granules of live spans, of spans being purged, and of chunk 0.
    used: Bits,
    dirty: Bits,
    /// Free granules where a freed block's span started (its header was
    /// 64 bytes in).
    hdr: Bits,
    /// When each dirty granule was freed (`purge::now_ms`).
    freed_at: [u64; MAX_GRANULES],
    /// Every granule from this one on is free and clean: no span or
    /// purge has marked it since the region was reserved. Searches of the
    /// dirty granules stop here instead of at the end of the region (a
    /// region is mostly such granules: 16,384 of them in 1 GiB).
    top: usize,
    /// The maximal runs of free granules (`used` clear) of the region,
    /// `[start, end)` in address order, the first `nruns` entries; kept
    /// with `used` by `mark_used` and `mark_free`, through which every
    /// change of `used` goes. `best_fit` walks them instead of searching
    /// the bitmap for each (a fragmented region has a free run between
    /// almost every two blocks: 190 of them cost 10,450 instructions a
    /// large malloc; BENCHMARKS.md, twelfth session).
    runs: [(u32, u32); MAX_RUNS],
    nruns: usize,
}

/// At most one free run per two granules, plus one.
const MAX_RUNS: usize = MAX_GRANULES / 2 + 1;

impl Meta {
    /// The runs, in address order.
    fn free_runs(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.runs[..self.nruns]
            .iter()
            .map(|&(s, e)| (s as usize, e as usize))
    }

    /// Marks `[a, b)`, free granules of one free run, as used.
    fn mark_used(&mut self, a: usize, b: usize) {
        if a == b {
            return;
        }
        for i in a..b {
            set_bit(&mut self.used, i, true);
        }
        // The run holding a: the last one starting at or before it.
        let j = self.runs[..self.nruns].partition_point(|&(s, _)| s as usize <= a) - 1;
        let (s, e) = (self.runs[j].0 as usize, self.runs[j].1 as usize);
        debug_assert!(
            s <= a && b <= e,
            "[{a}, {b}) is not inside the free run [{s}, {e})"
        );
        match (s < a, b < e) {
            (true, true) => {
                self.runs[j].1 = a as u32;
                self.insert_run(j + 1, b, e);
            }
            (true, false) => self.runs[j].1 = a as u32,
            (false, true) => self.runs[j].0 = b as u32,
            (false, false) => {
                self.runs.copy_within(j + 1..self.nruns, j);
                self.nruns -= 1;
            }
        }
    }

    /// Marks `[a, b)`, used granules, as free, joining the runs around.
    fn mark_free(&mut self, a: usize, b: usize) {
        if a == b {
            return;
        }
        for i in a..b {
            set_bit(&mut self.used, i, false);
        }
        let j = self.runs[..self.nruns].partition_point(|&(s, _)| (s as usize) < a);
        let joins_left = j > 0 && self.runs[j - 1].1 as usize == a;
        let joins_right = j < self.nruns && self.runs[j].0 as usize == b;
        match (joins_left, joins_right) {
            (true, true) => {
                self.runs[j - 1].1 = self.runs[j].1;
                self.runs.copy_within(j + 1..self.nruns, j);
                self.nruns -= 1;
            }
            (true, false) => self.runs[j - 1].1 = b as u32,
            (false, true) => self.runs[j].0 = a as u32,
            (false, false) => self.insert_run(j, a, b),
        }
    }

    /// The runs of a new region of `end` granules, whose bookkeeping reads
    /// as zero (no run yet): its granules past the bookkeeping's own.
    fn start_runs(&mut self, end: usize) {
        self.runs[0] = (0, end as u32);
        self.nruns = 1;
        self.mark_used(0, META_GRANULES);
    }

    fn insert_run(&mut self, j: usize, s: usize, e: usize) {
        debug_assert!(self.nruns < MAX_RUNS);
        self.runs.copy_within(j..self.nruns, j + 1);
        self.runs[j] = (s as u32, e as u32);
        self.nruns += 1;
    }

    /// Calls `f(s, e)` on each free run of `used` in `[from, end)`, found
    /// by searching the bitmap (what the table must hold).
    fn each_bitmap_run(&self, from: usize, end: usize, mut f: impl FnMut(usize, usize)) {
        let mut i = from;
        while i < end {
            let s = find(&self.used, false, i, end);
            let e = find(&self.used, true, s, end);
            if s < e {
                f(s, e);
            }
            i = e;
        }
    }

    /// Sets the runs from `used` (for tests that write the bitmap).
    #[cfg(test)]
    fn rebuild_runs(&mut self, from: usize, end: usize) {
        let mut runs = [(0u32, 0u32); MAX_RUNS];
        let mut n = 0;
        self.each_bitmap_run(from, end, |s, e| {
            runs[n] = (s as u32, e as u32);
            n += 1;
        });
        self.runs = runs;
        self.nruns = n;
    }

    /// Whether the runs are the free runs of `used` in `[from, end)`.
    fn runs_match_bits(&self, from: usize, end: usize) -> bool {
        let mut table = self.free_runs();
        let mut same = true;
        self.each_bitmap_run(from, end, |s, e| same &= table.next() == Some((s, e)));
        same && table.next().is_none()
    }
}

const _: () = assert!(
    core::mem::size_of::<Meta>() <= ARENA_SIZE
        && WORDS * 64 == MAX_GRANULES
        && MAX_GRANULES <= u32::MAX as usize
);

#[inline]
fn bit(b: &Bits, i: usize) -> bool {
    (b[i / 64] >> (i % 64)) & 1 != 0
}

#[inline]
fn set_bit(b: &mut Bits, i: usize, v: bool) {
    if v {
        b[i / 64] |= 1 << (i % 64);
    } else {
        b[i / 64] &= !(1 << (i % 64));
    }
}

/// The first granule in `[from, end)` whose bit is `want`, or `end`.
fn find(b: &Bits, want: bool, from: usize, end: usize) -> usize {
    let mut i = from;
    while i < end {
        let w = if want { b[i / 64] } else { !b[i / 64] } >> (i % 64);
        if w != 0 {
            return (i + w.trailing_zeros() as usize).min(end);
        }
        i = (i / 64 + 1) * 64;
    }
    end
}

/// How many granules in `[from, to)` have their bit set.
fn count(b: &Bits, from: usize, to: usize) -> usize {
    let mut n = 0;
    let mut i = from;
    while i < to {
        let w = i / 64;
        let lo = i % 64;
        let hi = (to - w * 64).min(64);
        let mask = if hi == 64 { !0u64 } else { (1u64 << hi) - 1 } & (!0u64 << lo);
        n += (b[w] & mask).count_ones() as usize;
        i = w * 64 + hi;
    }
    n
}

struct Regions {
    base: [usize; LARGE_REGIONS],
    granules: [usize; LARGE_REGIONS],
    /// Whether the region holds the spans of at least `PER_HUGE`
    /// granules, in transparent huge pages; the others hold the smaller
    /// spans, in small pages.
    huge: [bool; LARGE_REGIONS],
    count: usize,
}

static REGIONS: SpinLock<Regions> = SpinLock::new(Regions {
    base: [0; LARGE_REGIONS],
    granules: [0; LARGE_REGIONS],
    huge: [false; LARGE_REGIONS],
    count: 0,
});

/// Resident bytes of free granules: the dirty ones (changed under the lock).
static KEPT: AtomicUsize = AtomicUsize::new(0);
/// No dirty granule's delay runs out before this (`u64::MAX`: none is dirty).
static NEXT_EXPIRY: AtomicU64 = AtomicU64::new(u64::MAX);
/// The most bytes of live large blocks since dirty granules last expired.
static RECENT_PEAK: AtomicUsize = AtomicUsize::new(0);

impl Regions {
    /// The region holding `addr`, and the index of its granule there.
    fn locate(&self, addr: usize) -> Option<(usize, usize)> {
        (0..self.count).find_map(|r| {
            let off = addr.wrapping_sub(self.base[r]);
            (off < self.granules[r] * GRANULE).then_some((r, off / GRANULE))
        })
    }

    /// The bookkeeping of region `r`; the caller holds the lock (`self` is
    /// behind its guard) for as long as it uses it.
    #[allow(clippy::mut_from_ref)]
    fn meta(&self, r: usize) -> &mut Meta {
        // SAFETY: chunk 0 of a reserved region holds its Meta, zeroed by
        // the kernel and then accessed only under the lock, which the
        // caller holds.
        unsafe { &mut *(self.base[r] as *mut Meta) }
    }

    /// Where to take a span of `k` granules: its region and first granule.
    /// The placement in a free run that covers the most dirty granules
    /// (their pages are resident: no page faults, and fewer kept pages
    /// left to give back), then one at an end of its run (a run cut in
    /// the middle leaves two smaller ones), then the smallest run (best
    /// fit). Within a run, a span starts at the run's start or at a stretch
    /// of dirty granules (or ends at the run's end, if the stretch is too
    /// near it). (Considering the run's end as well took 12% more page
    /// faults on `benches/realloc_grow.c`.)
    fn best_fit(&self, k: usize) -> Option<(usize, usize)> {
        // (dirty granules covered, at an end of the run, -run length), and where.
        let mut best: Option<((usize, bool, isize), usize, usize)> = None;
        for r in 0..self.count {
            // In a region of the other kind, only a place whose pages are
            // all resident: the page size no longer matters there.
            let own_kind = self.huge[r] == (k >= PER_HUGE);
            let (m, end) = (self.meta(r), self.granules[r]);
            let top = m.top;
            debug_assert!(
                find(&m.used, true, top, end) == end && find(&m.dirty, true, top, end) == end,
                "a granule at or above top is used or dirty"
            );
            debug_assert!(m.runs_match_bits(META_GRANULES, end));
            for (s, e) in m.free_runs() {
                if e - s < k {
                    continue;
                }
                // No place in a run this long can beat a best that covers
                // k dirty granules at an end of a run no longer.
                if let Some(((dirty, at_end, minus_len), _, _)) = best {
                    if dirty == k && at_end && e - s >= minus_len.unsigned_abs() {
                        continue;
                    }
                }
                let mut consider = |x: usize| {
                    let score = place_score(m, k, (s, e), x);
                    if (own_kind || score.0 == k) && best.is_none_or(|b| score > b.0) {
                        best = Some((score, r, x));
                    }
                };
                consider(s);
                let de = e.min(top);
                let mut d = find(&m.dirty, true, s, de);
                while d < de {
                    // A stretch at the run's start is the place already scored.
                    if d != s {
                        consider(d.min(e - k));
                    }
                    d = find(&m.dirty, true, find(&m.dirty, false, d, de), de);
                }
                if let Some((score, r, x)) = best {
                    if score == (k, true, -(k as isize)) {
                        return Some((r, x));
                    }
                }
            }
        }
        best.map(|b| (b.1, b.2))
    }

    /// Reserves a new region with room for a span of `k` granules.
    fn reserve(&mut self, k: usize) -> Result<usize, Refused> {
        // Under RLIMIT_AS the unused part of a region would take address
        // space other mappings need (arenas, blocks of their own).
        if self.count == LARGE_REGIONS || os::address_space_limited() {
            return Err(Refused::NoRegion);
        }
        // One mapping call as far as fault injection counts, however many
        // sizes are tried; traced as the first over-sized mapping.
        if fault::inject(Site::Large, 2 * LARGE_REGION_SIZE) {
            return Err(Refused::Failed);
        }
        let min = (ARENA_SIZE + k * GRANULE)
            .next_power_of_two()
            .max(HUGE_PAGE_SIZE);
        let (p, size) = os::reserve_aligned(LARGE_REGION_SIZE, min);
        if p.is_null() {
            return Err(Refused::NoRegion);
        }
        let base = p as usize;
        for c in (base + ARENA_SIZE..base + size).step_by(ARENA_SIZE) {
            if !arena_map::set(c, CHUNK_SPAN) {
                for done in (base + ARENA_SIZE..c).step_by(ARENA_SIZE) {
                    arena_map::clear(done);
                }
                // SAFETY: the region was just mapped and nothing in it is
                // registered any more.
                unsafe { os::unmap(p, size) };
                return Err(Refused::Failed);
            }
        }
        let huge = k >= PER_HUGE;
        // Not the first huge page, which holds the bookkeeping: touching it
        // would fault in 2 MiB.
        let small = if huge { HUGE_PAGE_SIZE.min(size) } else { size };
        // SAFETY: the mapping was just made by os and is ours alone.
        unsafe { os::advise_no_huge(p, small) };
        if size > small {
            // SAFETY: as above.
            unsafe { os::advise_huge(p.add(small), size - small) };
        }
        let r = self.count;
        self.base[r] = base;
        self.granules[r] = size / GRANULE;
        self.huge[r] = huge;
        self.count += 1;
        let m = self.meta(r);
        m.start_runs(size / GRANULE);
        m.top = META_GRANULES;
        Ok(r)
    }
}

/// Marks granules `[i0, i1)` of `m`, all free, as used. Returns whether
/// they all read as zero, and the bytes they kept resident (no longer
/// kept: the caller counts them as mapped for the block).
fn claim(m: &mut Meta, i0: usize, i1: usize) -> (bool, usize) {
    m.top = m.top.max(i1);
    let mut kept = 0;
    m.mark_used(i0, i1);
    for i in i0..i1 {
        set_bit(&mut m.hdr, i, false);
        if bit(&m.dirty, i) {
            set_bit(&mut m.dirty, i, false);
            kept += GRANULE;
        }
    }
    KEPT.fetch_sub(kept, Relaxed);
    purge::large_took_fresh((i1 - i0) * GRANULE - kept);
    (kept == 0, kept)
}

/// `best_fit`'s ranking of a span of `k` granules at `x` in the free run
/// `[s, e)`: the dirty granules it covers, whether it is at an end of the
/// run, then the shorter run.
fn place_score(m: &Meta, k: usize, (s, e): (usize, usize), x: usize) -> (usize, bool, isize) {
    (
        count(&m.dirty, x, x + k),
        x == s || x + k == e,
        -((e - s) as isize),
    )
}

/// A span taken for a large block.
pub struct Span {
    pub base: usize,
    pub granules: usize,
    /// All its bytes read as zero.
    pub zeroed: bool,
}

/// Why `take` has no span.
pub enum Refused {
    /// No region has room and none could be reserved (the table is full,
    /// or the OS refuses): a mapping of its own may still do.
    NoRegion,
    /// A mapping call failed (fault injection, or the arena map): the
    /// allocation fails.
    Failed,
}

/// Takes a span of `k` granules for a block of `map_size` bytes of pages
/// from the span's start.
pub fn take(k: usize, map_size: usize) -> Result<Span, Refused> {
    purge_if_due();
    let mut g = REGIONS.lock();
    let (r, i0) = match g.best_fit(k) {
        Some(found) => found,
        None => (g.reserve(k)?, META_GRANULES),
    };
    let (zeroed, kept) = claim(g.meta(r), i0, i0 + k);
    let base = g.base[r] + i0 * GRANULE;
    drop(g);
    counters::add_mapped(map_size);
    counters::sub_mapped(kept);
    Ok(Span {
        base,
        granules: k,
        zeroed,
    })
}

/// Extends the span of `k` granules at `base` to `k2` if the granules
/// after it are free; its block's pages grow by `added` bytes.
pub fn grow(base: usize, k: usize, k2: usize, added: usize) -> bool {
    let g = REGIONS.lock();
    let Some((r, i0)) = g.locate(base) else {
        return false;
    };
    let end = g.granules[r];
    let m = g.meta(r);
    if i0 + k2 > end || find(&m.used, true, i0 + k, i0 + k2) != i0 + k2 {
        return false;
    }
    let (_, kept) = claim(m, i0 + k, i0 + k2);
    drop(g);
    counters::add_mapped(added);
    counters::sub_mapped(kept);
    true
}

/// Frees the `k` granules at `base`, which no live block uses any more
/// and of which `counted` bytes were counted as mapped. `header`: a freed
/// block's span starts there (see `freed_block_at`).
pub fn release(base: usize, k: usize, counted: usize, header: bool) {
    purge_if_due();
    let bytes = k * GRANULE;
    let budget = LARGE_KEEP_MIN.max(RECENT_PEAK.load(Relaxed));
    // Decided before the granules are published as free: once free,
    // another thread may take and write them. (The budget may be exceeded
    // by what other threads free meanwhile.)
    let keep = purge::delay_ms() != 0 && KEPT.load(Relaxed) + bytes <= budget;
    counters::sub_mapped(counted);
    if keep {
        counters::add_mapped(bytes);
    } else {
        // SAFETY: the granules hold no live block and are not free yet, so
        // nobody else reaches them.
        unsafe { os::discard(base as *mut u8, bytes) };
        purge::given_back(counted);
    }
    let now = purge::now_ms();
    let g = REGIONS.lock();
    let Some((r, i0)) = g.locate(base) else {
        debug_assert!(false, "a span outside the regions");
        return;
    };
    let m = g.meta(r);
    m.mark_free(i0, i0 + k);
    for i in i0..i0 + k {
        if keep {
            set_bit(&mut m.dirty, i, true);
            m.freed_at[i] = now;
        }
    }
    set_bit(&mut m.hdr, i0, header);
    if keep {
        KEPT.fetch_add(bytes, Relaxed);
        NEXT_EXPIRY.fetch_min(now + purge::delay_ms(), Relaxed);
        purge::note_due(now + purge::delay_ms());
        return;
    }
    let (before, after) = take_clean_around(m, g.huge[r], i0, i0 + k);
    let region = g.base[r];
    drop(g);
    discard_busy(region, before.0, before.1);
    discard_busy(region, after.0, after.1);
}

/// Whether `p` was a block's start whose span was freed, and not reused
/// since (for the error report of a free that found no live header).
pub fn freed_block_at(p: usize) -> bool {
    let Some(start) = p.checked_sub(HEADER_BYTES) else {
        return false;
    };
    let g = REGIONS.lock();
    g.locate(start).is_some_and(|(r, i)| {
        let m = g.meta(r);
        start == g.base[r] + i * GRANULE && !bit(&m.used, i) && bit(&m.hdr, i)
    })
}

/// Records `live` bytes of live large blocks (the recent demand).
pub fn note_live(live: usize) {
    RECENT_PEAK.fetch_max(live, Relaxed);
}

/// Gives back the dirty granules whose delay has run out, if any may have.
fn purge_if_due() {
    if NEXT_EXPIRY.load(Relaxed) != u64::MAX {
        purge_expired(purge::now_ms());
    }
}

/// Gives back the dirty granules whose delay has run out at `now`: on
/// large-block calls, and from any thread's sweep (`heap::purge_if_due`),
/// so that a program that stops using large blocks still gives them back.
pub fn purge_expired(now: u64) {
    let next = NEXT_EXPIRY.load(Relaxed);
    if next == u64::MAX {
        return;
    }
    if now >= next {
        purge(now, false, usize::MAX); // notes the next due time itself
    } else {
        purge::note_due(next);
    }
}

/// Whether granule `i` is free and holds no resident page we know of.
fn clean(m: &Meta, i: usize) -> bool {
    !bit(&m.used, i) && !bit(&m.dirty, i)
}

/// Marks busy the clean free granules before `from` and from `to` on, up
/// to the huge pages' boundaries around `[from, to)` (granule indices of
/// `m`), in a region of huge pages (`huge`): they may be resident, faulted
/// in with their neighbours. Returns the first and the end of the two
/// stretches.
fn take_clean_around(
    m: &mut Meta,
    huge: bool,
    from: usize,
    to: usize,
) -> ((usize, usize), (usize, usize)) {
    if !huge {
        return ((from, from), (to, to));
    }
    let mut start = from;
    while start > from / PER_HUGE * PER_HUGE && clean(m, start - 1) {
        start -= 1;
    }
    let mut end = to;
    while end < to.next_multiple_of(PER_HUGE) && clean(m, end) {
        end += 1;
    }
    m.mark_used(start, from);
    m.mark_used(to, end);
    m.top = m.top.max(end);
    ((start, from), (to, end))
}

/// Discards granules `[from, to)` of the region at `base`, marked busy by
/// the caller, then frees them (the lock is taken again for that).
fn discard_busy(base: usize, from: usize, to: usize) {
    if from == to {
        return;
    }
    // SAFETY: the granules are free and marked busy: nobody takes them
    // until they are unmarked below.
    unsafe { os::discard((base + from * GRANULE) as *mut u8, (to - from) * GRANULE) };
    let g = REGIONS.lock();
    if let Some((r, _)) = g.locate(base + from * GRANULE) {
        g.meta(r).mark_free(from, to);
    }
}

/// One purge pass: gives back the dirty granules whose delay has run out
/// at `now` (with `all`: every dirty granule), with the clean free
/// granules of the same huge pages, up to `limit` bytes of dirty ones.
/// Returns the bytes given back and whether the pass got through
/// everything (it stops after `PURGE_RUNS` runs, or at the limit).
fn purge(now: u64, all: bool, limit: usize) -> (usize, bool) {
    // Region base, first granule, end.
    let mut runs = [(0usize, 0usize, 0usize); PURGE_RUNS];
    // The clean granules before and after each run, in the same huge pages.
    let mut around = [(0usize, 0usize); 2 * PURGE_RUNS];
    let mut n = 0;
    let mut complete = true;
    let mut taken = 0;
    {
        let g = REGIONS.lock();
        let mut next = u64::MAX;
        'regions: for r in 0..g.count {
            let (m, base) = (g.meta(r), g.base[r]);
            for w in 0..g.granules[r] / 64 {
                if m.dirty[w] == 0 {
                    continue;
                }
                for i in w * 64..w * 64 + 64 {
                    if !bit(&m.dirty, i) {
                        continue;
                    }
                    if !all && !purge::expired(m.freed_at[i], now) {
                        next = next.min(m.freed_at[i] + purge::delay_ms());
                        continue;
                    }
                    let extends = n > 0 && runs[n - 1].0 == base && runs[n - 1].2 == i;
                    if !extends && n == PURGE_RUNS {
                        next = now;
                        complete = false;
                        break 'regions;
                    }
                    set_bit(&mut m.dirty, i, false);
                    // Busy while its pages go back, outside the lock.
                    m.mark_used(i, i + 1);
                    if extends {
                        runs[n - 1].2 += 1;
                    } else {
                        runs[n] = (base, i, i + 1);
                        n += 1;
                    }
                    taken += GRANULE;
                    if taken >= limit {
                        // The rest was not looked at: the next sweep does.
                        next = now;
                        complete = false;
                        break 'regions;
                    }
                }
            }
        }
        NEXT_EXPIRY.store(next, Relaxed);
        if next != u64::MAX {
            purge::note_due(next);
        }
        for (j, &(base, from, to)) in runs[..n].iter().enumerate() {
            if let Some((r, _)) = g.locate(base) {
                let (before, after) = take_clean_around(g.meta(r), g.huge[r], from, to);
                around[2 * j] = before;
                around[2 * j + 1] = after;
            }
        }
    }
    let mut bytes = 0;
    for (j, &(base, from, to)) in runs[..n].iter().enumerate() {
        bytes += (to - from) * GRANULE;
        discard_busy(base, from, to);
        for &(a, b) in &around[2 * j..2 * j + 2] {
            discard_busy(base, a, b);
        }
    }
    if bytes != 0 {
        KEPT.fetch_sub(bytes, Relaxed);
        counters::sub_mapped(bytes);
        purge::given_back(bytes);
        // Demand is measured again from what is live now.
        RECENT_PEAK.store(counters::LARGE_BYTES.load(Relaxed), Relaxed);
    }
    (bytes, complete)
}

/// Gives back about `bytes` of dirty granules, expired or not, lowest
/// addresses first (`purge::units_took_fresh`).
pub fn give_back(bytes: usize) {
    if KEPT.load(Relaxed) != 0 {
        purge(purge::now_ms(), true, bytes);
    }
}

/// Gives back every free page of the regions (`obm_trim`); returns the
/// bytes.
pub fn trim() -> usize {
    let now = purge::now_ms();
    let mut total = 0;
    loop {
        let (bytes, complete) = purge(now, true, usize::MAX);
        total += bytes;
        if complete {
            return total;
        }
    }
}

/// Runs of dirty granules and their bytes, for statistics.
pub fn kept() -> (usize, usize) {
    let g = REGIONS.lock();
    let mut runs = 0;
    for r in 0..g.count {
        let m = g.meta(r);
        let mut prev = false;
        for i in META_GRANULES..g.granules[r] {
            let kept = bit(&m.dirty, i);
            runs += (kept && !prev) as usize;
            prev = kept;
        }
    }
    (runs, KEPT.load(Relaxed))
}

pub fn lock_for_fork() {
    REGIONS.lock_for_fork();
}

/// # Safety
/// Called after `lock_for_fork`, in the parent or the child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: per the contract.
    unsafe { REGIONS.unlock_after_fork() };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A region's bookkeeping as the kernel hands it out: all zero.
    fn zeroed_meta() -> std::boxed::Box<Meta> {
        // SAFETY: Meta is bit sets, times, counts and a table of runs: all
        // zero is a valid value (an empty table).
        unsafe { std::boxed::Box::new_zeroed().assume_init() }
    }

    /// A small deterministic generator: `rand(n)` is in `0..n`.
    fn xorshift(mut seed: u64) -> impl FnMut(usize) -> usize {
        move |n| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        }
    }

    #[test]
    fn find_crosses_words_and_stops_at_end() {
        let mut b: Bits = [0; WORDS];
        for i in [3, 64, 130, 131, MAX_GRANULES - 1] {
            set_bit(&mut b, i, true);
        }
        assert_eq!(find(&b, true, 0, MAX_GRANULES), 3);
        assert_eq!(find(&b, true, 4, MAX_GRANULES), 64);
        assert_eq!(find(&b, true, 65, MAX_GRANULES), 130);
        assert_eq!(find(&b, true, 132, MAX_GRANULES), MAX_GRANULES - 1);
        assert_eq!(find(&b, true, 65, 100), 100, "none before the end");
        assert_eq!(find(&b, false, 130, MAX_GRANULES), 132);
        assert_eq!(find(&b, false, 3, 4), 4);
        set_bit(&mut b, 130, false);
        assert!(!bit(&b, 130) && bit(&b, 131));
    }

    /// `best_fit` as it was before `Meta::top` and the runs passed over:
    /// every free run to the end of the region looked at, scored the same
    /// way; in a region of the other kind, only the places all dirty.
    fn best_fit_unbounded(m: &Meta, end: usize, k: usize, own_kind: bool) -> Option<usize> {
        let mut best: Option<((usize, bool, isize), usize)> = None;
        let mut i = META_GRANULES;
        while i < end {
            let s = find(&m.used, false, i, end);
            let e = find(&m.used, true, s, end);
            i = e;
            if e - s < k {
                continue;
            }
            let mut consider = |x: usize| {
                let score = place_score(m, k, (s, e), x);
                if (own_kind || score.0 == k) && best.is_none_or(|b| score > b.0) {
                    best = Some((score, x));
                }
            };
            consider(s);
            let mut d = find(&m.dirty, true, s, e);
            while d < e {
                consider(d.min(e - k));
                d = find(&m.dirty, true, find(&m.dirty, false, d, e), e);
            }
        }
        best.map(|b| b.1)
    }

    #[test]
    fn the_walk_places_spans_as_the_full_walk_does() {
        let mut meta = zeroed_meta();
        let end = 2048;
        let mut regions = Regions {
            base: [0; LARGE_REGIONS],
            granules: [0; LARGE_REGIONS],
            huge: [false; LARGE_REGIONS],
            count: 1,
        };
        regions.base[0] = &mut *meta as *mut Meta as usize;
        regions.granules[0] = end;
        let mut rand = xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..300 {
            let m = regions.meta(0);
            *m = Meta {
                used: [0; WORDS],
                dirty: [0; WORDS],
                hdr: [0; WORDS],
                freed_at: [0; MAX_GRANULES],
                top: 0,
                runs: [(0, 0); MAX_RUNS],
                nruns: 0,
            };
            for i in 0..META_GRANULES {
                set_bit(&mut m.used, i, true);
            }
            // Granules below top: used, free dirty or free clean, in runs.
            m.top = META_GRANULES + rand(end - META_GRANULES);
            let mut i = META_GRANULES;
            while i < m.top {
                let len = (1 + rand(12)).min(m.top - i);
                let kind = rand(3);
                for g in i..i + len {
                    set_bit(&mut m.used, g, kind == 0);
                    set_bit(&mut m.dirty, g, kind == 1);
                }
                i += len;
            }
            m.rebuild_runs(META_GRANULES, end);
            // Each size in a region of its kind and in one of the other.
            for k in [1, 2, 3, 5, 8, 40, end] {
                for huge in [false, true] {
                    regions.huge[0] = huge;
                    let own_kind = huge == (k >= PER_HUGE);
                    let want = best_fit_unbounded(regions.meta(0), end, k, own_kind);
                    assert_eq!(
                        regions.best_fit(k).map(|f| f.1),
                        want,
                        "k {k}, huge {huge}, top {}",
                        regions.meta(0).top
                    );
                }
            }
        }
    }

    /// Random claims and frees, as spans and as single busy granules (a
    /// purge's), keep the run table equal to the free runs of the bitmap.
    #[test]
    fn the_runs_follow_every_change_of_the_bitmap() {
        let mut meta = zeroed_meta();
        let m = &mut *meta;
        let end = 3000;
        m.start_runs(end);
        let mut rand = xorshift(0x2545_f491_4f6c_dd1d);
        let mut spans: std::vec::Vec<(usize, usize)> = std::vec::Vec::new();
        for step in 0..20_000 {
            if spans.is_empty() || (rand(5) < 3 && m.nruns > 0) {
                // Claim part of a random free run: at its start, its end or
                // inside it; sometimes one granule (a purge's busy mark).
                let (s, e) = m.free_runs().nth(rand(m.nruns)).unwrap();
                let len = if rand(4) == 0 {
                    1
                } else {
                    1 + rand((e - s).min(40))
                };
                let a = match rand(3) {
                    0 => s,
                    1 => e - len,
                    _ => s + rand(e - s - len + 1),
                };
                m.mark_used(a, a + len);
                spans.push((a, a + len));
            } else {
                let (a, b) = spans.swap_remove(rand(spans.len()));
                m.mark_free(a, b);
            }
            assert!(m.runs_match_bits(META_GRANULES, end), "step {step}");
        }
    }

    #[test]
    fn count_counts_set_bits_in_a_range_across_words() {
        let mut b: Bits = [0; WORDS];
        for i in [0, 5, 63, 64, 65, 127, 128, 200] {
            set_bit(&mut b, i, true);
        }
        assert_eq!(count(&b, 0, MAX_GRANULES), 8);
        assert_eq!(count(&b, 0, 5), 1, "the end is excluded");
        assert_eq!(count(&b, 5, 6), 1);
        assert_eq!(count(&b, 6, 63), 0);
        assert_eq!(count(&b, 63, 66), 3, "across a word boundary");
        assert_eq!(count(&b, 64, 128), 3, "one whole word");
        assert_eq!(count(&b, 1, 201), 7);
        assert_eq!(count(&b, 129, 129), 0, "empty");
    }
}
