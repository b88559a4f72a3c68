//! A thread's cache of freed spans: the last few large blocks of up to 1
//! MiB a thread freed (`LARGE_CACHED_GRANULES`), kept whole with their
//! pages for its next large blocks of the same number of granules. A hit
//! takes no lock and changes no shared counter (but for a block of other
//! pages than the last: see below), which is what two threads
//! allocating large blocks otherwise contend on: the regions' lock and the
//! large-block counters (BENCHMARKS.md, eighteenth session).
//!
//! The cache is a field of the thread's heap (heap/mod.rs), a higher
//! module, whose callers hand it down. Only the owner puts a span in; any
//! thread may flush them out (the purge sweep, `obm_trim`, thread exit;
//! the owner also when its pools took fresh units, so that its kept large
//! pages go back for them).
//! A slot is emptied by swapping it to 0, so the owner's take and another
//! thread's flush never both get a span.
//!
//! A cached span stays out of its region as a live block does (its
//! granules used, its pages resident), its header says FREED (a second
//! `free` is reported) and it is counted as kept memory. The shared
//! counters still count it as the live block it was, at the size its slot
//! records, and the statistics subtract the cache's spans. So the shared
//! counters move only when a span enters or leaves the regions, or serves
//! a block of another size (`large::alloc_cached` adds the difference:
//! counted by the owner alone, it would have drifted the shared count of
//! live large bytes, from which the kept pages' budget is set, by each
//! span's last size against its first, for good).

use super::region::GRANULE;
use super::HEADER;
use crate::config::{LARGE_CACHED_GRANULES, PAGE_SIZE};
use crate::counters;
use crate::purge;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};

/// The largest span kept, in granules (a block of 1 MiB).
pub(super) const MAX_GRANULES: usize = LARGE_CACHED_GRANULES;
/// Spans a thread keeps, and their granules together at most (two of the
/// largest).
const SLOTS: usize = 8;
const MAX_HELD: usize = 2 * MAX_GRANULES;
// `put` evicts until the span it puts in fits.
const _: () = assert!(MAX_HELD >= MAX_GRANULES);

// A slot holds a span's base, which is aligned to a granule, with its
// granules in the low 5 bits and its block's pages (`map_size`) above.
const GRANULE_BITS: u32 = 5;
const GRANULES_MASK: usize = (1 << GRANULE_BITS) - 1;
const _: () = assert!(MAX_GRANULES < 1 << GRANULE_BITS);
const _: () = assert!((MAX_GRANULES * GRANULE / PAGE_SIZE) << GRANULE_BITS < GRANULE);

/// A span in a slot: its base, granules and block's mapped bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FreedSpan {
    pub base: usize,
    pub granules: usize,
    pub map_size: usize,
}

impl FreedSpan {
    fn encode(self) -> usize {
        debug_assert!(self.base.is_multiple_of(GRANULE) && self.base != 0);
        debug_assert!((1..=MAX_GRANULES).contains(&self.granules));
        debug_assert!(self.map_size <= self.granules * GRANULE);
        self.base | (self.map_size / PAGE_SIZE) << GRANULE_BITS | self.granules
    }

    /// The shared counters stop counting the span as the live block it
    /// was (see the module doc): it leaves the cache for its region.
    pub fn uncount(self) {
        counters::LARGE_BLOCKS.fetch_sub(1, Relaxed);
        counters::LARGE_BYTES.fetch_sub(self.map_size - HEADER, Relaxed);
    }

    pub fn decode(v: usize) -> FreedSpan {
        FreedSpan {
            base: v & !(GRANULE - 1),
            granules: v & GRANULES_MASK,
            map_size: (v & (GRANULE - 1)) >> GRANULE_BITS << PAGE_SIZE.trailing_zeros(),
        }
    }
}

/// All zero when empty, as a new heap's memory is.
pub struct SpanCache {
    /// Encoded spans (`FreedSpan::encode`), 0 for none.
    slots: [AtomicUsize; SLOTS],
    /// Owner only: the next slot to evict when the cache is full.
    next: AtomicUsize,
    /// Owner only: the granules of the spans it put in and did not take
    /// out; more than the cache holds after a flush by another thread
    /// (`put` then counts again).
    held: AtomicUsize,
    /// When the cache's oldest span went in (0: empty, or flushed since).
    since: AtomicU64,
    /// Owner only: blocks allocated from the cache.
    allocs: AtomicUsize,
    /// Owner only: whether the thread has allocated a large block. Until
    /// then it keeps none of the blocks it frees: a thread that frees
    /// what another allocates would only hold them from their allocator.
    allocating: AtomicBool,
}

impl SpanCache {
    pub const fn new() -> Self {
        SpanCache {
            slots: [const { AtomicUsize::new(0) }; SLOTS],
            next: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            since: AtomicU64::new(0),
            allocs: AtomicUsize::new(0),
            allocating: AtomicBool::new(false),
        }
    }

    /// Owner only: takes a span of `granules`. Returns it with the block
    /// it held before.
    pub fn take(&self, granules: usize) -> Option<FreedSpan> {
        self.start_keeping();
        // Last slots first: `put` fills the first free slot, so the last
        // freed span, the likeliest in the CPU's caches, is usually there.
        for slot in self.slots.iter().rev() {
            let v = slot.load(Relaxed);
            if v == 0 || v & GRANULES_MASK != granules {
                continue;
            }
            // Only the owner puts, so the slot holds v or, flushed, 0.
            let v = slot.swap(0, Acquire);
            if v != 0 {
                let c = FreedSpan::decode(v);
                let held = self.held.load(Relaxed);
                self.held.store(held.saturating_sub(granules), Relaxed);
                self.allocs.store(self.allocs.load(Relaxed) + 1, Relaxed);
                return Some(c);
            }
        }
        None
    }

    /// Owner only: takes the smallest span of more than `granules`, if
    /// any, to go back to its region (no block is allocated from it here).
    pub fn take_larger(&self, granules: usize) -> Option<FreedSpan> {
        let smallest = self
            .slots
            .iter()
            .map(|slot| slot.load(Relaxed) & GRANULES_MASK)
            .filter(|&g| g > granules)
            .min()?;
        self.take_if(|c| c.granules == smallest)
    }

    /// Owner only: takes the first cached span for which `f` holds, to go
    /// back to its region.
    pub fn take_if(&self, mut f: impl FnMut(FreedSpan) -> bool) -> Option<FreedSpan> {
        for slot in &self.slots {
            let v = slot.load(Relaxed);
            if v == 0 || !f(FreedSpan::decode(v)) {
                continue;
            }
            // As in `take`.
            let v = slot.swap(0, Acquire);
            if v != 0 {
                let c = FreedSpan::decode(v);
                let held = self.held.load(Relaxed);
                self.held.store(held.saturating_sub(c.granules), Relaxed);
                return Some(c);
            }
        }
        None
    }

    /// Whether `f` holds for a cached span (any thread; a snapshot).
    pub fn any(&self, mut f: impl FnMut(FreedSpan) -> bool) -> bool {
        self.slots.iter().any(|slot| {
            let v = slot.load(Relaxed);
            v != 0 && f(FreedSpan::decode(v))
        })
    }

    /// Owner only: takes the span starting at `base`, if cached.
    pub fn take_at(&self, base: usize) -> Option<FreedSpan> {
        self.take_if(|c| c.base == base)
    }

    /// Owner only: the thread allocates large blocks, so it keeps the
    /// spans it frees from now on (`allocating`).
    #[inline(always)]
    pub fn start_keeping(&self) {
        if !self.allocating.load(Relaxed) {
            self.allocating.store(true, Relaxed);
        }
    }

    /// Whether the owner keeps the spans it frees (`allocating`).
    pub fn keeps(&self) -> bool {
        self.allocating.load(Relaxed)
    }

    /// Owner only: puts `c` in if a slot is free and its granules fit in
    /// the budget (and the cache's age is running); else does nothing and
    /// returns false (then `put`).
    #[inline(always)]
    pub fn put_if_room(&self, c: FreedSpan) -> bool {
        let held = self.held.load(Relaxed) + c.granules;
        if held > MAX_HELD || self.since.load(Relaxed) == 0 {
            return false;
        }
        let Some(slot) = self.slots.iter().find(|s| s.load(Relaxed) == 0) else {
            return false;
        };
        self.held.store(held, Relaxed);
        // As in `put`: an empty slot stays empty but for the owner.
        slot.store(c.encode(), Release);
        true
    }

    /// Owner only: puts `c` in, first evicting spans in turn while the
    /// cache is full: `evict` takes each (to go back to its region).
    pub fn put(&self, c: FreedSpan, mut evict: impl FnMut(FreedSpan)) {
        let mut free = self.slots.iter().position(|s| s.load(Relaxed) == 0);
        let mut held = self.held.load(Relaxed) + c.granules;
        if free.is_none() || held > MAX_HELD {
            held = c.granules
                + self
                    .slots
                    .iter()
                    .map(|s| s.load(Relaxed) & GRANULES_MASK)
                    .sum::<usize>();
            while held > MAX_HELD || free.is_none() {
                let i = self.next.load(Relaxed);
                self.next.store((i + 1) % SLOTS, Relaxed);
                let v = self.slots[i].swap(0, Acquire);
                if v != 0 {
                    held -= v & GRANULES_MASK;
                    evict(FreedSpan::decode(v));
                }
                free = Some(i);
            }
        }
        self.held.store(held, Relaxed);
        if self.since.load(Relaxed) == 0 {
            let now = purge::now_ms();
            self.since.store(now, Relaxed);
            purge::note_due(now + purge::delay_ms());
        }
        // An empty slot stays empty but for the owner: a flush only
        // swaps in 0.
        self.slots[free.unwrap_or(0)].store(c.encode(), Release);
    }

    /// Empties the cache, or only if its oldest span has waited the purge
    /// delay at `now` (`Some(now)`): calls `f` on each span taken out.
    /// Any thread.
    pub fn flush(&self, expired_at: Option<u64>, mut f: impl FnMut(FreedSpan)) {
        let since = self.since.load(Relaxed);
        if let Some(now) = expired_at {
            if since == 0 || now < since + purge::delay_ms() {
                return;
            }
        }
        // If the owner has put a span in since the load, its time stays.
        let _ = self.since.compare_exchange(since, 0, Relaxed, Relaxed);
        for slot in &self.slots {
            if slot.load(Relaxed) != 0 {
                let v = slot.swap(0, Acquire);
                if v != 0 {
                    f(FreedSpan::decode(v));
                }
            }
        }
    }

    /// `flush(Some(now), f)` if anything is cached: the owner's check on
    /// its way to the regions.
    pub fn flush_if_expired(&self, f: impl FnMut(FreedSpan)) {
        if self.since.load(Relaxed) != 0 {
            self.flush(Some(purge::now_ms()), f);
        }
    }

    /// For the statistics, which read other threads' caches as they change:
    /// the spans cached, their blocks' mapped bytes and the blocks
    /// allocated from the cache.
    pub fn counts(&self) -> (usize, usize, usize) {
        let (mut spans, mut bytes) = (0, 0);
        for slot in &self.slots {
            let v = slot.load(Relaxed);
            if v != 0 {
                spans += 1;
                bytes += FreedSpan::decode(v).map_size;
            }
        }
        (spans, bytes, self.allocs.load(Relaxed))
    }
}

impl Default for SpanCache {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    fn span(i: usize, granules: usize) -> FreedSpan {
        let map_size = granules * GRANULE - (i % 4) * PAGE_SIZE;
        FreedSpan {
            base: (0x7000_0000 + i * MAX_GRANULES) * GRANULE,
            granules,
            map_size,
        }
    }

    fn put(cache: &SpanCache, c: FreedSpan) -> Vec<FreedSpan> {
        let mut out = Vec::new();
        cache.put(c, |s| out.push(s));
        out
    }

    #[test]
    fn a_slot_holds_base_granules_and_pages() {
        for granules in 1..=MAX_GRANULES {
            for pages in 1..=granules * GRANULE / PAGE_SIZE {
                let c = FreedSpan {
                    base: 0x7fff_1234_0000,
                    granules,
                    map_size: pages * PAGE_SIZE,
                };
                assert_eq!(FreedSpan::decode(c.encode()), c);
            }
        }
    }

    /// Takes find the size asked for only; the counters follow the sizes;
    /// a full cache evicts in turn, for a slot and for the granules held.
    #[test]
    fn take_put_and_evict() {
        let cache = SpanCache::new();
        assert!(!cache.keeps(), "not before the thread allocates");
        assert!(cache.take(2).is_none());
        assert!(cache.keeps());
        for i in 0..SLOTS {
            assert!(put(&cache, span(i, 1 + i % 3)).is_empty());
        }
        assert_eq!(cache.counts().0, SLOTS);
        assert!(cache.take(4).is_none());
        let c = cache.take(2).unwrap();
        assert_eq!(c, span(7, 2));
        assert_eq!(cache.counts().2, 1);
        // A slot is free again: no eviction. Then full: slot 0 goes.
        assert!(put(&cache, span(20, 1)).is_empty());
        assert_eq!(put(&cache, span(21, 1)), [span(0, 1)]);
        // 14 granules held: the largest span fits, but no slot is free:
        // slot 1 goes.
        const M: usize = MAX_GRANULES;
        const _: () = assert!(14 + M <= MAX_HELD && MAX_HELD == 2 * M);
        assert_eq!(put(&cache, span(22, M)), [span(1, 2)]);
        // 12 + M held: M more need 12 to go, slots 2 to 7 and 0 in turn.
        let out = put(&cache, span(23, M));
        let expect = [span(2, 3), span(3, 1), span(4, 2), span(5, 3), span(6, 1)];
        assert_eq!(out[..5], expect);
        assert_eq!(out[5..], [span(20, 1), span(21, 1)]);
        assert_eq!(cache.counts().0, 2);
        // The later slot first.
        assert_eq!(cache.take(M), Some(span(22, M)));
        assert_eq!(cache.take(M), Some(span(23, M)));
        assert_eq!(cache.counts().0, 0);
    }

    /// The free path's `put` without eviction: only into a free slot, within
    /// the granules held, and once the cache's age runs (else `put`).
    #[test]
    fn put_if_room_only_with_room() {
        let cache = SpanCache::new();
        assert!(
            !cache.put_if_room(span(0, 2)),
            "an empty cache starts its age in put"
        );
        assert!(put(&cache, span(0, 2)).is_empty());
        for i in 1..SLOTS {
            assert!(cache.put_if_room(span(i, 1)));
        }
        assert_eq!(cache.counts().0, SLOTS);
        assert!(!cache.put_if_room(span(20, 1)), "no free slot");
        assert_eq!(cache.take(1), Some(span(SLOTS - 1, 1)));
        // 8 granules held, then 8 + MAX_GRANULES: a free slot, but another
        // span of MAX_GRANULES would pass the budget.
        const _: () = assert!(8 + 2 * MAX_GRANULES > MAX_HELD);
        let big = |i| FreedSpan {
            base: span(i, 1).base,
            granules: MAX_GRANULES,
            map_size: MAX_GRANULES * GRANULE,
        };
        assert!(cache.put_if_room(big(21)));
        assert_eq!(cache.take(1), Some(span(SLOTS - 2, 1)));
        assert!(!cache.put_if_room(big(22)), "over the granules held");
        assert_eq!(cache.take(MAX_GRANULES), Some(big(21)));
        assert!(cache.put_if_room(big(22)));
        // Flushed by another thread: the age stops, so the next put restarts it.
        cache.flush(None, |_| {});
        assert!(!cache.put_if_room(span(23, 1)));
    }

    /// A miss's returns to the regions: the smallest larger span, or the
    /// first for which the region's test holds; the granules held follow.
    #[test]
    fn take_larger_and_take_if() {
        let cache = SpanCache::new();
        for (i, g) in [3, 6, 5, 2].into_iter().enumerate() {
            assert!(put(&cache, span(i, g)).is_empty());
        }
        assert_eq!(cache.take_larger(4), Some(span(2, 5)));
        assert_eq!(cache.take_larger(6), None);
        assert!(cache.any(|c| c.granules == 6));
        assert!(!cache.any(|c| c.granules == 5));
        assert_eq!(cache.take_if(|c| c.granules < 3), Some(span(3, 2)));
        assert_eq!(cache.take_if(|c| c.granules == 4), None);
        assert_eq!(cache.held.load(Relaxed), 3 + 6);
        assert_eq!(cache.counts().0, 2);
    }

    #[test]
    fn flush_waits_for_the_delay() {
        let cache = SpanCache::new();
        put(&cache, span(0, 3));
        let since = cache.since.load(Relaxed);
        assert_ne!(since, 0);
        let mut out = Vec::new();
        cache.flush(Some(since + purge::delay_ms() - 1), |c| out.push(c));
        assert!(out.is_empty());
        cache.flush(Some(since + purge::delay_ms()), |c| out.push(c));
        assert_eq!(out, [span(0, 3)]);
        assert_eq!(cache.since.load(Relaxed), 0);
        put(&cache, span(1, 3));
        cache.flush(None, |c| out.push(c));
        assert_eq!(out, [span(0, 3), span(1, 3)]);
    }

    /// The owner puts and takes while another thread flushes: every span
    /// put comes out exactly once, by a take, an eviction or a flush.
    #[test]
    fn owner_and_flusher_never_share_a_span() {
        let cache = Arc::new(SpanCache::new());
        let stop = Arc::new(AtomicBool::new(false));
        let flusher = {
            let (cache, stop) = (cache.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut out = Vec::new();
                while !stop.load(Relaxed) {
                    cache.flush(None, |c| out.push(c.base));
                }
                out
            })
        };
        let (mut seen, mut puts) = (Vec::new(), 0);
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for i in 0..200_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let g = 1 + (rng % 4) as usize;
            if rng & 16 == 0 {
                puts += 1;
                seen.extend(put(&cache, span(i, g)).iter().map(|c| c.base));
            } else if let Some(c) = cache.take(g) {
                seen.push(c.base);
            }
        }
        stop.store(true, Relaxed);
        seen.extend(flusher.join().unwrap());
        cache.flush(None, |c| seen.push(c.base));
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), puts, "a span lost or come out twice");
    }
}
