//! The heap profile's record (`prof/`): one row per distinct sampled call stack,
//! with its estimated live bytes and blocks and the bytes and blocks
//! allocated since the profile started.
//!
//! The rows live in one mapping (`STACKS` rows of about 430 bytes, made
//! on the first start, never unmapped; untouched rows cost no memory). A
//! row is entered under `LOCK`, on the sampling path only (about once per
//! sample interval), and published by storing its hash last; counters are
//! atomics, so a sampled block's free (`release`, from any thread) and a
//! dump take no lock. A new profile (`reset`) bumps the generation and
//! zeroes the rows; a sampled block carries its profile's generation in its
//! tag, so freeing a block of an earlier profile changes nothing.
//!
//! Below the large blocks (which call `release` when a sampled block is
//! freed) and the profiler: it uses only `os` and `sync`.

use core::ptr;
use core::sync::atomic::{AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};

use crate::fault::Site;
use crate::os;
use crate::sync::SpinLock;

/// Frames kept per stack (the innermost ones).
pub(crate) const DEPTH: usize = 48;
/// Rows; the last one gathers the samples of stacks that found no room.
const STACKS: usize = 8192;
const OVERFLOW: usize = STACKS - 1;
/// Blocks are counted in 1/BLOCK_UNIT, since each sample stands for a
/// fractional number of blocks.
pub(crate) const BLOCK_UNIT: u64 = 1024;
/// Bits of a tag below the generation: the row + 1.
const ROW_BITS: u32 = 16;
const _: () = assert!(STACKS < 1 << ROW_BITS);

/// One distinct stack. `hash` is 0 until the row is published.
#[repr(C)]
pub struct Stack {
    hash: AtomicU64,
    depth: AtomicUsize,
    frames: [AtomicUsize; DEPTH],
    live_bytes: AtomicIsize,
    live_blocks: AtomicIsize,
    alloc_bytes: AtomicU64,
    alloc_blocks: AtomicU64,
}

/// What a dump reads of a row.
#[derive(Clone, Copy)]
pub struct Row {
    pub frames: [usize; DEPTH],
    pub depth: usize,
    /// The row of the samples whose stacks found no room in the table.
    pub overflow: bool,
    pub live_bytes: i64,
    pub live_blocks: i64,
    pub alloc_bytes: u64,
    pub alloc_blocks: u64,
}

static TABLE: AtomicPtr<Stack> = AtomicPtr::new(ptr::null_mut());
/// The current profile's generation (0: none yet).
static GEN: AtomicUsize = AtomicUsize::new(0);
static LOCK: SpinLock<()> = SpinLock::new(());

const TABLE_BYTES: usize = STACKS * core::mem::size_of::<Stack>();

fn table() -> *mut Stack {
    TABLE.load(Acquire)
}

/// Starts a new, empty profile. False (errno ENOMEM) if the table cannot
/// be mapped.
pub fn reset() -> bool {
    let _g = LOCK.lock();
    let t = table();
    if t.is_null() {
        let m = os::map(TABLE_BYTES, Site::ProfTable);
        if m.is_null() {
            os::set_errno(libc::ENOMEM);
            return false;
        }
        TABLE.store(m as *mut Stack, Release);
    } else {
        // SAFETY: the table is our mapping; discarding zeroes its pages
        // (rows being released meanwhile lose at most that update).
        unsafe { os::discard(t as *mut u8, TABLE_BYTES) };
    }
    GEN.fetch_add(1, Relaxed);
    true
}

fn hash(frames: &[usize]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ frames.len() as u64;
    for &f in frames {
        h = (h ^ f as u64).wrapping_mul(0x100_0000_01b3).rotate_left(29);
    }
    h | 1
}

/// Counts a sample of `bytes` bytes and `blocks`/BLOCK_UNIT blocks at
/// `frames` (innermost first); returns the tag its block must carry, for
/// `release`. None if no profile was ever started.
pub fn record(frames: &[usize], bytes: u64, blocks: u64) -> Option<usize> {
    let t = table();
    if t.is_null() {
        return None;
    }
    let frames = &frames[..frames.len().min(DEPTH)];
    let h = hash(frames);
    let (row, generation) = {
        let _g = LOCK.lock();
        let mut i = (h as usize) % OVERFLOW;
        let mut row = OVERFLOW;
        for _ in 0..OVERFLOW {
            // SAFETY: i < STACKS, in the mapping.
            let s = unsafe { &*t.add(i) };
            let sh = s.hash.load(Relaxed);
            if sh == 0 {
                for (slot, &f) in s.frames.iter().zip(frames) {
                    slot.store(f, Relaxed);
                }
                s.depth.store(frames.len(), Relaxed);
                s.hash.store(h, Release);
                row = i;
                break;
            }
            if sh == h
                && s.depth.load(Relaxed) == frames.len()
                && s.frames
                    .iter()
                    .zip(frames)
                    .all(|(a, &b)| a.load(Relaxed) == b)
            {
                row = i;
                break;
            }
            i = (i + 1) % OVERFLOW;
        }
        (row, GEN.load(Relaxed))
    };
    // SAFETY: row < STACKS.
    let s = unsafe { &*t.add(row) };
    s.live_bytes.fetch_add(bytes as isize, Relaxed);
    s.live_blocks.fetch_add(blocks as isize, Relaxed);
    s.alloc_bytes.fetch_add(bytes, Relaxed);
    s.alloc_blocks.fetch_add(blocks, Relaxed);
    Some(generation << ROW_BITS | (row + 1))
}

/// A sampled block carrying `tag` is freed: its estimate leaves the live
/// counts, if it belongs to the current profile.
pub fn release(tag: usize, bytes: u64, blocks: u64) {
    let t = table();
    if tag >> ROW_BITS != GEN.load(Relaxed) || t.is_null() {
        return;
    }
    let row = (tag & ((1 << ROW_BITS) - 1)) - 1;
    // SAFETY: rows in tags are < STACKS.
    let s = unsafe { &*t.add(row) };
    s.live_bytes.fetch_sub(bytes as isize, Relaxed);
    s.live_blocks.fetch_sub(blocks as isize, Relaxed);
}

/// Calls `f` on each row of the current profile (none if there was none).
pub fn for_each(mut f: impl FnMut(&Row)) {
    let t = table();
    if t.is_null() {
        return;
    }
    for i in 0..STACKS {
        // SAFETY: i < STACKS.
        let s = unsafe { &*t.add(i) };
        if s.hash.load(Acquire) == 0 && i != OVERFLOW {
            continue;
        }
        let mut row = Row {
            frames: [0; DEPTH],
            depth: s.depth.load(Relaxed).min(DEPTH),
            overflow: i == OVERFLOW,
            live_bytes: s.live_bytes.load(Relaxed) as i64,
            live_blocks: s.live_blocks.load(Relaxed) as i64,
            alloc_bytes: s.alloc_bytes.load(Relaxed),
            alloc_blocks: s.alloc_blocks.load(Relaxed),
        };
        if row.alloc_blocks == 0 {
            continue;
        }
        for (d, s) in row.frames.iter_mut().zip(&s.frames) {
            *d = s.load(Relaxed);
        }
        f(&row);
    }
}

pub fn lock_for_fork() {
    LOCK.lock_for_fork();
}

/// # Safety
/// Called after `lock_for_fork`, in the parent or the child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: per the contract.
    unsafe { LOCK.unlock_after_fork() };
}
