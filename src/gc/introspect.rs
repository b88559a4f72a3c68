//! `get_objects`, `get_referents`, `get_referrers`: walks over the tracked
//! objects that call a visitor instead of building a list (so they allocate
//! nothing). As with `traverse`, a visitor returning non-zero stops the walk
//! and that value is returned.
//!
//! While a walk runs, no collection may start (it would move objects between
//! the lists being walked): `collecting` is held, so `obm_gc_collect` from a
//! visitor returns 0 and automatic collection waits. A visitor may read the
//! objects and incref them; it must not free, track or untrack tracked
//! objects.

use core::ffi::{c_int, c_void};

use super::{gc, list, NUM_GENERATIONS};
use crate::object::{self, obm_object, obm_visitproc};

/// Calls `visit` on every object `traverse` would walk, with `collecting`
/// held for the duration.
fn walk_generations(lo: usize, hi: usize, mut f: impl FnMut(*mut obm_object) -> c_int) -> c_int {
    let s = gc();
    let was = s.collecting.replace(true);
    let mut r = 0;
    'gens: for i in lo..hi {
        let head = s.gen(i);
        // SAFETY: the heads are initialised lists; visitors do not unlink
        // members (module contract), so `next` stays valid.
        unsafe {
            let mut g = list::next(head);
            while g != head {
                let next = list::next(g);
                r = f(object::object_of(g));
                if r != 0 {
                    break 'gens;
                }
                g = next;
            }
        }
    }
    s.collecting.set(was);
    r
}

/// Calls `visit` on each object tracked in `generation` (0..=2, or -1 for
/// all three). Returns -1 for another generation.
///
/// # Safety
/// `visit` accepts `arg` (it is passed through untouched).
pub unsafe fn get_objects(generation: c_int, visit: obm_visitproc, arg: *mut c_void) -> c_int {
    let (lo, hi) = match generation {
        -1 => (0, NUM_GENERATIONS),
        g if (0..NUM_GENERATIONS as c_int).contains(&g) => (g as usize, g as usize + 1),
        _ => return -1,
    };
    let Some(visit) = visit else { return -1 };
    // SAFETY: the user's visitor, called with a tracked live object.
    walk_generations(lo, hi, |o| unsafe { visit(o, arg) })
}

struct Referents {
    visit: unsafe extern "C" fn(*mut obm_object, *mut c_void) -> c_int,
    arg: *mut c_void,
}

unsafe extern "C" fn visit_non_null(op: *mut obm_object, ctx: *mut c_void) -> c_int {
    if op.is_null() {
        return 0;
    }
    // SAFETY: ctx is the Referents of get_referents, alive for the call.
    unsafe {
        let c = &*(ctx as *const Referents);
        (c.visit)(op, c.arg)
    }
}

/// Calls `visit` on each (non-NULL) reference `o`'s traverse or
/// reference map reports.
/// Objects of non-GC types report none.
///
/// # Safety
/// `o` is null or a live object.
pub unsafe fn get_referents(o: *mut obm_object, visit: obm_visitproc, arg: *mut c_void) -> c_int {
    let Some(visit) = visit else { return -1 };
    // SAFETY: per the contract.
    if o.is_null() || !unsafe { object::is_gc(o) } {
        return 0;
    }
    let mut ctx = Referents { visit, arg };
    // A collection started by the visitor could free `o` mid-traverse.
    let s = gc();
    let was = s.collecting.replace(true);
    // SAFETY: o is a live GC object; ctx outlives the traversal.
    let r = unsafe { object::visit_refs(o, visit_non_null, &raw mut ctx as *mut c_void) };
    s.collecting.set(was);
    r
}

unsafe extern "C" fn visit_is_target(op: *mut obm_object, target: *mut c_void) -> c_int {
    (op as *mut c_void == target) as c_int
}

/// Calls `visit` once on each tracked object (generations 0..=2) whose
/// traverse reports a reference to `target`.
///
/// # Safety
/// As `get_objects`; `target` is only compared, never dereferenced.
pub unsafe fn get_referrers(
    target: *mut obm_object,
    visit: obm_visitproc,
    arg: *mut c_void,
) -> c_int {
    let Some(visit) = visit else { return -1 };
    walk_generations(0, NUM_GENERATIONS, |o| {
        // SAFETY: o is a tracked, live GC object; the user's visitor is
        // called with it.
        unsafe {
            if object::visit_refs(o, visit_is_target, target as *mut c_void) != 0 {
                visit(o, arg)
            } else {
                0
            }
        }
    })
}
