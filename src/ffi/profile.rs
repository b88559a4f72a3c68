//! C exports of docs/API.md §9: where memory goes (the object census, why an
//! object is alive, and the sampled heap profiler).

use crate::census;
use crate::object::{obm_object, obm_type, obm_visitproc};
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
    let mut i = 0;
    census::sorted(|ty, objects, bytes| {
        if i < cap && !out.is_null() {
            // SAFETY: i < cap rows, writable per the contract.
            unsafe {
                out.add(i).write(obm_type_census {
                    r#type: ty as *const obm_type,
                    objects,
                    bytes,
                })
            };
        }
        i += 1;
    })
}

/// One type's row of `obm_census`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy)]
pub struct obm_type_census {
    /// The type (NULL: types beyond the census table's capacity).
    pub r#type: *const obm_type,
    /// Live objects of the type.
    pub objects: usize,
    /// Bytes of their memory blocks (usable size, collector header included).
    pub bytes: usize,
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

/// `obm_prof_dump` format: folded stacks, one line per stack,
/// `outermost;...;innermost <live bytes>` (flamegraph.pl, inferno, speedscope).
pub const OBM_PROF_FOLDED: c_int = 0;
/// `obm_prof_dump` format: the top stacks by live bytes, for a person.
pub const OBM_PROF_TEXT: c_int = 1;
const _: () = assert!(
    OBM_PROF_FOLDED == crate::prof::dump::FOLDED && OBM_PROF_TEXT == crate::prof::dump::TEXT
);

/// Starts a new heap profile: about one allocation per `sample_bytes`
/// allocated bytes (512 KiB, tcmalloc's default, costs the allocation
/// path a few percent), of every domain, the malloc family, aligned and
/// large blocks and objects, records its call stack (captured without
/// malloc, at most 48 frames) and is followed until it is freed. Intervals
/// are random (exponential), and each sample of `n` bytes stands for
/// `n / (1 - exp(-n / sample_bytes))` bytes, so the estimates are
/// unbiased. A sampled block is served from a mapping of its own (a page
/// or more). Allocations made while allocator hooks are installed
/// (obm_set_allocator, the debug hooks) are not sampled. A profile already
/// running is replaced. Returns 0, or -1 with errno EINVAL when
/// `sample_bytes` is 0 or above 2^40, ENOMEM when the profile's table
/// (3.5 MiB of address space) cannot be mapped. Any thread may call it.
#[no_mangle]
pub extern "C" fn obm_prof_start(sample_bytes: usize) -> c_int {
    if crate::prof::start(sample_bytes) {
        0
    } else {
        -1
    }
}

/// Stops sampling. The profile stays for obm_prof_dump, and blocks sampled
/// still leave its live counts when they are freed.
#[no_mangle]
pub extern "C" fn obm_prof_stop() {
    crate::prof::stop()
}

/// Writes the current profile (or the last one, after obm_prof_stop; an
/// empty file if there was none) to `path`, created or truncated, in
/// `format`: OBM_PROF_FOLDED (per stack, the estimated live bytes; stacks
/// with none are left out) or OBM_PROF_TEXT (totals, the stacks captured
/// since the process started and how many of them needed libgcc's slow
/// unwinder, then the top 25
/// stacks by estimated live bytes with their live blocks and the bytes
/// allocated since the start, innermost frame first). Frames are named by
/// dladdr: the symbol, or `library+0xoffset`. Returns 0, or -1 with errno
/// EINVAL (NULL path or another format) or the error of open or write
/// (e.g. ENOENT, EACCES, ENOSPC). `OBMEM_PROF=<bytes>` starts a profile at
/// load time and `OBMEM_PROF_DUMP=<prefix>` writes `<prefix>.<pid>.folded`
/// at exit.
#[no_mangle]
pub unsafe extern "C" fn obm_prof_dump(path: *const core::ffi::c_char, format: c_int) -> c_int {
    if crate::prof::dump::dump_path(path, format) {
        0
    } else {
        -1
    }
}
