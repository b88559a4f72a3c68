//! Pools: a run of units in an arena serving one size class.
//!
//! A pool hands out blocks from two sources: its free list (blocks freed by
//! the owning thread, LIFO) and its bump pointer, which carves never-used
//! blocks off the untouched tail one at a time, so a pool's memory is not
//! written before it is needed (pymalloc's lazy carving).
//!
//! Invariants (owner thread only, except the fields marked shared):
//! - `start <= bump <= limit`, `limit == start + capacity * block_size`; every
//!   block below `bump` has been handed out at least once.
//! - `used` counts blocks handed out and not yet freed *to this pool*; a block
//!   freed by another thread still counts until the owner drains its remote
//!   list. `used == 0` means the pool is empty.
//! - `in_queue` is true exactly while the pool is linked in its heap's queue
//!   for its class; a pool out of the queue is full (no free block, bump at
//!   limit).
//! - Shared (read by any thread, relaxed): `class` is `NO_CLASS` while the
//!   unit is free, and `head_offset` gives the distance in units back to the
//!   pool's first unit. Both change only while the pool holds no live block.

use crate::config::*;
use crate::size_class::{self, INV_SHIFT};
use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{AtomicU8, Ordering::Relaxed};

pub(crate) const NO_CLASS: u8 = u8::MAX;

/// The overlay of a free block: the list link, then a marker that makes a
/// double free cheap to suspect (verified by scanning the free list).
#[repr(C)]
pub struct Block {
    pub next: *mut Block,
    pub freed_key: usize,
}

/// Written into every block on a free list or a remote list, and cleared
/// whenever a block is handed out: a block that already holds it when freed
/// is a suspected double free (confirmed against the lists by the owner,
/// reported at once by another thread, which cannot inspect them).
#[inline(always)]
pub fn freed_key() -> usize {
    // The address of a private static, scrambled: differs between processes
    // (ASLR) and is unlikely to appear in user data.
    (&FREED_KEY_ANCHOR as *const u8 as usize) ^ 0x9e37_79b9_7f4a_7c15
}
static FREED_KEY_ANCHOR: u8 = 0;

/// A pool descriptor. It lives in its arena's header, one per unit, so the
/// pool's memory is found from the descriptor's address (`arena::pool_start`).
/// 64 bytes, so the descriptor index is a shift.
#[repr(C, align(64))]
pub struct Pool {
    pub class: AtomicU8,
    pub head_offset: AtomicU8,
    // Owner only (see the module invariants): `Cell`s, so the owner mutates
    // through a shared reference while other threads read the atomics.
    pub in_queue: Cell<bool>,
    pub used: Cell<u32>,
    pub free: Cell<*mut Block>,
    pub bump: Cell<*mut u8>,
    pub limit: Cell<*mut u8>,
    /// Links in the owner heap's queue for `class`.
    pub next: Cell<*mut Pool>,
    pub prev: Cell<*mut Pool>,
}

impl Pool {
    pub const fn unused() -> Pool {
        Pool {
            class: AtomicU8::new(NO_CLASS),
            head_offset: AtomicU8::new(0),
            in_queue: Cell::new(false),
            used: Cell::new(0),
            free: Cell::new(ptr::null_mut()),
            bump: Cell::new(ptr::null_mut()),
            limit: Cell::new(ptr::null_mut()),
            next: Cell::new(ptr::null_mut()),
            prev: Cell::new(ptr::null_mut()),
        }
    }

    /// Makes this (free) pool serve `class` from `start`.
    pub fn init(&self, class: usize, start: *mut u8) {
        let info = size_class::info(class);
        self.class.store(class as u8, Relaxed);
        self.head_offset.store(0, Relaxed);
        self.in_queue.set(false);
        self.used.set(0);
        self.free.set(ptr::null_mut());
        self.bump.set(start);
        self.limit
            .set(start.wrapping_add(info.capacity as usize * info.block_size as usize));
        self.next.set(ptr::null_mut());
        self.prev.set(ptr::null_mut());
    }

    #[inline(always)]
    pub fn class(&self) -> usize {
        self.class.load(Relaxed) as usize
    }

    #[inline(always)]
    pub fn block_size(&self) -> usize {
        size_class::info(self.class()).block_size as usize
    }

    #[inline(always)]
    pub fn capacity(&self) -> usize {
        size_class::info(self.class()).capacity as usize
    }

    /// Pops a block, from the free list first, then from the untouched tail.
    /// Null when the pool is full.
    #[inline(always)]
    pub fn pop(&self) -> *mut u8 {
        let b = self.free.get();
        if !b.is_null() {
            // SAFETY: blocks on the free list are free blocks of this pool,
            // each at least 16 bytes, whose first word is the link. The key is
            // cleared so freeing the block later does not look like a double free.
            unsafe {
                self.free.set((*b).next);
                (*b).freed_key = 0;
            }
            self.used.set(self.used.get() + 1);
            return b as *mut u8;
        }
        let b = self.bump.get();
        if b < self.limit.get() {
            self.bump.set(b.wrapping_add(self.block_size()));
            self.used.set(self.used.get() + 1);
            // SAFETY: b is a block of this pool (below limit), >= 16 bytes.
            // Memory of an earlier pool may hold a stale key at this address;
            // every handed-out block starts with the key cleared.
            unsafe { (*(b as *mut Block)).freed_key = 0 };
            return b;
        }
        ptr::null_mut()
    }

    /// Pushes a block freed by the owner.
    ///
    /// # Safety
    /// `b` is a block of this pool handed out and not freed since.
    #[inline(always)]
    pub unsafe fn push(&self, b: *mut u8) {
        let b = b as *mut Block;
        // SAFETY: per the contract, b is a block of >= 16 bytes we own again.
        unsafe {
            (*b).next = self.free.get();
            (*b).freed_key = freed_key();
        }
        self.free.set(b);
        self.used.set(self.used.get() - 1);
    }

    #[cfg(test)]
    pub fn is_full(&self) -> bool {
        self.free.get().is_null() && self.bump.get() >= self.limit.get()
    }

    pub fn is_empty(&self) -> bool {
        self.used.get() == 0
    }

    /// Forgets the free list of an empty pool and carves it from `start`
    /// again, so that its pages may be discarded. False if nothing was
    /// carved since (the pages are untouched already).
    pub fn rewind(&self, start: *mut u8) -> bool {
        debug_assert!(self.is_empty());
        if self.bump.get() == start {
            return false;
        }
        self.free.set(ptr::null_mut());
        self.bump.set(start);
        true
    }

    /// True if `b` is on this pool's free list (the double-free check).
    pub fn free_list_contains(&self, b: *const u8) -> bool {
        let mut cur = self.free.get();
        let mut steps = 0;
        while !cur.is_null() && steps <= self.capacity() {
            if cur as *const u8 == b {
                return true;
            }
            // SAFETY: free-list blocks are free blocks of this pool.
            cur = unsafe { (*cur).next };
            steps += 1;
        }
        false
    }

    /// Whether `p` is the start of a block of this pool (which begins at
    /// `start`) handed out at some time. Reads only the shared fields, plus
    /// `bump` when the caller is the owner.
    #[inline(always)]
    pub fn is_block_start(&self, start: *const u8, p: *const u8, owner: bool) -> bool {
        let class = self.class.load(Relaxed);
        if class == NO_CLASS {
            return false;
        }
        let info = size_class::info(class as usize);
        let off = (p as usize).wrapping_sub(start as usize) as u64;
        // The owner knows how far the pool is carved (`bump` never passes
        // the last block); others check against the pool's capacity.
        let in_range = if owner {
            p >= start && (p as usize) < self.bump.get() as usize
        } else {
            off < (info.capacity as u64) * info.block_size as u64
        };
        in_range && ((off * info.inv) >> INV_SHIFT) * info.block_size as u64 == off
    }
}

const _: () = assert!(core::mem::size_of::<Block>() <= ALIGNMENT);
const _: () = assert!(core::mem::size_of::<Pool>() == 64);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size_class::class_of;

    #[test]
    fn lazy_carving_then_free_list() {
        let class = class_of(48).unwrap();
        let cap = size_class::info(class).capacity as usize;
        let mut mem = vec![0u8; UNIT_SIZE + 16];
        let start = ((mem.as_mut_ptr() as usize + 15) & !15) as *mut u8;
        let pool = Pool::unused();
        pool.init(class, start);
        // Carving touches blocks in address order and only on demand.
        let a = pool.pop();
        let b = pool.pop();
        assert_eq!(a, start);
        assert_eq!(b as usize, start as usize + 48);
        assert_eq!(pool.bump.get() as usize, start as usize + 96);
        assert!(pool.is_block_start(start, a, true) && pool.is_block_start(start, b, true));
        assert!(!pool.is_block_start(start, b.wrapping_add(16), true));
        assert!(
            !pool.is_block_start(start, pool.bump.get(), true),
            "uncarved block is not handed out"
        );
        // LIFO reuse of freed blocks before carving more.
        unsafe { pool.push(a) };
        assert!(pool.free_list_contains(a));
        assert!(!pool.free_list_contains(b));
        assert_eq!(pool.used.get(), 1);
        assert_eq!(pool.pop(), a);
        let mut n = 2;
        while !pool.pop().is_null() {
            n += 1;
        }
        assert_eq!(n, cap);
        assert!(pool.is_full());
        assert_eq!(pool.used.get() as usize, cap);
    }
}
