//! Under the debug hooks the object and gc functions are checked too:
//!
//! - concurrent use: the functions follow CPython's one-thread-at-a-time
//!   rule (obm_lock plays the GIL). Each checked call records its thread
//!   while it runs; a call from another thread meanwhile means two threads
//!   are inside without the lock, and is reported;
//! - use of a freed object: freed memory holds the 0xDD fill and a
//!   quarantined block is marked freed, so a reference count operation on
//!   a dead object is reported instead of corrupting whatever is reused;
//! - tracking an object that is already tracked.

use super::{blocks, dump, DEAD};
use crate::object::obm_object;
use crate::report;
use core::sync::atomic::{AtomicUsize, Ordering::*};

/// The thread inside a checked object or gc function, 0 if none.
static INSIDE: AtomicUsize = AtomicUsize::new(0);

/// Marks the calling thread as inside an object or gc function until dropped.
pub struct Use {
    prev: usize,
}

impl Drop for Use {
    fn drop(&mut self) {
        INSIDE.store(self.prev, Release);
    }
}

/// Enters `func`; None (no check) without the debug hooks.
#[inline(always)]
pub fn enter(func: &str) -> Option<Use> {
    if !super::active() {
        return None;
    }
    enter_checked(func)
}

#[inline(never)]
fn enter_checked(func: &str) -> Option<Use> {
    // SAFETY: pthread_self has no preconditions; never 0 on glibc.
    let me = unsafe { libc::pthread_self() } as usize;
    let prev = INSIDE.swap(me, AcqRel);
    if prev != 0 && prev != me {
        report::fatal(format_args!(
            "debug hooks: concurrent use of the object and gc functions without obm_lock: \
             {func} called in thread {me:#x} while thread {prev:#x} is inside one; \
             threads that share objects must hold obm_lock() around these calls"
        ));
    }
    Some(Use { prev })
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

#[inline(never)]
unsafe fn check_alive_slow(o: *const obm_object, func: &str) {
    // SAFETY: per the contract.
    let (rc, t) = unsafe { ((*o).ob_refcnt as usize, (*o).ob_type as usize) };
    if rc == DEAD_WORD || t == DEAD_WORD {
        report::fatal(format_args!(
            "debug hooks: use of a freed object: {func}({o:p}): its memory holds the {DEAD:#04x} fill of freed blocks"
        ));
    }
    for start in [o as usize, o as usize - crate::gc::list::HEAD_SIZE] {
        if let Some(r) = blocks::get(start).filter(|r| r.freed) {
            dump::fail(
                "use of a freed object",
                &r,
                format_args!("    {func}({o:p}) on an object whose block was freed"),
            );
        }
    }
}

/// Reports tracking an object that is already tracked (CPython aborts
/// there too). Untracking twice is allowed, as in CPython: deallocators
/// commonly untrack.
///
/// # Safety
/// `o` is a live object.
pub unsafe fn check_track(o: *mut obm_object) {
    // SAFETY: per the contract.
    if super::active() && unsafe { crate::gc::is_tracked(o) } {
        report::fatal(format_args!(
            "debug hooks: obm_gc_track({o:p}): the object is already tracked by the collector"
        ));
    }
}
