//! `obm_gc_path_to_root`: "why is this object still alive?"
//!
//! A root is an object referenced from outside the tracked objects: as the
//! collector does (`update_refs` / `subtract_refs`), each tracked object's
//! count is copied and the references other tracked objects hold are
//! subtracted; whatever remains is held from outside (a C variable, an
//! untracked object, an immortal count). A breadth-first search from all
//! roots at once, following `traverse`, reaches each object first by a
//! shortest chain; the parents recorded on the way give that chain.
//!
//! The collector's headers are not touched (their `gc_refs` bits belong to
//! collections): the copies live in one block of the core allocator, 32
//! bytes per tracked object plus an index of 16 to 32, freed before returning.
//! The target need not be tracked: it gets a node of its own, so a
//! reference to it from a tracked object is followed like any other.
//!
//! While it runs, `collecting` is held, as for the other walks
//! (`introspect.rs`): a collection cannot move or free the objects, and a
//! visitor may read and incref them but not free, track or untrack them.

use core::ffi::{c_int, c_void};
use core::ptr;

use super::{gc, list, NUM_GENERATIONS};
use crate::object::{self, obm_object, obm_visitproc};

/// No parent: a root, or not reached yet.
const NONE: usize = usize::MAX;

/// The search's tables, in one block: per node its object, remaining
/// count, parent and a queue slot; then an open-addressing index from
/// object address to node + 1 (0: empty).
struct Graph {
    n: usize,
    objs: *mut *mut obm_object,
    refs: *mut isize,
    parent: *mut usize,
    queue: *mut usize,
    index: *mut usize,
    mask: usize,
    block: *mut u8,
}

impl Graph {
    /// Tables for `n` nodes; None (errno ENOMEM) if memory runs out.
    fn new(n: usize) -> Option<Graph> {
        let slots = n.checked_mul(2)?.checked_next_power_of_two()?.max(16);
        let words = n.checked_mul(4)?.checked_add(slots)?;
        let bytes = words.checked_mul(core::mem::size_of::<usize>())?;
        let block = crate::alloc::malloc(bytes);
        if block.is_null() {
            return None;
        }
        let w = block as *mut usize;
        // SAFETY: the block holds `words` words: four arrays of n, then the index.
        unsafe {
            ptr::write_bytes(w.add(4 * n), 0, slots);
            Some(Graph {
                n: 0,
                objs: w as *mut *mut obm_object,
                refs: w.add(n) as *mut isize,
                parent: w.add(2 * n),
                queue: w.add(3 * n),
                index: w.add(4 * n),
                mask: slots - 1,
                block,
            })
        }
    }

    fn slot(&self, o: *const obm_object) -> usize {
        ((o as usize >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) & self.mask
    }

    /// Adds `o` as a node (the caller sized the tables for it).
    fn add(&mut self, o: *mut obm_object) -> usize {
        let mut s = self.slot(o);
        // SAFETY: s <= mask; the index has a free slot (sized 2n or more).
        unsafe {
            while *self.index.add(s) != 0 {
                let i = *self.index.add(s) - 1;
                if *self.objs.add(i) == o {
                    return i;
                }
                s = (s + 1) & self.mask;
            }
            let i = self.n;
            *self.index.add(s) = i + 1;
            *self.objs.add(i) = o;
            *self.refs.add(i) = (*o).ob_refcnt;
            *self.parent.add(i) = NONE;
            self.n += 1;
            i
        }
    }

    /// The node of `o`, if it is one.
    fn find(&self, o: *const obm_object) -> Option<usize> {
        let mut s = self.slot(o);
        // SAFETY: s <= mask; the index always has an empty slot.
        unsafe {
            loop {
                let v = *self.index.add(s);
                if v == 0 {
                    return None;
                }
                if core::ptr::eq(*self.objs.add(v - 1), o) {
                    return Some(v - 1);
                }
                s = (s + 1) & self.mask;
            }
        }
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        // SAFETY: the block came from alloc::malloc and nothing refers to it now.
        unsafe { crate::free::free(self.block, "obm_gc_path_to_root") };
    }
}

/// Calls `f` on each object `o` references (non-GC objects reference none).
///
/// # Safety
/// `o` is a live object.
unsafe fn each_referent(o: *mut obm_object, mut f: impl FnMut(*mut obm_object)) {
    unsafe extern "C" fn call(op: *mut obm_object, ctx: *mut c_void) -> c_int {
        if !op.is_null() {
            // SAFETY: ctx is the closure passed below, alive for the traverse.
            unsafe { (*(ctx as *mut &mut dyn FnMut(*mut obm_object)))(op) };
        }
        0
    }
    // SAFETY: per the contract.
    let ty = unsafe { object::type_of(o) };
    if !object::type_is_gc(ty) {
        return;
    }
    let mut dynf: &mut dyn FnMut(*mut obm_object) = &mut f;
    // SAFETY: a live GC object with our visitor and context.
    unsafe { object::visit_refs(o, call, &raw mut dynf as *mut c_void) };
}

/// Every tracked object's collector header list, the permanent one included.
fn each_tracked(mut f: impl FnMut(*mut obm_object)) {
    let s = gc();
    for i in 0..=NUM_GENERATIONS {
        let head = if i < NUM_GENERATIONS {
            s.gen(i)
        } else {
            s.permanent()
        };
        // SAFETY: the lists are initialised; `collecting` is held by the
        // caller, so no collection changes them, and `f` does not unlink.
        unsafe {
            let mut g = list::next(head);
            while g != head {
                f(object::object_of(g));
                g = list::next(g);
            }
        }
    }
}

/// The search; see the module doc. -1 with ENOMEM when memory runs out.
///
/// # Safety
/// `target` is a live object; `visit` accepts `arg`.
unsafe fn search(
    target: *mut obm_object,
    visit: unsafe extern "C" fn(*mut obm_object, *mut c_void) -> c_int,
    arg: *mut c_void,
) -> c_int {
    let mut tracked = 0usize;
    each_tracked(|_| tracked += 1);
    let Some(mut g) = Graph::new(tracked + 1) else {
        crate::os::set_errno(libc::ENOMEM);
        return -1;
    };
    each_tracked(|o| {
        g.add(o);
    });
    let ntracked = g.n;
    let t = g.add(target);
    // subtract_refs: references held by tracked objects are not from
    // outside (an untracked target's own references are).
    for i in 0..ntracked {
        // SAFETY: i < n; nodes are live objects.
        unsafe {
            each_referent(*g.objs.add(i), |r| {
                if let Some(j) = g.find(r) {
                    *g.refs.add(j) -= 1;
                }
            })
        };
    }
    // Breadth-first from every root; a node is visited once its parent is
    // set or it is a root (`seen`, kept in the queue order).
    let (mut head, mut tail) = (0, 0);
    // SAFETY: every index below is < n, and the queue holds each node once.
    unsafe {
        for i in 0..g.n {
            if *g.refs.add(i) > 0 {
                *g.queue.add(tail) = i;
                tail += 1;
                // A root's parent is itself, marking it seen.
                *g.parent.add(i) = i;
            }
        }
        while head < tail && *g.parent.add(t) == NONE {
            let i = *g.queue.add(head);
            head += 1;
            each_referent(*g.objs.add(i), |r| {
                if let Some(j) = g.find(r) {
                    if *g.parent.add(j) == NONE {
                        *g.parent.add(j) = i;
                        *g.queue.add(tail) = j;
                        tail += 1;
                    }
                }
            });
        }
        if *g.parent.add(t) == NONE {
            return 1;
        }
        // The chain from the target back to its root, reversed into the
        // queue's slots (no longer needed).
        let mut len = 0;
        let mut i = t;
        loop {
            *g.queue.add(len) = i;
            len += 1;
            let p = *g.parent.add(i);
            if p == i {
                break;
            }
            i = p;
        }
        for k in (0..len).rev() {
            let r = visit(*g.objs.add(*g.queue.add(k)), arg);
            if r != 0 {
                return r;
            }
        }
    }
    0
}

/// `obm_gc_path_to_root`: see the C documentation in `ffi/profile.rs`.
///
/// # Safety
/// `target` is null or a live object; `visit` accepts `arg`.
pub unsafe fn path_to_root(
    target: *mut obm_object,
    visit: obm_visitproc,
    arg: *mut c_void,
) -> c_int {
    let Some(visit) = visit else {
        crate::os::set_errno(libc::EINVAL);
        return -1;
    };
    if target.is_null() {
        crate::os::set_errno(libc::EINVAL);
        return -1;
    }
    let s = gc();
    let was = s.collecting.replace(true);
    // SAFETY: per the contract.
    let r = unsafe { search(target, visit, arg) };
    s.collecting.set(was);
    r
}
