//! The record of every block the debug hooks have handed out and not yet
//! given back to the allocator underneath: a hash table keyed by the
//! block's address.
//!
//! It is the out-of-band truth the hooks check a pointer against. A block's
//! own header can be overwritten by the bug being hunted, and blocks
//! allocated before the hooks were installed carry no header at all; a
//! pointer is a debug block exactly when it has a record here, and its size,
//! domain and state are read from the record, never trusted from memory the
//! program can write.
//!
//! The table is split into `SHARDS` shards by the top bits of the
//! address's hash; each shard is an `AddrTable` (see its invariants) under
//! its own spin lock, so threads freeing unrelated blocks rarely meet.

use crate::addr_table::{self, AddrTable, Keyed};
use crate::fault::Site;
use crate::sync::SpinLock;

/// What the hooks know of one block.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct Record {
    /// The address handed to the program (0: an empty slot).
    pub addr: usize,
    /// Bytes requested.
    pub size: usize,
    /// Allocation serial number (1 for the first debug block).
    pub serial: u64,
    /// Bytes from the underlying block's start to `addr`.
    pub offset: u32,
    /// The `obm_domain` it was allocated through.
    pub domain: u8,
    /// Freed by the program and waiting in the quarantine.
    pub freed: bool,
}

const EMPTY: Record = Record {
    addr: 0,
    size: 0,
    serial: 0,
    offset: 0,
    domain: 0,
    freed: false,
};

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

impl Keyed for Record {
    const EMPTY: Record = EMPTY;
    fn addr(&self) -> usize {
        self.addr
    }
}

static TABLES: [SpinLock<AddrTable<Record>>; SHARDS] =
    [const { SpinLock::new(AddrTable::new(Site::DebugTable)) }; SHARDS];

#[inline]
fn shard(addr: usize) -> &'static SpinLock<AddrTable<Record>> {
    &TABLES[addr_table::hash(addr) >> (usize::BITS - SHARD_BITS)]
}

/// Records a new block. False (nothing recorded) if the table could not grow.
pub fn insert(r: Record) -> bool {
    shard(r.addr).lock().insert(r)
}

/// Calls `f` with the record of `addr` (None if there is none), under the
/// shard's lock, so a check and a change of state are one atomic step.
pub fn with<R>(addr: usize, f: impl FnOnce(Option<&mut Record>) -> R) -> R {
    f(shard(addr).lock().get_mut(addr))
}

/// A copy of the record of `addr`, if any.
pub fn get(addr: usize) -> Option<Record> {
    with(addr, |r| r.copied())
}

/// Forgets `addr`; returns its record.
pub fn remove(addr: usize) -> Option<Record> {
    shard(addr).lock().remove(addr)
}

/// Blocks recorded (live and quarantined).
pub fn count() -> usize {
    TABLES.iter().map(|t| t.lock().len()).sum()
}

pub fn lock_for_fork() {
    for t in &TABLES {
        t.lock_for_fork();
    }
}

/// # Safety
/// Called after `lock_for_fork`, in the parent or the child.
pub unsafe fn unlock_after_fork() {
    for t in &TABLES {
        // SAFETY: per the contract.
        unsafe { t.unlock_after_fork() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(addr: usize) -> Record {
        Record {
            addr,
            size: addr / 16,
            ..EMPTY
        }
    }

    #[test]
    fn insert_find_remove_through_growth() {
        // Addresses far from any real block, so other tests cannot collide.
        let base = 0x7e00_0000_0000usize;
        let n = 5000;
        for k in 0..n {
            assert!(insert(rec(base + k * 48)));
        }
        for k in 0..n {
            assert_eq!(
                get(base + k * 48).map(|r| r.size),
                Some((base + k * 48) / 16)
            );
        }
        assert!(get(base + 16).is_none());
        // Remove every other one; the rest must stay reachable (backward shift).
        for k in (0..n).step_by(2) {
            assert!(remove(base + k * 48).is_some());
        }
        for k in 0..n {
            assert_eq!(get(base + k * 48).is_some(), k % 2 == 1, "k = {k}");
        }
        for k in (1..n).step_by(2) {
            assert!(remove(base + k * 48).is_some());
        }
        assert!(remove(base).is_none());
    }
}
