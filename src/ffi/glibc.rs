//! The rest of glibc's malloc surface a drop-in is expected to cover:
//! `mallinfo2`, `mallinfo`, `malloc_trim`, `malloc_stats` and `mallopt`,
//! answered from obmem's own statistics instead of glibc's empty arena
//! (compiled with the `override` feature only).
//!
//! How `obm_stats` fills `struct mallinfo2` (glibc's meaning in brackets):
//!
//! | member     | obmem figure                                             |
//! |------------|----------------------------------------------------------|
//! | `arena`    | `bytes_mapped - hblkhd` [non-mmapped space from the OS]  |
//! | `ordblks`  | free blocks in pools, all classes [free chunks]          |
//! | `smblks`   | 0 [fastbin chunks: obmem has none]                       |
//! | `hblks`    | `large_blocks` [mmapped chunks]                          |
//! | `hblkhd`   | `large_bytes` [bytes in mmapped chunks]                  |
//! | `usmblks`  | `peak_mapped` [unused since glibc 2.x; was the peak]     |
//! | `fsmblks`  | 0 [bytes in fastbin chunks]                              |
//! | `uordblks` | `bytes_in_use - large_bytes` [allocated, non-mmapped]    |
//! | `fordblks` | `arena - uordblks` [free, non-mmapped]                   |
//! | `keepcost` | `bytes_kept` [releasable by malloc_trim]                 |
//!
//! As in glibc, `arena == uordblks + fordblks` and `uordblks + hblkhd` is
//! every byte handed out. `mallinfo` has the same members as `int`s;
//! obmem saturates them at `INT_MAX` where glibc would wrap.

use crate::heap;
use crate::stats::{self, obm_stats};
use core::ffi::c_int;

/// glibc's `struct mallinfo2` (<malloc.h>).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct MallInfo2 {
    pub arena: usize,
    pub ordblks: usize,
    pub smblks: usize,
    pub hblks: usize,
    pub hblkhd: usize,
    pub usmblks: usize,
    pub fsmblks: usize,
    pub uordblks: usize,
    pub fordblks: usize,
    pub keepcost: usize,
}

/// glibc's `struct mallinfo` (<malloc.h>): the same members as `int`s.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct MallInfo {
    pub arena: c_int,
    pub ordblks: c_int,
    pub smblks: c_int,
    pub hblks: c_int,
    pub hblkhd: c_int,
    pub usmblks: c_int,
    pub fsmblks: c_int,
    pub uordblks: c_int,
    pub fordblks: c_int,
    pub keepcost: c_int,
}

/// The table in the module documentation.
fn from_stats(s: &obm_stats) -> MallInfo2 {
    let hblkhd = s.large_bytes;
    let arena = s.bytes_mapped.saturating_sub(hblkhd);
    let uordblks = s.bytes_in_use.saturating_sub(s.large_bytes).min(arena);
    MallInfo2 {
        arena,
        ordblks: s.classes[..s.num_classes]
            .iter()
            .map(|c| c.blocks_free)
            .sum(),
        smblks: 0,
        hblks: s.large_blocks,
        hblkhd,
        usmblks: s.peak_mapped,
        fsmblks: 0,
        uordblks,
        fordblks: arena - uordblks,
        keepcost: s.bytes_kept,
    }
}

/// glibc's `mallinfo2`: obmem's statistics in glibc's structure (the
/// mapping of every member is in README.md, "glibc's malloc surface",
/// and in this module's documentation).
#[no_mangle]
pub extern "C" fn mallinfo2() -> MallInfo2 {
    from_stats(&stats::snapshot())
}

/// glibc's `mallinfo`: as `mallinfo2` with `int` members, each saturated
/// at `INT_MAX`.
#[no_mangle]
pub extern "C" fn mallinfo() -> MallInfo {
    let m = mallinfo2();
    let i = |v: usize| v.min(c_int::MAX as usize) as c_int;
    MallInfo {
        arena: i(m.arena),
        ordblks: i(m.ordblks),
        smblks: i(m.smblks),
        hblks: i(m.hblks),
        hblkhd: i(m.hblkhd),
        usmblks: i(m.usmblks),
        fsmblks: i(m.fsmblks),
        uordblks: i(m.uordblks),
        fordblks: i(m.fordblks),
        keepcost: i(m.keepcost),
    }
}

/// glibc's `malloc_trim`: gives free memory back to the OS as `obm_trim`
/// does (`pad` is ignored: obmem keeps nothing at the top of a heap).
/// Returns 1 if memory was given back, 0 if there was nothing to give.
#[no_mangle]
pub extern "C" fn malloc_trim(pad: usize) -> c_int {
    let _ = pad;
    (heap::trim_all() > 0) as c_int
}

/// glibc's `malloc_stats`: prints obmem's statistics table (the one of
/// `obm_print_stats` and `OBMEM_SHOW_STATS=1`) to stderr.
#[no_mangle]
pub extern "C" fn malloc_stats() {
    stats::print(2);
}

// glibc's parameter number (<malloc.h>) and its largest value on 64-bit
// targets (80 * sizeof(size_t) / 4).
const M_MXFAST: c_int = 1;
const MAX_FAST_SIZE: c_int = 160;

/// glibc's `mallopt`: accepted and answered as glibc 2.36 answers: 1
/// (success), or 0 for M_MXFAST outside 0..=160, the only value it
/// refuses (older glibc also refused M_MMAP_THRESHOLD above 32 MiB);
/// any other parameter number returns 1 too. obmem changes nothing: its
/// blocks above 128 KiB are always mapped (glibc's default
/// M_MMAP_THRESHOLD), free memory goes back to the OS after
/// `OBMEM_PURGE_DELAY_MS` or on `malloc_trim` (M_TRIM_THRESHOLD,
/// M_TOP_PAD), and it has no fastbins, arena count, mmap count limit,
/// check action or perturb byte to set.
#[no_mangle]
pub extern "C" fn mallopt(param: c_int, value: c_int) -> c_int {
    (param != M_MXFAST || (0..=MAX_FAST_SIZE).contains(&value)) as c_int
}
