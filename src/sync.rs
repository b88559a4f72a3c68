//! A spin lock for the allocator's slow paths (arena reserve, heap registry,
//! large regions). It never allocates, so it is usable inside malloc, and
//! it is held only for short, bounded sections. And shared maxima and
//! minima that look before they write.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Raises `a` to `v` if it is below. A plain load first: once a peak is
/// reached, the usual case, no locked instruction is run (`fetch_max`
/// always runs one, which also waits for the thread's pending stores).
#[inline]
pub fn raise_to(a: &AtomicUsize, v: usize) {
    if a.load(Ordering::Relaxed) < v {
        a.fetch_max(v, Ordering::Relaxed);
    }
}

/// Lowers `a` to `v` if it is above, looking first as `raise_to` does.
#[inline]
pub fn lower_to(a: &AtomicU64, v: u64) {
    if a.load(Ordering::Relaxed) > v {
        a.fetch_min(v, Ordering::Relaxed);
    }
}

pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through a guard, and at most one guard
// exists at a time (the `locked` flag is taken with Acquire and released with
// Release), so the lock hands out exclusive access like a Mutex.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: as above; sending the lock sends its value, which is Send.
unsafe impl<T: Send> Send for SpinLock<T> {}

pub struct Guard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> SpinLock<T> {
    pub const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    pub fn lock(&self) -> Guard<'_, T> {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.locked.load(Ordering::Relaxed) {
                spins += 1;
                if spins < 64 {
                    core::hint::spin_loop();
                } else {
                    // SAFETY: sched_yield has no preconditions.
                    unsafe { libc::sched_yield() };
                }
            }
        }
        Guard { lock: self }
    }

    pub fn try_lock(&self) -> Option<Guard<'_, T>> {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Guard { lock: self })
    }

    /// Takes the lock and leaves it held, for `fork` preparation.
    pub fn lock_for_fork(&self) {
        core::mem::forget(self.lock());
    }

    /// Releases a lock taken with `lock_for_fork` (in the parent), or resets
    /// it in the child, where the thread that held it no longer exists.
    ///
    /// # Safety
    /// The caller took the lock with `lock_for_fork` and holds no guard.
    pub unsafe fn unlock_after_fork(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

impl<T> core::ops::Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held (see the Sync impl).
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> core::ops::DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in deref, and `&mut self` makes this the only borrow.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}
