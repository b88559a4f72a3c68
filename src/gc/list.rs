//! The collector header and the intrusive list every tracked object is on.
//!
//! # Layout
//! A GC object's memory is `[GcHead][obm_object ...user fields]`: the header
//! sits in the 16 bytes *before* the object, as CPython's `PyGC_Head`, so the
//! object pointer the user sees is unchanged and non-GC objects pay nothing.
//! Objects (and so headers) are 16-byte aligned, which leaves the low four
//! bits of every link free for flags.
//!
//! # Fields
//! - `next`: the next header in the list; **0 means untracked**.
//! - `prev`: the previous header, ORed with the flag bits below. Between
//!   `update_refs` and `move_unreachable` (inside a collection only) the
//!   pointer part holds `gc_refs << REFS_SHIFT` instead and the list is singly
//!   linked through `next`.
//!
//! # Flag bits of `prev` (kept by every list operation)
//! - `FINALIZED`: `finalize` has run (PEP 442); survives untracking.
//! - `COLLECTING`: the object is in the set being collected. Invariant: an
//!   object on a generation list has it only inside steps 2-3 of a
//!   collection (`collect.rs`); objects on a collection's own unreachable
//!   lists keep it until they are freed or moved back to a generation.
//! - `GEN_MASK`: the generation list the object is on (0, 1, 2, or
//!   `PERMANENT`). Invariant: for a tracked object without COLLECTING it
//!   names its list. With COLLECTING it is 0, or `PERMANENT` to mark a
//!   member of the unreachable list (frozen objects are never collected, so
//!   the pair is unambiguous).
//!
//! List heads are plain `GcHead`s that are not followed by an object; their
//! flag bits are always zero.

/// The collector header in front of every GC object. Aligned like the
/// objects, so that list heads (statics, stack locals) also leave the low
/// four bits of their address free for flags.
#[repr(C, align(16))]
pub(crate) struct GcHead {
    pub(crate) next: usize,
    pub(crate) prev: usize,
}

/// Bytes in front of the object; a multiple of 16 so objects stay aligned.
pub(crate) const HEAD_SIZE: usize = 16;
const _: () = assert!(
    core::mem::size_of::<GcHead>() == HEAD_SIZE && core::mem::align_of::<GcHead>() == HEAD_SIZE
);

pub(crate) const FINALIZED: usize = 1;
pub(crate) const COLLECTING: usize = 2;
pub(crate) const GEN_SHIFT: u32 = 2;
pub(crate) const GEN_MASK: usize = 3 << GEN_SHIFT;
/// The generation number of the permanent (frozen) generation.
pub(crate) const PERMANENT: usize = 3;
/// All flag bits of `prev`; the rest is a pointer or `gc_refs`.
pub(crate) const FLAGS_MASK: usize = FINALIZED | COLLECTING | GEN_MASK;
pub(crate) const REFS_SHIFT: u32 = 4;
const _: () = assert!(FLAGS_MASK < (1 << REFS_SHIFT) && (1 << REFS_SHIFT) <= HEAD_SIZE);

impl GcHead {
    pub(crate) const fn new() -> Self {
        GcHead { next: 0, prev: 0 }
    }
}

// All functions below take raw pointers to headers. Their common contract:
// every header passed is valid for reads and writes, and a "list" is a head
// initialised with `init` whose members form a consistent circular
// doubly-linked list (prev pointers valid, next untagged) unless a function
// says otherwise. Nothing here allocates or calls user code.

/// The next header of `g`'s list (0: untracked).
///
/// # Safety
/// `g` is a valid header (the module contract).
#[inline]
pub(crate) unsafe fn next(g: *mut GcHead) -> *mut GcHead {
    // SAFETY: g is a valid header (module contract).
    unsafe { (*g).next as *mut GcHead }
}

/// The previous header of `g`'s list, without the flag bits.
///
/// # Safety
/// `g` is a valid header (the module contract).
#[inline]
pub(crate) unsafe fn prev(g: *mut GcHead) -> *mut GcHead {
    // SAFETY: g is a valid header (module contract).
    (unsafe { (*g).prev } & !FLAGS_MASK) as *mut GcHead
}

/// Sets the pointer part of `prev`, keeping the flag bits.
///
/// # Safety
/// `g` is a valid header; `p` is a header's address (its flag bits clear).
#[inline]
pub(crate) unsafe fn set_prev(g: *mut GcHead, p: *mut GcHead) {
    debug_assert!(p as usize & FLAGS_MASK == 0);
    // SAFETY: g is a valid header (module contract).
    unsafe { (*g).prev = ((*g).prev & FLAGS_MASK) | p as usize };
}

/// Whether `g` is on a list.
///
/// # Safety
/// `g` is a valid header (the module contract).
#[inline]
pub(crate) unsafe fn is_tracked(g: *const GcHead) -> bool {
    // SAFETY: g is a valid header (module contract).
    unsafe { (*g).next != 0 }
}

/// The flag bits of `g`.
///
/// # Safety
/// `g` is a valid header (the module contract).
#[inline]
pub(crate) unsafe fn flags(g: *const GcHead) -> usize {
    // SAFETY: g is a valid header (module contract).
    unsafe { (*g).prev & FLAGS_MASK }
}

/// The generation bits of `g` as a number (the collector tests the bits).
///
/// # Safety
/// `g` is a valid header (the module contract).
#[cfg(test)]
pub(crate) unsafe fn generation(g: *const GcHead) -> usize {
    // SAFETY: g is a valid header (module contract).
    (unsafe { (*g).prev } & GEN_MASK) >> GEN_SHIFT
}

/// Sets the flag bits `f` of `g`.
///
/// # Safety
/// `g` is a valid header; `f` has only flag bits (`FLAGS_MASK`), which
/// leaves the link intact.
#[inline]
pub(crate) unsafe fn set_flag(g: *mut GcHead, f: usize) {
    // SAFETY: g is a valid header (module contract).
    unsafe { (*g).prev |= f };
}

/// Sets the generation bits of `g`.
///
/// # Safety
/// `g` is a valid header; `gen <= PERMANENT`.
#[inline]
pub(crate) unsafe fn set_generation(g: *mut GcHead, gen: usize) {
    debug_assert!(gen <= PERMANENT);
    // SAFETY: g is a valid header (module contract).
    unsafe { (*g).prev = ((*g).prev & !GEN_MASK) | (gen << GEN_SHIFT) };
}

/// Makes `list` an empty list.
///
/// # Safety
/// `list` is a valid header; any members it had are forgotten.
#[inline]
pub(crate) unsafe fn init(list: *mut GcHead) {
    // SAFETY: list is a valid header (module contract).
    unsafe {
        (*list).next = list as usize;
        (*list).prev = list as usize;
    }
}

/// Whether `list` has no member.
///
/// # Safety
/// `list` is a list (the module contract).
#[inline]
pub(crate) unsafe fn is_empty(list: *mut GcHead) -> bool {
    // SAFETY: list is a valid header (module contract).
    unsafe { next(list) == list }
}

/// Links the untracked `node` at the end of `list`.
///
/// # Safety
/// `node` is a valid header on no list (untracked, or unlinked by the
/// caller: its links are overwritten); `list` is a list.
#[inline]
pub(crate) unsafe fn append(node: *mut GcHead, list: *mut GcHead) {
    // SAFETY: module contract; `last` is a member or the head of `list`.
    unsafe {
        let last = prev(list);
        set_prev(node, last);
        (*last).next = node as usize;
        (*node).next = list as usize;
        (*list).prev = node as usize;
    }
}

/// Appends the untracked `node` to `list`, in generation 0: `append` and
/// `set_generation(node, 0)` in one write of its `prev` word.
///
/// # Safety
/// As `append`.
#[inline]
pub(crate) unsafe fn append_young(node: *mut GcHead, list: *mut GcHead) {
    // SAFETY: module contract; `last` is a member or the head of `list`.
    unsafe {
        let last = prev(list);
        (*node).prev = ((*node).prev & FLAGS_MASK & !GEN_MASK) | last as usize;
        (*last).next = node as usize;
        (*node).next = list as usize;
        (*list).prev = node as usize;
    }
}

/// Unlinks `node` from its list, leaving it untracked with only the
/// FINALIZED bit (the other bits are meaningless for an untracked object).
///
/// # Safety
/// `node` is a member of a list whose links are consistent (not between
/// `update_refs` and `move_unreachable`, where `prev` holds `gc_refs`).
#[inline]
pub(crate) unsafe fn remove(node: *mut GcHead) {
    // SAFETY: module contract; node's neighbours are valid headers.
    unsafe {
        let p = prev(node);
        let n = next(node);
        (*p).next = n as usize;
        set_prev(n, p);
        (*node).next = 0;
        (*node).prev &= FINALIZED;
    }
}

/// Moves `node` from its list to the end of `list`, keeping its flags.
///
/// # Safety
/// `node` is as for `remove`; `list` is a list.
#[inline]
pub(crate) unsafe fn move_to(node: *mut GcHead, list: *mut GcHead) {
    // SAFETY: module contract.
    unsafe {
        let p = prev(node);
        let n = next(node);
        (*p).next = n as usize;
        set_prev(n, p);
        append(node, list);
    }
}

/// Appends every member of `from` to `to` (keeping their order) and leaves
/// `from` empty. O(1).
///
/// # Safety
/// `from` and `to` are distinct lists.
pub(crate) unsafe fn merge(from: *mut GcHead, to: *mut GcHead) {
    debug_assert!(from != to);
    // SAFETY: module contract: both are lists.
    unsafe {
        if is_empty(from) {
            return;
        }
        let to_tail = prev(to);
        let from_head = next(from);
        let from_tail = prev(from);
        (*to_tail).next = from_head as usize;
        set_prev(from_head, to_tail);
        (*to).prev = from_tail as usize;
        (*from_tail).next = to as usize;
        init(from);
    }
}

/// Number of members of `list`; O(n).
///
/// # Safety
/// `list` is a list: following `next` from its head visits its members
/// and returns to the head.
pub(crate) unsafe fn size(list: *mut GcHead) -> usize {
    let mut n = 0;
    // SAFETY: module contract: following next from a list head visits its
    // members and returns to the head.
    unsafe {
        let mut g = next(list);
        while g != list {
            n += 1;
            g = next(g);
        }
    }
    n
}

/// Sets the generation bits of every member of `list` to `gen`; O(n).
///
/// # Safety
/// As `size`; `gen <= PERMANENT`.
pub(crate) unsafe fn set_generation_all(list: *mut GcHead, gen: usize) {
    // SAFETY: as in `size`.
    unsafe {
        let mut g = next(list);
        while g != list {
            set_generation(g, gen);
            g = next(g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(16))]
    struct Node(GcHead);

    fn nodes<const N: usize>() -> [Node; N] {
        core::array::from_fn(|_| Node(GcHead::new()))
    }

    fn order(list: *mut GcHead, base: *mut Node, n: usize) -> [usize; 8] {
        let mut out = [usize::MAX; 8];
        let mut i = 0;
        // SAFETY: the test's lists are consistent.
        unsafe {
            let mut g = next(list);
            let mut back = list;
            while g != list {
                assert_eq!(prev(g), back, "prev link broken");
                out[i] = (g as usize - base as usize) / core::mem::size_of::<Node>();
                assert!(out[i] < n);
                i += 1;
                back = g;
                g = next(g);
            }
            assert_eq!(prev(list), back);
        }
        out
    }

    #[test]
    fn append_remove_move_merge() {
        let mut a = Node(GcHead::new());
        let mut b = Node(GcHead::new());
        let mut ns = nodes::<5>();
        let base = ns.as_mut_ptr();
        let la = &raw mut a.0;
        let lb = &raw mut b.0;
        // SAFETY: every header lives on this stack frame for the whole test.
        unsafe {
            init(la);
            init(lb);
            assert!(is_empty(la));
            for i in 0..5 {
                let g = &raw mut (*base.add(i)).0;
                append(g, la);
                set_generation(g, 1);
                set_flag(g, FINALIZED);
                assert!(is_tracked(g));
            }
            assert_eq!(size(la), 5);
            assert_eq!(order(la, base, 5)[..5], [0, 1, 2, 3, 4]);
            remove(&raw mut (*base.add(2)).0);
            assert!(!is_tracked(&raw const (*base.add(2)).0));
            assert_eq!(flags(&raw const (*base.add(2)).0), FINALIZED);
            move_to(&raw mut (*base.add(0)).0, lb);
            assert_eq!(order(la, base, 5)[..3], [1, 3, 4]);
            assert_eq!(order(lb, base, 5)[..1], [0]);
            assert_eq!(generation(&raw const (*base.add(0)).0), 1);
            merge(la, lb);
            assert!(is_empty(la));
            assert_eq!(order(lb, base, 5)[..4], [0, 1, 3, 4]);
            merge(la, lb); // empty source is a no-op
            assert_eq!(size(lb), 4);
            set_generation_all(lb, PERMANENT);
            assert_eq!(generation(&raw const (*base.add(4)).0), PERMANENT);
            assert_eq!(flags(&raw const (*base.add(4)).0) & FINALIZED, FINALIZED);
        }
    }
}
