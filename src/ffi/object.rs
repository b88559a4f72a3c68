//! C exports of API.md §3: objects and reference counts.

use crate::debug;
use crate::object::{self, obm_object, obm_type};

/// Creates an object of type `t`: `t->size` bytes, zero-filled, refcount 1,
/// not tracked. Returns NULL when out of memory, or (with a message on
/// stderr) when `t` is unusable: NULL, too small, or OBM_TPFLAGS_HAVE_GC
/// without `traverse`.
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
    let _use = debug::objects::enter("obm_incref");
    if o.is_null() {
        crate::report::fatal(format_args!(
            "obm_incref(NULL); use obm_xincref for pointers that may be NULL"
        ));
    }
    // SAFETY: the caller passes a live object.
    unsafe {
        debug::objects::check_alive(o, "obm_incref");
        object::incref(o)
    }
}

/// Drops a reference to `o` (which must not be NULL); at zero the object is
/// finalized (at most once; it may resurrect), untracked, deallocated and
/// freed. A decref of an object whose count is already 0 is reported and
/// aborts.
#[no_mangle]
pub unsafe extern "C" fn obm_decref(o: *mut obm_object) {
    let _use = debug::objects::enter("obm_decref");
    if o.is_null() {
        crate::report::fatal(format_args!(
            "obm_decref(NULL); use obm_xdecref for pointers that may be NULL"
        ));
    }
    // SAFETY: the caller passes a live object and owns a reference.
    unsafe {
        debug::objects::check_alive(o, "obm_decref");
        object::decref(o)
    }
}

/// obm_incref that ignores NULL.
#[no_mangle]
pub unsafe extern "C" fn obm_xincref(o: *mut obm_object) {
    let _use = debug::objects::enter("obm_xincref");
    if !o.is_null() {
        // SAFETY: as in obm_incref.
        unsafe {
            debug::objects::check_alive(o, "obm_xincref");
            object::incref(o)
        }
    }
}

/// obm_decref that ignores NULL.
#[no_mangle]
pub unsafe extern "C" fn obm_xdecref(o: *mut obm_object) {
    let _use = debug::objects::enter("obm_xdecref");
    if !o.is_null() {
        // SAFETY: as in obm_decref.
        unsafe {
            debug::objects::check_alive(o, "obm_xdecref");
            object::decref(o)
        }
    }
}

/// The reference count of `o` (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn obm_refcnt(o: *const obm_object) -> isize {
    let _use = debug::objects::enter("obm_refcnt");
    if o.is_null() {
        return 0;
    }
    // SAFETY: the caller passes a live object.
    unsafe { (*o).ob_refcnt }
}
