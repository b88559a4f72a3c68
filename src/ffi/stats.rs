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
