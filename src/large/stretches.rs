//! A bitmap over a region's granules with its stretches binned by length,
//! so that a search for a stretch of at least `k` granules looks at a few
//! of them, however many there are.
//!
//! A `Stretches<MEMBER>` has one bit per granule; its members are the
//! granules whose bit is `MEMBER`, and its stretches the maximal runs of
//! members. A region keeps two: its free runs (members: a clear `used`
//! bit) and its dirty stretches (members: a set `dirty` bit).
//!
//! Invariants, kept by `set`, through which every change of a bit goes:
//! - every stretch is in exactly one bin, `bin(length)`, a doubly linked
//!   list through `next` and `prev` at the stretch's first granule (0
//!   ends a list: granule 0 holds the region's bookkeeping, so it is
//!   never a member);
//! - `nonempty` has bit `b` set exactly when bin `b` has a stretch;
//! - every bit from `top` on is clear, so searches stop there instead of
//!   at the region's end (most of a region is never used).
//!
//! Bins 0-30 hold one length each (1-31 granules); from 32 on, each
//! doubling of the length is cut in 8 bins (a bin's lengths differ by
//! less than an eighth), 104 bins for the 16,384 granules of a region.
//! A search looks at `LOOK` stretches at most, from a length's bin up
//! (`each_fitting`, `fit`) or down (`longest_up_to`): a best fit within
//! about an eighth of the shortest stretch that fits, in a bounded time.
//! Only when none of those fits does `each_fitting` go on through the
//! length's own bin, so that a stretch that fits is found if one exists.

use crate::config::{LARGE_GRANULE, LARGE_REGION_SIZE};

pub(super) const MAX_GRANULES: usize = LARGE_REGION_SIZE / LARGE_GRANULE;
pub(super) const WORDS: usize = MAX_GRANULES / 64;
pub(super) type Bits = [u64; WORDS];

/// Lengths below this have a bin each.
const EXACT: usize = 32;
/// Bins per doubling of the length, from `EXACT` on.
const PER_DOUBLING: usize = 8;
pub(super) const BINS: usize = bin(MAX_GRANULES) + 1;
/// Stretches of one bin a search looks at, at most.
const LOOK: usize = 16;

const _: () = assert!(
    MAX_GRANULES <= u16::MAX as usize
        && BINS <= 128
        && EXACT.is_power_of_two()
        && PER_DOUBLING.is_power_of_two()
        && WORDS * 64 == MAX_GRANULES
);

/// The bin of a stretch of `len` granules (`len >= 1`).
pub(super) const fn bin(len: usize) -> usize {
    if len < EXACT {
        return len - 1;
    }
    let log = (usize::BITS - 1 - len.leading_zeros()) as usize;
    let step_log = log - PER_DOUBLING.trailing_zeros() as usize;
    let sub = (len >> step_log) & (PER_DOUBLING - 1);
    EXACT - 1 + (log - EXACT.trailing_zeros() as usize) * PER_DOUBLING + sub
}

/// The shortest length of bin `b`.
#[cfg(test)]
const fn bin_min(b: usize) -> usize {
    if b < EXACT - 1 {
        return b + 1;
    }
    let log = EXACT.trailing_zeros() as usize + (b - (EXACT - 1)) / PER_DOUBLING;
    let sub = (b - (EXACT - 1)) % PER_DOUBLING;
    (PER_DOUBLING + sub) << (log - PER_DOUBLING.trailing_zeros() as usize)
}

#[inline]
pub(super) fn bit(b: &Bits, i: usize) -> bool {
    (b[i / 64] >> (i % 64)) & 1 != 0
}

/// Sets the bits `[from, to)` to `v`.
pub(super) fn set_bits(b: &mut Bits, from: usize, to: usize, v: bool) {
    let mut i = from;
    while i < to {
        let w = i / 64;
        let hi = (to - w * 64).min(64);
        let mask = if hi == 64 { !0u64 } else { (1u64 << hi) - 1 } & (!0u64 << (i % 64));
        if v {
            b[w] |= mask;
        } else {
            b[w] &= !mask;
        }
        i = w * 64 + hi;
    }
}

/// The first granule in `[from, end)` whose bit is `want`, or `end`.
pub(super) fn find(b: &Bits, want: bool, from: usize, end: usize) -> usize {
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

/// The last granule before `to` whose bit is `want`, if any.
fn rfind(b: &Bits, want: bool, to: usize) -> Option<usize> {
    let mut i = to;
    while i > 0 {
        let w = (i - 1) / 64;
        let keep = i - w * 64; // bits 0..keep of word w lie before i
        let mask = if keep == 64 {
            !0u64
        } else {
            (1u64 << keep) - 1
        };
        let x = if want { b[w] } else { !b[w] } & mask;
        if x != 0 {
            return Some(w * 64 + 63 - x.leading_zeros() as usize);
        }
        i = w * 64;
    }
    None
}

/// How many granules in `[from, to)` have their bit set.
pub(super) fn count(b: &Bits, from: usize, to: usize) -> usize {
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

/// The bitmap of a region's granules and its stretches of members (the
/// granules whose bit is `MEMBER`), binned by length. All zero is a valid
/// value before `start`.
pub(super) struct Stretches<const MEMBER: bool> {
    bits: Bits,
    /// Every bit from here on is clear.
    top: usize,
    /// The region's granules: the bitmap covers `[0, end)`.
    end: usize,
    heads: [u16; BINS],
    nonempty: [u64; 2],
    next: [u16; MAX_GRANULES],
    prev: [u16; MAX_GRANULES],
}

impl<const MEMBER: bool> Stretches<MEMBER> {
    /// Sets up a new region of `end` granules, whose first `reserved`
    /// (the bookkeeping) are not members; the others have a clear bit
    /// (all bits read as zero before).
    pub(super) fn start(&mut self, end: usize, reserved: usize) {
        debug_assert!(self.top == 0 && self.nonempty == [0, 0] && reserved > 0);
        self.end = end;
        if !MEMBER {
            // Members are the clear bits: the bookkeeping's are set, and
            // the rest is one stretch.
            set_bits(&mut self.bits, 0, reserved, true);
            self.top = reserved;
            self.link(reserved, end);
        }
    }

    #[inline]
    pub(super) fn bit(&self, i: usize) -> bool {
        bit(&self.bits, i)
    }

    pub(super) fn bits(&self) -> &Bits {
        &self.bits
    }

    pub(super) fn top(&self) -> usize {
        self.top
    }

    pub(super) fn is_member(&self, i: usize) -> bool {
        self.bit(i) == MEMBER
    }

    /// The first granule in `[from, to)` that is a member if `member`
    /// (else that is not), or `to`.
    pub(super) fn first(&self, member: bool, from: usize, to: usize) -> usize {
        let want = member == MEMBER;
        let below_top = to.min(self.top);
        let found = find(&self.bits, want, from, below_top);
        if found < below_top {
            found
        } else if want {
            to // no set bit from `top` on
        } else {
            from.max(self.top).min(to) // every bit from `top` on is clear
        }
    }

    /// The stretch holding the member granule `i`: `[start, end)`.
    pub(super) fn stretch_at(&self, i: usize) -> (usize, usize) {
        debug_assert!(self.is_member(i));
        // After the last granule before i that is not a member (granule 0
        // never is). No bit from `top` on is set, and a member with a set
        // bit is below `top`.
        let start = rfind(&self.bits, !MEMBER, i.min(self.top)).map_or(0, |j| j + 1);
        (start, self.first(false, i, self.end))
    }

    /// Makes the granules `[a, b)` members if `member`, else not members,
    /// whatever they were, and bins the stretches that result.
    pub(super) fn set(&mut self, a: usize, b: usize, member: bool) {
        debug_assert!(a <= b && b <= self.end && (a > 0 || a == b));
        if a == b {
            return;
        }
        if member {
            // One stretch: [a, b) with the stretches it touches or overlaps.
            let (mut lo, mut hi) = (a, b);
            let stop = (b + 1).min(self.end);
            let mut i = self.first(true, a - 1, stop);
            while i < stop {
                let (s, e) = self.stretch_at(i);
                self.unlink(s, e);
                (lo, hi) = (lo.min(s), hi.max(e));
                i = self.first(true, e, stop);
            }
            set_bits(&mut self.bits, a, b, MEMBER);
            self.link(lo, hi);
        } else {
            // The stretches overlapping [a, b) lose those granules.
            let mut i = self.first(true, a, b);
            while i < b {
                let (s, e) = self.stretch_at(i);
                self.unlink(s, e);
                if s < a {
                    self.link(s, a);
                }
                if e > b {
                    self.link(b, e);
                }
                i = self.first(true, e, b);
            }
            set_bits(&mut self.bits, a, b, !MEMBER);
        }
        if self.bit(a) {
            self.top = self.top.max(b);
        }
    }

    fn link(&mut self, s: usize, e: usize) {
        debug_assert!(0 < s && s < e && e <= self.end);
        let b = bin(e - s);
        let head = self.heads[b];
        self.next[s] = head;
        self.prev[s] = 0;
        if head != 0 {
            self.prev[head as usize] = s as u16;
        }
        self.heads[b] = s as u16;
        self.nonempty[b / 64] |= 1 << (b % 64);
    }

    fn unlink(&mut self, s: usize, e: usize) {
        let b = bin(e - s);
        let (next, prev) = (self.next[s], self.prev[s]);
        if prev == 0 {
            debug_assert_eq!(self.heads[b] as usize, s, "a stretch out of its bin");
            self.heads[b] = next;
            if next == 0 {
                self.nonempty[b / 64] &= !(1 << (b % 64));
            }
        } else {
            self.next[prev as usize] = next;
        }
        if next != 0 {
            self.prev[next as usize] = prev;
        }
    }

    /// The first non-empty bin from `b` on.
    fn nonempty_from(&self, b: usize) -> Option<usize> {
        (b / 64..2).find_map(|w| {
            let m = if w == b / 64 {
                !0u64 << (b % 64)
            } else {
                !0u64
            };
            let x = self.nonempty[w] & m;
            (x != 0).then(|| w * 64 + x.trailing_zeros() as usize)
        })
    }

    /// The last non-empty bin at or below `b`.
    fn nonempty_at_or_below(&self, b: usize) -> Option<usize> {
        (0..=b / 64).rev().find_map(|w| {
            let keep = if w == b / 64 { b % 64 + 1 } else { 64 };
            let m = if keep == 64 {
                !0u64
            } else {
                (1u64 << keep) - 1
            };
            let x = self.nonempty[w] & m;
            (x != 0).then(|| w * 64 + 63 - x.leading_zeros() as usize)
        })
    }

    /// Up to `n` stretches of bin `b`, `[start, end)`.
    fn in_bin(&self, b: usize, n: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mut s = self.heads[b] as usize;
        core::iter::from_fn(move || {
            if s == 0 {
                return None;
            }
            let here = s;
            s = self.next[here] as usize;
            Some((here, self.first(false, here, self.end)))
        })
        .take(n)
    }

    /// Up to `n` stretches of the non-empty bins from `b` up, in bin order.
    fn upward(&self, b: usize, n: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mut from = Some(b);
        core::iter::from_fn(move || {
            let here = self.nonempty_from(from?)?;
            from = (here + 1 < BINS).then_some(here + 1);
            Some(self.in_bin(here, n))
        })
        .flatten()
        .take(n)
    }

    /// Calls `f(start, end)` on stretches of at least `k` granules, from
    /// `k`'s bin up, until `f` returns true: on those among the first
    /// `LOOK` stretches looked at; if none of them fits, on the first that
    /// does of all (one does if any stretch fits: past `k`'s bin, all do).
    pub(super) fn each_fitting(&self, k: usize, mut f: impl FnMut(usize, usize) -> bool) {
        let b = bin(k);
        let mut any = false;
        for (s, e) in self.upward(b, LOOK).filter(|&(s, e)| e - s >= k) {
            any = true;
            if f(s, e) {
                return;
            }
        }
        if !any {
            if let Some((s, e)) = self.upward(b, usize::MAX).find(|&(s, e)| e - s >= k) {
                f(s, e);
            }
        }
    }

    /// The shortest of the stretches `each_fitting` finds for `k`.
    pub(super) fn fit(&self, k: usize) -> Option<(usize, usize)> {
        let mut best: Option<(usize, usize)> = None;
        self.each_fitting(k, |s, e| {
            if best.is_none_or(|(bs, be)| e - s < be - bs) {
                best = Some((s, e));
            }
            e - s == k
        });
        best
    }

    /// Up to `LOOK` stretches of the highest non-empty bins at or below
    /// `k`'s, from the highest bin down.
    pub(super) fn longest_up_to(&self, k: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mut b = Some(bin(k));
        core::iter::from_fn(move || {
            let here = self.nonempty_at_or_below(b?)?;
            b = here.checked_sub(1);
            Some(self.in_bin(here, LOOK))
        })
        .flatten()
        .take(LOOK)
    }

    /// Whether the bins hold exactly the stretches of the bitmap, each in
    /// its bin, and `top` and `nonempty` are right (for debug assertions
    /// and tests; a walk over every granule and every bin).
    pub(super) fn match_bits(&self) -> bool {
        if find(&self.bits, true, self.top, self.end) != self.end {
            return false;
        }
        let mut stretches = 0;
        let mut i = self.first(true, 1, self.end);
        while i < self.end {
            let e = self.first(false, i, self.end);
            stretches += 1;
            i = self.first(true, e, self.end);
        }
        let mut linked = 0;
        for b in 0..BINS {
            let listed = self.nonempty[b / 64] >> (b % 64) & 1 != 0;
            if listed != (self.heads[b] != 0) {
                return false;
            }
            let (mut s, mut prev) = (self.heads[b] as usize, 0);
            while s != 0 {
                let starts = self.is_member(s) && !self.is_member(s - 1);
                if !starts || self.prev[s] as usize != prev || linked > stretches {
                    return false;
                }
                let e = self.first(false, s, self.end);
                if bin(e - s) != b {
                    return false;
                }
                linked += 1;
                (prev, s) = (s, self.next[s] as usize);
            }
        }
        linked == stretches
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn zeroed<const M: bool>() -> std::boxed::Box<Stretches<M>> {
        // SAFETY: bits, counts and u16 links: all zero is a valid value.
        unsafe { std::boxed::Box::new_zeroed().assume_init() }
    }

    /// A small deterministic generator: `rand(n)` is in `0..n`.
    pub(in crate::large) fn xorshift(mut seed: u64) -> impl FnMut(usize) -> usize {
        move |n| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        }
    }

    #[test]
    fn every_length_is_in_the_bin_whose_range_holds_it() {
        assert_eq!(BINS, 104);
        for len in 1..=MAX_GRANULES {
            let b = bin(len);
            assert!(
                bin_min(b) <= len && len < bin_min(b + 1),
                "length {len}, bin {b}"
            );
            if len < EXACT {
                assert_eq!(bin_min(b + 1), len + 1, "exact below {EXACT}");
            } else {
                // A bin's lengths differ by less than an eighth.
                assert!((bin_min(b + 1) - bin_min(b)) * 8 <= bin_min(b));
            }
        }
    }

    #[test]
    fn find_rfind_and_count_cross_words() {
        let mut b: Bits = [0; WORDS];
        for i in [3, 64, 130, 131, MAX_GRANULES - 1] {
            set_bits(&mut b, i, i + 1, true);
        }
        assert_eq!(find(&b, true, 0, MAX_GRANULES), 3);
        assert_eq!(find(&b, true, 4, MAX_GRANULES), 64);
        assert_eq!(find(&b, true, 65, MAX_GRANULES), 130);
        assert_eq!(find(&b, true, 132, MAX_GRANULES), MAX_GRANULES - 1);
        assert_eq!(find(&b, true, 65, 100), 100, "none before the end");
        assert_eq!(find(&b, false, 130, MAX_GRANULES), 132);
        assert_eq!(rfind(&b, true, 130), Some(64));
        assert_eq!(rfind(&b, true, 131), Some(130));
        assert_eq!(rfind(&b, true, 64), Some(3));
        assert_eq!(rfind(&b, true, 3), None);
        assert_eq!(rfind(&b, true, MAX_GRANULES), Some(MAX_GRANULES - 1));
        assert_eq!(count(&b, 0, MAX_GRANULES), 5);
        assert_eq!(count(&b, 3, 131), 3, "the end is excluded");
        assert_eq!(count(&b, 63, 66), 1);
        set_bits(&mut b, 60, 200, true);
        assert_eq!(count(&b, 0, 256), 141);
        set_bits(&mut b, 62, 129, false);
        assert_eq!(count(&b, 0, 256), 141 - 67);
        assert!(bit(&b, 61) && !bit(&b, 62) && !bit(&b, 128) && bit(&b, 129));
    }

    /// Random changes, of ranges inside, across and between stretches,
    /// keep the bins equal to the bitmap's stretches; the searches find
    /// what an exhaustive walk of the bitmap says they should.
    fn random_changes<const M: bool>(seed: u64) {
        let mut st = zeroed::<M>();
        let end = 3000;
        st.start(end, 8);
        let mut rand = xorshift(seed);
        for step in 0..20_000 {
            let a = 8 + rand(end - 8);
            let len = if rand(4) == 0 { 1 } else { 1 + rand(60) };
            let b = (a + len).min(end);
            st.set(a, b, rand(2) == 0);
            if step % 16 == 0 {
                assert!(st.match_bits(), "step {step}");
                let all = every_stretch(&st);
                let k = 1 + rand(80);
                // The lowest bin with a stretch that fits.
                let first_fit = all
                    .iter()
                    .filter(|&&(s, e)| e - s >= k)
                    .map(|&(s, e)| bin(e - s))
                    .min();
                match (st.fit(k), first_fit) {
                    (None, None) => {}
                    (Some((s, e)), Some(lowest)) => {
                        assert!(all.contains(&(s, e)) && e - s >= k, "step {step}");
                        // Past k's bin every stretch fits, so the search
                        // stops in the lowest bin that has one; in k's
                        // bin it may not see the one that fits.
                        if lowest > bin(k) {
                            assert_eq!(bin(e - s), lowest, "step {step}, k {k}");
                        } else {
                            assert!(bin(e - s) >= bin(k), "step {step}, k {k}");
                        }
                    }
                    other => panic!("step {step}: k {k}: {other:?}"),
                }
                // From the highest bin at or below k's that has a stretch,
                // down, `LOOK` at most.
                let got: std::vec::Vec<_> = st.longest_up_to(k).collect();
                let highest = all
                    .iter()
                    .map(|&(s, e)| bin(e - s))
                    .filter(|&b| b <= bin(k))
                    .max();
                assert_eq!(
                    got.first().map(|&(s, e)| bin(e - s)),
                    highest,
                    "step {step}, k {k}"
                );
                assert!(
                    got.len() <= LOOK
                        && got
                            .windows(2)
                            .all(|w| bin(w[0].1 - w[0].0) >= bin(w[1].1 - w[1].0))
                );
                assert!(got.iter().all(|g| all.contains(g)));
            }
        }
    }

    /// Every stretch of the bitmap, found by walking it.
    fn every_stretch<const M: bool>(st: &Stretches<M>) -> std::vec::Vec<(usize, usize)> {
        let mut v = std::vec::Vec::new();
        let mut i = 1;
        while i < st.end {
            if st.is_member(i) && !st.is_member(i - 1) {
                let mut e = i;
                while e < st.end && st.is_member(e) {
                    e += 1;
                }
                v.push((i, e));
                i = e;
            } else {
                i += 1;
            }
        }
        v
    }

    #[test]
    fn free_runs_follow_every_change() {
        random_changes::<false>(0x2545_f491_4f6c_dd1d);
    }

    #[test]
    fn set_bit_stretches_follow_every_change() {
        random_changes::<true>(0x9e37_79b9_7f4a_7c15);
    }

    #[test]
    fn stretch_at_finds_both_ends_across_words_and_top() {
        let mut free = zeroed::<false>();
        free.start(1000, 4);
        assert_eq!(free.stretch_at(500), (4, 1000), "one run past top");
        free.set(100, 300, false);
        assert_eq!(free.top(), 300);
        assert_eq!(free.stretch_at(4), (4, 100));
        assert_eq!(free.stretch_at(99), (4, 100));
        assert_eq!(free.stretch_at(300), (300, 1000));
        assert_eq!(free.stretch_at(999), (300, 1000));
        let mut dirty = zeroed::<true>();
        dirty.start(1000, 4);
        dirty.set(60, 200, true);
        assert_eq!(dirty.stretch_at(60), (60, 200));
        assert_eq!(dirty.stretch_at(199), (60, 200));
        dirty.set(120, 130, false);
        assert_eq!(dirty.stretch_at(119), (60, 120));
        assert_eq!(dirty.stretch_at(130), (130, 200));
        assert!(dirty.match_bits() && free.match_bits());
    }
}
