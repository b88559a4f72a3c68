//! C exports of docs/API.md §4: the cycle collector (CPython's `gc` module) and
//! the lock that stands in for the GIL.

use crate::debug;
use core::ffi::{c_int, c_uint, c_void};

use crate::gc::{self, introspect, lock, obm_gc_callback, obm_gc_gen_stats, NUM_GENERATIONS};
use crate::object::{obm_object, obm_visitproc};

/// Starts tracking `o`, whose type has OBM_TPFLAGS_HAVE_GC, so the collector
/// sees it; do this once the object is fully initialised. Tracking a tracked
/// object does nothing, except under the debug hooks, which report it as a
/// misuse and abort (as CPython's debug build). May run an automatic
/// collection first.
#[no_mangle]
pub unsafe extern "C" fn obm_gc_track(o: *mut obm_object) {
    // SAFETY: the caller passes a live object or NULL, which `track_live`
    // takes.
    unsafe { debug::objects::track_entry(o, track_live) }
}

/// Tracks `o` unless it is NULL.
///
/// # Safety
/// `o` is NULL or a live object.
#[inline(always)]
unsafe fn track_live(o: *mut obm_object) {
    if !o.is_null() {
        // SAFETY: per the contract, a live object.
        unsafe { gc::track(o) }
    }
}

/// Stops tracking `o`; untracking an untracked object does nothing.
#[no_mangle]
pub unsafe extern "C" fn obm_gc_untrack(o: *mut obm_object) {
    let _use = debug::objects::enter("obm_gc_untrack");
    if !o.is_null() {
        // SAFETY: the caller passes a live object.
        unsafe { gc::untrack(o) }
    }
}

/// 1 if `o` is tracked by the collector, else 0.
#[no_mangle]
pub unsafe extern "C" fn obm_gc_is_tracked(o: *const obm_object) -> c_int {
    let _use = debug::objects::enter("obm_gc_is_tracked");
    // SAFETY: the caller passes a live object (or NULL).
    (!o.is_null() && unsafe { gc::is_tracked(o) }) as c_int
}

/// 1 if `o`'s finalize has run, else 0.
#[no_mangle]
pub unsafe extern "C" fn obm_gc_is_finalized(o: *const obm_object) -> c_int {
    let _use = debug::objects::enter("obm_gc_is_finalized");
    // SAFETY: the caller passes a live object (or NULL).
    (!o.is_null() && unsafe { gc::is_finalized(o) }) as c_int
}

/// Collects generations 0..=`generation` (2 = full collection), even when
/// automatic collection is disabled. Returns the number of unreachable
/// objects found (resurrected ones excluded, as CPython), 0 if a collection
/// is already running (e.g. called from a callback or finalizer), -1 if
/// `generation` is not 0, 1 or 2.
#[no_mangle]
pub extern "C" fn obm_gc_collect(generation: c_int) -> isize {
    let _use = debug::objects::enter("obm_gc_collect");
    gc::collect_generation(generation)
}

/// Enables automatic collection (the default).
#[no_mangle]
pub extern "C" fn obm_gc_enable() {
    let _use = debug::objects::enter("obm_gc_enable");
    gc::enable()
}

/// Disables automatic collection; obm_gc_collect still works.
#[no_mangle]
pub extern "C" fn obm_gc_disable() {
    let _use = debug::objects::enter("obm_gc_disable");
    gc::disable()
}

/// 1 if automatic collection is enabled.
#[no_mangle]
pub extern "C" fn obm_gc_isenabled() -> c_int {
    let _use = debug::objects::enter("obm_gc_isenabled");
    gc::is_enabled() as c_int
}

/// Writes the three collection thresholds (default 700, 10, 10, or
/// OBMEM_GC_THRESHOLD=t0,t1,t2) to `out[0..3]`.
#[no_mangle]
pub unsafe extern "C" fn obm_gc_get_threshold(out: *mut c_int) {
    let _use = debug::objects::enter("obm_gc_get_threshold");
    if !out.is_null() {
        // SAFETY: the caller passes room for three ints.
        unsafe {
            out.cast::<[c_int; NUM_GENERATIONS]>()
                .write(gc::get_threshold())
        }
    }
}

/// Sets the thresholds; t0 = 0 disables automatic collection.
#[no_mangle]
pub extern "C" fn obm_gc_set_threshold(t0: c_int, t1: c_int, t2: c_int) {
    let _use = debug::objects::enter("obm_gc_set_threshold");
    gc::set_threshold([t0, t1, t2])
}

/// Writes the collection counts to `out[0..3]`: tracked objects minus freed
/// ones since the last collection of generation 0, then collections of
/// generations 0 and 1 since the last collection of generations 1 and 2.
#[no_mangle]
pub unsafe extern "C" fn obm_gc_get_count(out: *mut c_int) {
    let _use = debug::objects::enter("obm_gc_get_count");
    if !out.is_null() {
        // SAFETY: the caller passes room for three ints.
        unsafe {
            out.cast::<[c_int; NUM_GENERATIONS]>()
                .write(gc::get_count())
        }
    }
}

/// Writes the per-generation statistics since start-up to `out[0..3]`.
#[no_mangle]
pub unsafe extern "C" fn obm_gc_get_stats(out: *mut obm_gc_gen_stats) {
    let _use = debug::objects::enter("obm_gc_get_stats");
    if !out.is_null() {
        // SAFETY: the caller passes room for three structs.
        unsafe {
            out.cast::<[obm_gc_gen_stats; NUM_GENERATIONS]>()
                .write(gc::get_stats())
        }
    }
}

/// Moves every tracked object to the permanent generation, ignored by
/// collections until obm_gc_unfreeze.
#[no_mangle]
pub extern "C" fn obm_gc_freeze() {
    let _use = debug::objects::enter("obm_gc_freeze");
    gc::freeze()
}

/// Moves the permanent generation back into generation 2.
#[no_mangle]
pub extern "C" fn obm_gc_unfreeze() {
    let _use = debug::objects::enter("obm_gc_unfreeze");
    gc::unfreeze()
}

/// The number of objects in the permanent generation.
#[no_mangle]
pub extern "C" fn obm_gc_get_freeze_count() -> usize {
    let _use = debug::objects::enter("obm_gc_get_freeze_count");
    gc::get_freeze_count()
}

/// Makes every object of the permanent generation immortal (see
/// obm_immortalize) and returns how many there are. A pre-fork server calls
/// obm_gc_freeze(), then this, then fork(): children that take and drop
/// references to those objects do not copy their pages. Objects reachable
/// from them that are not tracked are not made immortal, but they stay
/// alive as long as the immortal objects hold them.
#[no_mangle]
pub extern "C" fn obm_gc_immortalize_frozen() -> usize {
    let _use = debug::objects::enter("obm_gc_immortalize_frozen");
    gc::immortalize_frozen()
}

/// Sets the debug flags (OBM_GC_DEBUG_*); 0 turns debugging off.
#[no_mangle]
pub extern "C" fn obm_gc_set_debug(flags: c_uint) {
    let _use = debug::objects::enter("obm_gc_set_debug");
    gc::set_debug(flags)
}

/// The current debug flags.
#[no_mangle]
pub extern "C" fn obm_gc_get_debug() -> c_uint {
    let _use = debug::objects::enter("obm_gc_get_debug");
    gc::get_debug()
}

/// The number of objects in the garbage list (kept by OBM_GC_DEBUG_SAVEALL).
#[no_mangle]
pub extern "C" fn obm_gc_garbage_count() -> usize {
    let _use = debug::objects::enter("obm_gc_garbage_count");
    gc::garbage_count()
}

/// The i-th object of the garbage list (a borrowed reference), or NULL.
#[no_mangle]
pub extern "C" fn obm_gc_garbage_get(i: usize) -> *mut obm_object {
    let _use = debug::objects::enter("obm_gc_garbage_get");
    gc::garbage_get(i)
}

/// Empties the garbage list, dropping its references.
#[no_mangle]
pub extern "C" fn obm_gc_garbage_clear() {
    let _use = debug::objects::enter("obm_gc_garbage_clear");
    gc::garbage_clear()
}

/// Registers `cb(phase, info, ctx)` to be called before (OBM_GC_START) and
/// after (OBM_GC_STOP) each collection. Returns 0, or -1 if `cb` is NULL or
/// memory ran out. A callback may not start a collection (obm_gc_collect
/// returns 0 there).
#[no_mangle]
pub extern "C" fn obm_gc_callback_add(cb: obm_gc_callback, ctx: *mut c_void) -> c_int {
    let _use = debug::objects::enter("obm_gc_callback_add");
    gc::callback_add(cb, ctx)
}

/// Removes the first registration of (`cb`, `ctx`). Returns 0, or -1 if
/// there is none.
#[no_mangle]
pub extern "C" fn obm_gc_callback_remove(cb: obm_gc_callback, ctx: *mut c_void) -> c_int {
    let _use = debug::objects::enter("obm_gc_callback_remove");
    gc::callback_remove(cb, ctx)
}

/// Calls `visit(o, arg)` on each object tracked in `generation` (0, 1, 2, or
/// -1 for all; the permanent generation is not included). A non-zero result
/// stops the walk and is returned; -1 for a bad generation or NULL visit.
/// `visit` may incref objects but must not free, track or untrack tracked
/// objects; no collection runs during the walk.
#[no_mangle]
pub unsafe extern "C" fn obm_gc_get_objects(
    generation: c_int,
    visit: obm_visitproc,
    arg: *mut c_void,
) -> c_int {
    let _use = debug::objects::enter("obm_gc_get_objects");
    // SAFETY: arg is the caller's, for its visitor.
    unsafe { introspect::get_objects(generation, visit, arg) }
}

/// Calls `visit(r, arg)` on each non-NULL reference `o`'s traverse (or
/// reference map) reports (none for non-GC objects). Returns what traverse
/// returns (the first non-zero result of visit). No collection runs during
/// the walk.
#[no_mangle]
pub unsafe extern "C" fn obm_gc_get_referents(
    o: *mut obm_object,
    visit: obm_visitproc,
    arg: *mut c_void,
) -> c_int {
    let _use = debug::objects::enter("obm_gc_get_referents");
    // SAFETY: the caller passes a live object (or NULL).
    unsafe { introspect::get_referents(o, visit, arg) }
}

/// Calls `visit(r, arg)` once on each tracked object `r` (generations 0-2)
/// that refers to `target`. Same rules as obm_gc_get_objects.
#[no_mangle]
pub unsafe extern "C" fn obm_gc_get_referrers(
    target: *mut obm_object,
    visit: obm_visitproc,
    arg: *mut c_void,
) -> c_int {
    let _use = debug::objects::enter("obm_gc_get_referrers");
    // SAFETY: arg is the caller's, for its visitor.
    unsafe { introspect::get_referrers(target, visit, arg) }
}

/// Takes the lock that serialises the object and gc functions (CPython's
/// GIL). Re-entrant; never allocates. A single-threaded program never needs it.
#[no_mangle]
pub extern "C" fn obm_lock() {
    lock::lock()
}

/// Releases one level of obm_lock. Unlocking a lock the calling thread does
/// not hold is reported and aborts.
#[no_mangle]
pub extern "C" fn obm_unlock() {
    lock::unlock()
}
