//! The three allocation domains, as CPython's PyMem_Raw / PyMem / PyObject,
//! and the per-domain allocator hooks (PyMem_SetAllocator).
//!
//! Each domain dispatches through a `Dispatch`: the public `obm_allocator`
//! table, plus two internal entries a hook may provide, aligned allocation
//! and usable size. The debug hooks provide both; a user's table has
//! neither, so its domain makes over-aligned blocks from one `malloc` of
//! the hook (`aligned`) and the hook sees every allocation and every free.
//! Until a hook is installed the dispatches are the defaults and the entry
//! points call the core directly after one relaxed load of `HOOKED`, so
//! hooks cost nothing when unused. Installed dispatches are copied into
//! never-freed slots and published with one atomic pointer store, so a
//! thread reading one never sees it half-written.

mod aligned;

use crate::alloc;
use crate::config::{ALIGNMENT, UNIT_SHIFT};
use crate::free;
use crate::heap;
use crate::os;
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
// SAFETY: as above.
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

/// Aligned allocation in domain `d`, `align` a power of two above
/// `ALIGNMENT`; null (errno set) on failure.
pub(crate) type AlignedFn = fn(d: obm_domain, align: usize, n: usize) -> *mut u8;
/// The usable size of a block of the hook's; None if the block is not one
/// of its own (the core's, allocated before the hook was installed).
pub(crate) type UsableFn = fn(p: *const u8, func: &str) -> Option<usize>;

/// What a domain dispatches through (see the module doc).
#[derive(Clone, Copy)]
pub(crate) struct Dispatch {
    pub table: obm_allocator,
    /// None: over-aligned blocks are made through `table.malloc`.
    pub aligned: Option<AlignedFn>,
    /// None: only the over-aligned blocks' sizes are known; others are the
    /// core's to tell.
    pub usable: Option<UsableFn>,
}

fn core_aligned(_d: obm_domain, align: usize, n: usize) -> *mut u8 {
    alloc::aligned(align, n)
}
fn core_usable(p: *const u8, func: &str) -> Option<usize> {
    Some(free::usable_size(p, func))
}

static CORE_DISPATCH: Dispatch = Dispatch {
    table: CORE,
    aligned: Some(core_aligned),
    usable: Some(core_usable),
};

/// True once any domain's dispatch differs from `CORE_DISPATCH`.
static HOOKED: AtomicBool = AtomicBool::new(false);
static DISPATCH: [AtomicPtr<Dispatch>; 3] = [
    AtomicPtr::new(&CORE_DISPATCH as *const _ as *mut _),
    AtomicPtr::new(&CORE_DISPATCH as *const _ as *mut _),
    AtomicPtr::new(&CORE_DISPATCH as *const _ as *mut _),
];

const SLOTS: usize = 64;
struct Slots {
    dispatch: [Dispatch; SLOTS],
    used: usize,
}
static SLOTS_LOCK: SpinLock<Slots> = SpinLock::new(Slots {
    dispatch: [CORE_DISPATCH; SLOTS],
    used: 0,
});

/// The table `d` currently uses.
pub fn get(d: obm_domain) -> obm_allocator {
    dispatch(d).table
}

/// Installs a user's table `a` for domain `d` (`obm_set_allocator`).
pub fn set(d: obm_domain, a: &obm_allocator) {
    if a.malloc.is_none() || a.calloc.is_none() || a.realloc.is_none() || a.free.is_none() {
        report::eprint(format_args!(
            "obmem: obm_set_allocator: every function must be set; ignored\n"
        ));
        return;
    }
    set_dispatch(
        d,
        Dispatch {
            table: *a,
            aligned: None,
            usable: None,
        },
    );
}

/// Installs `x` for domain `d`: the debug hooks, or a user's table.
pub(crate) fn set_dispatch(d: obm_domain, x: Dispatch) {
    let slot = {
        let mut s = SLOTS_LOCK.lock();
        if s.used == SLOTS {
            drop(s);
            report::fatal(format_args!(
                "obm_set_allocator: called more than {SLOTS} times"
            ));
        }
        let i = s.used;
        s.dispatch[i] = x;
        s.used += 1;
        &s.dispatch[i] as *const Dispatch as *mut Dispatch
    };
    DISPATCH[d as usize].store(slot, Release);
    HOOKED.store(true, Release);
    heap::force_slow_paths();
}

pub fn lock_for_fork() {
    SLOTS_LOCK.lock_for_fork();
    aligned::lock_for_fork();
}

/// # Safety
/// Called after `lock_for_fork`, in the parent or the child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: per the contract.
    unsafe {
        aligned::unlock_after_fork();
        SLOTS_LOCK.unlock_after_fork();
    }
}

#[inline(always)]
fn dispatch(d: obm_domain) -> &'static Dispatch {
    // SAFETY: DISPATCH entries always point to CORE_DISPATCH or a published
    // slot, which is never modified or freed.
    unsafe { &*DISPATCH[d as usize].load(Acquire) }
}

/// The table `d` currently uses (the debug hooks wrap it).
#[inline(always)]
pub(crate) fn table(d: obm_domain) -> &'static obm_allocator {
    &dispatch(d).table
}

// The dispatchers. The fast paths of `alloc` and `free` run only while no
// hook is installed (`heap::force_slow_paths`); the slow paths dispatch.
// Each function pointer of an installed table is non-null (checked by
// `set`); `unwrap_unchecked` relies on that.

#[inline(always)]
pub fn malloc(d: obm_domain, n: usize) -> *mut u8 {
    if prof::unticked(n) {
        let b = alloc::malloc_fast_direct(n);
        if !b.is_null() {
            return b;
        }
        return malloc_slow(n, d);
    }
    if prof::tick(n) {
        return malloc_sampled(n, d);
    }
    malloc_unsampled(n, d)
}

#[inline(always)]
fn malloc_unsampled(n: usize, d: obm_domain) -> *mut u8 {
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
    malloc_unsampled(n, d)
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
    if let Some(n) = nelem.checked_mul(elsize).filter(|&n| prof::tick(n)) {
        let p = sample(n, ALIGNMENT, true);
        if !p.is_null() {
            return p;
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
    if prof::tick(n) {
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
    // SAFETY: per the contract.
    unsafe { realloc_hooked(d, p, n) }
}

/// # Safety
/// As `realloc`.
#[cold]
#[inline(never)]
unsafe fn realloc_hooked(d: obm_domain, p: *mut u8, n: usize) -> *mut u8 {
    let t = table(d);
    if let Some(e) = aligned::get(p as usize) {
        // An over-aligned block: move it (realloc keeps the default
        // alignment only, as glibc's does).
        let q = malloc_slow(n, d);
        if !q.is_null() {
            // SAFETY: both blocks are live and distinct; p holds e.size bytes.
            unsafe {
                ptr::copy_nonoverlapping(p, q, e.size.min(n));
                free_slow(
                    p,
                    d,
                    heap::current_or_placeholder(),
                    p as usize >> UNIT_SHIFT,
                );
            }
        }
        return q;
    }
    // SAFETY: as in `malloc_slow`; p per the contract.
    unsafe { (t.realloc.unwrap_unchecked())(t.ctx, p as *mut c_void, n) as *mut u8 }
}

/// # Safety
/// `p` is null or a live block of domain `d`, not used afterwards.
#[inline(always)]
pub unsafe fn free(d: obm_domain, p: *mut u8) {
    // SAFETY: per the contract.
    match unsafe { free::local_block(p) } {
        // SAFETY: the block passed the fast path's checks.
        Ok(block) => unsafe { block.free() },
        // SAFETY: per the contract; `me` is this thread's heap, `unit` p's.
        Err((me, unit)) => unsafe { free_slow(p, d, me, unit) },
    }
}

/// Not the calling thread's block: another thread's (the common case
/// here), or anything that needs the general path or the hooks. The cache
/// of other heaps' pools is empty once hooks are installed, so only its
/// misses test for them.
///
/// # Safety
/// As `free`; `me` is the calling thread's heap or the placeholder,
/// `unit` is `p`'s unit number.
#[inline(always)]
unsafe fn free_slow(p: *mut u8, d: obm_domain, me: &'static heap::Heap, unit: usize) {
    // SAFETY: per the contract of `free`.
    if unsafe { free::free_remote_cached(p, me, unit) } {
        return;
    }
    if !HOOKED.load(Relaxed) {
        // SAFETY: as above.
        return unsafe { free::free_remote_uncached(p) };
    }
    // SAFETY: as above.
    unsafe { free_hooked(p, d) }
}

/// `free` through the hook of domain `d`. Out of line, so that the remote
/// free above keeps no stack frame.
///
/// # Safety
/// As `free`.
#[cold]
#[inline(never)]
unsafe fn free_hooked(p: *mut u8, d: obm_domain) {
    let t = table(d);
    let p = aligned::remove(p as usize).map_or(p, |e| e.base as *mut u8);
    // SAFETY: as in `malloc_slow`; p per the contract of `free` (an
    // over-aligned block is freed by the pointer the hook returned).
    unsafe { (t.free.unwrap_unchecked())(t.ctx, p as *mut c_void) }
}

/// The heap profiler's countdown ran out (`prof::tick`): a sampled block,
/// or null: not while hooks are installed, which must see every block.
/// Out of line, and the first function the entry points call on this
/// path, so that it can take the caller's frame pointer (for
/// `OBMEM_PROF_UNWIND=fp`).
#[cold]
#[inline(never)]
pub(crate) fn sample(n: usize, align: usize, zero: bool) -> *mut u8 {
    let fp = prof::frame_pointer();
    prof::sampled(n, align, zero, fp, !HOOKED.load(Relaxed))
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

/// An over-aligned block of domain `d` (`align` a power of two); null
/// with errno set on failure.
#[inline(always)]
pub fn aligned(d: obm_domain, align: usize, n: usize) -> *mut u8 {
    if prof::tick(n) {
        let p = sample(n, align, false);
        if !p.is_null() {
            return p;
        }
    }
    if !HOOKED.load(Relaxed) {
        return alloc::aligned(align, n);
    }
    aligned_hooked(d, align, n)
}

#[cold]
#[inline(never)]
fn aligned_hooked(d: obm_domain, align: usize, n: usize) -> *mut u8 {
    let x = dispatch(d);
    if align <= ALIGNMENT {
        return malloc_slow(n, d);
    }
    if let Some(f) = x.aligned {
        return f(d, align, n);
    }
    // One malloc of the hook, `align - 1` bytes larger, aligned inside.
    let Some(total) = n.max(1).checked_add(align - 1) else {
        os::set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    let base = malloc_slow(total, d);
    if base.is_null() {
        return base;
    }
    let addr = (base as usize).next_multiple_of(align);
    // Recorded even when addr == base, so that what the hook sees of the
    // block's realloc and free does not depend on where its malloc put it.
    if !aligned::insert(addr, base as usize, n) {
        // SAFETY: base is the live block just allocated, not registered.
        unsafe { (x.table.free.unwrap_unchecked())(x.table.ctx, base as *mut c_void) };
        os::set_errno(libc::ENOMEM);
        return ptr::null_mut();
    }
    addr as *mut u8
}

/// The usable size of `p` if it is the start of a live block of domain
/// `d` (a hook's or the core's), else 0; never reports (for callers that
/// only count, such as the census).
pub fn size_if_block(d: obm_domain, p: *const u8) -> usize {
    if HOOKED.load(Relaxed) {
        if let Some(n) = dispatch(d).usable.and_then(|f| f(p, "obm_census")) {
            return n;
        }
        if let Some(e) = aligned::get(p as usize) {
            return e.size;
        }
    }
    free::size_if_block(p)
}

/// The usable size of a block of domain `d` (`malloc_usable_size`).
pub fn usable_size(d: obm_domain, p: *const u8, func: &str) -> usize {
    if !HOOKED.load(Relaxed) || p.is_null() {
        return free::usable_size(p, func);
    }
    let x = dispatch(d);
    if let Some(n) = x.usable.and_then(|f| f(p, func)) {
        return n;
    }
    match aligned::get(p as usize) {
        Some(e) => e.size,
        None => free::usable_size(p, func),
    }
}

/// Allocates `n` bytes (a unique block for 0) in the object domain, 16-byte
/// aligned; null on failure. Used by the object layer.
pub fn object_malloc(n: usize) -> *mut u8 {
    malloc(obm_domain::OBM_DOMAIN_OBJ, n)
}

/// `object_malloc` through the allocator's fast path for small blocks
/// only, giving the block's usable size: (null, 0) if it cannot serve it
/// (profiling, hooks, a slow path, more than 512 bytes), and then the
/// caller uses `object_malloc`.
#[inline(always)]
pub fn object_malloc_fast_sized(n: usize) -> (*mut u8, usize) {
    if prof::active() {
        return (ptr::null_mut(), 0);
    }
    alloc::malloc_fast_small_sized(n)
}

/// A block from `object_malloc` that the allocator's fast path can free
/// (`free::local_block`); None if it cannot (hooks, a block of another
/// thread's heap), and then the caller uses `object_free`.
///
/// # Safety
/// `p` is a live block from `object_malloc`.
#[inline(always)]
pub unsafe fn object_local_block(p: *mut u8) -> Option<free::LocalBlock> {
    // SAFETY: per the contract. With hooks installed the unit caches are
    // empty (`heap::force_slow_paths`), so this finds nothing then.
    unsafe { free::local_block(p) }.ok()
}

/// Frees a block from `object_malloc` (null is ignored).
///
/// # Safety
/// `p` is null or a live block from `object_malloc`.
pub unsafe fn object_free(p: *mut u8) {
    // SAFETY: per the contract.
    unsafe { free(obm_domain::OBM_DOMAIN_OBJ, p) }
}
