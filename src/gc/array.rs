//! A small growable array of `Copy` values in the object domain, for the
//! collector's garbage list and its callbacks, and the weakly referenced
//! garbage of one collection (`weak::WeakTargets`, freed when it ends): the
//! only memory the collector allocates. Not a `Vec`: the library never uses
//! Rust's global allocator.

use core::cell::Cell;
use core::ptr;

/// Invariant: `ptr` is null with `cap == 0`, or a block from
/// `domain::object_malloc` holding `cap` slots of which the first `len` are
/// initialised.
pub(crate) struct Array<T: Copy> {
    ptr: Cell<*mut T>,
    len: Cell<usize>,
    cap: Cell<usize>,
}

impl<T: Copy> Array<T> {
    pub(crate) const fn new() -> Self {
        Array {
            ptr: Cell::new(ptr::null_mut()),
            len: Cell::new(0),
            cap: Cell::new(0),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len.get()
    }

    pub(crate) fn get(&self, i: usize) -> Option<T> {
        if i < self.len.get() {
            // SAFETY: i < len, so the slot is initialised (type invariant).
            Some(unsafe { *self.ptr.get().add(i) })
        } else {
            None
        }
    }

    /// Appends `v`; false if memory ran out.
    pub(crate) fn push(&self, v: T) -> bool {
        let len = self.len.get();
        if len == self.cap.get() && !self.grow(if len == 0 { 8 } else { len * 2 }) {
            return false;
        }
        // SAFETY: len < cap after the growth above.
        unsafe { self.ptr.get().add(len).write(v) };
        self.len.set(len + 1);
        true
    }

    /// Makes room for `n` slots in all; false if memory ran out.
    pub(crate) fn reserve(&self, n: usize) -> bool {
        n <= self.cap.get() || self.grow(n)
    }

    /// Moves the contents to a new block of `new_cap` slots (more than
    /// `len`); false if memory ran out.
    fn grow(&self, new_cap: usize) -> bool {
        let len = self.len.get();
        let Some(bytes) = new_cap.checked_mul(core::mem::size_of::<T>()) else {
            return false;
        };
        let p = crate::domain::object_malloc(bytes) as *mut T;
        if p.is_null() {
            return false;
        }
        let old = self.ptr.get();
        // SAFETY: both blocks hold at least `len` slots and do not overlap;
        // `old` came from object_malloc (type invariant).
        unsafe {
            if !old.is_null() {
                ptr::copy_nonoverlapping(old, p, len);
                crate::domain::object_free(old as *mut u8);
            }
        }
        self.ptr.set(p);
        self.cap.set(new_cap);
        true
    }

    /// Removes the first element for which `pred` holds; false if none.
    pub(crate) fn remove_first(&self, pred: impl Fn(&T) -> bool) -> bool {
        let len = self.len.get();
        let p = self.ptr.get();
        for i in 0..len {
            // SAFETY: i < len (type invariant).
            if pred(unsafe { &*p.add(i) }) {
                // SAFETY: shifts the initialised slots i+1..len down by one.
                unsafe { ptr::copy(p.add(i + 1), p.add(i), len - i - 1) };
                self.len.set(len - 1);
                return true;
            }
        }
        false
    }

    /// Empties the array and returns its old contents as (block, len); the
    /// caller frees the block with `free_block`.
    pub(crate) fn take(&self) -> (*mut T, usize) {
        let r = (self.ptr.get(), self.len.get());
        self.ptr.set(ptr::null_mut());
        self.len.set(0);
        self.cap.set(0);
        r
    }

    /// Frees a block returned by `take`.
    ///
    /// # Safety
    /// `p` came from `take` and is not used afterwards.
    pub(crate) unsafe fn free_block(p: *mut T) {
        if !p.is_null() {
            // SAFETY: p came from object_malloc (type invariant).
            unsafe { crate::domain::object_free(p as *mut u8) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_get_remove_take() {
        let a: Array<usize> = Array::new();
        for i in 0..100 {
            assert!(a.push(i));
        }
        assert_eq!(a.len(), 100);
        assert_eq!(a.get(99), Some(99));
        assert_eq!(a.get(100), None);
        assert!(a.reserve(1000));
        assert_eq!(a.get(99), Some(99));
        assert!(a.remove_first(|&v| v == 50));
        assert!(!a.remove_first(|&v| v == 50));
        assert_eq!(a.get(50), Some(51));
        let (p, n) = a.take();
        assert_eq!(n, 99);
        assert_eq!(a.len(), 0);
        // SAFETY: p came from take.
        unsafe { Array::<usize>::free_block(p) };
    }
}
