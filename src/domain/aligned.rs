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
//! One `AddrTable` under one spin lock (hooks are a slow path). `LIVE`
//! counts its entries, so that frees in a hooked domain skip the lock while
//! the table is empty.

use crate::addr_table::{AddrTable, Keyed};
use crate::fault::Site;
use crate::sync::SpinLock;
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

impl Keyed for Entry {
    const EMPTY: Entry = Entry {
        addr: 0,
        base: 0,
        size: 0,
    };
    fn addr(&self) -> usize {
        self.addr
    }
}

static TABLE: SpinLock<AddrTable<Entry>> = SpinLock::new(AddrTable::new(Site::HookTable));
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Records the block `base` whose aligned address `addr` the program got.
/// False if the table could not grow (out of memory).
pub fn insert(addr: usize, base: usize, size: usize) -> bool {
    let mut t = TABLE.lock();
    if !t.insert(Entry { addr, base, size }) {
        return false;
    }
    LIVE.store(t.len(), Relaxed);
    true
}

/// The entry of `addr`, if it is an over-aligned block.
pub fn get(addr: usize) -> Option<Entry> {
    if LIVE.load(Relaxed) == 0 {
        return None;
    }
    TABLE.lock().get_mut(addr).copied()
}

/// Removes and returns the entry of `addr`, if it is an over-aligned block.
pub fn remove(addr: usize) -> Option<Entry> {
    if LIVE.load(Relaxed) == 0 {
        return None;
    }
    let mut t = TABLE.lock();
    let e = t.remove(addr)?;
    LIVE.store(t.len(), Relaxed);
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
