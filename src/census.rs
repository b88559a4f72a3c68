//! The object census: live objects and bytes per type, kept up to date as
//! objects are created and destroyed, so `obm_census` is a read of a table.
//!
//! The table is a static open-addressing hash of type pointers (no
//! allocation, untouched pages stay untouched). A type keeps its slot once
//! entered, so the create and destroy paths find it with a multiply and,
//! almost always, one probe. Objects are created and destroyed under the
//! object model's one-thread-at-a-time rule (API.md §3, `obm_lock`), so
//! the counters are updated with relaxed loads and stores, not atomic
//! read-modify-writes; only entering a new type uses a compare-and-swap,
//! so that two threads breaking that rule cannot share a slot.
//!
//! Bytes are the usable size of each object's memory block, the
//! collector's 16-byte header included: what the objects really occupy.
//! When the table is full (`SLOTS` types) further types are counted
//! together under a NULL type.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::*};

use crate::object::obm_type;

/// One type's row of `obm_census`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy)]
pub struct obm_type_census {
    /// The type (NULL: types beyond the census table's capacity).
    pub r#type: *const obm_type,
    /// Live objects of the type.
    pub objects: usize,
    /// Bytes of their memory blocks (usable size, collector header included).
    pub bytes: usize,
}

const SLOTS: usize = 4096;

struct Entry {
    ty: AtomicPtr<obm_type>,
    objects: AtomicUsize,
    bytes: AtomicUsize,
}

const EMPTY: Entry = Entry {
    ty: AtomicPtr::new(ptr::null_mut()),
    objects: AtomicUsize::new(0),
    bytes: AtomicUsize::new(0),
};

static TABLE: [Entry; SLOTS] = [EMPTY; SLOTS];
/// Types that found no free slot (the table is full).
static OVERFLOW: Entry = EMPTY;

/// The slot of `t`, entered if new.
#[inline(always)]
fn entry(t: *const obm_type) -> &'static Entry {
    // Fibonacci hashing: the top 12 bits of the product index the table.
    let mut i = (t as usize >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52;
    for _ in 0..SLOTS {
        // SAFETY: i < SLOTS (12 bits, then masked).
        let e = unsafe { TABLE.get_unchecked(i) };
        let cur = e.ty.load(Relaxed);
        if cur as *const obm_type == t {
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
fn enter(mut i: usize, t: *const obm_type) -> &'static Entry {
    for _ in 0..SLOTS {
        let e = &TABLE[i];
        match e
            .ty
            .compare_exchange(ptr::null_mut(), t as *mut obm_type, Relaxed, Relaxed)
        {
            Ok(_) => return e,
            Err(cur) if cur as *const obm_type == t => return e,
            Err(_) => i = (i + 1) & (SLOTS - 1),
        }
    }
    &OVERFLOW
}

#[inline(always)]
fn add(c: &AtomicUsize, n: usize) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Counts a new object of `t` whose memory block is `bytes` long.
#[inline(always)]
pub fn created(t: *const obm_type, bytes: usize) {
    let e = entry(t);
    add(&e.objects, 1);
    add(&e.bytes, bytes);
}

/// Uncounts a destroyed object of `t` whose memory block was `bytes` long.
#[inline(always)]
pub fn destroyed(t: *const obm_type, bytes: usize) {
    let e = entry(t);
    add(&e.objects, usize::MAX);
    add(&e.bytes, bytes.wrapping_neg());
}

/// Visits the types with live objects, most bytes first.
fn sorted(mut f: impl FnMut(obm_type_census)) -> usize {
    // Selection by "largest below the last one printed": quadratic in the
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
        f(obm_type_census {
            r#type: e.ty.load(Relaxed),
            objects: k.1,
            bytes: k.0,
        });
        n += 1;
        last = k;
    }
}

/// `obm_census`: fills `out[..cap]`, returns the number of types.
///
/// # Safety
/// `out` is null or points to `cap` writable rows.
pub unsafe fn census(out: *mut obm_type_census, cap: usize) -> usize {
    let mut i = 0;
    sorted(|row| {
        if i < cap && !out.is_null() {
            // SAFETY: i < cap, per the contract.
            unsafe { out.add(i).write(row) };
        }
        i += 1;
    })
}

/// The census section of `obm_print_stats` (nothing when no object lives).
pub fn print(fd: i32) {
    use core::fmt::Write;
    let mut b = crate::report::LineBuf::new();
    let mut header = false;
    sorted(|row| {
        if !header {
            let _ = writeln!(b, "objects by type          objects          bytes");
            header = true;
        }
        let name = if row.r#type.is_null() {
            "(other types)"
        } else {
            crate::object::type_name(row.r#type)
        };
        let _ = writeln!(b, "  {name:<20.20} {:>12} {:>14}", row.objects, row.bytes);
        b.flush_to(fd);
    });
}

/// The usable size of an object's block, as `obm_usable_size` gives it;
/// 0 for a block of a user's allocator hook that is not obmem's.
#[inline(always)]
pub fn block_bytes(base: *const u8) -> usize {
    if crate::debug::active() {
        if let Some(n) = crate::debug::size_if_block(base) {
            return n;
        }
    }
    // Most objects live in a pool of the calling thread's heap: its unit
    // cache names the pool without a global lookup.
    let h = crate::heap::current_or_placeholder();
    if h.unit_cached(base) {
        // SAFETY: checked just above.
        let pool = unsafe { h.cached_pool(base) };
        if pool.is_carved_block(base) {
            return pool.block_size();
        }
    }
    crate::free::size_if_block(base)
}
