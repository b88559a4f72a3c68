//! "Is this pointer ours?": a two-level radix tree over the address space at
//! arena granularity (CPython 3.10+ does the same for its arenas).
//!
//! A 48-bit address splits into | 14 bits: root index | 16 bits: leaf index |
//! 18 bits: offset in the arena |. The root is a static array of leaf
//! pointers (128 KiB of .bss, untouched until used); a leaf is 64 KiB of
//! one-byte entries, mapped on first use and never freed, so a lookup is two
//! loads and needs no lock. An entry is non-zero exactly while the 256 KiB
//! chunk starting at that address holds an arena or a large block header.

use crate::config::ARENA_SHIFT;
use crate::os;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

const ADDRESS_BITS: u32 = 48;
const LEAF_BITS: u32 = 16;
const ROOT_BITS: u32 = ADDRESS_BITS - ARENA_SHIFT - LEAF_BITS;
const LEAF_LEN: usize = 1 << LEAF_BITS;
const ROOT_LEN: usize = 1 << ROOT_BITS;

type Leaf = [AtomicU8; LEAF_LEN];

static ROOT: [AtomicPtr<Leaf>; ROOT_LEN] = [const { AtomicPtr::new(ptr::null_mut()) }; ROOT_LEN];

/// What a chunk holds (the map's entry values).
pub(crate) const CHUNK_NONE: u8 = 0;
pub(crate) const CHUNK_ARENA: u8 = 1;
pub(crate) const CHUNK_LARGE: u8 = 2;
/// A large block aligned to an arena or more: its header is one arena back.
pub(crate) const CHUNK_LARGE_BEHIND: u8 = 3;
/// A chunk of a region of large spans: a block's header is just before it.
pub(crate) const CHUNK_SPAN: u8 = 4;

#[inline(always)]
fn split(addr: usize) -> Option<(usize, usize)> {
    if addr >> ADDRESS_BITS != 0 {
        return None;
    }
    let key = addr >> ARENA_SHIFT;
    Some((key >> LEAF_BITS, key & (LEAF_LEN - 1)))
}

/// The kind of chunk containing `addr` (CHUNK_NONE if not ours).
#[inline(always)]
pub fn lookup(addr: usize) -> u8 {
    let Some((r, l)) = split(addr) else {
        return CHUNK_NONE;
    };
    // SAFETY: r < ROOT_LEN because addr < 2^48.
    let leaf = unsafe { ROOT.get_unchecked(r) }.load(Ordering::Acquire);
    if leaf.is_null() {
        return CHUNK_NONE;
    }
    // SAFETY: a non-null root entry points to a leaf that is never freed,
    // and l < LEAF_LEN by construction.
    unsafe { (*leaf).get_unchecked(l) }.load(Ordering::Acquire)
}

/// Records that the chunk at `addr` holds `kind`. Returns false if a leaf
/// could not be mapped (the caller then fails the allocation).
pub fn set(addr: usize, kind: u8) -> bool {
    let Some((r, l)) = split(addr) else {
        return false;
    };
    let slot = &ROOT[r];
    let mut leaf = slot.load(Ordering::Acquire);
    if leaf.is_null() {
        let fresh =
            os::map(core::mem::size_of::<Leaf>(), crate::fault::Site::ArenaMap) as *mut Leaf;
        if fresh.is_null() {
            return false;
        }
        match slot.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                crate::counters::add_mapped(core::mem::size_of::<Leaf>());
                leaf = fresh
            }
            Err(winner) => {
                // SAFETY: `fresh` was mapped above and never published.
                unsafe { os::unmap(fresh as *mut u8, core::mem::size_of::<Leaf>()) };
                leaf = winner;
            }
        }
    }
    // SAFETY: leaf is a published, never-freed leaf; l < LEAF_LEN.
    unsafe { (*leaf)[l].store(kind, Ordering::Release) };
    true
}

/// Forgets the chunk at `addr` (its leaf already exists).
pub fn clear(addr: usize) {
    let Some((r, l)) = split(addr) else { return };
    let leaf = ROOT[r].load(Ordering::Acquire);
    if !leaf.is_null() {
        // SAFETY: as in `set`.
        unsafe { (*leaf)[l].store(CHUNK_NONE, Ordering::Release) };
    }
}

/// Calls `f` with the address of every chunk whose entry is `kind`.
pub fn for_each(kind: u8, mut f: impl FnMut(usize)) {
    for (r, slot) in ROOT.iter().enumerate() {
        let leaf = slot.load(Ordering::Acquire);
        if leaf.is_null() {
            continue;
        }
        // SAFETY: a published leaf is never freed.
        for (l, e) in unsafe { &*leaf }.iter().enumerate() {
            if e.load(Ordering::Acquire) == kind {
                f(((r << LEAF_BITS) | l) << ARENA_SHIFT);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ARENA_SIZE;

    #[test]
    fn set_lookup_clear() {
        // An address range nobody maps in a test: far above the heap but below 2^47.
        let base = 0x5a00_0000_0000usize;
        assert_eq!(lookup(base), CHUNK_NONE);
        assert!(set(base, CHUNK_ARENA));
        assert!(set(base + ARENA_SIZE, CHUNK_LARGE));
        assert_eq!(lookup(base), CHUNK_ARENA);
        assert_eq!(lookup(base + ARENA_SIZE - 1), CHUNK_ARENA);
        assert_eq!(lookup(base + ARENA_SIZE), CHUNK_LARGE);
        assert_eq!(lookup(base + 2 * ARENA_SIZE), CHUNK_NONE);
        assert_eq!(lookup(base - 1), CHUNK_NONE);
        clear(base);
        assert_eq!(lookup(base), CHUNK_NONE);
        clear(base + ARENA_SIZE);
        assert_eq!(lookup(usize::MAX), CHUNK_NONE);
        assert_eq!(lookup(1 << 48), CHUNK_NONE);
        assert!(!set(1 << 48, CHUNK_ARENA));
    }
}
