//! The shadow model and random operations shared by the model tests.

#![allow(dead_code)]

use obmem::direct;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// xorshift64*: deterministic, dependency-free.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Mostly small, sometimes medium, rarely large.
    pub fn size(&mut self) -> usize {
        match self.below(100) {
            0..=69 => self.below(513) as usize,
            70..=94 => 513 + self.below(16_000) as usize,
            95..=98 => 16_000 + self.below(120_000) as usize,
            _ => 131_072 + self.below(3 << 20) as usize,
        }
    }
}

#[derive(Clone, Copy)]
pub struct Live {
    pub p: usize,
    pub size: usize,
    pub seed: u8,
}

pub fn fill(b: &Live) {
    // Pattern at both ends and a few points in between (touching every byte
    // of multi-megabyte blocks would make the test slow, not stronger).
    for off in probe_offsets(b.size) {
        // SAFETY: off < size and the block is live with at least `size` bytes.
        unsafe { *((b.p + off) as *mut u8) = b.seed.wrapping_add(off as u8) };
    }
}

/// Checks the pattern `b` was filled with, at the probed offsets below `upto`
/// (after realloc, only the common prefix survives).
pub fn check(b: &Live, upto: usize) {
    for off in probe_offsets(b.size).filter(|&off| off < upto) {
        // SAFETY: as in fill.
        let v = unsafe { *((b.p + off) as *const u8) };
        assert_eq!(
            v,
            b.seed.wrapping_add(off as u8),
            "block {:#x} size {} offset {off}",
            b.p,
            b.size
        );
    }
}

pub fn probe_offsets(size: usize) -> impl Iterator<Item = usize> {
    let dense = size.min(64);
    let tail = size.saturating_sub(64).max(dense);
    (0..dense).chain(tail..size).chain((64..size).step_by(4093))
}

pub struct Model {
    pub live: BTreeMap<usize, Live>,
}

impl Model {
    pub fn insert(&mut self, b: Live) {
        assert_ne!(b.p, 0);
        assert_eq!(b.p % 16, 0, "every block is 16-byte aligned");
        let usable = direct::usable_size(b.p as *const u8, "test");
        assert!(usable >= b.size, "usable {usable} < requested {}", b.size);
        // No overlap with the neighbours (by usable size).
        if let Some((_, prev)) = self.live.range(..b.p).next_back() {
            let pu = direct::usable_size(prev.p as *const u8, "test");
            assert!(prev.p + pu <= b.p, "{:#x}+{pu} overlaps {:#x}", prev.p, b.p);
        }
        if let Some((_, next)) = self.live.range(b.p..).next() {
            assert!(
                b.p + usable <= next.p,
                "{:#x}+{usable} overlaps {:#x}",
                b.p,
                next.p
            );
        }
        fill(&b);
        self.live.insert(b.p, b);
    }
}

pub fn run_ops(
    rng: &mut Rng,
    model: &mut Model,
    ops: usize,
    max_live: usize,
    outbox: Option<&Mutex<Vec<Live>>>,
) {
    for _ in 0..ops {
        let op = rng.below(100);
        if model.live.len() >= max_live || (op < 40 && !model.live.is_empty()) {
            // free (or hand to another thread) a random live block
            let k = rng.below(model.live.len() as u64) as usize;
            let key = *model.live.keys().nth(k).unwrap();
            let b = model.live.remove(&key).unwrap();
            check(&b, usize::MAX);
            match outbox {
                Some(out) if rng.below(2) == 0 => out.lock().unwrap().push(b),
                // SAFETY: a live block of the model, taken out of it: freed once.
                _ => unsafe { direct::free(b.p as *mut u8, "free") },
            }
        } else if op < 55 && !model.live.is_empty() {
            let k = rng.below(model.live.len() as u64) as usize;
            let key = *model.live.keys().nth(k).unwrap();
            let b = model.live.remove(&key).unwrap();
            let n = rng.size().max(1);
            // SAFETY: as above; realloc gives it back as `q`.
            let q = unsafe { direct::realloc(b.p as *mut u8, n, "realloc") } as usize;
            check(&Live { p: q, ..b }, n); // the common prefix survived
            model.insert(Live {
                p: q,
                size: n,
                seed: b.seed,
            });
        } else if op < 65 {
            let n = rng.size();
            let p = direct::calloc(1, n) as usize;
            // SAFETY: calloc's block of n bytes; the offsets are below n.
            let zero = probe_offsets(n).all(|off| unsafe { *((p + off) as *const u8) } == 0);
            assert!(zero, "calloc({n}) not zeroed");
            model.insert(Live {
                p,
                size: n,
                seed: rng.next() as u8,
            });
        } else if op < 72 {
            let align = 1usize << (4 + rng.below(14)); // 16 .. 128 KiB
            let n = rng.size();
            let p = direct::aligned(align, n) as usize;
            assert_eq!(p % align, 0, "aligned({align}, {n})");
            model.insert(Live {
                p,
                size: n,
                seed: rng.next() as u8,
            });
        } else {
            let n = rng.size();
            let p = direct::malloc(n) as usize;
            model.insert(Live {
                p,
                size: n,
                seed: rng.next() as u8,
            });
        }
    }
}

pub fn drain(model: &mut Model) {
    for (_, b) in std::mem::take(&mut model.live) {
        check(&b, usize::MAX);
        // SAFETY: live blocks of the model, taken out of it: each freed once.
        unsafe { direct::free(b.p as *mut u8, "free") };
    }
}
