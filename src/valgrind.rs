//! Running under Valgrind's memcheck: obmem's blocks made visible to it.
//!
//! Under memcheck, obmem's pools would be one big mapping to it: an
//! overrun of an `obm_mem_malloc` block, a use after free or a leaked
//! block would go unseen. So at initialisation (`lifecycle::init`, from
//! the library constructor or before the first block is served) obmem
//! asks whether it runs on Valgrind (`RUNNING_ON_VALGRIND`) with memcheck
//! (which answers its own requests with -1), and only then installs these
//! hooks on the three domains, as the debug hooks are installed (a
//! `Dispatch` with aligned and usable-size entries). Otherwise nothing is installed: the fast paths are
//! unchanged, and other tools (callgrind, massif, ...) see obmem as it is.
//!
//! Each block gets redzones inside the core block that holds it:
//!
//! ```text
//!   core block: [front: 16, or the alignment][data: n][tail >= 16]
//!                 header: n and a check word ^  ^ the pointer the program gets
//! ```
//!
//! The whole core block is made no-access, then `MALLOCLIKE_BLOCK`
//! declares the data as a heap block of `n` bytes with its allocation
//! stack: reading or writing the redzones is an invalid access, reported
//! with that stack, and a block never freed is a leak. `free` declares it
//! freed (`FREELIKE_BLOCK`: its data becomes no-access, a second free is an
//! invalid free) and parks it in a quarantine of the last
//! `QUARANTINE_SLOTS` frees, so that a use after free is reported with
//! both stacks; only when it leaves the quarantine is the core block made
//! defined again and given back to the pools. Blocks over
//! `QUARANTINE_MAX_BLOCK` go back at once.
//!
//! Not seen: an access that jumps over the redzones into a free block of a
//! pool (free pool memory is ordinary memory to memcheck).
//!
//! The requests are issued with Valgrind's magic instruction sequence
//! (valgrind.h, `VALGRIND_DO_CLIENT_REQUEST` for amd64), on x86-64 only:
//! elsewhere `running()` is false and obmem is invisible to memcheck.

use crate::alloc;
use crate::arena_map::{self, CHUNK_NONE};
use crate::config::{ALIGNMENT, QUARANTINE_MAX_BLOCK};
use crate::domain::{self, obm_allocator, obm_domain, Dispatch};
use crate::free;
use crate::os;
use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::*};

// Client request numbers (valgrind.h, memcheck.h).
const RUNNING_ON_VALGRIND: usize = 0x1001;
const MALLOCLIKE_BLOCK: usize = 0x1301;
const FREELIKE_BLOCK: usize = 0x1302;
/// VG_USERREQ_TOOL_BASE('M', 'C'): memcheck's first request.
const MC_BASE: usize = ((b'M' as usize) << 24) | ((b'C' as usize) << 16);
const MAKE_MEM_NOACCESS: usize = MC_BASE;
const MAKE_MEM_DEFINED: usize = MC_BASE + 2;

/// Sends a client request to Valgrind; `default` when not running on it.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn request(default: usize, req: usize, a1: usize, a2: usize, a3: usize, a4: usize) -> usize {
    let args: [usize; 6] = [req, a1, a2, a3, a4, 0];
    let mut result = default;
    // SAFETY: the four rotations of rdi add up to 128 bits (rdi keeps its
    // value; declared clobbered anyway) and `xchg rbx, rbx` changes
    // nothing: natively a no-op. Valgrind recognises the sequence, reads
    // the six words at rax and puts its answer in rdx. The rotations
    // change the flags, which asm! assumes by default.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            inout("rdx") result,
            in("rax") args.as_ptr(),
            out("rdi") _,
            options(nostack),
        );
    }
    result
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn request(default: usize, _req: usize, _a1: usize, _a2: usize, _a3: usize, _a4: usize) -> usize {
    default
}

/// Whether the process runs on Valgrind (any tool).
fn running() -> bool {
    request(0, RUNNING_ON_VALGRIND, 0, 0, 0, 0) != 0
}

/// Whether the tool is memcheck: it answers its own requests with -1,
/// other tools with the default.
fn memcheck() -> bool {
    request(0, MAKE_MEM_DEFINED, 0, 0, 0, 0) == usize::MAX
}

fn make_noaccess(p: *const u8, n: usize) {
    request(0, MAKE_MEM_NOACCESS, p as usize, n, 0, 0);
}

fn make_defined(p: *const u8, n: usize) {
    request(0, MAKE_MEM_DEFINED, p as usize, n, 0, 0);
}

/// The redzone after the data, and the least before it (the header).
const REDZONE: usize = 16;
/// Marks a live block's header (mixed with its address).
const LIVE: usize = 0x0b3e_5a1d_a11c_e5ed;
/// A freed block's header: a second free is memcheck's to report.
const FREED: usize = 0x0b3e_5a1d_dead_b10c;

/// The 16 bytes before the data: the size, the front redzone's log2 (top
/// byte), and a check word telling our blocks from others.
#[repr(C)]
struct Header {
    size_and_front: usize,
    check: usize,
}
const _: () = assert!(core::mem::size_of::<Header>() == REDZONE);
const FRONT_SHIFT: u32 = 56;

/// Installs the hooks if the process runs on memcheck. Called once, from
/// `lifecycle::init`, before the debug hooks (which then wrap these).
pub fn init() {
    if !running() || !memcheck() {
        return;
    }
    probe_valgrind_malloc();
    let hooks = Dispatch {
        table: obm_allocator {
            ctx: ptr::null_mut(),
            malloc: Some(hook_malloc),
            calloc: Some(hook_calloc),
            realloc: Some(hook_realloc),
            free: Some(hook_free),
        },
        aligned: Some(hook_aligned),
        usable: Some(hook_usable),
    };
    for d in [
        obm_domain::OBM_DOMAIN_RAW,
        obm_domain::OBM_DOMAIN_MEM,
        obm_domain::OBM_DOMAIN_OBJ,
    ] {
        domain::set_dispatch(d, hooks);
    }
}

#[cold]
fn enomem() -> *mut u8 {
    os::set_errno(libc::ENOMEM);
    ptr::null_mut()
}

/// A block of `n` bytes aligned to `align` (a power of two), declared to
/// memcheck; zero-filled if `zeroed`.
fn alloc_block(n: usize, align: usize, zeroed: bool) -> *mut u8 {
    let front = align.max(REDZONE);
    let Some(total) = n
        .checked_add(front + REDZONE)
        .filter(|&t| t <= isize::MAX as usize)
    else {
        return enomem();
    };
    let core = if align <= ALIGNMENT {
        alloc::malloc(total)
    } else {
        alloc::aligned(align, total)
    };
    if core.is_null() {
        return core;
    }
    // SAFETY: core holds `total` bytes; data and header are inside it.
    unsafe {
        let p = core.add(front);
        if zeroed {
            ptr::write_bytes(p, 0, n);
        }
        let h = p.sub(REDZONE) as *mut Header;
        h.write(Header {
            size_and_front: n | ((front.trailing_zeros() as usize) << FRONT_SHIFT),
            check: p as usize ^ LIVE,
        });
        make_noaccess(core, free::usable_size(core, "malloc"));
        request(0, MALLOCLIKE_BLOCK, p as usize, n, 0, zeroed as usize);
        p
    }
}

/// The header of `p`, made readable for the call and no-access again.
/// Blocks start 16-byte aligned, so the header is aligned.
///
/// # Safety
/// `p` is a block start obmem returned, so the 16 bytes before it are
/// mapped (a core block's front, or a pool's or large block's header).
unsafe fn read_header(p: *const u8) -> Header {
    // SAFETY: per the contract.
    let h = unsafe { p.sub(REDZONE) };
    make_defined(h, REDZONE);
    // SAFETY: mapped per the contract.
    let v = unsafe { (h as *const Header).read() };
    // Not a header (a block served before the hooks, or one the program
    // overwrote): leave it readable.
    if v.check == p as usize ^ LIVE || v.check == p as usize ^ FREED {
        make_noaccess(h, REDZONE);
    }
    v
}

/// The requested size of a live block of these hooks; None for a block
/// obmem served before they were installed.
///
/// # Safety
/// `p` is a live block obmem returned.
unsafe fn usable_size(p: *const u8) -> Option<usize> {
    if foreign(p) {
        if !VALGRIND_MALLOC.load(Relaxed) {
            // Not a block: the domain's caller reports it.
            return None;
        }
        // SAFETY: a block of Valgrind's malloc.
        return Some(unsafe { valgrind_usable_size(p) });
    }
    // SAFETY: per the contract.
    let h = unsafe { read_header(p) };
    (h.check == p as usize ^ LIVE).then_some(h.size_and_front & ((1 << FRONT_SHIFT) - 1))
}

/// A block obmem never served: memcheck replaces every function named
/// malloc, free, ... in every library, obmem's included (unless the user
/// passes `--soname-synonyms=somalloc=nouserintercepts`), so the drop-in
/// malloc family's blocks come from Valgrind's malloc, seen by memcheck
/// already. The object domain (`obm_object_*`, which keep addresses of
/// their own: src/ffi/domains.rs) and `obm_usable_size` accept them, as
/// they accept malloc's blocks, and hand them back to Valgrind through
/// `valgrind_free`, `valgrind_realloc` and `valgrind_usable_size`.
fn foreign(p: *const u8) -> bool {
    arena_map::lookup(p as usize) == CHUNK_NONE
}

/// Whether the C names reach Valgrind's malloc (`probe_valgrind_malloc`).
/// If not (`--soname-synonyms=somalloc=nouserintercepts`: the malloc family
/// is obmem's and goes through these hooks too), a foreign pointer is no
/// block at all, reported as obmem reports one without Valgrind.
static VALGRIND_MALLOC: AtomicBool = AtomicBool::new(false);

/// Sets `VALGRIND_MALLOC`: a block from the C name `malloc` is Valgrind's
/// if obmem does not know it. Called by `init` before the hooks are
/// installed (obmem's malloc, if it is not replaced, serves the probe
/// from its pools: `lifecycle::init` returns at once when re-entered).
fn probe_valgrind_malloc() {
    let malloc: unsafe extern "C" fn(usize) -> *mut c_void = core::hint::black_box(libc::malloc);
    // SAFETY: malloc has no precondition.
    let p = unsafe { malloc(1) } as *mut u8;
    if p.is_null() {
        return;
    }
    let valgrinds = foreign(p);
    VALGRIND_MALLOC.store(valgrinds, Relaxed);
    if valgrinds {
        // SAFETY: a live block of Valgrind's malloc.
        unsafe { valgrind_free(p) }
    } else {
        // SAFETY: a live block of obmem's, served before the hooks.
        unsafe { free::free(p, "free") }
    }
}

// Valgrind's functions for its blocks: calls through the addresses of the
// C names, which Valgrind redirects to its own. The calls are made through
// pointers the compiler cannot see through (`black_box`): obmem defines
// these names itself (the `override` feature), and a direct call would be
// bound to obmem's definition, inlined (LTO), and never reach Valgrind
// (obmem would call itself: endless recursion).

/// Valgrind's `free` of its block `p`.
///
/// # Safety
/// `p` is a live block of Valgrind's malloc (`foreign`).
unsafe fn valgrind_free(p: *mut u8) {
    let f: unsafe extern "C" fn(*mut c_void) = core::hint::black_box(libc::free);
    // SAFETY: per the contract.
    unsafe { f(p as *mut c_void) }
}

/// Valgrind's `realloc` of its block `p`.
///
/// # Safety
/// `p` is a live block of Valgrind's malloc (`foreign`).
unsafe fn valgrind_realloc(p: *mut u8, n: usize) -> *mut u8 {
    let f: unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void =
        core::hint::black_box(libc::realloc);
    // SAFETY: per the contract.
    unsafe { f(p as *mut c_void, n) as *mut u8 }
}

/// Valgrind's `malloc_usable_size` of its block `p`.
///
/// # Safety
/// `p` is a live block of Valgrind's malloc (`foreign`).
unsafe fn valgrind_usable_size(p: *const u8) -> usize {
    let f: unsafe extern "C" fn(*mut c_void) -> usize =
        core::hint::black_box(libc::malloc_usable_size);
    // SAFETY: per the contract.
    unsafe { f(p as *mut c_void) }
}

/// Freed blocks waiting before they go back to the pools (their core
/// block starts): a ring written with swaps, so no lock (and nothing to
/// take care of at fork).
const QUARANTINE_SLOTS: usize = 4096;
static QUARANTINE: [AtomicPtr<u8>; QUARANTINE_SLOTS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; QUARANTINE_SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// Gives a core block back to the pools, readable for them again.
///
/// # Safety
/// `core` is a core block of these hooks, out of the quarantine.
unsafe fn release(core: *mut u8) {
    make_defined(core, free::usable_size(core, "free"));
    // SAFETY: per the contract, nobody else holds it.
    unsafe { free::free(core, "free") }
}

/// Frees a block of these hooks (null is ignored).
///
/// # Safety
/// `p` is null or a block obmem returned, not used afterwards.
unsafe fn free_block(p: *mut u8) {
    if p.is_null() {
        return;
    }
    if foreign(p) {
        if !VALGRIND_MALLOC.load(Relaxed) {
            crate::report::invalid_pointer("free", p);
        }
        // SAFETY: a block of Valgrind's malloc.
        return unsafe { valgrind_free(p) };
    }
    // SAFETY: per the contract.
    let h = unsafe { read_header(p) };
    if h.check != p as usize ^ LIVE {
        // A second free: memcheck reports it with both stacks. Otherwise
        // the block was served before the hooks were installed, or the
        // program overwrote its header (memcheck reported that write):
        // without its header it cannot be given back safely, so it is kept.
        if h.check == p as usize ^ FREED {
            request(0, FREELIKE_BLOCK, p as usize, 0, 0, 0);
        }
        return;
    }
    let front = 1usize << (h.size_and_front >> FRONT_SHIFT);
    // SAFETY: the header says p is `front` bytes into its core block.
    let core = unsafe { p.sub(front) };
    let hp = p.wrapping_sub(REDZONE) as *mut Header;
    make_defined(hp as *const u8, REDZONE);
    // SAFETY: the header is ours and readable for this write.
    unsafe { (*hp).check = p as usize ^ FREED };
    make_noaccess(hp as *const u8, REDZONE);
    request(0, FREELIKE_BLOCK, p as usize, 0, 0, 0);
    if free::usable_size(core, "free") > QUARANTINE_MAX_BLOCK {
        // SAFETY: freed above, nobody holds it.
        return unsafe { release(core) };
    }
    let slot = NEXT_SLOT.fetch_add(1, Relaxed) % QUARANTINE_SLOTS;
    let old = QUARANTINE[slot].swap(core, AcqRel);
    if !old.is_null() {
        // SAFETY: the swap took it out of the quarantine: only we hold it.
        unsafe { release(old) }
    }
}

unsafe extern "C" fn hook_malloc(_ctx: *mut c_void, n: usize) -> *mut c_void {
    alloc_block(n, ALIGNMENT, false) as *mut c_void
}

unsafe extern "C" fn hook_calloc(_ctx: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void {
    match nelem.checked_mul(elsize) {
        Some(n) => alloc_block(n, ALIGNMENT, true) as *mut c_void,
        None => enomem() as *mut c_void,
    }
}

unsafe extern "C" fn hook_realloc(_ctx: *mut c_void, p: *mut c_void, n: usize) -> *mut c_void {
    let p = p as *mut u8;
    if p.is_null() {
        return alloc_block(n, ALIGNMENT, false) as *mut c_void;
    }
    if foreign(p) {
        if !VALGRIND_MALLOC.load(Relaxed) {
            crate::report::invalid_pointer("realloc", p);
        }
        // SAFETY: a block of Valgrind's malloc.
        return unsafe { valgrind_realloc(p, n) as *mut c_void };
    }
    // SAFETY: the caller passes a live block of this domain.
    let old = unsafe { usable_size(p) }.unwrap_or_else(|| free::usable_size(p, "realloc"));
    let q = alloc_block(n, ALIGNMENT, false);
    if !q.is_null() {
        // SAFETY: both blocks are live, distinct and hold min(old, n) bytes.
        unsafe {
            ptr::copy_nonoverlapping(p, q, old.min(n));
            free_block(p);
        }
    }
    q as *mut c_void
}

unsafe extern "C" fn hook_free(_ctx: *mut c_void, p: *mut c_void) {
    // SAFETY: the caller passes null or a block of this domain.
    unsafe { free_block(p as *mut u8) }
}

fn hook_aligned(_d: obm_domain, align: usize, n: usize) -> *mut u8 {
    alloc_block(n, align, false)
}

fn hook_usable(p: *const u8, _func: &str) -> Option<usize> {
    // SAFETY: the domain asks only for blocks the program passes to a
    // usable-size function, which must be live blocks.
    unsafe { usable_size(p) }
}
