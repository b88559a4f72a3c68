//! Weak references and ephemerons (docs/API.md §6).
//!
//! # Layout
//! An object of a type with `OBM_TPFLAGS_WEAKREFABLE` has one more 16-byte
//! prefix in front of it, at the very start of its block (before the
//! collector header, if it has one): the *weak slot*, whose first word
//! points to the most recently created weak reference to the object (8
//! bytes used, 8 for alignment). The user's struct reserves nothing, and
//! objects of other types pay nothing.
//!
//! ```text
//!  [weak slot 16 B][GcHead 16 B, if GC or finalize][obm_object ...]
//! ```
//!
//! A weak reference and an ephemeron are the same struct (`obm_weakref`)
//! with two types, both GC types, linked into their target's list through
//! `prev`/`next`, newest first. An ephemeron is tracked (it owns its
//! value), and so is a weakref with a callback (the collector must know
//! whether it is garbage itself: then its callback does not run). A weakref
//! without one holds no reference the collector follows, so it can be in
//! no cycle and is not tracked: collections never look at it (as CPython
//! untracks a tuple of atomic values); it dies by its count, or with the
//! garbage that holds it. `target` (the key of an ephemeron) is null
//! once cleared; a cleared entry is never linked again.
//!
//! # Death by reference count (`clear_on_death`, from `object::destroy`
//! after `finalize` and untracking)
//! Every entry of the list is cleared first; then, newest first, the
//! callbacks of the weakrefs still alive run and the ephemerons drop their
//! values, each while we hold a reference to the entry. The entries wait for
//! that second pass on a chain through their `chain` field, so nothing is
//! allocated.
//!
//! # In a collection (`collect.rs`, CPython 3.14's order)
//! `handle_callbacks` clears the weakrefs with a callback to the unreachable
//! objects and runs those whose weakref is reachable (skipped while no live
//! weakref has a callback: `COUNTS.callbacks`); after finalizers and the
//! resurrection check, `clear_garbage_refs` clears every remaining entry
//! (callbacks not called) and the ephemerons drop their values, before any
//! `clear`. Both visit the objects `move_unreachable` noted as having
//! entries (`WeakTargets`), or walk the garbage list when that record may
//! be incomplete. Ephemeron reachability is computed in `move_unreachable`,
//! using `key_is_alive` and the `eph_next` field (docs/GC.md).
//!
//! Thread model: the collector's (one thread at a time, `obm_lock`).

use core::cell::Cell;
use core::ffi::{c_int, c_void};
use core::ptr;

use super::array::Array;
use super::list::{self, GcHead};
use crate::object::{
    self, obm_object, obm_type, obm_visitproc, type_is_weakrefable, OBM_TPFLAGS_HAVE_GC,
};

/// Called when the target of a weak reference dies, after the reference is
/// cleared; obmem holds a reference to `ref` during the call.
#[allow(non_camel_case_types)]
pub type obm_weakref_callback = Option<unsafe extern "C" fn(r: *mut obm_weakref, ctx: *mut c_void)>;

/// A weak reference or an ephemeron (opaque in C; it starts with an
/// `obm_object`).
/// cbindgen:ignore
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct obm_weakref {
    ob_base: obm_object,
    /// The referent (an ephemeron's key); null once cleared.
    target: *mut obm_object,
    /// Neighbours in the target's list (newest first).
    prev: *mut obm_weakref,
    next: *mut obm_weakref,
    callback: obm_weakref_callback,
    ctx: *mut c_void,
    /// An ephemeron's value (owned); null once the key died.
    value: *mut obm_object,
    /// The chain of entries waiting for their callback or value drop.
    chain: *mut obm_weakref,
    /// The collector's list of ephemerons whose key is not known alive.
    pub(crate) eph_next: *mut obm_weakref,
}

struct SyncType(obm_type);
// SAFETY: the types are immutable after construction; their pointers are
// to static strings and functions.
unsafe impl Sync for SyncType {}

static WEAKREF_TYPE: SyncType = SyncType(obm_type {
    name: c"weakref".as_ptr(),
    size: core::mem::size_of::<obm_weakref>(),
    flags: OBM_TPFLAGS_HAVE_GC,
    finalize: None,
    dealloc: Some(entry_dealloc),
    traverse: Some(entry_traverse),
    clear: Some(entry_clear),
});

static EPHEMERON_TYPE: SyncType = SyncType(obm_type {
    name: c"ephemeron".as_ptr(),
    size: core::mem::size_of::<obm_weakref>(),
    flags: OBM_TPFLAGS_HAVE_GC,
    finalize: None,
    dealloc: Some(entry_dealloc),
    traverse: Some(entry_traverse),
    clear: Some(entry_clear),
});

/// Live entries: a collection without any skips their handling.
struct Counts {
    /// Weak references and ephemerons.
    entries: Cell<usize>,
    /// Ephemerons only.
    ephemerons: Cell<usize>,
    /// Weak references whose `callback` is set: a collection without any
    /// skips `handle_callbacks`, a pass over its garbage (weak references
    /// are mostly made without one).
    callbacks: Cell<usize>,
}
// SAFETY: one thread at a time (module docs).
unsafe impl Sync for Counts {}
static COUNTS: Counts = Counts {
    entries: Cell::new(0),
    ephemerons: Cell::new(0),
    callbacks: Cell::new(0),
};

pub(crate) fn entries_alive() -> bool {
    COUNTS.entries.get() != 0
}

pub(crate) fn ephemerons_alive() -> bool {
    COUNTS.ephemerons.get() != 0
}

pub(crate) fn callbacks_alive() -> bool {
    COUNTS.callbacks.get() != 0
}

/// Takes `w`'s callback away (every change of it after creation is this
/// one, so that `COUNTS.callbacks` stays exact).
///
/// # Safety
/// `w` is a live entry.
unsafe fn take_callback(w: *mut obm_weakref) -> obm_weakref_callback {
    // SAFETY: per the contract.
    let cb = unsafe { (*w).callback.take() };
    if cb.is_some() {
        debug_assert!(COUNTS.callbacks.get() > 0);
        COUNTS.callbacks.set(COUNTS.callbacks.get() - 1);
    }
    cb
}

/// # Safety
/// `o` is a live object.
#[inline(always)]
pub(crate) unsafe fn is_ephemeron(o: *const obm_object) -> bool {
    // SAFETY: per the contract.
    unsafe { core::ptr::eq((*o).ob_type, &EPHEMERON_TYPE.0) }
}

/// # Safety
/// `o` is a live object.
unsafe fn is_weakref(o: *const obm_object) -> bool {
    // SAFETY: per the contract.
    unsafe { core::ptr::eq((*o).ob_type, &WEAKREF_TYPE.0) }
}

/// The weak slot of `o`: the first word of its block.
///
/// # Safety
/// `o` is a live, non-static object of a weakrefable type.
#[inline(always)]
unsafe fn slot(o: *mut obm_object) -> *mut *mut obm_weakref {
    // SAFETY: the slot is the first prefix of the block (module docs).
    unsafe { (o as *mut u8).sub(object::prefix_size(object::type_of(o))) as *mut *mut obm_weakref }
}

/// Unlinks `w` from its target's list and clears it.
///
/// # Safety
/// `w` is a live entry with a non-null target.
unsafe fn unlink(w: *mut obm_weakref) {
    // SAFETY: per the contract; the list is consistent (module docs).
    unsafe {
        let (p, n) = ((*w).prev, (*w).next);
        if p.is_null() {
            *slot((*w).target) = n;
        } else {
            (*p).next = n;
        }
        if !n.is_null() {
            (*n).prev = p;
        }
        (*w).target = ptr::null_mut();
        (*w).prev = ptr::null_mut();
        (*w).next = ptr::null_mut();
    }
}

/// Why a weak entry could not be made.
pub enum NewError {
    /// NULL, static, dead, or not of a weakrefable type: EINVAL.
    Invalid,
    /// Out of memory: ENOMEM (set by the allocator).
    NoMemory,
}

/// Makes a weak entry of type `t` to `target`.
///
/// # Safety
/// `target` is null or a live object.
unsafe fn new_entry(
    t: &'static obm_type,
    target: *mut obm_object,
) -> Result<*mut obm_weakref, NewError> {
    // SAFETY: per the contract.
    unsafe {
        if target.is_null()
            || object::is_static(target)
            || (*target).ob_refcnt <= 0
            || !type_is_weakrefable(object::type_of(target))
        {
            return Err(NewError::Invalid);
        }
        let w = object::new_object(t, 0, "obm_weakref_new") as *mut obm_weakref;
        if w.is_null() {
            return Err(NewError::NoMemory);
        }
        COUNTS.entries.set(COUNTS.entries.get() + 1);
        // The fields are zeroed by new_object; link it first in the list.
        let s = slot(target);
        let first = *s;
        (*w).target = target;
        (*w).next = first;
        if !first.is_null() {
            (*first).prev = w;
        }
        *s = w;
        Ok(w)
    }
}

/// `obm_weakref_new`.
///
/// # Safety
/// `target` is null or a live object.
pub unsafe fn new_weakref(
    target: *mut obm_object,
    cb: obm_weakref_callback,
    ctx: *mut c_void,
) -> Result<*mut obm_weakref, NewError> {
    // SAFETY: per the contract.
    unsafe {
        let w = new_entry(&WEAKREF_TYPE.0, target)?;
        if cb.is_some() {
            COUNTS.callbacks.set(COUNTS.callbacks.get() + 1);
        }
        (*w).callback = cb;
        (*w).ctx = ctx;
        // Only a weakref with a callback is tracked (module docs). Tracking
        // may run a collection: the entry is complete by now, and the
        // caller's reference keeps the target alive.
        if cb.is_some() {
            super::track(w as *mut obm_object);
        }
        Ok(w)
    }
}

/// `obm_ephemeron_new`.
///
/// # Safety
/// `key` and `value` are null or live objects.
pub unsafe fn new_ephemeron(
    key: *mut obm_object,
    value: *mut obm_object,
) -> Result<*mut obm_weakref, NewError> {
    // SAFETY: per the contract.
    unsafe {
        let w = new_entry(&EPHEMERON_TYPE.0, key)?;
        if !value.is_null() {
            object::incref(value);
        }
        (*w).value = value;
        COUNTS.ephemerons.set(COUNTS.ephemerons.get() + 1);
        super::track(w as *mut obm_object);
        Ok(w)
    }
}

/// Whether `o` is a weak reference (true) or an ephemeron (false); None for
/// anything else.
///
/// # Safety
/// `o` is null or a live object.
pub unsafe fn kind(o: *const obm_object) -> Option<bool> {
    // SAFETY: per the contract.
    unsafe {
        if o.is_null() || object::is_static(o) {
            None
        } else if is_weakref(o) {
            Some(true)
        } else if is_ephemeron(o) {
            Some(false)
        } else {
            None
        }
    }
}

/// A new reference to the target (key) of the entry `w`, or null once it
/// is dead.
///
/// # Safety
/// `w` is a live entry.
pub unsafe fn get(w: *mut obm_weakref) -> *mut obm_object {
    // SAFETY: per the contract; a non-null target is alive (it clears its
    // entries before it is destroyed).
    unsafe {
        let t = (*w).target;
        if !t.is_null() {
            object::incref(t);
        }
        t
    }
}

/// A new reference to an ephemeron's value, or null once its key is dead.
///
/// # Safety
/// `w` is a live ephemeron.
pub unsafe fn value(w: *mut obm_weakref) -> *mut obm_object {
    // SAFETY: per the contract; the ephemeron owns its value.
    unsafe {
        if (*w).target.is_null() {
            return ptr::null_mut();
        }
        let v = (*w).value;
        if !v.is_null() {
            object::incref(v);
        }
        v
    }
}

/// The number of weak references and ephemerons to `o`.
///
/// # Safety
/// `o` is a live object.
pub unsafe fn count(o: *mut obm_object) -> usize {
    let mut n = 0;
    // SAFETY: per the contract; the list is consistent.
    unsafe {
        if object::is_static(o) || !type_is_weakrefable(object::type_of(o)) {
            return 0;
        }
        let mut w = *slot(o);
        while !w.is_null() {
            n += 1;
            w = (*w).next;
        }
    }
    n
}

// ---------------------------------------------------------------------------
// The entries' type functions

unsafe extern "C" fn entry_traverse(
    o: *mut obm_object,
    visit: obm_visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: o is a live entry; an ephemeron owns its value.
    unsafe {
        let w = o as *mut obm_weakref;
        match visit {
            Some(v) if !(*w).value.is_null() => v((*w).value, arg),
            _ => 0,
        }
    }
}

/// Clears the entry and drops what it owns (the collector's `clear`, and
/// part of `dealloc`).
unsafe extern "C" fn entry_clear(o: *mut obm_object) -> c_int {
    // SAFETY: o is a live entry.
    unsafe {
        let w = o as *mut obm_weakref;
        if !(*w).target.is_null() {
            unlink(w);
        }
        take_callback(w);
        let v = (*w).value;
        (*w).value = ptr::null_mut();
        if !v.is_null() {
            object::decref(v);
        }
    }
    0
}

unsafe extern "C" fn entry_dealloc(o: *mut obm_object) {
    // SAFETY: o is an entry being destroyed.
    unsafe {
        if is_ephemeron(o) {
            COUNTS.ephemerons.set(COUNTS.ephemerons.get() - 1);
        }
        COUNTS.entries.set(COUNTS.entries.get() - 1);
        entry_clear(o);
    }
}

// ---------------------------------------------------------------------------
// Death by reference count

/// Appends `w` (alive) to the chain `(first, last)` with a new reference.
///
/// # Safety
/// `w` is a live entry on no chain.
unsafe fn chain_push(chain: &mut (*mut obm_weakref, *mut obm_weakref), w: *mut obm_weakref) {
    // SAFETY: per the contract.
    unsafe {
        object::incref(w as *mut obm_object);
        (*w).chain = ptr::null_mut();
        if chain.1.is_null() {
            chain.0 = w;
        } else {
            (*chain.1).chain = w;
        }
        chain.1 = w;
    }
}

/// Runs each entry's action (callback, or dropping an ephemeron's value, or
/// nothing when `callbacks` is false and it is a weakref) in chain order and
/// drops the chain's reference to it. User code runs here.
///
/// # Safety
/// The chain was built by `chain_push`.
unsafe fn chain_run(mut w: *mut obm_weakref, callbacks: bool) -> usize {
    let mut ran = 0;
    // SAFETY: each entry is alive while the chain holds its reference, and
    // a cleared entry is on no list, so only this loop uses `chain`.
    unsafe {
        while !w.is_null() {
            let next = (*w).chain;
            (*w).chain = ptr::null_mut();
            let cb = take_callback(w);
            let v = core::mem::replace(&mut (*w).value, ptr::null_mut());
            if let (true, Some(f)) = (callbacks, cb) {
                f(w, (*w).ctx);
                ran += 1;
            }
            if !v.is_null() {
                object::decref(v);
            }
            object::decref(w as *mut obm_object);
            w = next;
        }
    }
    ran
}

/// Whether the entry needs its second pass: a callback, or a value to drop.
///
/// # Safety
/// `w` is a valid entry.
unsafe fn has_action(w: *mut obm_weakref) -> bool {
    // SAFETY: per the contract. A count <= 0 is an entry on its way out
    // (in the trashcan): it gets no callback.
    unsafe { ((*w).callback.is_some() || !(*w).value.is_null()) && (*w).ob_base.ob_refcnt > 0 }
}

/// Clears every entry of the dying `o` and then runs their callbacks and
/// drops ephemeron values, newest first.
///
/// # Safety
/// `o` has a weakrefable type, count 0, its finalizer done, not resurrected.
#[inline(always)]
pub(crate) unsafe fn clear_on_death(o: *mut obm_object) {
    // SAFETY: per the contract.
    unsafe {
        if !(*slot(o)).is_null() {
            clear_list_on_death(o);
        }
    }
}

/// `clear_on_death` for an object with weak references, out of line so
/// that deallocations without any stay short.
///
/// # Safety
/// As `clear_on_death`; the list is not empty.
#[inline(never)]
unsafe fn clear_list_on_death(o: *mut obm_object) {
    // SAFETY: per the contract.
    unsafe {
        let s = slot(o);
        let mut chain = (ptr::null_mut(), ptr::null_mut());
        let mut w = *s;
        while !w.is_null() {
            let next = (*w).next;
            unlink(w);
            if has_action(w) {
                chain_push(&mut chain, w);
            }
            w = next;
        }
        chain_run(chain.0, true);
    }
}

// ---------------------------------------------------------------------------
// In a collection

/// Whether the entry `w` is itself garbage of the running collection.
///
/// # Safety
/// `w` is a live weakref entry (a GC object: it has a header).
unsafe fn entry_is_garbage(w: *mut obm_weakref) -> bool {
    // SAFETY: w is a live entry, a GC object with a header.
    unsafe {
        let g = object::head_of(w as *mut obm_object);
        list::is_tracked(g) && super::collect::is_marked_unreachable(g)
    }
}

/// The objects that had weak entries when `move_unreachable` moved them to
/// the unreachable list. Steps 4 and 7 visit those of them still marked
/// unreachable instead of walking all the garbage: with few weakly
/// referenced objects, one pass over the garbage less, which on a heap
/// larger than the caches is a cache miss per object less.
///
/// Invariant: while `complete`, every object in the unreachable list that
/// has an entry is in `objects` (entries are made only by user code, so
/// this holds until user code runs); `objects` may also hold objects moved
/// back to young since. An append that finds no memory clears `complete`,
/// and the steps then walk the list.
pub(crate) struct WeakTargets {
    objects: Array<*mut GcHead>,
    complete: Cell<bool>,
}

impl WeakTargets {
    pub(crate) const fn new() -> Self {
        WeakTargets {
            objects: Array::new(),
            complete: Cell::new(true),
        }
    }

    /// Notes the object of `g`, just moved to the unreachable list, if it
    /// has weak entries, unless the table is already incomplete (then the
    /// steps walk the list anyway, and a failed growth is not retried).
    ///
    /// # Safety
    /// `g` is the header of a live GC object.
    #[inline(always)]
    pub(crate) unsafe fn note(&self, g: *mut GcHead) {
        // SAFETY: per the contract.
        unsafe {
            if has_entries(g) && self.complete.get() {
                // At most one object per live entry: room for them all at
                // once, up to a pool block (128 KiB) before doubling.
                let room = self.objects.len() > 0
                    || self.objects.reserve(COUNTS.entries.get().min(1 << 14));
                if !(room && self.objects.push(g)) {
                    self.complete.set(false);
                }
            }
        }
    }
}

impl Drop for WeakTargets {
    fn drop(&mut self) {
        let (p, _) = self.objects.take();
        // SAFETY: p came from take and is not used again.
        unsafe { Array::free_block(p) };
    }
}

/// The weak slot of the GC object of header `g`: the 16 bytes before the
/// header (module docs), found without the type's prefix size.
///
/// # Safety
/// `g` is the header of a live GC object of a weakrefable type.
#[inline(always)]
unsafe fn gc_slot(g: *mut GcHead) -> *mut *mut obm_weakref {
    // SAFETY: per the contract, the slot is the prefix just before the header.
    unsafe {
        let s = (g as *mut u8).sub(16) as *mut *mut obm_weakref;
        debug_assert!(s == slot(object::object_of(g)));
        s
    }
}

/// Starts loading the cache line of `p` (a hint: it reads nothing the
/// program sees and never faults, whatever `p` is).
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch has no architectural effect and never faults.
    unsafe {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Whether the GC object of header `g` has weak entries.
///
/// # Safety
/// `g` is the header of a live GC object.
#[inline(always)]
unsafe fn has_entries(g: *mut GcHead) -> bool {
    // SAFETY: per the contract; the slot exists for a weakrefable type.
    unsafe {
        type_is_weakrefable(object::type_of(object::object_of(g))) && !(*gc_slot(g)).is_null()
    }
}

/// CPython 3.14's `handle_weakref_callbacks`: clears the weakrefs with a
/// callback to the objects of `unreachable` and runs the callbacks of those
/// that are not garbage themselves. Returns how many ran (user code ran if
/// non-zero).
///
/// # Safety
/// `unreachable` is a collection's unreachable list, marked; `targets`, if
/// given, was noted by the `move_unreachable` that made it.
pub(crate) unsafe fn handle_callbacks(
    unreachable: *mut GcHead,
    targets: Option<&WeakTargets>,
) -> usize {
    let mut chain = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: per the contract; no user code runs until chain_run.
    unsafe {
        for_each_entry(unreachable, targets, |w| {
            if (*w).callback.is_some() {
                unlink(w);
                if entry_is_garbage(w) {
                    take_callback(w);
                } else if has_action(w) {
                    chain_push(&mut chain, w);
                }
            }
        });
        chain_run(chain.0, true)
    }
}

/// Clears every entry to the objects of `garbage` (their callbacks are not
/// called), then drops the values of the ephemerons among them.
///
/// # Safety
/// `garbage` is a list of tracked, live objects about to be cleared;
/// `targets`, if given, was noted by the `move_unreachable` that made it,
/// and no user code ran since.
pub(crate) unsafe fn clear_garbage_refs(garbage: *mut GcHead, targets: Option<&WeakTargets>) {
    let mut chain = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: per the contract; no user code runs until chain_run.
    unsafe {
        for_each_entry(garbage, targets, |w| {
            unlink(w);
            take_callback(w);
            if has_action(w) {
                chain_push(&mut chain, w);
            }
        });
        chain_run(chain.0, false);
    }
}

/// Calls `f` on every entry (weakref or ephemeron) to every object of
/// `objects`, found through `targets` if it is complete, else by walking
/// the list; `f` may unlink the entry it is given.
///
/// # Safety
/// `objects` is a list of tracked, live objects; if `targets` is given,
/// its members still marked unreachable are `objects`' members with entries
/// (`WeakTargets`' invariant). `f` runs no user code.
unsafe fn for_each_entry(
    objects: *mut GcHead,
    targets: Option<&WeakTargets>,
    mut f: impl FnMut(*mut obm_weakref),
) {
    // SAFETY: per the contract; the next entry is read before `f` runs.
    unsafe {
        let mut each_entry_of = |g: *mut GcHead| {
            let mut w = *gc_slot(g);
            while !w.is_null() {
                let next = (*w).next;
                f(w);
                w = next;
            }
        };
        match targets {
            Some(t) if t.complete.get() => {
                // The objects and their entries are far apart in a large
                // heap: their cache lines are asked for ahead, the header
                // (and slot) of an object two strides on, the first entry
                // of one a stride on (its slot is in the cache by then).
                // Every noted object is alive: nothing is freed before
                // step 8, nor before step 4's callbacks (they run after this
                // loop), and step 7 gets no targets once user code ran.
                const STRIDE: usize = 8;
                for i in 0..t.objects.len() {
                    if let Some(g) = t.objects.get(i + 2 * STRIDE) {
                        prefetch(gc_slot(g) as *const u8);
                    }
                    if let Some(g) = t.objects.get(i + STRIDE) {
                        prefetch(*gc_slot(g) as *const u8);
                    }
                    if let Some(g) = t.objects.get(i) {
                        if super::collect::is_marked_unreachable(g) {
                            each_entry_of(g);
                        }
                    }
                }
            }
            _ => {
                let mut g = list::next(objects);
                while g != objects {
                    if has_entries(g) {
                        each_entry_of(g);
                    }
                    g = list::next(g);
                }
            }
        }
    }
}

/// An ephemeron's key, or null once it is dead.
///
/// # Safety
/// `w` is a live ephemeron.
#[inline(always)]
pub(crate) unsafe fn key_of(w: *mut obm_weakref) -> *mut obm_object {
    // SAFETY: per the contract.
    unsafe { (*w).target }
}

/// An ephemeron's value (borrowed), or null.
///
/// # Safety
/// `w` is a live ephemeron.
#[inline(always)]
pub(crate) unsafe fn value_of(w: *mut obm_weakref) -> *mut obm_object {
    // SAFETY: per the contract.
    unsafe { (*w).value }
}
