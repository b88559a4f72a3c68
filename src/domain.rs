//! The three allocation domains, as CPython's PyMem_Raw / PyMem / PyObject,
//! and the per-domain allocator hooks (PyMem_SetAllocator).
//!
//! Each domain dispatches through an `obm_allocator` table. Until a hook is
//! installed the tables are the defaults and the entry points call the core
//! directly after one relaxed load of `HOOKED`, so hooks cost nothing when
//! unused. Installed tables are copied into never-freed slots and published
//! with one atomic pointer store, so a thread reading a table never sees it
//! half-written.

use crate::alloc;
use crate::config::ALIGNMENT;
use crate::free;
use crate::heap;
use crate::prof;
use crate::report;
use crate::sync::SpinLock;
use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering::*};

/// An allocation domain (PyMemAllocatorDomain).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum obm_domain {
    /// Raw memory: thread-safe, usable anywhere (PyMem_RawMalloc).
    OBM_DOMAIN_RAW = 0,
    /// General memory (PyMem_Malloc).
    OBM_DOMAIN_MEM = 1,
    /// Object memory (PyObject_Malloc); the drop-in malloc family uses it too.
    OBM_DOMAIN_OBJ = 2,
}

/// An allocator for one domain (PyMemAllocatorEx). `ctx` is passed as the
/// first argument of every function.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy)]
pub struct obm_allocator {
    pub ctx: *mut c_void,
    pub malloc: Option<unsafe extern "C" fn(ctx: *mut c_void, n: usize) -> *mut c_void>,
    pub calloc:
        Option<unsafe extern "C" fn(ctx: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void>,
    pub realloc:
        Option<unsafe extern "C" fn(ctx: *mut c_void, p: *mut c_void, n: usize) -> *mut c_void>,
    pub free: Option<unsafe extern "C" fn(ctx: *mut c_void, p: *mut c_void)>,
}

// SAFETY: a table is immutable once published; ctx is the user's to share.
unsafe impl Send for obm_allocator {}
unsafe impl Sync for obm_allocator {}

unsafe extern "C" fn core_malloc(_ctx: *mut c_void, n: usize) -> *mut c_void {
    alloc::malloc(n) as *mut c_void
}
unsafe extern "C" fn core_calloc(_ctx: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void {
    alloc::calloc(nelem, elsize) as *mut c_void
}
unsafe extern "C" fn core_realloc(_ctx: *mut c_void, p: *mut c_void, n: usize) -> *mut c_void {
    // SAFETY: the caller passes a live block of this allocator or null.
    unsafe { alloc::realloc(p as *mut u8, n, "realloc") as *mut c_void }
}
unsafe extern "C" fn core_free(_ctx: *mut c_void, p: *mut c_void) {
    // SAFETY: the caller passes a live block of this allocator or null.
    unsafe { free::free(p as *mut u8, "free") }
}

/// The allocator every domain uses by default: obmem's pools.
pub static CORE: obm_allocator = obm_allocator {
    ctx: ptr::null_mut(),
    malloc: Some(core_malloc),
    calloc: Some(core_calloc),
    realloc: Some(core_realloc),
    free: Some(core_free),
};

/// True once any domain's table differs from `CORE`.
static HOOKED: AtomicBool = AtomicBool::new(false);
static TABLES: [AtomicPtr<obm_allocator>; 3] = [
    AtomicPtr::new(&CORE as *const _ as *mut _),
    AtomicPtr::new(&CORE as *const _ as *mut _),
    AtomicPtr::new(&CORE as *const _ as *mut _),
];

const SLOTS: usize = 64;
struct Slots {
    tables: [obm_allocator; SLOTS],
    used: usize,
}
static SLOTS_LOCK: SpinLock<Slots> = SpinLock::new(Slots {
    tables: [CORE; SLOTS],
    used: 0,
});

/// The table `d` currently uses.
pub fn get(d: obm_domain) -> obm_allocator {
    // SAFETY: TABLES entries always point to CORE or a published slot,
    // which is never modified or freed.
    unsafe { *TABLES[d as usize].load(Acquire) }
}

/// Installs `a` for domain `d`.
pub fn set(d: obm_domain, a: &obm_allocator) {
    if a.malloc.is_none() || a.calloc.is_none() || a.realloc.is_none() || a.free.is_none() {
        report::eprint(format_args!(
            "obmem: obm_set_allocator: every function must be set; ignored\n"
        ));
        return;
    }
    let slot = {
        let mut s = SLOTS_LOCK.lock();
        if s.used == SLOTS {
            drop(s);
            report::fatal(format_args!(
                "obm_set_allocator: called more than {SLOTS} times"
            ));
        }
        let i = s.used;
        s.tables[i] = *a;
        s.used += 1;
        &s.tables[i] as *const obm_allocator as *mut obm_allocator
    };
    TABLES[d as usize].store(slot, Release);
    HOOKED.store(true, Release);
    heap::force_slow_paths();
}

pub fn lock_for_fork() {
    SLOTS_LOCK.lock_for_fork();
}

/// # Safety
/// Called after `lock_for_fork`, in the parent or the child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: per the contract.
    unsafe { SLOTS_LOCK.unlock_after_fork() };
}

#[inline(always)]
pub(crate) fn table(d: obm_domain) -> &'static obm_allocator {
    // SAFETY: as in `get`; the pointee is 'static.
    unsafe { &*TABLES[d as usize].load(Acquire) }
}

// The dispatchers. The fast paths of `alloc` and `free` run only while no
// hook is installed (`heap::force_slow_paths`); the slow paths dispatch.
// Each function pointer of an installed table is non-null (checked by
// `set`); `unwrap_unchecked` relies on that.

#[inline(always)]
pub fn malloc(d: obm_domain, n: usize) -> *mut u8 {
    if prof::active() && prof::tick(n) {
        return malloc_sampled(n, d);
    }
    let b = alloc::malloc_fast(n);
    if !b.is_null() {
        return b;
    }
    malloc_slow(n, d)
}

/// `malloc` when the profiler samples this allocation (a tail call from
/// the fast path, which thus keeps no stack frame).
#[cold]
#[inline(never)]
fn malloc_sampled(n: usize, d: obm_domain) -> *mut u8 {
    let p = sample(n, ALIGNMENT, false);
    if !p.is_null() {
        return p;
    }
    let b = alloc::malloc_fast(n);
    if !b.is_null() {
        return b;
    }
    malloc_slow(n, d)
}

#[cold]
#[inline(never)]
fn malloc_slow(n: usize, d: obm_domain) -> *mut u8 {
    if !HOOKED.load(Relaxed) {
        return alloc::malloc_slow(n);
    }
    let t = table(d);
    // SAFETY: installed tables have every function (see `set`).
    unsafe { (t.malloc.unwrap_unchecked())(t.ctx, n) as *mut u8 }
}

#[inline(always)]
pub fn calloc(d: obm_domain, nelem: usize, elsize: usize) -> *mut u8 {
    if prof::active() {
        if let Some(n) = nelem.checked_mul(elsize).filter(|&n| prof::tick(n)) {
            let p = sample(n, ALIGNMENT, true);
            if !p.is_null() {
                return p;
            }
        }
    }
    if !HOOKED.load(Relaxed) {
        return alloc::calloc(nelem, elsize);
    }
    let t = table(d);
    // SAFETY: as in `malloc_slow`.
    unsafe { (t.calloc.unwrap_unchecked())(t.ctx, nelem, elsize) as *mut u8 }
}

/// # Safety
/// `p` is null or a live block of domain `d`.
#[inline(always)]
pub unsafe fn realloc(d: obm_domain, p: *mut u8, n: usize) -> *mut u8 {
    if prof::active() && prof::tick(n) {
        // SAFETY: per the contract.
        let q = unsafe { sample_realloc(d, p, n) };
        if !q.is_null() {
            return q;
        }
    }
    if !HOOKED.load(Relaxed) {
        // SAFETY: per the contract.
        return unsafe { alloc::realloc(p, n, "realloc") };
    }
    let t = table(d);
    // SAFETY: as in `malloc_slow`; p per the contract.
    unsafe { (t.realloc.unwrap_unchecked())(t.ctx, p as *mut c_void, n) as *mut u8 }
}

/// # Safety
/// `p` is null or a live block of domain `d`, not used afterwards.
#[inline(always)]
pub unsafe fn free(d: obm_domain, p: *mut u8) {
    // SAFETY: per the contract.
    if !unsafe { free::free_fast(p) } {
        // SAFETY: per the contract.
        unsafe { free_slow(d, p) }
    }
}

/// Not the calling thread's block: another thread's (the common case
/// here), or anything that needs the general path or the hooks.
#[inline(never)]
unsafe fn free_slow(d: obm_domain, p: *mut u8) {
    if !HOOKED.load(Relaxed) {
        // SAFETY: per the contract of `free`.
        if unsafe { free::free_remote_fast(p) } {
            return;
        }
        // SAFETY: per the contract of `free`.
        return unsafe { free::free_slow(p, "free") };
    }
    let t = table(d);
    // SAFETY: as in `malloc_slow`; p per the contract of `free`.
    unsafe { (t.free.unwrap_unchecked())(t.ctx, p as *mut c_void) }
}

/// A sampled block for the heap profiler (`prof/`), or null: not while
/// hooks are installed, which must see every block. Out of line, and the
/// first function the entry points call on this path, so that it can take
/// the caller's frame pointer (for `OBMEM_PROF_UNWIND=fp`).
#[cold]
#[inline(never)]
pub(crate) fn sample(n: usize, align: usize, zero: bool) -> *mut u8 {
    let fp = prof::frame_pointer();
    if HOOKED.load(Relaxed) {
        return ptr::null_mut();
    }
    prof::sampled(n, align, zero, fp)
}

/// A sampled realloc: the new block is a sample, `p`'s bytes move into it.
///
/// # Safety
/// As `realloc`.
#[cold]
unsafe fn sample_realloc(d: obm_domain, p: *mut u8, n: usize) -> *mut u8 {
    let q = sample(n, ALIGNMENT, false);
    if !q.is_null() && !p.is_null() {
        let old = free::usable_size(p, "realloc");
        // SAFETY: both blocks are live, at least min(old, n) bytes long,
        // and distinct; p is the caller's to free (contract).
        unsafe {
            ptr::copy_nonoverlapping(p, q, old.min(n));
            free(d, p);
        }
    }
    q
}

/// Allocates `n` bytes (a unique block for 0) in the object domain, 16-byte
/// aligned; null on failure. Used by the object layer.
pub fn object_malloc(n: usize) -> *mut u8 {
    malloc(obm_domain::OBM_DOMAIN_OBJ, n)
}

/// Frees a block from `object_malloc` (null is ignored).
///
/// # Safety
/// `p` is null or a live block from `object_malloc`.
pub unsafe fn object_free(p: *mut u8) {
    // SAFETY: per the contract.
    unsafe { free(obm_domain::OBM_DOMAIN_OBJ, p) }
}
