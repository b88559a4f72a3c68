//! Pools: a run of units in an arena serving one size class.
//!
//! A pool keeps two lists of free blocks:
//! - `free`: the owner's list. `malloc` pops from it, the owner's `free`
//!   pushes on it (pymalloc's freeblock list: the block freed last, likely
//!   still in cache, is handed out next), and when it runs dry the owner
//!   refills it (`pop_slow`) from `thread_free`, or carves fresh blocks,
//!   one page's worth at a time. (A third list for the owner's frees, as
//!   mimalloc's pages keep, made `malloc` find its list empty, and take a
//!   mispredicted branch, every few calls: 141k against 67k mispredicts
//!   and 2.06 M against 1.56 M L1 misses on a million ring pairs.)
//! - `thread_free`: blocks freed by other threads, pushed with a CAS. The
//!   owner takes the whole list with one atomic operation, when `free` is
//!   empty (`take_thread_free`) or when it drains its heap's
//!   list of pools with remote frees (`take_thread_free_dequeued`). Bit 0
//!   of the word, `QUEUED`, says that the pool is on that heap list or
//!   that a pusher is about to put it there: the CAS that links a block
//!   sets it, and the pusher that found it clear registers the pool. Only
//!   the drain clears it, in the swap that takes the list, so a pool is on
//!   the heap list at most once, and a pool is not released while the bit
//!   is set: a pusher may still be on its way to registering it. The bit
//!   lives in the list's word so that the owner cannot take a pusher's
//!   block without seeing, in the same atomic read, that the pusher is
//!   still to register the pool. The word's top 16 bits count the list's
//!   blocks (every push adds one in its CAS), so that the owner takes the
//!   list without walking it: the blocks were written by other threads,
//!   and walking them chains one cache miss per block.
//!
//! Invariants (owner thread only, except the fields marked shared):
//! - Blocks with an index below `carved` have been carved: each is handed
//!   out or on one of the two lists. Blocks above it were never written
//!   (pymalloc's lazy carving, at page granularity). `carved <= capacity`.
//! - Every block on one of the lists holds the pool's freed key (the
//!   descriptor's address, `Pool::freed_key`) in its second word; a block
//!   in the user's hands does not (unless the user stored that exact
//!   value), because every hand-out clears it.
//! - `state` holds two things, so that `free` tests both with one
//!   decrement and one sign test: in its low 31 bits `used`, the blocks
//!   handed out and not yet freed *to this pool's owner* (a block on
//!   `thread_free` still counts until the owner takes the list; 0 means
//!   the pool is empty), and in bit 31 `OUT_OF_QUEUE`, set exactly while
//!   the pool is not linked in its heap's queue for its class. A pool
//!   leaves the queue only when it has no free block.
//! - `carved_limit` is `carved * step`, the bound `is_carved_block`
//!   compares a block key with (`size_class::block_key`).
//! - Shared, read by any thread holding a live block of the pool: `class`,
//!   the `*_shared` copy of the pool's layout (start, the block check's
//!   multiplier, the bound of its capacity) and the owner heap's address.
//!   They change only while the pool holds no live block. `start` and
//!   `mult` are the owner's copies, plain cells that its fast path folds
//!   into its arithmetic.
//! - The descriptor of a unit that holds no pool reads as all zero, so
//!   `carved == 0` and every block-start check against it fails.

use crate::config::*;
use crate::size_class::{self, block_key};
use core::cell::Cell;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};

/// The overlay of a free block: the list link, then the freed key.
#[repr(C)]
pub struct Block {
    pub next: *mut Block,
    pub freed_key: usize,
}

/// A pool descriptor. It lives in its arena's header, one per unit. 128
/// bytes: the first cache line holds what the owner's `malloc` and `free`
/// touch (the allocation count included), the second what other threads
/// write and what only the slow paths use.
#[repr(C, align(64))]
pub struct Pool {
    pub free: Cell<*mut Block>,
    /// `used | OUT_OF_QUEUE` (see the module invariants). Written by the
    /// owner only; an atomic so that statistics may read it.
    pub state: AtomicU32,
    pub class: AtomicU8,
    pub start: Cell<usize>,
    pub mult: Cell<u64>,
    pub carved_limit: Cell<u64>,
    pub carved: Cell<usize>,
    /// Blocks `malloc`'s fast path handed out of this pool since it was
    /// made (an owner-only counter beside the fields it touches anyway;
    /// folded into the heap's per-class count when the pool is released).
    pub allocs: AtomicU64,
    /// Links in the owner heap's queue for `class`.
    pub next: Cell<*mut Pool>,
    /// Blocks freed by other threads: the first one's address, `QUEUED`
    /// in bit 0, their count from bit `COUNT_SHIFT` (shared).
    thread_free: AtomicUsize,
    /// Link in the owner heap's list of pools with remote frees (shared).
    pub remote_next: AtomicPtr<Pool>,
    /// The pool's layout for other threads' checks (`is_block`): the same
    /// as `start` and `mult`, and the class's `capacity * step`, written
    /// when the pool is made.
    limit_shared: AtomicU64,
    start_shared: AtomicUsize,
    mult_shared: AtomicU64,
    /// Owner only: an empty pool its heap keeps in the queue beyond the
    /// head (`Heap::keep_empty`).
    pub kept: Cell<bool>,
    /// Owner only: the heap's last look at its empty pools found this one
    /// empty (`Heap::release_idle_pools`); the next look releases it if it
    /// is still empty. Cleared by an allocation's slow path (`pop_slow`),
    /// and by a look that finds the pool in use.
    pub idle: Cell<bool>,
    /// The other link in the owner heap's queue (slow paths only).
    pub prev: Cell<*mut Pool>,
    /// The address of the heap that owns the pool's arena (shared): what a
    /// remote free reads instead of the arena header. An arena keeps its
    /// owner for as long as it holds pools (heaps are adopted whole).
    owner_shared: AtomicUsize,
}

pub(crate) const POOL_SIZE_SHIFT: u32 = 7;
/// Bit of `Pool::state` set while the pool is out of its heap's queue.
pub(crate) const OUT_OF_QUEUE: u32 = 1 << 31;
/// Bit of `Pool::thread_free`: on the heap's remote list, or about to be.
const QUEUED: usize = 1;
const _: () = assert!(QUEUED == 1, "push_thread_free's `or` sets bit 0");
/// `Pool::thread_free` counts its list's blocks from this bit; below it,
/// the first block's address (below 2^48, as the arena map assumes).
const COUNT_SHIFT: u32 = 48;
const COUNT_ONE: usize = 1 << COUNT_SHIFT;
/// The bits of `Pool::thread_free` that hold the first block's address.
const LIST_MASK: usize = (COUNT_ONE - 1) & !QUEUED;

/// Whether a `Pool::thread_free` word holds a block: its count is not 0
/// exactly when its list is not empty, so any bit but `QUEUED` says so (a
/// compare with 2, where `LIST_MASK` would need a 64-bit immediate).
#[inline(always)]
const fn holds_blocks(word: usize) -> bool {
    word & !QUEUED != 0
}
const _: () = assert!(
    USABLE_UNITS * UNIT_SIZE / ALIGNMENT < 1 << (usize::BITS - COUNT_SHIFT),
    "a pool's blocks must fit the count of thread_free"
);
const _: () = assert!(core::mem::size_of::<Pool>() == 1 << POOL_SIZE_SHIFT);
const _: () = assert!(core::mem::size_of::<Block>() <= ALIGNMENT);

impl Pool {
    pub const fn unused() -> Pool {
        Pool {
            free: Cell::new(ptr::null_mut()),
            state: AtomicU32::new(0),
            class: AtomicU8::new(0),
            start: Cell::new(0),
            mult: Cell::new(0),
            carved_limit: Cell::new(0),
            carved: Cell::new(0),
            allocs: AtomicU64::new(0),
            next: Cell::new(ptr::null_mut()),
            thread_free: AtomicUsize::new(0),
            remote_next: AtomicPtr::new(ptr::null_mut()),
            limit_shared: AtomicU64::new(0),
            start_shared: AtomicUsize::new(0),
            mult_shared: AtomicU64::new(0),
            kept: Cell::new(false),
            idle: Cell::new(false),
            prev: Cell::new(ptr::null_mut()),
            owner_shared: AtomicUsize::new(0),
        }
    }

    /// Makes this (unused) descriptor serve `class` from `start`, in an
    /// arena of the heap at address `owner`.
    ///
    /// # Safety
    /// `class < NUM_CLASSES`; `start` is the first byte of the class's
    /// pool-sized run of units, which this pool alone will hold; the
    /// caller owns the descriptor, which holds no pool (no other thread
    /// uses it: see `Arena::make_pool`).
    pub unsafe fn init(&self, class: usize, start: *mut u8, owner: usize) {
        // SAFETY: class < NUM_CLASSES per the contract.
        let info = unsafe { size_class::info(class) };
        self.free.set(ptr::null_mut());
        self.state.store(OUT_OF_QUEUE, Relaxed);
        self.class.store(class as u8, Relaxed);
        self.start.set(start as usize);
        self.mult.set(info.mult);
        self.carved_limit.set(0);
        self.carved.set(0);
        self.allocs.store(0, Relaxed);
        self.kept.set(false);
        self.idle.set(false);
        self.next.set(ptr::null_mut());
        self.prev.set(ptr::null_mut());
        self.thread_free.store(0, Relaxed);
        self.remote_next.store(ptr::null_mut(), Relaxed);
        self.limit_shared
            .store(info.capacity as u64 * info.step, Relaxed);
        self.start_shared.store(start as usize, Relaxed);
        self.mult_shared.store(info.mult, Relaxed);
        self.owner_shared.store(owner, Relaxed);
    }

    /// The address of the heap owning the pool's arena (see
    /// `owner_shared`); 0 for an unused descriptor. Any thread holding a
    /// live block of the pool may ask.
    #[inline(always)]
    pub fn owner(&self) -> usize {
        self.owner_shared.load(Relaxed)
    }

    /// The value written into the second word of every free block of this
    /// pool (see the module invariants): a block that already holds it when
    /// freed is a suspected double free, confirmed against the lists by the
    /// owner and reported at once by another thread, which cannot inspect
    /// them. The descriptor's address: at hand on every path that frees,
    /// different between processes (ASLR) and between pools, and not a
    /// value user data holds by chance (it points into obmem's metadata).
    #[inline(always)]
    pub fn freed_key(&self) -> usize {
        self as *const Pool as usize
    }

    /// Back to the state of a unit without a pool (all zero).
    ///
    /// # Safety
    /// Called by the pool's owner (as `pop`); the pool holds no live block
    /// and is on no list (its heap's queue or remote list).
    pub unsafe fn clear(&self) {
        // SAFETY: class 0 exists; per the contract the descriptor is the
        // caller's alone, and all-zero layout fields make every block check
        // fail.
        unsafe { self.init(0, ptr::null_mut(), 0) };
        self.state.store(0, Relaxed);
        self.mult.set(0);
        self.limit_shared.store(0, Relaxed);
        self.mult_shared.store(0, Relaxed);
    }

    /// Blocks handed out and not yet freed to the owner.
    #[inline(always)]
    pub fn used(&self) -> u32 {
        self.state.load(Relaxed) & !OUT_OF_QUEUE
    }

    pub fn is_empty(&self) -> bool {
        self.used() == 0
    }

    pub fn in_queue(&self) -> bool {
        self.state.load(Relaxed) & OUT_OF_QUEUE == 0
    }

    /// Sets or clears `OUT_OF_QUEUE`.
    ///
    /// # Safety
    /// Called by the pool's owner (as `pop`): the owner's `free` updates
    /// `state` with a plain read-modify-write, so nobody else may write it.
    pub unsafe fn set_in_queue(&self, queued: bool) {
        let s = self.state.load(Relaxed);
        self.state.store(
            if queued {
                s & !OUT_OF_QUEUE
            } else {
                s | OUT_OF_QUEUE
            },
            Relaxed,
        );
    }

    /// `used += d` by the owner (`d` may be negative).
    #[inline(always)]
    fn add_used(&self, d: i32) {
        self.state
            .store(self.state.load(Relaxed).wrapping_add(d as u32), Relaxed);
    }

    #[inline(always)]
    pub fn class(&self) -> usize {
        self.class.load(Relaxed) as usize
    }

    /// The block size of the pool's class. Sound for any descriptor: its
    /// class is below NUM_CLASSES (only `init` writes it, from a class its
    /// caller vouches for; 0 in an unused descriptor).
    #[inline(always)]
    pub fn block_size(&self) -> usize {
        // SAFETY: a descriptor's class is < NUM_CLASSES (above).
        unsafe { size_class::info(self.class()) }.block_size as usize
    }

    /// The capacity of the pool's class; sound for any descriptor, as
    /// `block_size`.
    #[inline(always)]
    pub fn capacity(&self) -> usize {
        // SAFETY: as in `block_size`.
        unsafe { size_class::info(self.class()) }.capacity as usize
    }

    /// Whether `p` (a pointer into this pool's units) is a carved block
    /// start: handed out or free, never beyond what the pool has carved.
    /// An unused descriptor (all zero) rejects every pointer.
    ///
    /// # Safety
    /// Called by the pool's owner (as `pop`), or on the placeholder
    /// `EMPTY_POOL`, which is never written: it reads owner-only cells.
    #[inline(always)]
    pub unsafe fn is_carved_block(&self, p: *const u8) -> bool {
        let off = (p as usize).wrapping_sub(self.start.get()) as u64;
        block_key(off, self.mult.get()) < self.carved_limit.get()
    }

    /// Whether `p` (a pointer into this pool's units) is a block start
    /// within the pool's capacity. Any thread holding a live block of the
    /// pool may ask: it reads only the shared copy of the layout.
    #[cfg(not(target_arch = "x86_64"))]
    #[inline]
    pub fn is_block(&self, p: *const u8) -> bool {
        let off = (p as usize).wrapping_sub(self.start_shared.load(Relaxed)) as u64;
        block_key(off, self.mult_shared.load(Relaxed)) < self.limit_shared.load(Relaxed)
    }

    /// As above, with each load of the layout folded into the instruction
    /// that uses it (LLVM loads an atomic into a register first, three
    /// instructions more on the remote free's path).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub fn is_block(&self, p: *const u8) -> bool {
        // SAFETY: reads three aligned words of this descriptor, the shared
        // layout any thread may read; computes `block_key` as above.
        unsafe {
            core::arch::asm!(
                "mov {x}, {p}",
                "sub {x}, qword ptr [{pool} + {start}]",
                "imul {x}, qword ptr [{pool} + {mult}]",
                "cmp {x}, qword ptr [{pool} + {limit}]",
                "jae {no}",
                p = in(reg) p,
                pool = in(reg) self,
                x = out(reg) _,
                start = const core::mem::offset_of!(Pool, start_shared),
                mult = const core::mem::offset_of!(Pool, mult_shared),
                limit = const core::mem::offset_of!(Pool, limit_shared),
                no = label { return false; },
                options(nostack, readonly),
            );
        }
        true
    }

    /// Pops a block from the allocation list; null when it is empty.
    ///
    /// # Safety
    /// Called by the pool's owner: the thread whose heap holds the pool, or
    /// the thread holding the registry lock while that heap is abandoned.
    #[inline(always)]
    pub unsafe fn pop(&self) -> *mut u8 {
        let b = self.free.get();
        if b.is_null() {
            return b as *mut u8;
        }
        // SAFETY: blocks on the free list are free blocks of this pool, each
        // at least 16 bytes, linked through their first word. The key is
        // cleared so that freeing the block later does not look like a
        // double free.
        unsafe {
            self.free.set((*b).next);
            (*b).freed_key = 0;
        }
        self.add_used(1);
        b as *mut u8
    }

    /// Takes the blocks other threads freed (a producer's pool) and pops
    /// one, counting it: the rest of `malloc`'s fast path, out
    /// of line. Never null: only the owner takes from `thread_free`, so a
    /// list the owner saw non-empty is still non-empty at its take (which
    /// lets the fast path end in a tail call, with no stack frame).
    ///
    /// # Safety
    /// As `pop`; the allocation list is empty and `has_thread_free()` was
    /// true.
    #[cold]
    #[inline(never)]
    pub unsafe fn pop_thread_free(&self) -> NonNull<u8> {
        // SAFETY: the caller is the owner (contract).
        let n = unsafe { self.take_thread_free() };
        debug_assert!(n > 0);
        crate::counters::count(&self.allocs);
        // SAFETY: as above; the list holds at least the n > 0 blocks taken.
        unsafe { NonNull::new_unchecked(self.pop()) }
    }

    /// Pops a block from the allocation list, refilled from other
    /// threads' frees if need be; null when both are empty (the pool may
    /// still have blocks to carve).
    ///
    /// # Safety
    /// As `pop`.
    pub unsafe fn pop_freed(&self) -> *mut u8 {
        self.idle.set(false);
        // SAFETY: the caller is the owner (contract).
        unsafe {
            if self.free.get().is_null() {
                self.take_thread_free();
            }
            self.pop()
        }
    }

    /// Whether a block is on the allocation list or `thread_free`. Owner
    /// only (as `pop`).
    pub fn has_freed(&self) -> bool {
        !self.free.get().is_null() || self.has_thread_free()
    }

    /// Whether the pool has blocks it never carved.
    pub fn can_carve(&self) -> bool {
        self.carved.get() < self.capacity()
    }

    /// Refills the allocation list, from other threads' frees or by
    /// carving, and pops. Null when the pool has no free block.
    ///
    /// # Safety
    /// Called by the pool's owner: the thread whose heap holds the pool, or
    /// the thread holding the registry lock while that heap is abandoned.
    pub unsafe fn pop_slow(&self) -> *mut u8 {
        // SAFETY: the caller is the owner (contract).
        unsafe {
            let b = self.pop_freed();
            if !b.is_null() {
                return b;
            }
            self.pop_carved()
        }
    }

    /// Carves a page's worth of blocks onto the empty allocation list and
    /// pops one; null when the pool has none left to carve.
    ///
    /// # Safety
    /// As `pop`; the allocation list is empty.
    pub unsafe fn pop_carved(&self) -> *mut u8 {
        self.carve();
        // SAFETY: the caller is the owner (contract).
        unsafe { self.pop() }
    }

    /// Carves the blocks that start in the page of the next uncarved block
    /// (at least one) onto the allocation list, which must be empty.
    fn carve(&self) {
        let key = self.freed_key();
        // SAFETY: a descriptor's class is < NUM_CLASSES (see `block_size`).
        let info = unsafe { size_class::info(self.class()) };
        let size = info.block_size as usize;
        let carved = self.carved.get();
        let left = info.capacity as usize - carved;
        if left == 0 {
            return;
        }
        let first = self.start.get() + carved * size;
        let page_end = (first & !(PAGE_SIZE - 1)) + PAGE_SIZE;
        let n = (page_end - first).div_ceil(size).clamp(1, left);
        let mut next: *mut Block = ptr::null_mut();
        for i in (0..n).rev() {
            let b = (first + i * size) as *mut Block;
            // SAFETY: block `carved + i` lies below the pool's capacity, in
            // units this pool owns; no one else references an uncarved block.
            unsafe {
                (*b).next = next;
                (*b).freed_key = key;
            }
            next = b;
        }
        self.free.set(next);
        self.carved.set(carved + n);
        self.carved_limit.set((carved + n) as u64 * info.step);
    }

    /// Pushes a block freed by the owner. True if the pool now needs its
    /// heap's attention: it became empty, or it is out of the queue.
    ///
    /// # Safety
    /// `b` is a block of this pool handed out and not freed since.
    #[inline(always)]
    pub unsafe fn push_local(&self, b: *mut u8) -> bool {
        let key = self.freed_key();
        let b = b as *mut Block;
        // SAFETY: per the contract, b is a block of >= 16 bytes we own again.
        unsafe {
            (*b).next = self.free.get();
            (*b).freed_key = key;
        }
        self.free.set(b);
        self.release_one()
    }

    /// `used -= 1` (used was >= 1): true when the new state is 0 (empty) or
    /// has OUT_OF_QUEUE set (negative as an i32), when the heap must act.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn release_one(&self) -> bool {
        // One `dec` in memory and a branch on its flags (the compiler reads
        // the state again to test it). `jle` after `dec` is taken when the
        // old state, signed, is <= 1: used was 1, or OUT_OF_QUEUE is set.
        // SAFETY: the state is a u32 only the owner (the caller) writes;
        // other threads' relaxed loads see it before or after the `dec`.
        unsafe {
            core::arch::asm!(
                "dec dword ptr [{pool} + {state}]",
                "jle {act}",
                pool = in(reg) self,
                state = const core::mem::offset_of!(Pool, state),
                act = label { return true; },
                options(nostack),
            );
        }
        false
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    fn release_one(&self) -> bool {
        self.add_used(-1);
        (self.state.load(Relaxed) as i32) <= 0
    }

    /// Pushes a block freed by another thread. True if the caller must
    /// register the pool on its heap's list (its push set `QUEUED`).
    ///
    /// # Safety
    /// `b` is a live block of this pool, marked with the freed key by the caller.
    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    pub unsafe fn push_thread_free(&self, b: *mut Block) -> bool {
        debug_assert!((b as usize) & !LIST_MASK == 0);
        let mut cur = self.thread_free.load(Relaxed);
        loop {
            // SAFETY: the block is ours to link until the owner takes it.
            unsafe { (*b).next = (cur & LIST_MASK) as *mut Block };
            // One more block: the count cannot overflow (a pool has fewer
            // than 2^16 blocks, asserted with COUNT_SHIFT).
            let new = (cur & !LIST_MASK | QUEUED) + COUNT_ONE + b as usize;
            // Release: the owner's Acquire take sees the link and the key.
            match self
                .thread_free
                .compare_exchange_weak(cur, new, Release, Relaxed)
            {
                Ok(_) => return cur & QUEUED == 0,
                Err(c) => cur = c,
            }
        }
    }

    /// As above, with the CAS's expected value kept in `rax`, where a
    /// failed `cmpxchg` leaves the current one (LLVM moves it around), and
    /// the new word computed from it in four instructions: the count and
    /// `QUEUED` of the old word (`rax` less its address), `QUEUED` set,
    /// plus one block and the block's address (`COUNT_ONE + b`, computed
    /// once; a block start is 16-byte aligned, so the additions carry
    /// into nothing).
    ///
    /// # Safety
    /// As above.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub unsafe fn push_thread_free(&self, b: *mut Block) -> bool {
        debug_assert!((b as usize) & !LIST_MASK == 0);
        let old: usize;
        // SAFETY: the block is ours to link until the owner takes it; the
        // list word is an aligned AtomicUsize of this descriptor. `lock
        // cmpxchg` is a full barrier: the owner's Acquire take sees the
        // link and the key (the Release of the portable version).
        unsafe {
            core::arch::asm!(
                "mov {mask}, {list_mask}",
                "mov {add}, {count_one}",
                "add {add}, {b}",
                "mov rax, qword ptr [{pool} + {tf}]",
                "2:",
                "mov {link}, rax",
                "and {link}, {mask}",
                "mov qword ptr [{b}], {link}",
                "mov {new}, rax",
                "sub {new}, {link}",
                "or {new}, 1",
                "add {new}, {add}",
                "lock cmpxchg qword ptr [{pool} + {tf}], {new}",
                "jne 2b",
                b = in(reg) b,
                pool = in(reg) self,
                mask = out(reg) _,
                add = out(reg) _,
                new = out(reg) _,
                link = out(reg) _,
                out("rax") old,
                tf = const core::mem::offset_of!(Pool, thread_free),
                list_mask = const LIST_MASK,
                count_one = const COUNT_ONE,
                options(nostack),
            );
        }
        old & QUEUED == 0
    }

    /// Whether other threads' frees wait on `thread_free`.
    #[inline(always)]
    pub fn has_thread_free(&self) -> bool {
        holds_blocks(self.thread_free.load(Relaxed))
    }

    /// The blocks on `thread_free`.
    pub fn thread_free_list(&self) -> *mut Block {
        (self.thread_free.load(Acquire) & LIST_MASK) as *mut Block
    }

    /// Whether the pool is on its heap's remote list, or about to be: it
    /// must not be released meanwhile.
    pub fn is_remote_queued(&self) -> bool {
        self.thread_free.load(Acquire) & QUEUED != 0
    }

    /// Takes every block other threads freed into this pool onto
    /// `free`; returns how many.
    ///
    /// # Safety
    /// Called by the pool's owner: the thread whose heap holds the pool, or
    /// the thread holding the registry lock while that heap is abandoned.
    pub unsafe fn take_thread_free(&self) -> u32 {
        let mut cur = self.thread_free.load(Relaxed);
        loop {
            if !holds_blocks(cur) {
                return 0;
            }
            // Keep `QUEUED`: a pusher may still have to register the pool.
            match self
                .thread_free
                .compare_exchange_weak(cur, cur & QUEUED, Acquire, Relaxed)
            {
                Ok(_) => break,
                Err(c) => cur = c,
            }
        }
        self.splice_thread_free(cur)
    }

    /// As `take_thread_free`, for a pool the drain took off its heap's
    /// remote list: clears `QUEUED` in the same swap, so that the next
    /// pusher registers the pool again.
    ///
    /// # Safety
    /// As `take_thread_free`; the pool is off the remote list.
    pub unsafe fn take_thread_free_dequeued(&self) -> u32 {
        let cur = self.thread_free.swap(0, Acquire);
        self.splice_thread_free(cur)
    }

    /// Puts the list of a word taken from `thread_free` in front of
    /// `free`; returns how many blocks it held. Onto an empty `free` (the
    /// common case: the allocation list ran dry), without reading the
    /// blocks; else after walking to the list's tail.
    fn splice_thread_free(&self, taken: usize) -> u32 {
        let list = (taken & LIST_MASK) as *mut Block;
        let n = (taken >> COUNT_SHIFT) as u32;
        debug_assert_eq!(list.is_null(), n == 0);
        if list.is_null() {
            return 0;
        }
        let free = self.free.get();
        if !free.is_null() {
            let mut tail = list;
            // SAFETY: blocks on the list are free blocks of this pool,
            // linked through their first word; pushers are done writing
            // them (the take's Acquire).
            unsafe {
                while !(*tail).next.is_null() {
                    tail = (*tail).next;
                }
                (*tail).next = free;
            }
        }
        self.free.set(list);
        self.add_used(-(n as i32));
        n
    }

    /// Forgets the free blocks of an empty pool and carves it from its
    /// start again, so that its pages may be discarded. False if nothing
    /// was carved (the pages are untouched already).
    ///
    /// # Safety
    /// Called by the pool's owner: the thread whose heap holds the pool, or
    /// the thread holding the registry lock while that heap is abandoned.
    pub unsafe fn rewind(&self) -> bool {
        debug_assert!(self.is_empty() && !self.has_thread_free());
        if self.carved.get() == 0 {
            return false;
        }
        self.free.set(ptr::null_mut());
        self.carved.set(0);
        self.carved_limit.set(0);
        true
    }

    /// True if `b` is on one of this pool's lists (the double-free check).
    /// Other threads may be pushing on `thread_free` meanwhile, which only
    /// adds blocks in front of the ones walked.
    ///
    /// # Safety
    /// Called by the pool's owner (as `pop`): nobody else may walk `free`,
    /// whose blocks the owner hands out and rewrites.
    pub unsafe fn is_free(&self, b: *const u8) -> bool {
        let on = |mut cur: *mut Block| {
            let mut steps = 0;
            while !cur.is_null() && steps <= self.capacity() {
                if cur as *const u8 == b {
                    return true;
                }
                // SAFETY: list blocks are free blocks of this pool.
                cur = unsafe { (*cur).next };
                steps += 1;
            }
            false
        };
        on(self.free.get()) || on(self.thread_free_list())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The owner-only calls of a pool the test made and alone uses.
    struct Owned<'a>(&'a Pool);
    fn owned(p: &Pool) -> Owned<'_> {
        Owned(p)
    }
    impl Owned<'_> {
        fn pop(&self) -> *mut u8 {
            // SAFETY: the test thread is the pool's only user.
            unsafe { self.0.pop() }
        }
        fn pop_slow(&self) -> *mut u8 {
            // SAFETY: as in `pop`.
            unsafe { self.0.pop_slow() }
        }
        fn take_thread_free(&self) -> u32 {
            // SAFETY: as in `pop`.
            unsafe { self.0.take_thread_free() }
        }
        fn rewind(&self) -> bool {
            // SAFETY: as in `pop`.
            unsafe { self.0.rewind() }
        }
        fn is_carved_block(&self, p: *const u8) -> bool {
            // SAFETY: as in `pop`.
            unsafe { self.0.is_carved_block(p) }
        }
        fn is_free(&self, b: *const u8) -> bool {
            // SAFETY: as in `pop`.
            unsafe { self.0.is_free(b) }
        }
        fn set_in_queue(&self, queued: bool) {
            // SAFETY: as in `pop`.
            unsafe { self.0.set_in_queue(queued) }
        }
    }
    use crate::size_class::class_of;

    fn pool_in(mem: &mut Vec<u8>, class: usize) -> (Pool, *mut u8) {
        let start = ((mem.as_mut_ptr() as usize + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)) as *mut u8;
        let pool = Pool::unused();
        // SAFETY: a class from `class_of`; `mem` holds a page-aligned unit
        // (a pool of the small classes the tests use), the pool's alone,
        // and the descriptor is the test's.
        unsafe { pool.init(class, start, 0) };
        (pool, start)
    }

    #[test]
    fn carving_is_lazy_by_page_then_lists_are_lifo() {
        let class = class_of(48).unwrap();
        // SAFETY: a class from `class_of`.
        let cap = unsafe { size_class::info(class) }.capacity as usize;
        let mut mem = vec![0u8; UNIT_SIZE + PAGE_SIZE];
        let (pool, start) = pool_in(&mut mem, class);
        assert!(owned(&pool).pop().is_null(), "nothing carved yet");
        let a = owned(&pool).pop_slow();
        assert_eq!(a, start);
        // One page of 48-byte blocks carved: 4096 / 48 rounded up.
        assert_eq!(pool.carved.get(), 86);
        let b = owned(&pool).pop();
        assert_eq!(b as usize, start as usize + 48);
        assert!(owned(&pool).is_carved_block(a) && owned(&pool).is_carved_block(b));
        assert!(
            !owned(&pool).is_carved_block(b.wrapping_add(16)),
            "not a block start"
        );
        assert!(
            !owned(&pool).is_carved_block(start.wrapping_add(86 * 48)),
            "an uncarved block is not handed out"
        );
        assert!(!pool.in_queue(), "a new pool is not queued");
        assert!(
            // SAFETY: a is a live block of the pool.
            unsafe { pool.push_local(a) },
            "out of the queue: the heap must act"
        );
        owned(&pool).set_in_queue(true);
        assert!(owned(&pool).is_free(a) && !owned(&pool).is_free(b));
        assert_eq!(pool.used(), 1);
        // The owner's free goes on the allocation list: handed out next.
        assert_eq!(owned(&pool).pop(), a, "the block freed last comes first");
        let mut n = 2;
        loop {
            let p = owned(&pool).pop();
            if p.is_null() {
                break;
            }
            assert_ne!(p, a);
            n += 1;
        }
        assert_eq!(n, 86, "the rest of the first page's blocks");
        while !owned(&pool).pop_slow().is_null() {
            n += 1;
        }
        assert_eq!(n, cap);
        assert_eq!(pool.carved.get(), cap);
        assert_eq!(pool.used() as usize, cap);
        // SAFETY: a is live again.
        assert!(!unsafe { pool.push_local(a) }, "queued and not empty");
    }

    #[test]
    fn thread_frees_are_taken_in_one_swap() {
        let class = class_of(16).unwrap();
        let mut mem = vec![0u8; UNIT_SIZE + PAGE_SIZE];
        let (pool, _) = pool_in(&mut mem, class);
        let blocks: Vec<*mut u8> = (0..10).map(|_| owned(&pool).pop_slow()).collect();
        for (i, &b) in blocks.iter().enumerate() {
            // SAFETY: live blocks of the pool, each pushed once.
            let first = unsafe { pool.push_thread_free(b as *mut Block) };
            assert_eq!(first, i == 0, "only the first push registers the pool");
        }
        assert!(owned(&pool).is_free(blocks[3]));
        assert_eq!(pool.used(), 10);
        assert_eq!(owned(&pool).take_thread_free(), 10);
        assert_eq!(pool.used(), 0);
        assert!(!pool.has_thread_free());
        // Empty, but the first pusher may not have registered the pool yet:
        // the owner's own take keeps it queued, so it is not released.
        assert!(pool.is_remote_queued());
        assert_eq!(owned(&pool).take_thread_free(), 0);
        // SAFETY: as in `owned`; the pool is off the (imaginary) remote list.
        assert_eq!(unsafe { pool.take_thread_free_dequeued() }, 0);
        assert!(!pool.is_remote_queued());
        assert!(owned(&pool).rewind());
        assert!(!owned(&pool).is_free(blocks[3]));
        // The next push registers the pool again; the drain's take clears it.
        let b = owned(&pool).pop_slow();
        // SAFETY: a live block of the pool, pushed once.
        assert!(unsafe { pool.push_thread_free(b as *mut Block) });
        // SAFETY: as above.
        assert_eq!(unsafe { pool.take_thread_free_dequeued() }, 1);
        assert!(!pool.is_remote_queued() && pool.used() == 0);
    }

    #[test]
    fn thread_frees_are_counted_in_the_list_word() {
        let class = class_of(512).unwrap();
        let mut mem = vec![0u8; UNIT_SIZE + PAGE_SIZE];
        let (pool, _) = pool_in(&mut mem, class);
        // The first page: eight blocks of 512 bytes, all handed out, so
        // that the allocation list is empty when the owner takes the list.
        let blocks: Vec<*mut u8> = (0..8).map(|_| owned(&pool).pop_slow()).collect();
        assert!(owned(&pool).pop().is_null());
        for &b in &blocks[..5] {
            // SAFETY: live blocks of the pool, each pushed once.
            unsafe { pool.push_thread_free(b as *mut Block) };
        }
        assert_eq!(pool.thread_free.load(Relaxed) >> COUNT_SHIFT, 5);
        assert_eq!(pool.thread_free_list() as *mut u8, blocks[4]);
        assert_eq!(owned(&pool).take_thread_free(), 5);
        assert_eq!(pool.used(), 3);
        assert_eq!(
            pool.thread_free.load(Relaxed),
            QUEUED,
            "the take leaves no count"
        );
        // Spliced without a walk, in push order reversed.
        for &b in blocks[..5].iter().rev() {
            assert_eq!(owned(&pool).pop(), b);
        }
        assert!(owned(&pool).pop().is_null());
        // Onto a non-empty allocation list: walked to the tail.
        // SAFETY: a live block of the pool.
        unsafe { pool.push_local(blocks[7]) };
        for &b in &blocks[..2] {
            // SAFETY: live blocks of the pool, each pushed once.
            unsafe { pool.push_thread_free(b as *mut Block) };
        }
        // SAFETY: as in `owned`; off the (imaginary) remote list.
        assert_eq!(unsafe { pool.take_thread_free_dequeued() }, 2);
        assert_eq!(pool.thread_free.load(Relaxed), 0);
        assert_eq!(owned(&pool).pop(), blocks[1]);
        assert_eq!(owned(&pool).pop(), blocks[0]);
        assert_eq!(owned(&pool).pop(), blocks[7]);
        assert!(owned(&pool).pop().is_null());
        assert_eq!(pool.used() as usize, blocks.len());
    }

    #[test]
    fn an_unused_descriptor_rejects_every_pointer() {
        let pool = Pool::unused();
        for p in [0usize, 16, 4096, 0x7fff_0000_0000] {
            assert!(!owned(&pool).is_carved_block(p as *const u8));
        }
    }
}
