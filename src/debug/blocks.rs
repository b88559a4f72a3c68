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
//! Invariants:
//! - the table is split into `SHARDS` shards by a hash of the address; each
//!   shard is an open-addressing table with linear probing, guarded by its
//!   own spin lock, so threads freeing unrelated blocks rarely meet;
//! - a slot is empty when `addr == 0`; no two slots hold the same address;
//! - every record lies between its home slot and the next empty slot
//!   (deletion shifts later records back instead of leaving tombstones);
//! - a shard's slots come from `os::map`, never from the global allocator,
//!   and its load factor stays at or below one half.

use crate::os;
use crate::sync::SpinLock;
use core::ptr;

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
const MIN_SLOTS: usize = 256;

struct Table {
    slots: *mut Record,
    /// Slot count minus one (a power of two minus one), or 0 before the first insert.
    mask: usize,
    len: usize,
}

// SAFETY: the slots are owned by the table and only reached under its lock.
unsafe impl Send for Table {}

static TABLES: [SpinLock<Table>; SHARDS] = [const {
    SpinLock::new(Table {
        slots: ptr::null_mut(),
        mask: 0,
        len: 0,
    })
}; SHARDS];

/// Blocks are 16-byte aligned, so the low four bits carry nothing; a
/// splitmix64-style finaliser spreads the rest over every bit (block
/// addresses are regular strides, which plain multiplicative hashing
/// clusters). The top bits pick the shard, the low bits the home slot.
#[inline]
fn hash(addr: usize) -> usize {
    let mut h = (addr >> 4) as u64;
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (h ^ (h >> 31)) as usize
}

#[inline]
fn shard(addr: usize) -> &'static SpinLock<Table> {
    &TABLES[hash(addr) >> (usize::BITS - SHARD_BITS)]
}

impl Table {
    #[inline]
    fn home(&self, addr: usize) -> usize {
        hash(addr) & self.mask
    }

    #[inline]
    fn slot(&mut self, i: usize) -> &mut Record {
        // SAFETY: i <= mask, and a table with a mask has mask + 1 mapped slots.
        unsafe { &mut *self.slots.add(i) }
    }

    fn find(&mut self, addr: usize) -> Option<usize> {
        if self.slots.is_null() {
            return None;
        }
        let mut i = self.home(addr);
        loop {
            match self.slot(i).addr {
                0 => return None,
                a if a == addr => return Some(i),
                _ => i = (i + 1) & self.mask,
            }
        }
    }

    /// Doubles the slots (or makes the first ones). False if mapping failed.
    fn grow(&mut self) -> bool {
        let old_slots = self.slots;
        let old_count = if old_slots.is_null() {
            0
        } else {
            self.mask + 1
        };
        let count = (old_count * 2).max(MIN_SLOTS);
        let fresh = os::map(
            count * core::mem::size_of::<Record>(),
            crate::fault::Site::DebugTable,
        ) as *mut Record;
        if fresh.is_null() {
            return false;
        }
        crate::counters::add_mapped(count * core::mem::size_of::<Record>());
        // Fresh mappings are zeroed: every slot starts empty.
        self.slots = fresh;
        self.mask = count - 1;
        for i in 0..old_count {
            // SAFETY: i < old_count, the old table's slot count.
            let r = unsafe { *old_slots.add(i) };
            if r.addr != 0 {
                let mut j = self.home(r.addr);
                while self.slot(j).addr != 0 {
                    j = (j + 1) & self.mask;
                }
                *self.slot(j) = r;
            }
        }
        if !old_slots.is_null() {
            // SAFETY: the old slots were mapped by an earlier grow with this
            // size, and nothing refers to them any more.
            unsafe {
                os::unmap(
                    old_slots as *mut u8,
                    old_count * core::mem::size_of::<Record>(),
                )
            };
            crate::counters::sub_mapped(old_count * core::mem::size_of::<Record>());
        }
        true
    }

    /// Empties slot `i`, shifting back the records after it that would
    /// otherwise be cut off from their home slot.
    fn remove_at(&mut self, mut i: usize) {
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let a = self.slot(j).addr;
            if a == 0 {
                break;
            }
            let k = self.home(a);
            // The record at j may stay if its home lies cyclically in (i, j].
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
        *self.slot(i) = EMPTY;
        self.len -= 1;
    }
}

/// Records a new block. False (nothing recorded) if the table could not grow.
pub fn insert(r: Record) -> bool {
    debug_assert!(r.addr != 0);
    let mut t = shard(r.addr).lock();
    if (t.len + 1) * 2 > t.mask + 1 && !t.grow() {
        return false;
    }
    let mut i = t.home(r.addr);
    while t.slot(i).addr != 0 {
        i = (i + 1) & t.mask;
    }
    *t.slot(i) = r;
    t.len += 1;
    true
}

/// Calls `f` with the record of `addr` (None if there is none), under the
/// shard's lock, so a check and a change of state are one atomic step.
pub fn with<R>(addr: usize, f: impl FnOnce(Option<&mut Record>) -> R) -> R {
    let mut t = shard(addr).lock();
    match t.find(addr) {
        Some(i) => f(Some(t.slot(i))),
        None => f(None),
    }
}

/// A copy of the record of `addr`, if any.
pub fn get(addr: usize) -> Option<Record> {
    with(addr, |r| r.copied())
}

/// Forgets `addr`; returns its record.
pub fn remove(addr: usize) -> Option<Record> {
    let mut t = shard(addr).lock();
    let i = t.find(addr)?;
    let r = *t.slot(i);
    t.remove_at(i);
    Some(r)
}

/// Blocks recorded (live and quarantined).
pub fn count() -> usize {
    TABLES.iter().map(|t| t.lock().len).sum()
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
