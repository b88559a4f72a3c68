//! C exports of API.md §9: where memory goes (the object census, why an
//! object is alive, and the sampled heap profiler).

use crate::census::{self, obm_type_census};

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
