//! Under the debug hooks the object and gc functions are checked too:
//!
//! - concurrent use: the functions follow CPython's one-thread-at-a-time
//!   rule (obm_lock plays the GIL). A call without the lock records its
//!   thread while it runs; a call from another thread meanwhile, or a call
//!   without the lock while another thread holds it, is reported;
//! - use of a freed object: freed memory holds the 0xDD fill and a
//!   quarantined block is marked freed, so a reference count operation on
//!   a dead object is reported instead of corrupting whatever is reused;
//! - tracking an object that is already tracked.

use super::{blocks, dump, DEAD};
use crate::gc::lock;
use crate::object::{obm_object, RefHookCell};
use crate::report;
use core::sync::atomic::{AtomicUsize, Ordering::*};

/// The thread inside a checked object or gc function without holding
/// obm_lock, 0 if none.
static INSIDE_UNLOCKED: AtomicUsize = AtomicUsize::new(0);

/// Marks the calling thread as inside an object or gc function without the
/// lock, until dropped.
pub struct Use {
    prev: usize,
}

impl Drop for Use {
    fn drop(&mut self) {
        INSIDE_UNLOCKED.store(self.prev, Release);
    }
}

/// Enters `func`; None (nothing to undo) without the debug hooks or when
/// the caller holds obm_lock.
#[inline(always)]
pub fn enter(func: &str) -> Option<Use> {
    if !super::active() {
        return None;
    }
    enter_checked(func)
}

/// The rule checked is the GIL's: at any moment, either one thread uses the
/// objects without the lock and nobody else holds it, or only threads that
/// hold it use them. The lock state is read at each call, not remembered
/// from an outer one: a finalizer may release the lock in the middle of a
/// deallocation (as CPython code drops the GIL), letting others in.
#[inline(never)]
fn enter_checked(func: &str) -> Option<Use> {
    // SAFETY: pthread_self has no preconditions; never 0 on glibc.
    let me = unsafe { libc::pthread_self() } as usize;
    if lock::held_by_me() {
        let other = INSIDE_UNLOCKED.load(Acquire);
        if other != 0 && other != me {
            concurrent(func, me, other);
        }
        return None;
    }
    let prev = INSIDE_UNLOCKED.swap(me, AcqRel);
    if prev != 0 && prev != me {
        concurrent(func, me, prev);
    }
    let owner = lock::owner();
    if owner != 0 && owner != me {
        concurrent(func, me, owner);
    }
    Some(Use { prev })
}

#[cold]
fn concurrent(func: &str, me: usize, other: usize) -> ! {
    report::fatal(format_args!(
        "debug hooks: concurrent use of the object and gc functions without obm_lock: \
         {func} called in thread {me:#x} while thread {other:#x} uses them; \
         threads that share objects must hold obm_lock() around these calls"
    ))
}

const DEAD_WORD: usize = usize::from_ne_bytes([DEAD; 8]);

/// Reports `o` if it is a freed object: its head holds the freed fill, or
/// the block it lives in (with or without a gc header) is quarantined.
///
/// # Safety
/// `o` points to readable memory of an object's size (live or freed).
#[inline(always)]
pub unsafe fn check_alive(o: *const obm_object, func: &str) {
    if super::active() {
        // SAFETY: per the contract.
        unsafe { check_alive_slow(o, func) };
    }
}

/// `check_alive` under the debug hooks, out of line.
///
/// # Safety
/// As `check_alive`.
#[inline(never)]
unsafe fn check_alive_slow(o: *const obm_object, func: &str) {
    // SAFETY: per the contract.
    let (rc, t) = unsafe { ((*o).ob_refcnt as usize, (*o).ob_type as usize) };
    if rc == DEAD_WORD || t == DEAD_WORD {
        report::fatal(format_args!(
            "debug hooks: use of a freed object: {func}({o:p}): its memory holds the {DEAD:#04x} fill of freed blocks"
        ));
    }
    // The block starts at the object or before its prefixes (gc header,
    // weak slot, or both).
    let h = crate::gc::list::HEAD_SIZE;
    for start in [o as usize, o as usize - h, o as usize - 2 * h] {
        if let Some(r) = blocks::get(start).filter(|r| r.freed) {
            dump::fail(
                "use of a freed object",
                &r,
                format_args!("    {func}({o:p}) on an object whose block was freed"),
            );
        }
    }
}

/// The entry of `obm_gc_track`: `track(o)`, the operation (NULL
/// included), preceded under the debug hooks by the concurrent-use check,
/// for the call's duration, and the report of tracking an object that is
/// already tracked (CPython aborts there too; untracking twice is allowed,
/// as in CPython: deallocators commonly untrack). Without the hooks: one
/// relaxed load, then `track` inline, with no stack frame.
///
/// # Safety
/// `o` is NULL or a live object, and `track(o)` is sound.
#[inline(always)]
pub unsafe fn track_entry(o: *mut obm_object, track: unsafe fn(*mut obm_object)) {
    if super::active() {
        // SAFETY: per the contract.
        return unsafe { track_checked(o, track) };
    }
    // SAFETY: per the contract.
    unsafe { track(o) }
}

/// `track_entry` under the debug hooks, out of line.
///
/// # Safety
/// As `track_entry`.
#[cold]
#[inline(never)]
unsafe fn track_checked(o: *mut obm_object, track: unsafe fn(*mut obm_object)) {
    let _use = enter_checked("obm_gc_track");
    // SAFETY: per the contract, `o` is live when not NULL.
    if !o.is_null() && unsafe { crate::gc::is_tracked(o) } {
        report::fatal(format_args!(
            "debug hooks: obm_gc_track({o:p}): the object is already tracked by the collector"
        ));
    }
    // SAFETY: per the contract.
    unsafe { track(o) }
}

/// The reference-count entry points under the debug hooks: the
/// concurrent-use and freed-object checks, then the operation. Installed
/// with the hooks (`lifecycle::setup_debug_hooks`).
pub(crate) static CHECKED_REFS: RefHookCell = RefHookCell(checked_ref);

/// # Safety
/// As the exported function `func`.
#[cold]
#[inline(never)]
unsafe fn checked_ref(
    o: *mut obm_object,
    func: &'static str,
    null_instead: Option<&'static str>,
    op: unsafe fn(*mut obm_object),
) {
    let _use = enter(func);
    if o.is_null() {
        match null_instead {
            Some(instead) => crate::object::null_ref(func, instead),
            None => return,
        }
    }
    // SAFETY: per the contract, a live object (checked first).
    unsafe {
        check_alive(o, func);
        op(o)
    }
}
