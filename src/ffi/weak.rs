//! C exports of docs/API.md §6: weak references and ephemerons.

use core::ffi::c_void;

use crate::debug;
use crate::gc::weak::{self, obm_weakref, obm_weakref_callback, NewError};
use crate::object::obm_object;

fn einval<T>() -> *mut T {
    crate::os::set_errno(libc::EINVAL);
    core::ptr::null_mut()
}

/// Makes a new weak reference to `target` (refcount 1, owned by the
/// caller; obm_decref frees it), whose type must have
/// OBM_TPFLAGS_WEAKREFABLE. Returns NULL with errno = EINVAL for NULL, a
/// static object or an object of another type, NULL with ENOMEM when memory
/// runs out. When `target` dies by its count reaching zero, after its
/// finalize (unless that resurrected it), every weak reference to it is
/// cleared and then the callbacks `cb(ref, ctx)` of those still alive run,
/// the most recently created first, each while obmem holds a reference to
/// its `ref`; then `target` is deallocated. In a collection, the callback
/// runs only if the weak reference is not garbage itself (CPython 3.14's
/// order, docs/GC.md). `cb` may be NULL. A weak reference is a GC object
/// (tracked from the start).
#[no_mangle]
pub unsafe extern "C" fn obm_weakref_new(
    target: *mut obm_object,
    cb: obm_weakref_callback,
    ctx: *mut c_void,
) -> *mut obm_weakref {
    let _use = debug::objects::enter("obm_weakref_new");
    if target.is_null() {
        return einval();
    }
    // SAFETY: the caller passes a live object (checked first under the hooks).
    unsafe {
        debug::objects::check_alive(target, "obm_weakref_new");
        match weak::new_weakref(target, cb, ctx) {
            Ok(w) => w,
            Err(NewError::Invalid) => einval(),
            Err(NewError::NoMemory) => core::ptr::null_mut(),
        }
    }
}

/// A new (strong) reference to the target of `ref`, or NULL once the
/// target is dead (errno is left alone then). NULL with errno = EINVAL if
/// `ref` is NULL or not a weak reference.
#[no_mangle]
pub unsafe extern "C" fn obm_weakref_get(r: *mut obm_weakref) -> *mut obm_object {
    let _use = debug::objects::enter("obm_weakref_get");
    // SAFETY: the caller passes a live object or NULL.
    unsafe {
        if !r.is_null() {
            debug::objects::check_alive(r as *mut obm_object, "obm_weakref_get");
        }
        if weak::kind(r as *mut obm_object) != Some(true) {
            return einval();
        }
        weak::get(r)
    }
}

/// The number of weak references and ephemerons whose target (key) is
/// `target`; 0 for NULL and for objects that cannot be weakly referenced.
#[no_mangle]
pub unsafe extern "C" fn obm_weakref_count(target: *const obm_object) -> usize {
    let _use = debug::objects::enter("obm_weakref_count");
    if target.is_null() {
        return 0;
    }
    // SAFETY: the caller passes a live object.
    unsafe {
        debug::objects::check_alive(target, "obm_weakref_count");
        weak::count(target as *mut obm_object)
    }
}

/// Makes an ephemeron (refcount 1, owned by the caller): a GC object that
/// holds a reference to `value` (which may be NULL) while `key` is alive,
/// and a weak one to `key`, so that a reference from `value` (or from what
/// it reaches) back to `key` does not keep `key` alive. When `key` dies, by
/// its count or in a collection, the ephemeron drops `value` and both
/// accessors return NULL. `key` must be weak-referenceable (a GC type, for
/// the collector to see cycles through it); else, and for NULL, NULL with
/// errno = EINVAL. Returns NULL with ENOMEM when memory runs out.
#[no_mangle]
pub unsafe extern "C" fn obm_ephemeron_new(
    key: *mut obm_object,
    value: *mut obm_object,
) -> *mut obm_object {
    let _use = debug::objects::enter("obm_ephemeron_new");
    if key.is_null() {
        return einval();
    }
    // SAFETY: the caller passes live objects (value may be NULL).
    unsafe {
        debug::objects::check_alive(key, "obm_ephemeron_new");
        if !value.is_null() {
            debug::objects::check_alive(value, "obm_ephemeron_new");
        }
        match weak::new_ephemeron(key, value) {
            Ok(w) => w as *mut obm_object,
            Err(NewError::Invalid) => einval(),
            Err(NewError::NoMemory) => core::ptr::null_mut(),
        }
    }
}

/// The ephemeron `e` after the kind check: NULL (with EINVAL) if it is not one.
///
/// # Safety
/// `e` is null or a live object.
unsafe fn as_ephemeron(e: *mut obm_object, func: &str) -> *mut obm_weakref {
    // SAFETY: per the contract.
    unsafe {
        if !e.is_null() {
            debug::objects::check_alive(e, func);
        }
        if weak::kind(e) != Some(false) {
            return einval();
        }
    }
    e as *mut obm_weakref
}

/// A new reference to the key of the ephemeron `e`, or NULL once the key is
/// dead. NULL with errno = EINVAL if `e` is NULL or not an ephemeron.
#[no_mangle]
pub unsafe extern "C" fn obm_ephemeron_key(e: *mut obm_object) -> *mut obm_object {
    let _use = debug::objects::enter("obm_ephemeron_key");
    // SAFETY: the caller passes a live object or NULL.
    unsafe {
        let w = as_ephemeron(e, "obm_ephemeron_key");
        if w.is_null() {
            return core::ptr::null_mut();
        }
        weak::get(w)
    }
}

/// A new reference to the value of the ephemeron `e`, or NULL once the key
/// is dead (or the value was NULL). NULL with errno = EINVAL if `e` is NULL
/// or not an ephemeron.
#[no_mangle]
pub unsafe extern "C" fn obm_ephemeron_value(e: *mut obm_object) -> *mut obm_object {
    let _use = debug::objects::enter("obm_ephemeron_value");
    // SAFETY: the caller passes a live object or NULL.
    unsafe {
        let w = as_ephemeron(e, "obm_ephemeron_value");
        if w.is_null() {
            return core::ptr::null_mut();
        }
        weak::value(w)
    }
}
