//! Over-aligned blocks of a domain with a user's hook.
//!
//! A user's `obm_allocator` has no aligned entry, yet a hook on the object
//! domain must see the `posix_memalign` family's blocks as well as their
//! frees. Such a block is therefore made from one `malloc` of the hook,
//! `align - 1` bytes larger, and the program gets the first aligned address
//! inside it. This table maps that address back to the block's start, so
//! that the hook's `free` gets the pointer its `malloc` returned; every
//! such block is recorded, also when the two are equal, so that its
//! `realloc` (a move: malloc, copy, free) and `free` go the same way
//! wherever the hook's `malloc` put it.
//!
//! Invariants: one open-addressing table with linear probing under one spin
//! lock (hooks are a slow path); a slot is empty when `addr == 0`; every
//! entry lies between its home slot and the next empty slot (deletion
//! shifts later entries back); the load stays at or below one half; the
//! slots come from `os::map`. `LIVE` counts the entries, so that frees in a
//! hooked domain skip the lock while the table is empty.

use crate::fault::Site;
use crate::os;
use crate::sync::SpinLock;
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// One over-aligned block.
#[derive(Clone, Copy)]
pub struct Entry {
    /// The address the program got (0: an empty slot).
    addr: usize,
    /// What the hook's `malloc` returned.
    pub base: usize,
    /// Bytes requested.
    pub size: usize,
}

struct Table {
    slots: *mut Entry,
    /// Slot count minus one, or 0 before the first insert.
    mask: usize,
}

// SAFETY: the slots are owned by the table and only reached under its lock.
unsafe impl Send for Table {}

static TABLE: SpinLock<Table> = SpinLock::new(Table {
    slots: ptr::null_mut(),
    mask: 0,
});
static LIVE: AtomicUsize = AtomicUsize::new(0);

const MIN_SLOTS: usize = 64;

fn home(addr: usize, mask: usize) -> usize {
    (((addr >> 4) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & mask
}

impl Table {
    fn slot(&mut self, i: usize) -> &mut Entry {
        // SAFETY: i <= mask, and a table with a mask has mask + 1 mapped slots.
        unsafe { &mut *self.slots.add(i) }
    }

    fn find(&mut self, addr: usize) -> Option<usize> {
        if self.slots.is_null() {
            return None;
        }
        let mut i = home(addr, self.mask);
        loop {
            match self.slot(i).addr {
                0 => return None,
                a if a == addr => return Some(i),
                _ => i = (i + 1) & self.mask,
            }
        }
    }

    fn place(&mut self, e: Entry) {
        let mut i = home(e.addr, self.mask);
        while self.slot(i).addr != 0 {
            i = (i + 1) & self.mask;
        }
        *self.slot(i) = e;
    }

    /// Doubles the slots (or makes the first ones). False if mapping failed.
    fn grow(&mut self) -> bool {
        let old = self.slots;
        let old_count = if old.is_null() { 0 } else { self.mask + 1 };
        let count = (old_count * 2).max(MIN_SLOTS);
        let bytes = count * core::mem::size_of::<Entry>();
        let slots = os::map(bytes, Site::HookTable) as *mut Entry;
        if slots.is_null() {
            return false;
        }
        self.slots = slots;
        self.mask = count - 1;
        for i in 0..old_count {
            // SAFETY: i < old_count, the old table's size.
            let e = unsafe { *old.add(i) };
            if e.addr != 0 {
                self.place(e);
            }
        }
        if !old.is_null() {
            // SAFETY: the old slots were mapped with this size and are no
            // longer referenced.
            unsafe { os::unmap(old as *mut u8, old_count * core::mem::size_of::<Entry>()) };
        }
        true
    }
}

/// Records the block `base` whose aligned address `addr` the program got.
/// False if the table could not grow (out of memory).
pub fn insert(addr: usize, base: usize, size: usize) -> bool {
    let mut t = TABLE.lock();
    let live = LIVE.load(Relaxed);
    if (live + 1) * 2 > t.mask + 1 && !t.grow() {
        return false;
    }
    t.place(Entry { addr, base, size });
    LIVE.store(live + 1, Relaxed);
    true
}

/// The entry of `addr`, if it is an over-aligned block.
pub fn get(addr: usize) -> Option<Entry> {
    if LIVE.load(Relaxed) == 0 {
        return None;
    }
    let mut t = TABLE.lock();
    t.find(addr).map(|i| *t.slot(i))
}

/// Removes and returns the entry of `addr`, if it is an over-aligned block.
pub fn remove(addr: usize) -> Option<Entry> {
    if LIVE.load(Relaxed) == 0 {
        return None;
    }
    let mut t = TABLE.lock();
    let mut hole = t.find(addr)?;
    let e = *t.slot(hole);
    t.slot(hole).addr = 0;
    // Shift back the entries of the run after the hole that may move.
    let mask = t.mask;
    let mut i = (hole + 1) & mask;
    while t.slot(i).addr != 0 {
        let h = home(t.slot(i).addr, mask);
        // The entry at i may fill the hole if its home is not in (hole, i].
        if (i.wrapping_sub(h) & mask) >= (i.wrapping_sub(hole) & mask) {
            let moved = *t.slot(i);
            *t.slot(hole) = moved;
            t.slot(i).addr = 0;
            hole = i;
        }
        i = (i + 1) & mask;
    }
    LIVE.fetch_sub(1, Relaxed);
    Some(e)
}

pub fn lock_for_fork() {
    TABLE.lock_for_fork();
}

/// # Safety
/// Called after `lock_for_fork`, in the parent or the child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: per the contract.
    unsafe { TABLE.unlock_after_fork() };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_until_removed() {
        // Addresses that share home slots, removed in an order that shifts.
        let addrs: Vec<usize> = (1..=500).map(|i| i * 4096 + 64).collect();
        for &a in &addrs {
            assert!(insert(a, a - 64, a / 3));
        }
        for &a in &addrs {
            let e = get(a).unwrap();
            assert_eq!((e.base, e.size), (a - 64, a / 3));
        }
        for &a in addrs.iter().step_by(2) {
            assert_eq!(remove(a).unwrap().base, a - 64);
            assert!(get(a).is_none());
        }
        for &a in addrs.iter().skip(1).step_by(2) {
            assert_eq!(get(a).unwrap().base, a - 64, "lost after shifting");
            assert!(remove(a).is_some());
        }
        assert_eq!(LIVE.load(Relaxed), 0);
        assert!(get(addrs[0]).is_none());
    }
}
