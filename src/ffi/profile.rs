//! C exports of API.md §9: where memory goes (the object census, why an
//! object is alive, and the sampled heap profiler).

use crate::census::{self, obm_type_census};
use crate::object::{obm_object, obm_visitproc};
use core::ffi::{c_int, c_void};

/// Fills `out[0..cap]` with the live objects per type (tracked or not, GC
/// or not), the most bytes first, and returns the number of types with
/// live objects, which may exceed `cap`: `obm_census(NULL, 0)` just counts
/// them, as `snprintf(NULL, 0, ...)` does. `bytes` is the usable size of
/// the objects' memory blocks (`obm_usable_size`), including the 16-byte
/// collector header in front of objects of GC types and of types with a
/// `finalize`. Types beyond the census table's capacity (4096) are
/// counted together in a row whose `type` is NULL. Always on; a read of a
/// table, no allocation.
#[no_mangle]
pub unsafe extern "C" fn obm_census(out: *mut obm_type_census, cap: usize) -> usize {
    // SAFETY: the caller passes `cap` writable rows (or NULL).
    unsafe { census::census(out, cap) }
}

/// Why is `target` still alive? Calls `visit(o, arg)` on each object of a
/// shortest chain of references from a root to `target`, root first, and
/// returns 0. A root is an object referenced from outside the tracked
/// objects (by a C variable, an untracked object, ...), found as the
/// collector finds them: each tracked object's count minus the references
/// other tracked objects hold (reported by `traverse`). A target that is
/// itself a root is a chain of one; `target` need not be tracked.
/// Returns 1 without calling `visit` when no root reaches `target` (it is
/// cyclic garbage that the next full collection frees), and the first
/// non-zero value `visit` returns, which stops the walk. Returns -1 with
/// errno EINVAL for a NULL `target` or `visit`, and -1 with ENOMEM when the
/// search's tables (at most 64 bytes per tracked object, freed before it returns)
/// cannot be allocated. No collection runs meanwhile; `visit` may read and
/// incref the objects but must not free, track or untrack any. Under the
/// object model's rule: one thread at a time (obm_lock).
#[no_mangle]
pub unsafe extern "C" fn obm_gc_path_to_root(
    target: *mut obm_object,
    visit: obm_visitproc,
    arg: *mut c_void,
) -> c_int {
    let _use = crate::debug::objects::enter("obm_gc_path_to_root");
    // SAFETY: the caller passes a live object (or NULL) and its visitor's arg.
    unsafe { crate::gc::path::path_to_root(target, visit, arg) }
}
