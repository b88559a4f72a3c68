//! The quarantine: freed debug blocks wait here, filled with 0xDD, before
//! they go back to the allocator underneath, so a write through a stale
//! pointer is still visible when the block leaves (and is reported then).
//!
//! A FIFO ring bounded in blocks and in bytes (`config::QUARANTINE_*`),
//! guarded by one spin lock that is never held while a block is checked or
//! released.

use crate::config::{QUARANTINE_BLOCKS, QUARANTINE_BYTES};
use crate::sync::SpinLock;

struct Ring {
    /// (address, size) of each waiting block, oldest at `head`.
    entries: [(usize, usize); QUARANTINE_BLOCKS],
    head: usize,
    len: usize,
    bytes: usize,
}

static RING: SpinLock<Ring> = SpinLock::new(Ring {
    entries: [(0, 0); QUARANTINE_BLOCKS],
    head: 0,
    len: 0,
    bytes: 0,
});

/// Adds a freed block; `release` is then called, outside the lock, for each
/// block the bounds push out (oldest first).
pub fn push(addr: usize, size: usize, mut release: impl FnMut(usize)) {
    let mut r = RING.lock();
    while r.len == QUARANTINE_BLOCKS {
        let (old, _) = pop(&mut r);
        drop(r);
        release(old);
        r = RING.lock();
    }
    let tail = (r.head + r.len) % QUARANTINE_BLOCKS;
    r.entries[tail] = (addr, size);
    r.len += 1;
    r.bytes += size;
    while r.bytes > QUARANTINE_BYTES {
        let (old, _) = pop(&mut r);
        drop(r);
        release(old);
        r = RING.lock();
    }
}

fn pop(r: &mut Ring) -> (usize, usize) {
    let e = r.entries[r.head];
    r.head = (r.head + 1) % QUARANTINE_BLOCKS;
    r.len -= 1;
    r.bytes -= e.1;
    e
}

/// Blocks and bytes waiting.
pub fn size() -> (usize, usize) {
    let r = RING.lock();
    (r.len, r.bytes)
}

pub fn lock_for_fork() {
    RING.lock_for_fork();
}

/// # Safety
/// Called after `lock_for_fork`, in the parent or the child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: per the contract.
    unsafe { RING.unlock_after_fork() };
}
