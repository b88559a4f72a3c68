//! Statistics exports.

use crate::stats::{self, obm_stats};

/// Fills `*out` with a snapshot of the allocator's statistics.
#[no_mangle]
pub unsafe extern "C" fn obm_get_stats(out: *mut obm_stats) {
    if !out.is_null() {
        // SAFETY: the caller passes a writable obm_stats.
        unsafe { out.write(stats::snapshot()) };
    }
}

/// Prints a table of the statistics to file descriptor `fd`.
#[no_mangle]
pub unsafe extern "C" fn obm_print_stats(fd: i32) {
    stats::print(fd);
}

/// Gives back to the OS, now, the free memory obmem keeps for reuse: the
/// pages of free pool units and spare arenas of every thread's heap, the
/// calling thread's empty pools and the cached large mappings. (Another
/// thread's empty pools kept for its next allocation, at most one per size
/// class, stay.) Returns the bytes given back. Without it, free memory goes
/// back once unused for `OBMEM_PURGE_DELAY_MS`, checked when some thread
/// allocates or frees through a slow path; an idle process should call it.
#[no_mangle]
pub extern "C" fn obm_trim() -> usize {
    crate::heap::trim_all()
}
