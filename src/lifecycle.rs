//! The process-wide life of the library: initialisation, the fork
//! handlers and the exit report. The top of the crate: it may call any
//! module, and only `heap::registry` calls it (the one-time initialisation
//! must run before the first allocation is served, which can come before
//! the library constructor).
//!
//! Initialisation installs the memcheck hooks when running on it
//! (`valgrind`), reads the environment (`env`), then acts on it: the
//! debug hooks for `OBMEM_MALLOC=debug`, the statistics table at exit for
//! `OBMEM_SHOW_STATS=1`, the heap profiler for `OBMEM_PROF` (and its dump
//! at exit for `OBMEM_PROF_DUMP`).
//!
//! Fork: every lock a child could inherit held is taken before `fork` and
//! released after it, in both processes, in one order: the heap profile's
//! table of stacks, the debug hooks' tables, the domain slots, the heap
//! registry (and the trim lock), the arena reserve, the large regions. The collector's lock is not
//! taken (a collection may run finalizers that fork); the child resets it
//! instead (`gc::lock`).

use crate::{
    arena, debug, domain, env, fault, gc, heap, large, prof, purge, stacks, stats, valgrind,
};
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering::*};

const UNREAD: u8 = 0;
const READING: u8 = 1;
const READ: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNREAD);
/// `OBMEM_SHOW_STATS=1`: print the statistics table to stderr at exit.
static SHOW_STATS: AtomicBool = AtomicBool::new(false);

/// Reads the environment and acts on it, once. Re-entrant calls (the
/// initialising thread allocating) and concurrent ones return at once.
#[inline]
pub fn init() {
    if STATE.load(Acquire) != UNREAD {
        return;
    }
    if STATE
        .compare_exchange(UNREAD, READING, AcqRel, Acquire)
        .is_err()
    {
        return;
    }
    // Under memcheck, its hooks first: the debug hooks then wrap them.
    valgrind::init();
    if env::debug_hooks() {
        setup_debug_hooks();
    }
    SHOW_STATS.store(env::show_stats(), Relaxed);
    if let Some(ms) = env::purge_delay_ms() {
        purge::set_delay_ms(ms);
    }
    arena::set_huge_pages(env::arena_huge_pages());
    if let Some(spec) = env::fail_mmap() {
        fault::configure(spec);
    }
    prof::set_unwind(env::prof_unwind());
    if let Some(prefix) = env::prof_dump_prefix() {
        prof::set_dump_prefix(prefix);
    }
    if let Some(n) = env::prof_sample_bytes() {
        if !prof::start(n) {
            crate::report::eprint(format_args!(
                "obmem: OBMEM_PROF: cannot map the profile's table; profiling off\n"
            ));
        }
    }
    STATE.store(READ, Release);
}

/// Installs the debug hooks (`OBMEM_MALLOC=debug`, `obm_setup_debug_hooks`):
/// on the three domains' dispatch, and on the reference-count entry points.
pub fn setup_debug_hooks() {
    debug::setup();
    crate::object::set_ref_hook(&debug::objects::CHECKED_REFS);
}

/// Runs when the library is loaded: initialise, and register the fork
/// handlers (pthread_atfork may allocate, so not from inside malloc).
extern "C" fn obmem_init() {
    init();
    // SAFETY: the handlers are extern "C" fns valid for the process lifetime.
    unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_parent),
            Some(after_fork_child),
        )
    };
}

/// Runs at exit: the statistics table for `OBMEM_SHOW_STATS=1`, the heap
/// profile for `OBMEM_PROF_DUMP`.
extern "C" fn obmem_fini() {
    if SHOW_STATS.load(Relaxed) {
        stats::print(2);
    }
    prof::dump_at_exit();
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = obmem_init;

#[used]
#[link_section = ".fini_array"]
static FINI: extern "C" fn() = obmem_fini;

extern "C" fn before_fork() {
    stacks::lock_for_fork();
    debug::lock_for_fork();
    domain::lock_for_fork();
    heap::lock_for_fork();
    crate::arena::lock_for_fork();
    large::lock_for_fork();
}

/// # Safety
/// Called after `before_fork`, in the thread that forked.
unsafe fn unlock_after_fork() {
    // SAFETY: before_fork took these locks in this thread.
    unsafe {
        large::unlock_after_fork();
        crate::arena::unlock_after_fork();
        heap::unlock_after_fork();
        domain::unlock_after_fork();
        debug::unlock_after_fork();
        stacks::unlock_after_fork();
    }
}

extern "C" fn after_fork_parent() {
    // SAFETY: the parent's half of before_fork.
    unsafe { unlock_after_fork() };
}

extern "C" fn after_fork_child() {
    // SAFETY: the child's half of before_fork; it has only this thread.
    unsafe { unlock_after_fork() };
    gc::lock::after_fork_child();
    heap::orphan_other_heaps();
}
