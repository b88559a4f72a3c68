//! C exports of docs/API.md §3: objects and reference counts.

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
    if debug::active() {
        // SAFETY: as below.
        return unsafe { checked_ref(o, "obm_incref", Some("obm_xincref"), object::incref) };
    }
    if o.is_null() {
        null_ref("obm_incref", "obm_xincref");
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
    if debug::active() {
        // SAFETY: as below.
        return unsafe { checked_ref(o, "obm_decref", Some("obm_xdecref"), object::decref) };
    }
    if o.is_null() {
        null_ref("obm_decref", "obm_xdecref");
    }
    // SAFETY: the caller passes a live object and owns a reference.
    unsafe { object::decref(o) }
}

/// obm_incref that ignores NULL.
#[no_mangle]
pub unsafe extern "C" fn obm_xincref(o: *mut obm_object) {
    if debug::active() {
        // SAFETY: as in obm_incref.
        return unsafe { checked_ref(o, "obm_xincref", None, object::incref) };
    }
    if !o.is_null() {
        // SAFETY: as in obm_incref.
        unsafe { object::incref(o) }
    }
}

/// obm_decref that ignores NULL.
#[no_mangle]
pub unsafe extern "C" fn obm_xdecref(o: *mut obm_object) {
    if debug::active() {
        // SAFETY: as in obm_decref.
        return unsafe { checked_ref(o, "obm_xdecref", None, object::decref) };
    }
    if !o.is_null() {
        // SAFETY: as in obm_decref.
        unsafe { object::decref(o) }
    }
}

#[cold]
#[inline(never)]
fn null_ref(func: &str, instead: &str) -> ! {
    crate::report::fatal(format_args!(
        "{func}(NULL); use {instead} for pointers that may be NULL"
    ))
}

/// The reference-count functions under the debug hooks: the concurrent-use
/// and freed-object checks, kept off the fast path, which is one load and
/// one branch more than the bare operation. `null_instead` names the
/// function to use instead when NULL is an error; None: NULL is ignored.
///
/// # Safety
/// As the exported function `func`.
#[cold]
#[inline(never)]
unsafe fn checked_ref(
    o: *mut obm_object,
    func: &str,
    null_instead: Option<&str>,
    op: unsafe fn(*mut obm_object),
) {
    let _use = debug::objects::enter(func);
    if o.is_null() {
        match null_instead {
            Some(instead) => null_ref(func, instead),
            None => return,
        }
    }
    // SAFETY: per the contract, a live object (checked first).
    unsafe {
        debug::objects::check_alive(o, func);
        op(o)
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
