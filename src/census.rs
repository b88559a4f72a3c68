//! The object census: live objects and bytes per type, kept up to date as
//! objects are created and destroyed, so `obm_census` is a read of a table.
//!
//! The table is a static open-addressing hash of type pointers (no
//! allocation, untouched pages stay untouched). A type keeps its slot once
//! entered, so the create and destroy paths find it with a shift, a mask
//! and, almost always, one probe. Objects are created and destroyed under the
//! object model's one-thread-at-a-time rule (docs/API.md §3, `obm_lock`), so
//! the counters are updated with relaxed loads and stores, not atomic
//! read-modify-writes; only entering a new type uses a compare-and-swap,
//! so that two threads breaking that rule cannot share a slot.
//!
//! Bytes are the usable size of each object's memory block, the
//! collector's 16-byte header included: what the objects really occupy.
//! When the table is full (`SLOTS` types) further types are counted
//! together under a NULL type.

use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::*};

/// A type, as the census sees it: an address that tells types apart
/// (an `obm_type` pointer; the census never looks inside).
pub type TypeKey = *const c_void;

const SLOTS: usize = 4096;

struct Entry {
    ty: AtomicPtr<c_void>,
    objects: AtomicUsize,
    bytes: AtomicUsize,
}

// An initializer of the table's slots: each copy is a distinct slot.
#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Entry = Entry {
    ty: AtomicPtr::new(ptr::null_mut()),
    objects: AtomicUsize::new(0),
    bytes: AtomicUsize::new(0),
};

static TABLE: [Entry; SLOTS] = [EMPTY; SLOTS];
/// Types that found no free slot (the table is full).
static OVERFLOW: Entry = EMPTY;

/// The slot `t` hashes to, if `t` holds it (the common case: one load).
#[inline(always)]
fn first_slot(t: TypeKey) -> Option<&'static Entry> {
    // The address's low bits: types are structs of at least 56 bytes, so
    // types defined together get distinct, neighbouring slots; unrelated
    // ones that collide are probed past.
    let i = (t as usize >> 4) & (SLOTS - 1);
    // SAFETY: i < SLOTS (masked).
    let e = unsafe { TABLE.get_unchecked(i) };
    core::ptr::eq(e.ty.load(Relaxed), t).then_some(e)
}

/// The slot of `t`, entered if new.
fn entry(t: TypeKey) -> &'static Entry {
    let mut i = (t as usize >> 4) & (SLOTS - 1);
    for _ in 0..SLOTS {
        // SAFETY: i < SLOTS (masked).
        let e = unsafe { TABLE.get_unchecked(i) };
        let cur = e.ty.load(Relaxed);
        if core::ptr::eq(cur, t) {
            return e;
        }
        if cur.is_null() {
            return enter(i, t);
        }
        i = (i + 1) & (SLOTS - 1);
    }
    &OVERFLOW
}

#[cold]
fn enter(mut i: usize, t: TypeKey) -> &'static Entry {
    for _ in 0..SLOTS {
        let e = &TABLE[i];
        match e
            .ty
            .compare_exchange(ptr::null_mut(), t as *mut c_void, Relaxed, Relaxed)
        {
            Ok(_) => return e,
            Err(cur) if core::ptr::eq(cur, t) => return e,
            Err(_) => i = (i + 1) & (SLOTS - 1),
        }
    }
    &OVERFLOW
}

#[inline(always)]
fn add(c: &AtomicUsize, n: usize) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// `created` if `t` holds the slot it hashes to (almost always), with no
/// call; false, nothing done, otherwise.
#[inline(always)]
pub fn created_fast(t: TypeKey, bytes: usize) -> bool {
    match first_slot(t) {
        Some(e) => {
            count(e, 1, bytes);
            true
        }
        None => false,
    }
}

/// Counts a new object of `t` whose memory block is `bytes` long.
#[inline(always)]
pub fn created(t: TypeKey, bytes: usize) {
    match first_slot(t) {
        Some(e) => count(e, 1, bytes),
        None => count_slow(t, 1, bytes),
    }
}

/// `destroyed` if `t` holds the slot it hashes to, with no call; false,
/// nothing done, otherwise.
#[inline(always)]
pub fn destroyed_fast(t: TypeKey, bytes: usize) -> bool {
    match first_slot(t) {
        Some(e) => {
            count(e, usize::MAX, bytes.wrapping_neg());
            true
        }
        None => false,
    }
}

/// Uncounts a destroyed object of `t` whose memory block was `bytes` long.
#[inline(always)]
pub fn destroyed(t: TypeKey, bytes: usize) {
    match first_slot(t) {
        Some(e) => count(e, usize::MAX, bytes.wrapping_neg()),
        None => count_slow(t, usize::MAX, bytes.wrapping_neg()),
    }
}

#[inline(always)]
fn count(e: &Entry, objects: usize, bytes: usize) {
    add(&e.objects, objects);
    add(&e.bytes, bytes);
}

/// `count` for a type past its first slot, or new. Out of line (and a
/// tail call): the probe loop would make object creation and destruction
/// save registers.
#[cold]
#[inline(never)]
fn count_slow(t: TypeKey, objects: usize, bytes: usize) {
    count(entry(t), objects, bytes);
}

/// Calls `f(type, objects, bytes)` for each type with live objects, most
/// bytes first (a NULL type: the types beyond the table's capacity);
/// returns how many.
pub fn sorted(mut f: impl FnMut(TypeKey, usize, usize)) -> usize {
    // Selection by "largest below the last one visited": quadratic in the
    // number of types, but needs no buffer (this is malloc).
    let key = |e: &Entry| {
        (
            e.bytes.load(Relaxed),
            e.objects.load(Relaxed),
            e as *const Entry as usize,
        )
    };
    let mut last = (usize::MAX, usize::MAX, usize::MAX);
    let mut n = 0;
    loop {
        let mut best: Option<(&Entry, (usize, usize, usize))> = None;
        for e in TABLE.iter().chain(core::iter::once(&OVERFLOW)) {
            let k = key(e);
            if k.1 == 0 || k >= last {
                continue;
            }
            if best.is_none_or(|(_, b)| k > b) {
                best = Some((e, k));
            }
        }
        let Some((e, k)) = best else { return n };
        f(e.ty.load(Relaxed), k.1, k.0);
        n += 1;
        last = k;
    }
}

/// The usable size of an object's block (`base`), as `obm_usable_size`
/// gives it; 0 for a block of a user's allocator hook that is not obmem's.
#[inline(always)]
pub fn block_bytes(base: *const u8) -> usize {
    // Most objects live in a pool of the calling thread's heap: its unit
    // cache names the pool without a global lookup.
    // No block-start check needed: the unit cache is empty while any hook
    // is installed (`heap::force_slow_paths`), so a hit means `base` came
    // from the core, a block start of this heap's pool.
    let h = crate::heap::current_or_placeholder();
    // SAFETY: the calling thread's heap, or the placeholder.
    if let Some(pool) = unsafe { h.cached_pool(base as usize >> crate::config::UNIT_SHIFT) } {
        return pool.block_size();
    }
    crate::domain::size_if_block(crate::domain::obm_domain::OBM_DOMAIN_OBJ, base)
}
