//! An open-addressing hash table keyed by block address, for the hooks'
//! side records (the debug hooks' block records, the over-aligned blocks
//! of hooked domains). It never allocates through the global allocator:
//! its slots are mappings of its own.
//!
//! Invariants:
//! - a slot is empty when its key (`Keyed::addr`) is 0; no two slots hold
//!   the same key;
//! - linear probing from the home slot (`hash(addr) & mask`), and every
//!   entry lies between its home slot and the next empty slot: deletion
//!   shifts later entries back instead of leaving tombstones;
//! - the load stays at or below one half; the slot count is a power of two
//!   (`mask + 1`), or there are no slots yet (`mask == 0`, null `slots`).
//!
//! The table is not synchronised: its users keep it under a lock.

use crate::fault::Site;
use crate::os;
use core::ptr;

/// An entry: its key is a block address, 0 for an empty slot.
pub(crate) trait Keyed: Copy {
    const EMPTY: Self;
    fn addr(&self) -> usize;
}

/// Blocks are 16-byte aligned, so the low four bits carry nothing; a
/// splitmix64-style finaliser spreads the rest over every bit (block
/// addresses are regular strides, which plain multiplicative hashing
/// clusters). Users may take the top bits too (to pick a shard).
#[inline]
pub(crate) fn hash(addr: usize) -> usize {
    let mut h = (addr >> 4) as u64;
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (h ^ (h >> 31)) as usize
}

const MIN_SLOTS: usize = 64;

pub(crate) struct AddrTable<T: Keyed> {
    slots: *mut T,
    /// Slot count minus one, or 0 before the first insert.
    mask: usize,
    len: usize,
    /// Where its mappings are counted for fault injection.
    site: Site,
}

// SAFETY: the slots are owned by the table; users keep it under a lock.
unsafe impl<T: Keyed> Send for AddrTable<T> {}

impl<T: Keyed> AddrTable<T> {
    pub(crate) const fn new(site: Site) -> Self {
        AddrTable {
            slots: ptr::null_mut(),
            mask: 0,
            len: 0,
            site,
        }
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn slot(&mut self, i: usize) -> &mut T {
        // SAFETY: i <= mask, and a table with a mask has mask + 1 mapped slots.
        unsafe { &mut *self.slots.add(i) }
    }

    fn find(&mut self, addr: usize) -> Option<usize> {
        if self.slots.is_null() {
            return None;
        }
        let mut i = hash(addr) & self.mask;
        loop {
            match self.slot(i).addr() {
                0 => return None,
                a if a == addr => return Some(i),
                _ => i = (i + 1) & self.mask,
            }
        }
    }

    fn place(&mut self, e: T) {
        let mut i = hash(e.addr()) & self.mask;
        while self.slot(i).addr() != 0 {
            i = (i + 1) & self.mask;
        }
        *self.slot(i) = e;
    }

    /// Doubles the slots (or makes the first ones). False if mapping failed.
    fn grow(&mut self) -> bool {
        let old = self.slots;
        let old_count = if old.is_null() { 0 } else { self.mask + 1 };
        let count = (old_count * 2).max(MIN_SLOTS);
        let bytes = count * core::mem::size_of::<T>();
        // Fresh mappings are zeroed, and a zeroed entry is empty (key 0).
        let fresh = os::map(bytes, self.site) as *mut T;
        if fresh.is_null() {
            return false;
        }
        crate::counters::add_mapped(bytes);
        self.slots = fresh;
        self.mask = count - 1;
        for i in 0..old_count {
            // SAFETY: i < old_count, the old table's slot count.
            let e = unsafe { *old.add(i) };
            if e.addr() != 0 {
                self.place(e);
            }
        }
        if !old.is_null() {
            let old_bytes = old_count * core::mem::size_of::<T>();
            // SAFETY: the old slots were mapped by an earlier grow with this
            // size, and nothing refers to them any more.
            unsafe { os::unmap(old as *mut u8, old_bytes) };
            crate::counters::sub_mapped(old_bytes);
        }
        true
    }

    /// Adds `e` (whose key is not in the table). False (nothing added) if
    /// the table could not grow.
    pub(crate) fn insert(&mut self, e: T) -> bool {
        debug_assert!(e.addr() != 0 && self.find(e.addr()).is_none());
        if (self.len + 1) * 2 > self.mask + 1 && !self.grow() {
            return false;
        }
        self.place(e);
        self.len += 1;
        true
    }

    /// The entry of `addr`, if any.
    pub(crate) fn get_mut(&mut self, addr: usize) -> Option<&mut T> {
        let i = self.find(addr)?;
        Some(self.slot(i))
    }

    /// Removes and returns the entry of `addr`, if any.
    pub(crate) fn remove(&mut self, addr: usize) -> Option<T> {
        let mut i = self.find(addr)?;
        let e = *self.slot(i);
        // Shift back the entries after the hole that its emptying would cut
        // off from their home slot.
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let a = self.slot(j).addr();
            if a == 0 {
                break;
            }
            let k = hash(a) & self.mask;
            // The entry at j may stay if its home lies cyclically in (i, j].
            let stays = if i <= j {
                i < k && k <= j
            } else {
                i < k || k <= j
            };
            if !stays {
                *self.slot(i) = *self.slot(j);
                i = j;
            }
        }
        *self.slot(i) = T::EMPTY;
        self.len -= 1;
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy)]
    struct E(usize, usize);
    impl Keyed for E {
        const EMPTY: E = E(0, 0);
        fn addr(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn insert_find_remove_through_growth() {
        let mut t = AddrTable::<E>::new(Site::HookTable);
        let base = 0x7e00_0000_0000usize;
        let n = 5000;
        for k in 0..n {
            assert!(t.insert(E(base + k * 48, k)));
        }
        assert_eq!(t.len(), n);
        for k in 0..n {
            assert_eq!(t.get_mut(base + k * 48).map(|e| e.1), Some(k));
        }
        assert!(t.get_mut(base + 16).is_none());
        // Remove every other one; the rest must stay reachable (backward shift).
        for k in (0..n).step_by(2) {
            assert_eq!(t.remove(base + k * 48).map(|e| e.1), Some(k));
        }
        for k in 0..n {
            assert_eq!(t.get_mut(base + k * 48).is_some(), k % 2 == 1, "k = {k}");
        }
        for k in (1..n).step_by(2) {
            assert!(t.remove(base + k * 48).is_some());
        }
        assert!(t.remove(base).is_none());
        assert_eq!(t.len(), 0);
    }
}
