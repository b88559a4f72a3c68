//! `obm_lock` / `obm_unlock`: the re-entrant lock that plays CPython's GIL for
//! the object and gc functions.
//!
//! A plain pthread mutex (which never allocates) does the blocking; the owner
//! and the nesting depth are kept beside it so that the owner can take it
//! again, and so that other code can ask whether the caller holds it.
//! `owner` is written only by the thread holding the mutex; `depth` is read
//! and written only by the owner.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

struct Lock {
    mutex: UnsafeCell<libc::pthread_mutex_t>,
    owner: AtomicUsize,
    depth: AtomicUsize,
}

// SAFETY: the mutex is only used through the pthread functions, which are
// thread-safe; the other fields are atomics.
unsafe impl Sync for Lock {}

static LOCK: Lock = Lock {
    mutex: UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER),
    owner: AtomicUsize::new(0),
    depth: AtomicUsize::new(0),
};

fn me() -> usize {
    // SAFETY: pthread_self has no preconditions. It is never 0 on glibc.
    unsafe { libc::pthread_self() as usize }
}

/// Takes the lock (again, if the caller already holds it).
pub fn lock() {
    let me = me();
    if LOCK.owner.load(Ordering::Relaxed) == me {
        // Only this thread can have stored its own id, and it still holds it.
        LOCK.depth.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // SAFETY: a statically initialised mutex, never destroyed.
    unsafe { libc::pthread_mutex_lock(LOCK.mutex.get()) };
    LOCK.owner.store(me, Ordering::Relaxed);
    LOCK.depth.store(1, Ordering::Relaxed);
}

/// Releases one level of the lock; the last one lets other threads in.
/// Unlocking a lock the caller does not hold is reported and aborts.
pub fn unlock() {
    if LOCK.owner.load(Ordering::Relaxed) != me() {
        crate::report::fatal(format_args!(
            "obm_unlock: the calling thread does not hold the lock"
        ));
    }
    let depth = LOCK.depth.load(Ordering::Relaxed);
    if depth > 1 {
        LOCK.depth.store(depth - 1, Ordering::Relaxed);
        return;
    }
    LOCK.depth.store(0, Ordering::Relaxed);
    LOCK.owner.store(0, Ordering::Relaxed);
    // SAFETY: this thread holds the mutex (it is the recorded owner).
    unsafe { libc::pthread_mutex_unlock(LOCK.mutex.get()) };
}

/// Whether the calling thread holds the lock (for the debug hooks).
pub fn held_by_me() -> bool {
    LOCK.owner.load(Ordering::Relaxed) == me()
}

/// The thread holding the lock (its pthread_t), 0 if none. A racy read, for
/// the debug hooks' diagnostics only.
pub fn owner() -> usize {
    LOCK.owner.load(Ordering::Relaxed)
}

/// In the child of `fork`: only the forking thread exists. If another
/// thread held the lock, it can never release it, so the lock starts over
/// unheld (CPython re-creates its GIL the same way).
pub fn after_fork_child() {
    if LOCK.owner.load(Ordering::Relaxed) != me() {
        LOCK.owner.store(0, Ordering::Relaxed);
        LOCK.depth.store(0, Ordering::Relaxed);
        // SAFETY: the child is single-threaded, so nobody uses the mutex
        // while it is re-initialised.
        unsafe { LOCK.mutex.get().write(libc::PTHREAD_MUTEX_INITIALIZER) };
    }
}
