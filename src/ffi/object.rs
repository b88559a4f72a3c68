//! C exports of docs/API.md §3: objects and reference counts.

use crate::debug;
use crate::object::{self, obm_object, obm_type};

/// Creates an object of type `t`: `t->size` bytes, zero-filled, refcount 1,
/// not tracked. Returns NULL when out of memory, or (with a message on
/// stderr) when `t` is unusable: NULL, too small, OBM_TPFLAGS_HAVE_GC
/// without `traverse` (or a reference map), OBM_TPFLAGS_REF_MAP with a
/// `traverse`, or a reference map naming a word of the head or one at or
/// past `t->size`.
#[no_mangle]
pub unsafe extern "C" fn obm_new(t: *const obm_type) -> *mut obm_object {
    let _use = debug::objects::enter("obm_new");
    // SAFETY: the caller passes a type (or NULL), as the C API requires.
    unsafe { object::new_object(t, 0, "obm_new") }
}

/// As obm_new with `t->size + extra` bytes (for variable-size objects).
#[no_mangle]
pub unsafe extern "C" fn obm_new_var(t: *const obm_type, extra: usize) -> *mut obm_object {
    let _use = debug::objects::enter("obm_new_var");
    // SAFETY: as in obm_new.
    unsafe { object::new_object(t, extra, "obm_new_var") }
}

/// Adds a reference to `o` (which must not be NULL).
#[no_mangle]
pub unsafe extern "C" fn obm_incref(o: *mut obm_object) {
    if let Some(hook) = object::ref_hook() {
        // SAFETY: the hook runs the operation under the same contract.
        return unsafe { hook(o, "obm_incref", Some("obm_xincref"), object::incref) };
    }
    if o.is_null() {
        return object::null_ref_tail("obm_incref", "obm_xincref");
    }
    // SAFETY: the caller passes a live object.
    unsafe { object::incref(o) }
}

/// Drops a reference to `o` (which must not be NULL); at zero the object is
/// finalized (at most once; it may resurrect), untracked, deallocated and
/// freed. A decref of an object whose count is already 0 is reported and
/// aborts.
#[no_mangle]
pub unsafe extern "C" fn obm_decref(o: *mut obm_object) {
    if let Some(hook) = object::ref_hook() {
        // SAFETY: the hook runs the operation under the same contract.
        return unsafe { hook(o, "obm_decref", Some("obm_xdecref"), object::decref) };
    }
    if o.is_null() {
        return object::null_ref_tail("obm_decref", "obm_xdecref");
    }
    // SAFETY: the caller passes a live object and owns a reference.
    unsafe { object::decref(o) }
}

/// obm_incref that ignores NULL.
#[no_mangle]
pub unsafe extern "C" fn obm_xincref(o: *mut obm_object) {
    if let Some(hook) = object::ref_hook() {
        // SAFETY: the hook runs the operation under the same contract.
        return unsafe { hook(o, "obm_xincref", None, object::incref) };
    }
    if !o.is_null() {
        // SAFETY: as in obm_incref.
        unsafe { object::incref(o) }
    }
}

/// obm_decref that ignores NULL.
#[no_mangle]
pub unsafe extern "C" fn obm_xdecref(o: *mut obm_object) {
    if let Some(hook) = object::ref_hook() {
        // SAFETY: the hook runs the operation under the same contract.
        return unsafe { hook(o, "obm_xdecref", None, object::decref) };
    }
    if !o.is_null() {
        // SAFETY: as in obm_decref.
        unsafe { object::decref(o) }
    }
}

/// The reference count of `o` (0 for NULL; OBM_IMMORTAL_REFCNT for an
/// immortal object, static ones included).
#[no_mangle]
pub unsafe extern "C" fn obm_refcnt(o: *const obm_object) -> isize {
    let _use = debug::objects::enter("obm_refcnt");
    if o.is_null() {
        return 0;
    }
    // SAFETY: the caller passes a live object.
    let rc = unsafe { (*o).ob_refcnt };
    if object::is_immortal_count(rc) {
        object::OBM_IMMORTAL_REFCNT
    } else {
        rc
    }
}

/// Makes `o` immortal (PEP 683): it is never finalized or freed, obm_incref
/// and obm_decref no longer write to it (its memory stays shared with the
/// children of a later fork), obm_refcnt returns OBM_IMMORTAL_REFCNT, and
/// the collector treats it as alive, so what it references stays alive too.
/// There is no way back. NULL is ignored. A mortal object whose count
/// reaches 2^31 also becomes immortal (as in CPython 3.14).
#[no_mangle]
pub unsafe extern "C" fn obm_immortalize(o: *mut obm_object) {
    let _use = debug::objects::enter("obm_immortalize");
    if !o.is_null() {
        // SAFETY: the caller passes a live object.
        unsafe {
            debug::objects::check_alive(o, "obm_immortalize");
            object::immortalize(o)
        }
    }
}

/// 1 if `o` is immortal (obm_immortalize, obm_gc_immortalize_frozen or
/// OBM_STATIC_OBJECT_INIT), else 0 (also for NULL).
#[no_mangle]
pub unsafe extern "C" fn obm_is_immortal(o: *const obm_object) -> core::ffi::c_int {
    let _use = debug::objects::enter("obm_is_immortal");
    // SAFETY: the caller passes a live object (or NULL).
    (!o.is_null() && unsafe { object::is_immortal(o) }) as core::ffi::c_int
}
