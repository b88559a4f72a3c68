//! Regions: address space reserved for large blocks, cut into granules of
//! `LARGE_GRANULE` (64 KiB). A large block of up to `LARGE_SPAN_MAX` takes
//! a span of whole granules in a free run that fits: on dirty granules
//! first, then at an end of its run, then in the shortest run
//! (`Regions::best_fit`). The free runs and the stretches of dirty
//! granules are binned by length (stretches.rs), so that the search looks
//! at a few of them however fragmented the region is. A freed span's
//! granules are free again and join the free granules around them
//! (`Meta::mark_free`): a big freed span serves a smaller request and
//! leaves the rest free, and neighbouring freed spans serve a bigger one.
//! A freed span of up to 1 MiB is first kept whole for the next block of
//! its size (`Regions::cached`), until a block of another size needs it
//! merged, or its delay runs out.
//!
//! Every chunk of a region but its first two is marked `CHUNK_SPAN` in
//! the arena map for as long as the process lives: a block's header is
//! the 64 bytes before it. The first two hold the bookkeeping (bitmaps,
//! bins, when each dirty granule was freed), under one lock, which is
//! held across a system call only to reserve a region.
//!
//! A free granule is dirty, its pages resident and kept for reuse, given
//! back (`MADV_DONTNEED`) once they have waited the purge delay
//! (purge.rs), checked whenever a large block is allocated or freed and
//! by the process-wide sweep (`heap::purge_if_due`); or
//! clean, reading as zero. What stays dirty is bounded by `LARGE_KEEP_MIN`
//! or the most bytes of live large blocks since dirty granules last
//! expired (recent demand); beyond it, the granules freed before go back
//! at once, as many as the excess (the span just freed is the likeliest
//! to serve next: a program that frees its buffers together and grows
//! them again faulted 6% more pages the other way round, BENCHMARKS.md,
//! eighteenth session); with a purge delay of 0 a freed span's pages go
//! back at once. (Three quarters of the demand, the bound
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

use super::span_cache::{FreedSpan, SpanCache};
use super::stretches::{bit, count, set_bits, Bits, Stretches, MAX_GRANULES};
use crate::arena_map::{self, CHUNK_SPAN};
use crate::config::*;
use crate::counters;
use crate::fault::{self, Site};
use crate::os;
use crate::purge;
use crate::sync::{lower_to, raise_to, SpinLock};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

pub(crate) const GRANULE: usize = LARGE_GRANULE;
/// Where a block's header is in its span (large/mod.rs's HEADER).
const HEADER_BYTES: usize = 64;
/// The bookkeeping's bytes at the start of a region: its first two
/// chunks, which no span uses.
const META_BYTES: usize = 2 * ARENA_SIZE;
const META_GRANULES: usize = META_BYTES / GRANULE;
/// Granules in a huge page (2 MiB): spans of at least this many live in
/// regions of huge pages, the smaller ones in regions of small pages
/// (`Regions::huge`).
const PER_HUGE: usize = HUGE_PAGE_SIZE / GRANULE;
/// Runs of granules one purge pass gives back; more wait for the next pass.
const PURGE_RUNS: usize = 32;

/// The bookkeeping of a region, in its first `META_BYTES`.
struct Meta {
    /// The free granules (a clear `used` bit) and their maximal runs by
    /// length. Used: granules of live spans, of spans being purged, and
    /// of the bookkeeping. Its `top` is where the granules that no span or
    /// purge has marked since the region was reserved begin (free and
    /// clean: most of a region).
    free: Stretches<false>,
    /// The dirty granules (free, pages resident) and their maximal
    /// stretches by length. Every dirty granule is free.
    dirty: Stretches<true>,
    /// Free granules where a freed block's span started (its header was
    /// 64 bytes in).
    hdr: Bits,
    /// When each dirty granule was freed (`purge::now_ms`).
    freed_at: [u64; MAX_GRANULES],
}

impl Meta {
    /// The bookkeeping of a new region of `end` granules, which reads as
    /// zero: every granule past the bookkeeping's own free and clean.
    fn start(&mut self, end: usize) {
        self.free.start(end, META_GRANULES);
        self.dirty.start(end, META_GRANULES);
    }

    fn used(&self, i: usize) -> bool {
        !self.free.is_member(i)
    }

    fn is_dirty(&self, i: usize) -> bool {
        self.dirty.is_member(i)
    }

    /// Marks `[a, b)`, free granules, as used.
    fn mark_used(&mut self, a: usize, b: usize) {
        debug_assert!(self.free.first(false, a, b) == b, "[{a}, {b}) is not free");
        self.free.set(a, b, false);
    }

    /// Marks `[a, b)`, used granules, as free, joining the runs around.
    fn mark_free(&mut self, a: usize, b: usize) {
        debug_assert!(self.free.first(true, a, b) == b, "[{a}, {b}) is not used");
        self.free.set(a, b, true);
    }

    /// Whether the stretches of both bitmaps are all binned, and every
    /// dirty granule is free (a walk over the region: debug builds).
    fn indexes_match_bits(&self) -> bool {
        let mut i = self.dirty.first(true, 0, self.dirty.top());
        while i < self.dirty.top() {
            if self.used(i) {
                return false;
            }
            i = self.dirty.first(true, i + 1, self.dirty.top());
        }
        self.free.match_bits() && self.dirty.match_bits()
    }
}

// The 64 bytes before the first span, which `header_of` may read for an
// invalid pointer, are past the bookkeeping: never written, read as zero.
const _: () = assert!(
    core::mem::size_of::<Meta>() + HEADER_BYTES <= META_BYTES
        && META_BYTES.is_multiple_of(ARENA_SIZE)
        && MAX_GRANULES == LARGE_REGION_SIZE / GRANULE
        && LARGE_SPAN_MAX + META_BYTES <= LARGE_REGION_SIZE
);

struct Regions {
    base: [usize; LARGE_REGIONS],
    granules: [usize; LARGE_REGIONS],
    /// Whether the region holds the spans of at least `PER_HUGE`
    /// granules, in transparent huge pages; the others hold the smaller
    /// spans, in small pages.
    huge: [bool; LARGE_REGIONS],
    count: usize,
    /// Freed spans of `k` granules (`k <= CACHED_MAX`) kept whole for the
    /// next block of the same span, the last freed first: `cached[k]`
    /// holds `ncached[k]` of them, `ncached_all` in all. Their granules
    /// stay used in their region, and are dirty memory like the dirty
    /// granules: counted in `KEPT`, within its budget, given back with
    /// them (`purge` first returns the expired ones to their region as
    /// dirty granules). A block of another size returns every cached span
    /// to its region before it looks there (`take`), so that they merge
    /// with the free granules around them as freed spans always did; a
    /// block that grows in place takes back a cached span after it
    /// (`grow`).
    cached: [[Cached; CACHED_SLOTS]; CACHED_MAX + 1],
    ncached: [usize; CACHED_MAX + 1],
    ncached_all: usize,
}

/// Spans of up to this many granules are cached whole when freed.
const CACHED_MAX: usize = LARGE_CACHED_GRANULES;
/// Cached spans of each size.
const CACHED_SLOTS: usize = 4;

/// A freed span kept whole (`Regions::cached`).
#[derive(Clone, Copy)]
struct Cached {
    base: usize,
    /// When it was freed (`purge::now_ms`).
    freed_at: u64,
    /// Whether its block was a normal one, its header at the span's start
    /// (the region's `hdr` once the span goes back to it).
    header: bool,
}

const NOT_CACHED: Cached = Cached {
    base: 0,
    freed_at: 0,
    header: false,
};

static REGIONS: SpinLock<Regions> = SpinLock::new(Regions {
    base: [0; LARGE_REGIONS],
    granules: [0; LARGE_REGIONS],
    huge: [false; LARGE_REGIONS],
    count: 0,
    cached: [[NOT_CACHED; CACHED_SLOTS]; CACHED_MAX + 1],
    ncached: [0; CACHED_MAX + 1],
    ncached_all: 0,
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
        // SAFETY: the first META_BYTES of a reserved region hold its Meta,
        // zeroed by the kernel and then accessed only under the lock, which
        // the caller holds.
        unsafe { &mut *(self.base[r] as *mut Meta) }
    }

    /// Returns the cached span of `k` granules at slot `j` to its region:
    /// free, dirty since it was freed.
    fn uncache(&mut self, k: usize, j: usize) {
        let c = self.cached[k][j];
        let n = self.ncached[k] - 1;
        self.cached[k][j] = self.cached[k][n];
        self.ncached[k] = n;
        self.ncached_all -= 1;
        self.free_dirty(c.base, k, c.freed_at, c.header);
    }

    /// Marks the `k` granules at `base` free and dirty since `freed_at`;
    /// `header`: a freed block's span starts there (`hdr`).
    fn free_dirty(&mut self, base: usize, k: usize, freed_at: u64, header: bool) {
        let Some((r, i0)) = self.locate(base) else {
            debug_assert!(false, "a span outside the regions");
            return;
        };
        let m = self.meta(r);
        m.mark_free(i0, i0 + k);
        m.dirty.set(i0, i0 + k, true);
        m.freed_at[i0..i0 + k].fill(freed_at);
        set_bits(&mut m.hdr, i0, i0 + 1, header);
    }

    /// Returns a span from a thread's cache (span_cache.rs) to its region,
    /// free and dirty from now: what `release` does to a span it keeps,
    /// without its lock (held) and its budget (the pages are resident
    /// already).
    fn put_back(&mut self, s: FreedSpan) {
        let (bytes, now) = (s.granules * GRANULE, purge::now_ms());
        s.uncount();
        counters::remap(bytes, s.map_size);
        self.free_dirty(s.base, s.granules, now, true);
        note_kept(bytes, now);
    }

    /// Whether the cached span `c` would join other granules in its
    /// region: free ones or another span of `spans` right before or after.
    fn joins(&self, c: FreedSpan, spans: &SpanCache) -> bool {
        let Some((r, i0)) = self.locate(c.base) else {
            return false;
        };
        let (m, i1) = (self.meta(r), i0 + c.granules);
        let end = c.base + c.granules * GRANULE;
        (i0 > META_GRANULES && !m.used(i0 - 1))
            || (i1 < self.granules[r] && !m.used(i1))
            || spans.any(|o| o.base == end || o.base + o.granules * GRANULE == c.base)
    }

    /// Returns every cached span to its region.
    fn uncache_all(&mut self) {
        for k in 1..=CACHED_MAX {
            while self.ncached[k] != 0 {
                self.uncache(k, self.ncached[k] - 1);
            }
        }
    }

    /// Takes the last freed cached span of `k` granules, if any.
    fn take_cached(&mut self, k: usize) -> Option<usize> {
        let n = self.ncached.get(k)?.checked_sub(1)?;
        self.ncached[k] = n;
        self.ncached_all -= 1;
        Some(self.cached[k][n].base)
    }

    /// Caches `c`, a freed span of `k` granules, if there is room.
    fn cache(&mut self, k: usize, c: Cached) -> bool {
        let Some(&n) = self.ncached.get(k).filter(|&&n| n < CACHED_SLOTS) else {
            return false;
        };
        self.cached[k][n] = c;
        self.ncached[k] = n + 1;
        self.ncached_all += 1;
        true
    }

    /// Returns the cached span starting at `base`, if there is one, to its
    /// region.
    fn uncache_at(&mut self, base: usize) -> bool {
        for k in 1..=CACHED_MAX {
            if let Some(j) = self.cached[k][..self.ncached[k]]
                .iter()
                .position(|c| c.base == base)
            {
                self.uncache(k, j);
                return true;
            }
        }
        false
    }

    /// Where to take a span of `k` granules: its region, its first granule
    /// and how many of its granules are dirty. Dirty granules first, their
    /// pages resident (no page faults, and fewer kept pages left to give
    /// back): at the start of a stretch of at least `k` dirty granules,
    /// preferably at an end of its run (a run cut in the middle leaves two
    /// smaller ones), then in the shorter run. Else, of two places, the
    /// one that covers more dirty granules, then is at an end of its run,
    /// then in the shorter run: over one of the longest dirty stretches in
    /// a free run that fits, or in the shortest free run that fits. In
    /// that run, a span starts at the run's start or at a stretch of dirty
    /// granules (or ends at the run's end, if the stretch is too near it),
    /// so that it can grow in place. (Considering the run's end as well
    /// took 12% more page faults on `benches/realloc_grow.c`.)
    ///
    /// "Shortest" and "longest" are of the few stretches of the length
    /// bins that `Stretches` looks at: the time does not grow with the
    /// number of free runs, as a walk over all of them did (BENCHMARKS.md,
    /// seventeenth session).
    fn best_fit(&self, k: usize) -> Option<(usize, usize, usize)> {
        // (dirty granules covered, at an end of the run, -run length), and where.
        let mut best: Option<((usize, bool, isize), usize, usize)> = None;
        for r in 0..self.count {
            // In a region of the other kind, only a place whose pages are
            // all resident: the page size no longer matters there.
            let own_kind = self.huge[r] == (k >= PER_HUGE);
            let m = self.meta(r);
            debug_assert!(m.indexes_match_bits());
            let end = self.granules[r];
            let mut offer = |score: (usize, bool, isize), x: usize| {
                if best.is_none_or(|b| score > b.0) {
                    best = Some((score, r, x));
                }
            };
            // All dirty: at a stretch's start, preferably where a run starts
            // or ends, then in the shorter run. (A place's being at an end
            // needs only the granules around; the run's length, a walk,
            // only for a place that may win.)
            let mut full: Option<((bool, isize), usize)> = None;
            m.dirty.each_fitting(k, |d, _| {
                let at_end = m.used(d - 1) || d + k == end || m.used(d + k);
                if full.is_some_and(|f| !at_end && f.0 .0) {
                    return false;
                }
                let (s, e) = m.free.stretch_at(d);
                let score = (at_end, -((e - s) as isize));
                if full.is_none_or(|f| score > f.0) {
                    full = Some((score, d));
                }
                score == (true, -(k as isize))
            });
            if let Some(((at_end, minus_len), x)) = full {
                offer((k, at_end, minus_len), x);
            } else if own_kind {
                let mut consider = |run: (usize, usize), x: usize| {
                    offer(place_score(m, k, run, x), x);
                };
                // Over one of the longest dirty stretches in a run that fits.
                for (d, _) in m.dirty.longest_up_to(k) {
                    let run = m.free.stretch_at(d);
                    if run.1 - run.0 >= k {
                        consider(run, run.0);
                        consider(run, d.min(run.1 - k));
                    }
                }
                // In the shortest run that fits.
                if let Some(run) = m.free.fit(k) {
                    consider(run, run.0);
                    let de = run.1.min(m.dirty.top());
                    let mut d = m.dirty.first(true, run.0, de);
                    while d < de {
                        // A stretch at the run's start is the place already scored.
                        if d != run.0 {
                            consider(run, d.min(run.1 - k));
                        }
                        d = m.dirty.first(true, m.dirty.first(false, d, de), de);
                    }
                }
            }
            if let Some((score, r, x)) = best {
                if score == (k, true, -(k as isize)) {
                    return Some((r, x, k));
                }
            }
        }
        best.map(|(score, r, x)| (r, x, score.0))
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
        let min = (META_BYTES + k * GRANULE)
            .next_power_of_two()
            .max(HUGE_PAGE_SIZE);
        let (p, size) = os::reserve_aligned(LARGE_REGION_SIZE, min);
        if p.is_null() {
            return Err(Refused::NoRegion);
        }
        let base = p as usize;
        for c in (base + META_BYTES..base + size).step_by(ARENA_SIZE) {
            if !arena_map::set(c, CHUNK_SPAN) {
                for done in (base + META_BYTES..c).step_by(ARENA_SIZE) {
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
        self.meta(r).start(size / GRANULE);
        Ok(r)
    }
}

/// Marks granules `[i0, i1)` of `m`, all free, as used. Returns whether
/// they all read as zero, and the bytes they kept resident (no longer
/// kept: the caller counts them as mapped for the block).
fn claim(m: &mut Meta, i0: usize, i1: usize) -> (bool, usize) {
    m.mark_used(i0, i1);
    set_bits(&mut m.hdr, i0, i1, false);
    let kept = count(m.dirty.bits(), i0, i1) * GRANULE;
    m.dirty.set(i0, i1, false);
    KEPT.fetch_sub(kept, Relaxed);
    purge::large_took_fresh((i1 - i0) * GRANULE - kept);
    (kept == 0, kept)
}

/// `best_fit`'s ranking of a span of `k` granules at `x` in the free run
/// `[s, e)`: the dirty granules it covers, whether it is at an end of the
/// run, then the shorter run.
fn place_score(m: &Meta, k: usize, (s, e): (usize, usize), x: usize) -> (usize, bool, isize) {
    (
        count(m.dirty.bits(), x, x + k),
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
pub fn take(k: usize, map_size: usize, spans: Option<&SpanCache>) -> Result<Span, Refused> {
    purge_if_due();
    let mut g = REGIONS.lock();
    if let Some(base) = g.take_cached(k) {
        drop(g);
        let bytes = k * GRANULE;
        KEPT.fetch_sub(bytes, Relaxed);
        counters::remap(map_size, bytes);
        return Ok(Span {
            base,
            granules: k,
            zeroed: false,
        });
    }
    let all_dirty = |found: Option<(usize, usize, usize)>| found.is_some_and(|(_, _, d)| d == k);
    let mut found = g.best_fit(k);
    if !all_dirty(found) && g.ncached_all != 0 {
        // Back in their regions, cached spans join the free granules
        // around them: maybe a place all dirty, as freed spans always made.
        g.uncache_all();
        found = g.best_fit(k);
    }
    if let Some(spans) = spans {
        // The same for the spans of the thread's cache, one at a time
        // until such a place appears: the smallest larger one, which is
        // one, else those that join free granules or each other. The
        // others stay cached. (All returned at once, they left the cache
        // empty, and the thread's next blocks missed it too: 581
        // instructions an operation against 423 for a thread replacing 4
        // blocks of 128-256 KiB; BENCHMARKS.md, nineteenth session.)
        while !all_dirty(found) {
            let Some(s) = spans
                .take_larger(k)
                .or_else(|| spans.take_if(|c| g.joins(c, spans)))
            else {
                break;
            };
            g.put_back(s);
            found = g.best_fit(k);
        }
    }
    let (r, i0) = match found {
        Some((r, x, _)) => (r, x),
        None => (g.reserve(k)?, META_GRANULES),
    };
    let (zeroed, kept) = claim(g.meta(r), i0, i0 + k);
    let base = g.base[r] + i0 * GRANULE;
    drop(g);
    counters::remap(map_size, kept);
    Ok(Span {
        base,
        granules: k,
        zeroed,
    })
}

/// Extends the span of `k` granules at `base` to `k2` if the granules
/// after it are free, or cached spans, here or in `spans` (which go back
/// to the region first); its block's pages grow by `added` bytes.
pub fn grow(base: usize, k: usize, k2: usize, added: usize, spans: Option<&SpanCache>) -> bool {
    let mut g = REGIONS.lock();
    let Some((r, i0)) = g.locate(base) else {
        return false;
    };
    if i0 + k2 > g.granules[r] {
        return false;
    }
    loop {
        let used = g.meta(r).free.first(false, i0 + k, i0 + k2);
        if used == i0 + k2 {
            break;
        }
        let at = g.base[r] + used * GRANULE;
        if g.uncache_at(at) {
            continue;
        }
        match spans.and_then(|spans| spans.take_at(at)) {
            Some(s) => g.put_back(s),
            None => return false,
        }
    }
    let (_, kept) = claim(g.meta(r), i0 + k, i0 + k2);
    drop(g);
    counters::remap(added, kept);
    true
}

/// Frees the `k` granules at `base`, which no live block uses any more
/// and of which `counted` bytes were counted as mapped. `header`: a freed
/// block's span starts there (see `freed_block_at`). `expired`: its pages
/// have waited the purge delay already (in a thread's `SpanCache`) and go
/// back to the OS.
pub fn release(base: usize, k: usize, counted: usize, header: bool, expired: bool) {
    // One clock read: for the purge and the granules' stamp.
    let now = purge::now_ms();
    purge_expired(now);
    let bytes = k * GRANULE;
    let budget = LARGE_KEEP_MIN.max(RECENT_PEAK.load(Relaxed));
    // Over the budget, the older kept granules go back, not these: the
    // last freed are the likeliest to serve next.
    let over = (KEPT.load(Relaxed) + bytes).saturating_sub(budget);
    // Discarded before the granules are published as free: once free,
    // another thread may take and write them.
    let keep = !expired && purge::delay_ms() != 0;
    if keep {
        counters::remap(bytes, counted);
    } else {
        counters::sub_mapped(counted);
        // SAFETY: the granules hold no live block and are not free yet, so
        // nobody else reaches them.
        unsafe { os::discard(base as *mut u8, bytes) };
        purge::given_back(counted);
    }
    let mut g = REGIONS.lock();
    let c = Cached {
        base,
        freed_at: now,
        header,
    };
    if !keep {
        let Some((r, i0)) = g.locate(base) else {
            debug_assert!(false, "a span outside the regions");
            return;
        };
        let m = g.meta(r);
        m.mark_free(i0, i0 + k);
        set_bits(&mut m.hdr, i0, i0 + 1, header);
        let (before, after) = take_clean_around(m, g.huge[r], i0, i0 + k);
        let region = g.base[r];
        drop(g);
        discard_busy(region, before.0, before.1);
        discard_busy(region, after.0, after.1);
        return;
    }
    if !g.cache(k, c) {
        g.free_dirty(base, k, now, header);
    }
    drop(g);
    note_kept(bytes, now);
    if over != 0 {
        purge(now, Which::FreedBefore(now), over);
    }
}

/// Counts `bytes` of granules freed at `now` as kept, due to go back a
/// purge delay later.
fn note_kept(bytes: usize, now: u64) {
    KEPT.fetch_add(bytes, Relaxed);
    lower_to(&NEXT_EXPIRY, now + purge::delay_ms());
    purge::note_due(now + purge::delay_ms());
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
        start == g.base[r] + i * GRANULE && !m.used(i) && bit(&m.hdr, i)
    })
}

/// Records `live` bytes of live large blocks (the recent demand).
pub fn note_live(live: usize) {
    raise_to(&RECENT_PEAK, live);
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
        purge(now, Which::Expired, usize::MAX); // notes the next due time itself
    } else {
        purge::note_due(next);
    }
}

/// Whether granule `i` is free and holds no resident page we know of.
fn clean(m: &Meta, i: usize) -> bool {
    !m.used(i) && !m.is_dirty(i)
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

/// One purge pass: gives back the dirty granules `which` takes (those
/// whose delay has run out at `now`, all, or those freed before a time),
/// with the clean free granules of the same huge pages, up to `limit`
/// bytes of dirty ones.
/// Returns the bytes given back and whether the pass got through
/// everything (it stops after `PURGE_RUNS` runs, or at the limit).
fn purge(now: u64, which: Which, limit: usize) -> (usize, bool) {
    // Region base, first granule, end.
    let mut runs = [(0usize, 0usize, 0usize); PURGE_RUNS];
    // The clean granules before and after each run, in the same huge pages.
    let mut around = [(0usize, 0usize); 2 * PURGE_RUNS];
    let mut n = 0;
    let mut complete = true;
    let mut taken = 0;
    {
        let mut g = REGIONS.lock();
        let mut next = u64::MAX;
        // Cached spans whose delay has run out go back to their regions,
        // as dirty granules that this pass gives back.
        for k in 1..=CACHED_MAX {
            let mut j = 0;
            while j < g.ncached[k] {
                let at = g.cached[k][j].freed_at;
                if which.takes(at, now) {
                    g.uncache(k, j);
                } else {
                    next = next.min(at + purge::delay_ms());
                    j += 1;
                }
            }
        }
        'regions: for r in 0..g.count {
            let (m, base) = (g.meta(r), g.base[r]);
            for w in 0..g.granules[r] / 64 {
                if m.dirty.bits()[w] == 0 {
                    continue;
                }
                for i in w * 64..w * 64 + 64 {
                    if !m.is_dirty(i) {
                        continue;
                    }
                    if !which.takes(m.freed_at[i], now) {
                        next = next.min(m.freed_at[i] + purge::delay_ms());
                        continue;
                    }
                    let extends = n > 0 && runs[n - 1].0 == base && runs[n - 1].2 == i;
                    if !extends && n == PURGE_RUNS {
                        next = now;
                        complete = false;
                        break 'regions;
                    }
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
                let m = g.meta(r);
                m.dirty.set(from, to, false);
                // Busy while its pages go back, outside the lock.
                m.mark_used(from, to);
                let (before, after) = take_clean_around(m, g.huge[r], from, to);
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
        // Demand is measured again from what is live now; not while the
        // budget it sets is being enforced.
        if !matches!(which, Which::FreedBefore(_)) {
            RECENT_PEAK.store(counters::LARGE_BYTES.load(Relaxed), Relaxed);
        }
    }
    (bytes, complete)
}

/// Which dirty granules a purge pass gives back, by when they were freed.
#[derive(Clone, Copy)]
enum Which {
    /// Those that have waited the purge delay.
    Expired,
    All,
    /// Those freed before this time: the older ones, when a span just
    /// freed takes the kept bytes over their budget.
    FreedBefore(u64),
}

impl Which {
    fn takes(self, freed_at: u64, now: u64) -> bool {
        match self {
            Which::Expired => purge::expired(freed_at, now),
            Which::All => true,
            Which::FreedBefore(t) => freed_at < t,
        }
    }
}

/// Gives back about `bytes` of dirty granules, expired or not, lowest
/// addresses first (`purge::units_took_fresh`).
pub fn give_back(bytes: usize) {
    if KEPT.load(Relaxed) != 0 {
        purge(purge::now_ms(), Which::All, bytes);
    }
}

/// Gives back every free page of the regions (`obm_trim`); returns the
/// bytes.
pub fn trim() -> usize {
    let now = purge::now_ms();
    let mut total = 0;
    loop {
        let (bytes, complete) = purge(now, Which::All, usize::MAX);
        total += bytes;
        if complete {
            return total;
        }
    }
}

/// Runs of dirty granules and their bytes, for statistics.
pub fn kept() -> (usize, usize) {
    let g = REGIONS.lock();
    let mut runs = g.ncached.iter().sum();
    for r in 0..g.count {
        let m = g.meta(r);
        let mut prev = false;
        for i in META_GRANULES..g.granules[r] {
            let kept = m.is_dirty(i);
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
    use super::super::stretches::tests::xorshift;
    use super::*;

    /// A region's bookkeeping as the kernel hands it out: all zero.
    fn zeroed_meta() -> std::boxed::Box<Meta> {
        // SAFETY: Meta is bit sets, times and u16 links: all zero is a
        // valid value (no stretch binned yet).
        unsafe { std::boxed::Box::new_zeroed().assume_init() }
    }

    /// A table of one region whose bookkeeping is `meta` (not a real
    /// region: only `best_fit` and `meta` are used on it).
    fn one_region(meta: &mut Meta, end: usize) -> Regions {
        let mut regions = Regions {
            base: [0; LARGE_REGIONS],
            granules: [0; LARGE_REGIONS],
            huge: [false; LARGE_REGIONS],
            count: 1,
            cached: [[NOT_CACHED; CACHED_SLOTS]; CACHED_MAX + 1],
            ncached: [0; CACHED_MAX + 1],
            ncached_all: 0,
        };
        regions.base[0] = meta as *mut Meta as usize;
        regions.granules[0] = end;
        meta.start(end);
        regions
    }

    #[test]
    fn a_span_goes_to_dirty_granules_first_then_to_the_shortest_run() {
        let mut meta = zeroed_meta();
        let g = one_region(&mut meta, 2048);
        let m = g.meta(0);
        m.mark_used(META_GRANULES, 2048);
        m.mark_free(100, 140); // 40, clean
        m.mark_free(200, 210); // 10, clean
        m.mark_free(300, 400); // 100, 12 dirty in the middle
        m.dirty.set(350, 362, true);
        m.mark_free(500, 506); // 6, clean
        let at = |k| g.best_fit(k).map(|(r, x, _)| (assert_eq!(r, 0), x).1);
        assert_eq!(at(6), Some(350), "all dirty beats an exact fit");
        assert_eq!(at(12), Some(350));
        // No dirty stretch of 13: a place covering the 12 beats the best
        // fit, clean.
        assert_eq!(at(13), Some(350));
        assert_eq!(at(101), None, "no run fits");
        m.dirty.set(350, 362, false);
        assert_eq!(at(6), Some(500), "exact fit");
        assert_eq!(at(7), Some(200));
        assert_eq!(at(11), Some(100));
        assert_eq!(at(31), Some(100));
        assert_eq!(
            at(PER_HUGE),
            None,
            "a huge span, in a region of small pages"
        );
        // Of two dirty stretches, the one where a run starts.
        m.dirty.set(390, 400, true);
        assert_eq!(at(4), Some(390));
        m.dirty.set(200, 210, true);
        assert_eq!(at(4), Some(200));
        // In a region of the other kind, only places all dirty.
        let mut g = g;
        g.huge[0] = true;
        assert_eq!(g.best_fit(4).map(|f| f.1), Some(200));
        assert_eq!(g.best_fit(11).map(|f| f.1), None);
        // A huge span in its own kind of region: over the dirty stretch,
        // at the run's end.
        assert_eq!(g.best_fit(41).map(|f| f.1), Some(359));
        assert!(g.meta(0).indexes_match_bits());
    }

    /// Random spans taken and freed, dirty or not, as `take` and `release`
    /// do: every place found is free; one is found whenever a run fits;
    /// and it is all dirty whenever a dirty stretch fits.
    #[test]
    fn every_place_found_is_free_and_dirty_when_a_dirty_stretch_fits() {
        let mut meta = zeroed_meta();
        let end = 1024;
        let mut g = one_region(&mut meta, end);
        let mut rand = xorshift(0x2545_f491_4f6c_dd1d);
        let mut spans: std::vec::Vec<(usize, usize)> = std::vec::Vec::new();
        for step in 0..5000 {
            let most = if rand(4) == 0 { 120 } else { 12 };
            let k = 1 + rand(most);
            g.huge[0] = rand(4) == 0;
            let own_kind = g.huge[0] == (k >= PER_HUGE);
            let m = g.meta(0);
            // What a walk over every granule says.
            let (mut run_fits, mut dirty_fits) = (false, false);
            let (mut len, mut dlen) = (0, 0);
            for i in META_GRANULES..end {
                len = if m.used(i) { 0 } else { len + 1 };
                dlen = if m.is_dirty(i) { dlen + 1 } else { 0 };
                run_fits |= len >= k;
                dirty_fits |= dlen >= k;
            }
            match g.best_fit(k) {
                None => assert!(
                    !dirty_fits && (!own_kind || !run_fits),
                    "step {step}: k {k}"
                ),
                Some((_, x, covered)) => {
                    assert!((x..x + k).all(|i| !m.used(i)), "step {step}: k {k} at {x}");
                    let dirty = (x..x + k).filter(|&i| m.is_dirty(i)).count();
                    assert_eq!(covered, dirty, "step {step}: k {k} at {x}");
                    let all_dirty = dirty_fits || !own_kind;
                    assert!(!all_dirty || dirty == k, "step {step}: k {k} at {x}");
                    if rand(3) != 0 {
                        m.mark_used(x, x + k);
                        m.dirty.set(x, x + k, false);
                        spans.push((x, x + k));
                    }
                }
            }
            if !spans.is_empty() && rand(2) == 0 {
                let (a, b) = spans.swap_remove(rand(spans.len()));
                m.mark_free(a, b);
                if rand(2) == 0 {
                    m.dirty.set(a, b, true);
                }
            }
            if rand(50) == 0 {
                // A purge pass: some dirty granules go clean.
                let a = META_GRANULES + rand(end - META_GRANULES);
                m.dirty.set(a, (a + rand(30)).min(end), false);
            }
            assert!(m.indexes_match_bits(), "step {step}");
        }
    }
}
