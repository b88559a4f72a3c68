//! Size classes: request size <-> class index <-> block size.
//!
//! Classes 0..32 are pymalloc's: 16, 32, .. 512 bytes. Above 512 each power of
//! two (2^k, 2^(k+1)] is split into 8 equal steps of 2^(k-3), up to 128 KiB,
//! so rounding up wastes at most 1/9 of a block. Every class is a multiple of
//! 16, and a class of size 2^k*m with m odd gives blocks aligned to
//! gcd(2^k, UNIT_SIZE) because pools start on unit boundaries.

use crate::config::*;

/// The class serving `size` bytes, or `None` above `MEDIUM_MAX`.
#[inline(always)]
pub fn class_of(size: usize) -> Option<usize> {
    if size <= SMALL_MAX {
        // size 0 is served as 16 bytes, like 1..=16.
        Some(size.saturating_sub(1) >> ALIGNMENT_SHIFT)
    } else if size <= MEDIUM_MAX {
        Some(medium_class_of(size))
    } else {
        None
    }
}

#[inline]
fn medium_class_of(size: usize) -> usize {
    // size is in (2^k, 2^(k+1)] with k >= 9, so s = size - 1 is in
    // [2^k, 2^(k+1)): its top four bits, 8 + j, say which of the 8 steps
    // of 2^(k-3) above 2^k holds `size` (step j + 1: the class is the
    // j-th of that power of two's): a `bsr`, a shift and adds.
    let s = size - 1;
    let k = (usize::BITS - 1 - s.leading_zeros()) as usize;
    let top = s >> (k - MEDIUM_STEPS_SHIFT as usize);
    SMALL_CLASSES + (k - SMALL_MAX.trailing_zeros() as usize) * MEDIUM_STEPS + top - MEDIUM_STEPS
}

/// Requests up to this size find their pool in one table load indexed by
/// the size itself (a "fast slot" per byte: the load is the only
/// instruction between the size and the pool), with no test of their class.
pub(crate) const DIRECT_MAX: usize = 2 * SMALL_MAX;
/// The fast slots of the sizes up to DIRECT_MAX (slot n: size n).
pub(crate) const DIRECT_SLOTS: usize = DIRECT_MAX + 1;
/// The classes whose blocks are at most DIRECT_MAX bytes.
pub(crate) const DIRECT_CLASSES: usize = SMALL_CLASSES + MEDIUM_STEPS;
/// Fast slots in all: one per byte up to DIRECT_MAX, then one per class.
pub(crate) const FAST_SLOTS: usize = DIRECT_SLOTS + NUM_CLASSES - DIRECT_CLASSES;

/// The fast slot of `class`, a class above DIRECT_MAX (the sizes up to
/// it use their own).
#[inline(always)]
pub(crate) const fn fast_slot_of_class(class: usize) -> usize {
    class + (DIRECT_SLOTS - DIRECT_CLASSES)
}

/// The fast slots that serve `class`: its sizes up to DIRECT_MAX, else its
/// own slot. Slot 0 serves no class: `malloc(0)` takes the slow path.
pub(crate) fn fast_slots(class: usize) -> core::ops::RangeInclusive<usize> {
    if class < DIRECT_CLASSES {
        let first = if class == 0 {
            1
        } else {
            block_size(class - 1) + 1
        };
        first..=block_size(class)
    } else {
        let s = fast_slot_of_class(class);
        s..=s
    }
}

const _: () = assert!(block_size(DIRECT_CLASSES - 1) == DIRECT_MAX);
const _: () = assert!(block_size(DIRECT_CLASSES) > DIRECT_MAX);

/// The block size of class `class` (which must be < NUM_CLASSES).
pub(crate) const fn block_size(class: usize) -> usize {
    if class < SMALL_CLASSES {
        (class + 1) * ALIGNMENT
    } else {
        let m = class - SMALL_CLASSES;
        let k = (m / MEDIUM_STEPS) + SMALL_MAX.trailing_zeros() as usize;
        let i = m % MEDIUM_STEPS + 1;
        (1 << k) + i * (1 << (k - MEDIUM_STEPS_SHIFT as usize))
    }
}

/// How many pool units a pool of `class` spans: the fewest whose tail
/// waste is under 1/16 of the pool, or failing that the count that wastes
/// least (`tightest_units`), unless such a pool holds fewer than
/// `MIN_POOL_BLOCKS` blocks (`MIN_DIRECT_POOL_BLOCKS` for the classes
/// above 512 B up to 1 KiB), or fewer than an arena's usable units can
/// hold, if that is less. Then the fewest units holding that many whose
/// pools, an arena full of them, put at least 7/8 of its usable units in
/// blocks; failing that, the count that puts most.
pub(crate) const fn pool_units(class: usize) -> usize {
    let size = block_size(class);
    let tight = tightest_units(size);
    let fit = USABLE_UNITS * UNIT_SIZE / size;
    let want = if size > SMALL_MAX && size <= DIRECT_MAX {
        MIN_DIRECT_POOL_BLOCKS
    } else {
        MIN_POOL_BLOCKS
    };
    let min_blocks = if fit < want { fit } else { want };
    if tight * UNIT_SIZE / size >= min_blocks {
        return tight;
    }
    let usable = USABLE_UNITS * UNIT_SIZE;
    let mut best = 0;
    let mut best_used = 0;
    let mut n = 1;
    while n <= USABLE_UNITS {
        let capacity = n * UNIT_SIZE / size;
        if capacity >= min_blocks {
            let used = USABLE_UNITS / n * capacity * size;
            if used * 8 >= usable * 7 {
                return n;
            }
            if used > best_used {
                best = n;
                best_used = used;
            }
        }
        n += 1;
    }
    best
}

/// The fewest units whose tail waste is under 1/16 of a pool of `size`
/// blocks, or failing that the count that wastes least.
const fn tightest_units(size: usize) -> usize {
    let mut best = 0;
    let mut best_waste = usize::MAX;
    let mut n = 1;
    while n <= USABLE_UNITS {
        let bytes = n * UNIT_SIZE;
        if bytes >= size {
            let waste = bytes % size;
            if waste * 16 <= bytes {
                return n;
            }
            // Compare waste as a fraction of the pool: waste/bytes.
            if best == 0 || waste * (best * UNIT_SIZE) < best_waste * bytes {
                best = n;
                best_waste = waste;
            }
        }
        n += 1;
    }
    best
}

/// Blocks in one pool of `class`.
pub(crate) const fn pool_capacity(class: usize) -> usize {
    pool_units(class) * UNIT_SIZE / block_size(class)
}

/// Per-class constants used on the hot paths, computed at compile time.
#[derive(Clone, Copy)]
pub struct ClassInfo {
    pub block_size: u32,
    pub capacity: u32,
    pub units: u8,
    /// The block check's multiplier: `ceil(2^64 / block_size)`, plus one
    /// when that division is exact. For an offset `off` into a pool,
    /// `block_key(off, mult)` (see there) is `off / block_size * step` when
    /// `off` is a multiple of the block size, and at least `mult` (about
    /// 2^64 / block_size) otherwise, so one comparison with `n * step`
    /// checks both that `off` is a block start and that its index is
    /// below `n`.
    pub mult: u64,
    /// `mult * block_size - 2^64`, in `1..=block_size`.
    pub step: u64,
}

/// The block check's multiplier for `size` (see `ClassInfo::mult`).
const fn block_mult(size: u64) -> u64 {
    let ceil = u64::MAX / size + 1;
    // A power of two divides 2^64: `step` would be 0.
    if ceil.wrapping_mul(size) == 0 {
        ceil + 1
    } else {
        ceil
    }
}

/// The key of offset `off` into a pool (D. Lemire, O. Kaser and N. Kurz,
/// "Faster remainder by direct computation", 2019): with
/// `off = j * size + r`, `r < size`, and `mult * size = 2^64 + step`, the
/// product is `j * step + r * mult` modulo 2^64. For the offsets of a
/// pool (a few MiB at most, far below `mult`) that sum does not wrap, so
/// it is `j * step` for a block start and at least `mult` for any other
/// offset; `step >= 1` makes it grow with `j`. An offset below the pool's
/// start wraps around to at least `mult - step` (tests:
/// `block_key_finds_block_starts_only`).
/// One multiplication, where an exact division test by an even size also
/// needs a rotation and its count.
#[inline(always)]
pub fn block_key(off: u64, mult: u64) -> u64 {
    off.wrapping_mul(mult)
}

const fn make_table() -> [ClassInfo; NUM_CLASSES] {
    let mut t = [ClassInfo {
        block_size: 0,
        capacity: 0,
        units: 0,
        mult: 0,
        step: 0,
    }; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        let size = block_size(c) as u64;
        let mult = block_mult(size);
        t[c] = ClassInfo {
            block_size: size as u32,
            capacity: pool_capacity(c) as u32,
            units: pool_units(c) as u8,
            mult,
            step: mult.wrapping_mul(size),
        };
        c += 1;
    }
    t
}

pub(crate) static CLASSES: [ClassInfo; NUM_CLASSES] = make_table();

const _: () = assert!(block_size(NUM_CLASSES - 1) == MEDIUM_MAX);
const _: () = assert!(block_size(SMALL_CLASSES - 1) == SMALL_MAX);
const _: () = {
    let mut c = 0;
    while c < NUM_CLASSES {
        assert!(block_size(c).is_multiple_of(ALIGNMENT));
        assert!(pool_units(c) >= 1 && pool_capacity(c) >= 1);
        assert!(c == 0 || block_size(c) > block_size(c - 1));
        c += 1;
    }
};

/// The layout of `class`, without a bounds check (its panic would abort
/// inside malloc).
///
/// # Safety
/// `class < NUM_CLASSES`: a class from `class_of`, a pool descriptor's
/// (see `Pool::init`) or a loop over the classes.
#[inline(always)]
pub unsafe fn info(class: usize) -> &'static ClassInfo {
    debug_assert!(class < NUM_CLASSES);
    // SAFETY: per the contract.
    unsafe { CLASSES.get_unchecked(class) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_classes_are_pymalloc() {
        assert_eq!(class_of(0), Some(0));
        assert_eq!(class_of(1), Some(0));
        assert_eq!(class_of(16), Some(0));
        assert_eq!(class_of(17), Some(1));
        assert_eq!(class_of(512), Some(31));
        for c in 0..SMALL_CLASSES {
            assert_eq!(block_size(c), 16 * (c + 1));
            assert_eq!(pool_units(c), 1);
        }
    }

    #[test]
    fn every_size_maps_to_the_smallest_fitting_class() {
        for size in 0..=MEDIUM_MAX {
            let c = class_of(size).unwrap();
            assert!(block_size(c) >= size, "size {size} class {c}");
            if c > 0 {
                assert!(
                    block_size(c - 1) < size.max(1),
                    "size {size} not in smallest class"
                );
            }
        }
        assert_eq!(class_of(MEDIUM_MAX + 1), None);
        assert_eq!(class_of(usize::MAX), None);
    }

    #[test]
    fn medium_waste_is_bounded() {
        for size in SMALL_MAX + 1..=MEDIUM_MAX {
            let b = block_size(class_of(size).unwrap());
            assert!((b - size) * 9 <= b, "size {size} block {b}");
        }
    }

    #[test]
    fn pools_hold_enough_blocks() {
        for c in 0..NUM_CLASSES {
            let fit = USABLE_UNITS * UNIT_SIZE / block_size(c);
            assert!(
                pool_capacity(c) >= MIN_POOL_BLOCKS.min(fit),
                "class {c} ({} B): {} blocks in {} units",
                block_size(c),
                pool_capacity(c),
                pool_units(c)
            );
        }
    }

    #[test]
    fn pools_up_to_one_kib() {
        for c in 0..DIRECT_CLASSES {
            if block_size(c) <= SMALL_MAX {
                // pymalloc's pools: one 16 KiB unit.
                assert_eq!(pool_units(c), 1, "class {c}");
            } else {
                assert!(pool_capacity(c) >= MIN_DIRECT_POOL_BLOCKS, "class {c}");
            }
        }
    }

    #[test]
    fn pools_waste_little() {
        for c in 0..NUM_CLASSES {
            let bytes = pool_units(c) * UNIT_SIZE;
            let waste = bytes - pool_capacity(c) * block_size(c);
            assert!(waste * 4 <= bytes, "class {c} wastes {waste} of {bytes}");
        }
    }

    #[test]
    fn every_size_has_the_fast_slot_of_its_class() {
        let mut owner = [usize::MAX; FAST_SLOTS];
        for c in 0..NUM_CLASSES {
            for s in fast_slots(c) {
                assert!(s < FAST_SLOTS, "class {c} slot {s}");
                assert_eq!(owner[s], usize::MAX, "slot {s} of two classes");
                owner[s] = c;
            }
        }
        // malloc(0) takes the slow path: slot 0 has no class.
        assert_eq!(owner[0], usize::MAX);
        // Up to DIRECT_MAX the slot is the size.
        for (n, &owner) in owner.iter().enumerate().take(DIRECT_MAX + 1).skip(1) {
            assert_eq!(owner, class_of(n).unwrap(), "size {n}");
        }
        for c in DIRECT_CLASSES..NUM_CLASSES {
            assert_eq!(owner[fast_slot_of_class(c)], c);
        }
        assert!(owner[1..].iter().all(|&c| c != usize::MAX));
    }

    #[test]
    fn block_key_finds_block_starts_only() {
        for c in 0..NUM_CLASSES {
            // SAFETY: c < NUM_CLASSES.
            let inf = unsafe { info(c) };
            let size = inf.block_size as u64;
            let cap = inf.capacity as u64;
            assert!(inf.step >= 1 && inf.step <= size, "class {c}");
            let pool_bytes = inf.units as u64 * UNIT_SIZE as u64;
            // Every offset of the pool's units, and a unit's worth on
            // either side of them.
            let unit = UNIT_SIZE as u64;
            for off in (0..pool_bytes + 2 * unit).map(|o| o.wrapping_sub(unit)) {
                let key = block_key(off, inf.mult);
                let start = off < pool_bytes && off % size == 0;
                for n in [1, cap / 2 + 1, cap] {
                    assert_eq!(
                        key < n * inf.step,
                        start && off / size < n,
                        "class {c} offset {} limit {n}",
                        off as i64
                    );
                }
                if start {
                    assert_eq!(key, off / size * inf.step, "class {c} offset {off}");
                }
            }
        }
    }
}
