//! Reference-counted objects: layout, creation, reference counts, and the
//! deallocation path with its trashcan.
//!
//! # Layout
//! Every object starts with `obm_object` (refcount, type). Objects of a type
//! with `OBM_TPFLAGS_HAVE_GC`, or with a `finalize` function, carry a 16-byte
//! header *in front of* the object (`gc::list::GcHead`): list links for the
//! collector and the FINALIZED bit that makes `finalize` run at most once.
//! Objects of a type with `OBM_TPFLAGS_WEAKREFABLE` have a 16-byte weak slot
//! in front of that (`gc::weak`). Other objects pay nothing. The memory
//! block therefore starts at `object - prefix_size(type)`; a type must not
//! change its `flags` or `finalize` while objects of it exist. Statically
//! allocated objects have no prefix at all (`is_static`).
//!
//! # Deallocation (refcount reaches zero)
//! 1. `finalize`, if the type has one and it has not run yet; the object is
//!    given a temporary reference meanwhile, and if the count is still above
//!    zero after it, the object was resurrected and we stop (PEP 442).
//! 2. A tracked GC object is untracked; the weak references to it are
//!    cleared and their callbacks run (`gc::weak::clear_on_death`); then the
//!    type's `dealloc` drops what the object owns (without one, an
//!    `obm_type_refs` type has its listed references dropped); then the memory
//!    goes back to the object domain.
//!
//! # Immortal objects
//! A count that is positive with a negative low 32-bit half is immortal
//! (`is_immortal_count`): `incref` and `decref` test only the low half, never
//! write an immortal count, and the deallocation path is never reached for
//! one. Statically allocated objects carry `OBM_STATIC_REFCNT`, which also
//! tells that no header lies in front of them (docs/GC.md).
//!
//! # The trashcan
//! `dealloc` of a chain drops the next link, whose refcount reaches zero, so
//! freeing a long chain would recurse once per link. As CPython does, each
//! thread counts how deeply deallocations are nested; past `TRASH_UNWIND_LEVEL`
//! an object is not destroyed but put on the thread's "delete later" list,
//! and the outermost deallocation destroys that list in a loop. The stack
//! depth is thus bounded by `TRASH_UNWIND_LEVEL` nested user `dealloc`s.
//! The list is threaded through `ob_refcnt`, which holds the next link
//! encoded as a number whose two halves are negative (`encode_trash_link`),
//! so a stray decref of a pending object is reported as a negative
//! refcount; bit 0 of the link remembers whether the object was tracked, so
//! that a pending `finalize` runs on a tracked object as it would have
//! without the deferral.

use core::cell::Cell;
use core::ffi::{c_char, c_int, c_ulong, c_void, CStr};
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::gc::list::{self, GcHead, FINALIZED, HEAD_SIZE};

/// A reference-count operation through a hook: the object, the exported
/// function's name, the function to use instead when NULL is an error
/// (None: NULL is ignored), and the bare operation to run.
pub(crate) type RefHook =
    unsafe fn(*mut obm_object, &'static str, Option<&'static str>, unsafe fn(*mut obm_object));

/// A `RefHook` in a static, so that one atomic pointer publishes it.
pub(crate) struct RefHookCell(pub RefHook);

/// The hook of the reference-count entry points (the debug hooks' checks),
/// null while none is installed: then they cost one load and one branch.
static REF_HOOK: core::sync::atomic::AtomicPtr<RefHookCell> =
    core::sync::atomic::AtomicPtr::new(ptr::null_mut());

/// Installs the hook every reference-count entry point goes through.
pub(crate) fn set_ref_hook(h: &'static RefHookCell) {
    REF_HOOK.store(
        h as *const RefHookCell as *mut RefHookCell,
        core::sync::atomic::Ordering::Release,
    );
}

/// The installed reference-count hook, if any.
#[inline(always)]
pub(crate) fn ref_hook() -> Option<RefHook> {
    let h = REF_HOOK.load(core::sync::atomic::Ordering::Acquire);
    // SAFETY: a non-null pointer is a &'static RefHookCell (set_ref_hook).
    (!h.is_null()).then(|| unsafe { (*h).0 })
}

/// `null_ref` and `negative_refcount` for the reference-count fast paths:
/// these return in theory (`black_box` hides that they never do), so the
/// compiler jumps to them in tail position instead of calling them, and
/// `obm_incref`/`obm_decref` need no stack frame to align a call.
#[cold]
#[inline(never)]
pub(crate) fn null_ref_tail(func: &str, instead: &str) {
    if core::hint::black_box(true) {
        null_ref(func, instead)
    }
}

#[cold]
#[inline(never)]
fn negative_refcount_tail(o: *const obm_object) {
    if core::hint::black_box(true) {
        negative_refcount(o)
    }
}

/// Reports a reference-count operation on NULL and aborts.
#[cold]
#[inline(never)]
pub(crate) fn null_ref(func: &str, instead: &str) -> ! {
    crate::report::fatal(format_args!(
        "{func}(NULL); use {instead} for pointers that may be NULL"
    ))
}

/// The head of every object; put `OBM_OBJECT_HEAD` first in your struct.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct obm_object {
    /// The reference count; read it with `obm_refcnt`.
    pub ob_refcnt: isize,
    /// The object's type; it must outlive the object.
    pub ob_type: *const obm_type,
}

/// Called by a type's `traverse` for each reference the object owns; a
/// non-zero return stops the traversal and must be returned by `traverse`.
#[allow(non_camel_case_types)]
pub type obm_visitproc =
    Option<unsafe extern "C" fn(o: *mut obm_object, arg: *mut c_void) -> c_int>;

/// A type: what obmem needs to know to create, finalize, traverse, clear and
/// destroy its objects. It must not change while objects of it exist.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct obm_type {
    /// Used in messages ("negative refcount on <name> object").
    pub name: *const c_char,
    /// sizeof the user's struct, head included (at least sizeof(obm_object)).
    pub size: usize,
    /// OBM_TPFLAGS_HAVE_GC for objects that may form reference cycles.
    pub flags: c_ulong,
    /// Optional; PEP 442: runs at most once per object, may resurrect it.
    pub finalize: Option<unsafe extern "C" fn(o: *mut obm_object)>,
    /// Optional; drops what the object owns. obmem frees the memory.
    pub dealloc: Option<unsafe extern "C" fn(o: *mut obm_object)>,
    /// Required for GC types: call visit on each owned reference (NULL ones
    /// may be skipped or passed); return the first non-zero result of visit.
    pub traverse: Option<
        unsafe extern "C" fn(o: *mut obm_object, visit: obm_visitproc, arg: *mut c_void) -> c_int,
    >,
    /// GC types: drop owned references (set each field to NULL before the
    /// decref); the collector calls it to break cycles.
    pub clear: Option<unsafe extern "C" fn(o: *mut obm_object) -> c_int>,
}

/// Type flag: objects of the type may form cycles and carry a collector
/// header; the type must have `traverse` (and should have `clear`).
pub const OBM_TPFLAGS_HAVE_GC: c_ulong = 1 << 14;

/// Type flag: objects of the type can be weakly referenced (`obm_weakref_new`)
/// and be keys of ephemerons. Each object of such a type carries 16 more
/// bytes in front of it (a pointer to its list of weak references, padded
/// to keep objects 16-byte aligned); the user's struct reserves no field.
/// Objects of other types pay nothing.
pub const OBM_TPFLAGS_WEAKREFABLE: c_ulong = 1 << 15;

/// Type flag: the type is the `base` of an `obm_type_refs`, whose `refs`
/// says which fields of the object are owned references, and obmem reads
/// them there: no call per object and reference when the collector walks
/// the heap (`traverse` must be NULL). A NULL `clear` or `dealloc` then
/// means "drop the listed references".
pub const OBM_TPFLAGS_REF_MAP: c_ulong = 1 << 16;

/// A type whose objects' owned references are pointer fields at fixed
/// places in their first 64 words: `base.flags` has
/// `OBM_TPFLAGS_REF_MAP`, and objects are made with `obm_new(&t.base)`.
/// Each listed field holds NULL or an owned reference. A reference further
/// on, or in a variable-sized part, needs a `traverse` type instead.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct obm_type_refs {
    /// The type; `base.traverse` must be NULL.
    pub base: obm_type,
    /// Bit i set: the pointer-sized word at byte offset `i * sizeof(void *)`
    /// is an owned `obm_object *`. Build it with `OBM_REF_FIELD`:
    /// `OBM_REF_FIELD(my_obj, a) | OBM_REF_FIELD(my_obj, b)`. The head's
    /// words and words past `base.size` may not be set.
    pub refs: u64,
}

/// Bytes in front of an object of a weakrefable type for its weak list.
pub(crate) const WEAK_SLOT_SIZE: usize = 16;

/// Nested deallocations allowed before the trashcan defers (CPython's value).
pub(crate) const TRASH_UNWIND_LEVEL: u32 = 50;

// ---------------------------------------------------------------------------
// Type helpers

/// # Safety
/// `o` points to a live object (its type pointer is valid).
#[inline(always)]
pub(crate) unsafe fn type_of(o: *const obm_object) -> &'static obm_type {
    // SAFETY: a live object's type outlives it (obm_type contract).
    unsafe { &*(*o).ob_type }
}

#[inline(always)]
pub(crate) fn type_is_gc(t: &obm_type) -> bool {
    t.flags & OBM_TPFLAGS_HAVE_GC != 0
}

/// # Safety
/// `o` points to a live object.
#[inline(always)]
pub(crate) unsafe fn is_gc(o: *const obm_object) -> bool {
    // SAFETY: per the contract.
    type_is_gc(unsafe { type_of(o) })
}

/// Whether objects of `t` have a collector header (`GcHead`) in front.
#[inline(always)]
pub(crate) fn has_head(t: &obm_type) -> bool {
    type_is_gc(t) || t.finalize.is_some()
}

#[inline(always)]
pub(crate) fn type_is_weakrefable(t: &obm_type) -> bool {
    t.flags & OBM_TPFLAGS_WEAKREFABLE != 0
}

#[inline(always)]
pub(crate) fn type_has_ref_map(t: &obm_type) -> bool {
    t.flags & OBM_TPFLAGS_REF_MAP != 0
}

/// Whether an object of a type with a reference map was ever made: until
/// then the collector's passes call `traverse` without testing for a map.
static REF_MAPS_USED: AtomicBool = AtomicBool::new(false);

/// Whether some object may have a type with a reference map (once true,
/// stays true).
#[inline(always)]
pub(crate) fn ref_maps_used() -> bool {
    REF_MAPS_USED.load(Ordering::Relaxed)
}

/// The reference map (`obm_type_refs::refs`) of a type with
/// `OBM_TPFLAGS_REF_MAP`.
///
/// # Safety
/// `t` has the flag, so it is the `base` of an `obm_type_refs` (the flag's
/// contract).
#[inline(always)]
unsafe fn ref_map(t: &obm_type) -> u64 {
    // SAFETY: base is the first field of the repr(C) obm_type_refs.
    unsafe { (*(t as *const obm_type).cast::<obm_type_refs>()).refs }
}

/// The field of word `i` of `o`.
///
/// # Safety
/// `o` is a live object whose type's reference map has bit `i`, which
/// `object_bytes` checked lies inside the object.
#[inline(always)]
unsafe fn ref_field(o: *mut obm_object, i: u32) -> *mut *mut obm_object {
    // SAFETY: per the contract.
    unsafe { o.cast::<*mut obm_object>().add(i as usize) }
}

/// Calls `visit(field, arg)` on each non-null reference `o` owns, as its
/// type says (its reference map, or its `traverse`, which may pass NULL
/// fields too); returns the first non-zero result. Inline, so that a
/// collector pass passing a known `visit` calls it directly on the fields
/// of an `obm_type_refs` type.
///
/// # Safety
/// `o` is a live object; its type has a reference map or, for a GC type,
/// `traverse` (`object_bytes` refused the others), or neither (no
/// references are visited).
#[inline(always)]
pub(crate) unsafe fn visit_refs(
    o: *mut obm_object,
    visit: unsafe extern "C" fn(*mut obm_object, *mut c_void) -> c_int,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: per the contract; the map was checked by `object_bytes` when
    // the object was made, and a type must not change while objects of it
    // exist.
    unsafe {
        let ty = type_of(o);
        if !type_has_ref_map(ty) {
            return match ty.traverse {
                Some(tr) => tr(o, Some(visit), arg),
                None => 0,
            };
        }
        let mut map = ref_map(ty);
        while map != 0 {
            let field = *ref_field(o, map.trailing_zeros());
            map &= map - 1;
            if !field.is_null() {
                let r = visit(field, arg);
                if r != 0 {
                    return r;
                }
            }
        }
        0
    }
}

/// Drops the references `ty` lists in `o`, each field set to NULL before
/// its decref: what a NULL `clear` or `dealloc` does for such a type.
///
/// # Safety
/// `o` is a live (or dying) object of `ty`, an `obm_type_refs`'s base.
pub(crate) unsafe fn drop_listed_refs(o: *mut obm_object, ty: &obm_type) {
    // SAFETY: per the contract and `visit_refs`'s.
    unsafe {
        let mut map = ref_map(ty);
        while map != 0 {
            let field = ref_field(o, map.trailing_zeros());
            map &= map - 1;
            let r = *field;
            if !r.is_null() {
                *field = ptr::null_mut();
                decref(r);
            }
        }
    }
}

/// Whether the reference map of `ty` (which has `OBM_TPFLAGS_REF_MAP`)
/// is usable: no bit on the head's words or on a word past `size`.
///
/// # Safety
/// `ty` is an `obm_type_refs`'s base.
#[inline(always)]
unsafe fn ref_map_valid(ty: &obm_type) -> bool {
    const WORD: usize = core::mem::size_of::<*mut obm_object>();
    const HEAD_WORDS: usize = core::mem::size_of::<obm_object>() / WORD;
    let words = (ty.size / WORD).min(64);
    let inside = if words == 64 {
        u64::MAX
    } else {
        (1u64 << words) - 1
    };
    // SAFETY: per the contract.
    unsafe { ref_map(ty) & !(inside & !((1u64 << HEAD_WORDS) - 1)) == 0 }
}

/// Bytes of prefix in front of objects of `t`: the collector header and
/// the weak slot (`gc::weak`), in that order going backwards.
#[inline(always)]
pub(crate) fn prefix_size(t: &obm_type) -> usize {
    let head = if has_head(t) { HEAD_SIZE } else { 0 };
    if type_is_weakrefable(t) {
        head + WEAK_SLOT_SIZE
    } else {
        head
    }
}

/// The header in front of `o`.
///
/// # Safety
/// `o`'s type has a prefix (`prefix_size != 0`).
#[inline(always)]
pub(crate) unsafe fn head_of(o: *const obm_object) -> *mut GcHead {
    // SAFETY: the header occupies the HEAD_SIZE bytes before the object,
    // in the same allocation.
    unsafe { (o as *mut u8).sub(HEAD_SIZE) as *mut GcHead }
}

/// The object behind a collector header.
///
/// # Safety
/// `g` is the header of a GC object.
#[inline(always)]
pub(crate) unsafe fn object_of(g: *mut GcHead) -> *mut obm_object {
    // SAFETY: the object follows its header in the same allocation.
    unsafe { (g as *mut u8).add(HEAD_SIZE) as *mut obm_object }
}

/// The type's name for messages (never fails, never allocates).
pub(crate) fn type_name(t: *const obm_type) -> &'static str {
    if t.is_null() {
        return "<NULL type>";
    }
    // SAFETY: a non-null type pointer given to obmem points to an obm_type.
    let name = unsafe { (*t).name };
    if name.is_null() {
        return "?";
    }
    // SAFETY: obm_type::name is a NUL-terminated string that lives as long
    // as the type.
    let bytes = unsafe { CStr::from_ptr(name) }.to_bytes();
    core::str::from_utf8(bytes).unwrap_or("<non-UTF-8 name>")
}

// ---------------------------------------------------------------------------
// Creation

/// Creates an object of `t` with `extra` bytes after `t.size`, zero-filled,
/// refcount 1, not tracked. Null on bad type (reported) or out of memory.
///
/// # Safety
/// `t` is null or points to an `obm_type` that outlives its objects.
pub unsafe fn new_object(t: *const obm_type, extra: usize, caller: &str) -> *mut obm_object {
    // SAFETY: per the contract.
    let Some((total, prefix)) = (unsafe { object_bytes(t, extra) }) else {
        // SAFETY: as above.
        return unsafe { reject(t, extra, caller) };
    };
    // The fast path tells the block's size, which the census counts. The
    // rest is tail calls, so that a creation saves no register.
    let (base, bytes) = crate::domain::object_malloc_fast_sized(total);
    if base.is_null()
        || bytes > ZERO_INLINE_MAX
        || !crate::census::created_fast(t as *const c_void, bytes)
    {
        // SAFETY: t is a valid type (object_bytes checked it).
        return unsafe { new_object_slow(t, total, base, bytes) };
    }
    // SAFETY: base is a fresh block of `bytes` >= `total` bytes, a multiple
    // of 16 (a pool's block), 16-byte aligned.
    unsafe {
        let mut off = 0;
        while off < bytes {
            (base.add(off) as *mut u128).write(0);
            off += 16;
            // An empty barrier: without it the loop becomes a memset call,
            // and the call makes the creation save registers.
            core::arch::asm!("", options(nostack, nomem, preserves_flags));
        }
        init_object(base, t, prefix)
    }
}

/// Blocks up to this size are zeroed with inline stores, larger with memset.
const ZERO_INLINE_MAX: usize = 256;

/// `new_object` past the checks, when the allocator's fast path gave no
/// block (`base` null) or a block too big to zero inline, or the census
/// has to look further for the type's slot.
///
/// # Safety
/// `t` is a valid type; `base` is null or a fresh block of `bytes` bytes.
#[inline(never)]
unsafe fn new_object_slow(
    t: *const obm_type,
    total: usize,
    mut base: *mut u8,
    mut bytes: usize,
) -> *mut obm_object {
    if base.is_null() {
        base = crate::domain::object_malloc(total);
        if base.is_null() {
            return ptr::null_mut();
        }
        bytes = crate::census::block_bytes(base);
    }
    crate::census::created(t as *const c_void, bytes);
    // SAFETY: base is a fresh block of at least `total` bytes, 16-byte
    // aligned, and `t` is valid (contract).
    unsafe {
        ptr::write_bytes(base, 0, total);
        init_object(base, t, prefix_size(&*t))
    }
}

/// The object of type `t` in the zeroed block `base`: refcount 1.
///
/// # Safety
/// `base` is a fresh zeroed block for an object of `t` (`object_bytes`),
/// 16-byte aligned; `prefix` is `t`'s prefix size, a multiple of 16, so
/// the object is aligned too.
#[inline(always)]
unsafe fn init_object(base: *mut u8, t: *const obm_type, prefix: usize) -> *mut obm_object {
    // SAFETY: per the contract.
    unsafe {
        let o = base.add(prefix) as *mut obm_object;
        (*o).ob_refcnt = 1;
        (*o).ob_type = t;
        o
    }
}

/// The bytes of an object of `t` with `extra` bytes (its prefix included)
/// and the prefix's, or None if `t` is unusable or the size overflows
/// (`reject` says which).
///
/// # Safety
/// `t` is null or points to an `obm_type`.
#[inline(always)]
unsafe fn object_bytes(t: *const obm_type, extra: usize) -> Option<(usize, usize)> {
    // SAFETY: per the contract.
    let ty = unsafe { t.as_ref() }?;
    if ty.size < core::mem::size_of::<obm_object>()
        || (ty.flags & (OBM_TPFLAGS_HAVE_GC | OBM_TPFLAGS_REF_MAP) != 0
            // SAFETY: per the contract.
            && !unsafe { references_described(ty) })
    {
        return None;
    }
    let prefix = prefix_size(ty);
    Some((ty.size.checked_add(extra)?.checked_add(prefix)?, prefix))
}

/// Whether a type with `OBM_TPFLAGS_HAVE_GC` or `OBM_TPFLAGS_REF_MAP`
/// says how to find its references: a valid reference map and no
/// `traverse`, or (without the second flag) a `traverse`.
///
/// # Safety
/// With the second flag, `ty` is an `obm_type_refs`'s base.
#[inline(always)]
unsafe fn references_described(ty: &obm_type) -> bool {
    if type_has_ref_map(ty) {
        REF_MAPS_USED.store(true, Ordering::Relaxed);
        // SAFETY: per the contract.
        ty.traverse.is_none() && unsafe { ref_map_valid(ty) }
    } else {
        ty.traverse.is_some()
    }
}

/// Reports why `object_bytes` refused `t` (out of memory: ENOMEM only).
/// Out of line: its formatting would make every creation save registers.
///
/// # Safety
/// As `object_bytes`.
#[cold]
#[inline(never)]
unsafe fn reject(t: *const obm_type, extra: usize, caller: &str) -> *mut obm_object {
    // SAFETY: per the contract.
    let Some(ty) = (unsafe { t.as_ref() }) else {
        crate::report::eprint(format_args!("obmem: {caller}: type is NULL\n"));
        return core::hint::black_box(ptr::null_mut());
    };
    if ty.size < core::mem::size_of::<obm_object>() {
        crate::report::eprint(format_args!(
            "obmem: {caller}: type \"{}\" has size {} < sizeof(obm_object); refusing to create the object\n",
            type_name(t),
            ty.size
        ));
    } else if type_has_ref_map(ty) && ty.traverse.is_some() {
        crate::report::eprint(format_args!(
            "obmem: {caller}: type \"{}\" has both OBM_TPFLAGS_REF_MAP and a traverse function; refusing to create the object\n",
            type_name(t)
        ));
    // SAFETY: per the contract.
    } else if type_has_ref_map(ty) && !unsafe { ref_map_valid(ty) } {
        crate::report::eprint(format_args!(
            "obmem: {caller}: type \"{}\" has OBM_TPFLAGS_REF_MAP but its refs map 0x{:x} names a word of the head or past its size {}; refusing to create the object\n",
            type_name(t),
            // SAFETY: the type has the flag.
            unsafe { ref_map(ty) },
            ty.size
        ));
    } else if type_is_gc(ty) && !type_has_ref_map(ty) && ty.traverse.is_none() {
        crate::report::eprint(format_args!(
            "obmem: {caller}: type \"{}\" has OBM_TPFLAGS_HAVE_GC but no traverse function (nor OBM_TPFLAGS_REF_MAP); refusing to create the object\n",
            type_name(t)
        ));
    } else {
        debug_assert!(ty
            .size
            .checked_add(extra)
            .is_none_or(|n| n.checked_add(prefix_size(ty)).is_none()));
        crate::os::set_errno(libc::ENOMEM);
    }
    // Opaque, so that `new_object` tail-calls this: knowing the result is
    // always null, the compiler would call it and return null itself.
    core::hint::black_box(ptr::null_mut())
}

// ---------------------------------------------------------------------------
// Reference counts

/// What `obm_refcnt` returns for an immortal object, and the count
/// `obm_immortalize` stores (CPython 3.14's initial immortal count). An
/// object is immortal when its count is positive and the low 32 bits of it,
/// read as a signed 32-bit number, are negative (see "Immortal objects").
pub const OBM_IMMORTAL_REFCNT: isize = 0xC000_0000;

/// The count `OBM_STATIC_OBJECT_INIT` stores: immortal, and also marking a
/// statically allocated object, which has no header in front of it.
pub const OBM_STATIC_REFCNT: isize = 0x1_C000_0000;

/// Whether a reference count is an immortal one.
#[inline(always)]
pub(crate) fn is_immortal_count(rc: isize) -> bool {
    rc > 0 && (rc as i32) < 0
}

/// # Safety
/// `o` is a live object.
#[inline(always)]
pub(crate) unsafe fn is_immortal(o: *const obm_object) -> bool {
    // SAFETY: per the contract.
    is_immortal_count(unsafe { (*o).ob_refcnt })
}

/// Whether the low half of `o`'s count is negative: true for every
/// immortal object (static ones included), cheaper than `is_immortal`.
///
/// # Safety
/// `o` is a live object.
#[inline(always)]
pub(crate) unsafe fn is_immortal_low(o: *const obm_object) -> bool {
    // SAFETY: per the contract.
    unsafe { *low_half(o) < 0 }
}

/// Whether `o` was allocated statically (`OBM_STATIC_OBJECT_INIT`): then
/// nothing lies in front of it, whatever its type's flags say.
///
/// # Safety
/// `o` is a live object.
#[inline(always)]
pub(crate) unsafe fn is_static(o: *const obm_object) -> bool {
    // SAFETY: per the contract.
    unsafe { (*o).ob_refcnt == OBM_STATIC_REFCNT }
}

/// The low 32 bits of `o`'s count: negative for an immortal object.
///
/// # Safety
/// `o` is a live object.
#[inline(always)]
unsafe fn low_half(o: *const obm_object) -> *const i32 {
    let off = if cfg!(target_endian = "little") { 0 } else { 4 };
    // SAFETY: ob_refcnt is an aligned isize of 8 bytes (64-bit targets;
    // the lib targets only those) in the object.
    unsafe { (o as *const u8).add(off) as *const i32 }
}

/// # Safety
/// `o` is a live object.
#[inline(always)]
pub unsafe fn incref(o: *mut obm_object) {
    // SAFETY: per the contract. An immortal count is never written (that
    // is the point: its page stays shared after fork); a mortal count that
    // reaches 2^31 becomes immortal, as in CPython 3.14.
    // Reading the low half alone lets the compiler test it in memory and
    // increment in memory (3 instructions instead of load/test/store).
    unsafe {
        if *low_half(o) >= 0 {
            (*o).ob_refcnt += 1;
        }
    }
}

/// # Safety
/// `o` is a live object and the caller owns one of its references.
#[inline(always)]
pub unsafe fn decref(o: *mut obm_object) {
    // SAFETY: per the contract.
    unsafe {
        let rc = (*o).ob_refcnt;
        // The low half decides, as in incref: a mortal count is below 2^31,
        // and every other value (immortal, trashcan link, freed fill) has a
        // negative low half, so the common case costs what it did before
        // immortal objects existed.
        if (rc as i32) > 1 {
            (*o).ob_refcnt = rc - 1;
        } else if rc == 1 {
            (*o).ob_refcnt = 0;
            dealloc(o);
        } else if !is_immortal_count(rc) {
            negative_refcount_tail(o);
        }
    }
}

/// Makes `o` immortal: never freed or finalized again, its count never
/// written again.
///
/// # Safety
/// `o` is a live object.
pub unsafe fn immortalize(o: *mut obm_object) {
    // SAFETY: per the contract.
    unsafe {
        let rc = (*o).ob_refcnt;
        if rc <= 0 {
            negative_refcount(o);
        }
        if !is_immortal_count(rc) {
            (*o).ob_refcnt = OBM_IMMORTAL_REFCNT;
        }
    }
}

/// Reports a decref of an object whose count is already 0 (or a pending or
/// freed one) and aborts.
#[cold]
#[inline(never)]
pub(crate) fn negative_refcount(o: *const obm_object) -> ! {
    // SAFETY: o was passed as an object; reading its type pointer is the
    // best we can do to name it (it may be garbage if o was freed).
    let t = unsafe { (*o).ob_type };
    crate::report::fatal(format_args!(
        "negative refcount on {} object at {:p}",
        type_name(t),
        o
    ))
}

// ---------------------------------------------------------------------------
// Deallocation and the trashcan

/// Per-thread trashcan state (see the module docs), in the zeroed TLS slot
/// of `tls::trash_slot` (all-zero bytes are depth 0 and an empty list).
#[repr(C)]
struct Trash {
    /// Deallocations currently nested on this thread's stack.
    depth: Cell<u32>,
    /// The first object waiting to be destroyed, or null.
    later: Cell<*mut obm_object>,
}

const _: () = assert!(
    core::mem::size_of::<Trash>() <= core::mem::size_of::<[usize; 2]>()
        && core::mem::align_of::<Trash>() <= core::mem::align_of::<[usize; 2]>()
);

/// The calling thread's trashcan.
#[inline(always)]
fn trash() -> &'static Trash {
    // SAFETY: the slot is this thread's, lives as long as the thread, fits
    // a Trash (checked above), starts zeroed (a valid Trash), and only this
    // module touches it, through Cells on this thread.
    unsafe { &*(crate::heap::tls::trash_slot() as *const Trash) }
}

/// Bit 0 of a trash link: the object was tracked when deposited.
const TRASH_WAS_TRACKED: usize = 1;

/// A trash link stored in `ob_refcnt`: both the whole word and its low
/// half are negative, so `decref` of a pending object takes its slow path
/// and reports it, `incref` leaves it alone, and it is never taken for an
/// immortal count. Bits 0-30 hold bits 0-30 of the link, bits 32-62 the
/// rest (a user-space address has at most 47 bits).
fn encode_trash_link(link: usize) -> isize {
    const LOW: usize = 0x7FFF_FFFF;
    debug_assert!(link >> 62 == 0);
    ((1 << 63) | ((link >> 31) << 32) | (1 << 31) | (link & LOW)) as isize
}

fn decode_trash_link(rc: isize) -> usize {
    const LOW: usize = 0x7FFF_FFFF;
    let v = rc as usize;
    (((v >> 32) & LOW) << 31) | (v & LOW)
}

/// Destroys `o`, whose refcount has just reached zero.
///
/// # Safety
/// `o` is a live object with refcount 0 that nobody else will use.
pub(crate) unsafe fn dealloc(o: *mut obm_object) {
    // SAFETY: per the contract.
    let ty = unsafe { type_of(o) };
    if ty.finalize.is_none()
        && ty.dealloc.is_none()
        && ty.flags & (OBM_TPFLAGS_WEAKREFABLE | OBM_TPFLAGS_REF_MAP) == 0
    {
        // Nothing of the user's runs and no reference is dropped, so no
        // other object dies under it: no nesting for the trashcan to bound.
        // SAFETY: per the contract.
        return unsafe { release(o, ty) };
    }
    // SAFETY: per the contract.
    unsafe { dealloc_nesting(o) }
}

/// `dealloc` of an object whose destruction runs user code (finalize,
/// dealloc, weak reference callbacks), which may destroy other objects:
/// bounded by the trashcan. Out of line, so that the frame it needs is not
/// paid by the objects that run no user code.
///
/// # Safety
/// As `dealloc`.
#[inline(never)]
unsafe fn dealloc_nesting(o: *mut obm_object) {
    let t = trash();
    let depth = t.depth.get();
    if depth >= TRASH_UNWIND_LEVEL {
        // SAFETY: per the contract.
        unsafe { deposit(t, o) };
        return;
    }
    t.depth.set(depth + 1);
    // SAFETY: per the contract.
    unsafe { destroy(o) };
    t.depth.set(depth);
    if depth == 0 && !t.later.get().is_null() {
        // SAFETY: the list holds only deposited objects (see deposit).
        unsafe { destroy_chain(t) };
    }
}

/// Puts `o` on the thread's delete-later list.
///
/// # Safety
/// As `dealloc`.
unsafe fn deposit(t: &Trash, o: *mut obm_object) {
    let mut link = t.later.get() as usize;
    // SAFETY: o is live; a GC object has a header. A pending object must be
    // untracked: the collector could otherwise see its encoded refcount.
    unsafe {
        if is_gc(o) {
            let g = head_of(o);
            if list::is_tracked(g) {
                list::remove(g);
                link |= TRASH_WAS_TRACKED;
            }
        }
        (*o).ob_refcnt = encode_trash_link(link);
    }
    t.later.set(o);
}

/// Destroys the delete-later list; called at nesting depth 0.
///
/// # Safety
/// Every object on the list was put there by `deposit` and is untouched since.
unsafe fn destroy_chain(t: &Trash) {
    loop {
        let o = t.later.get();
        if o.is_null() {
            break;
        }
        // SAFETY: o is a deposited object: ob_refcnt holds its encoded link.
        unsafe {
            let link = decode_trash_link((*o).ob_refcnt);
            t.later.set((link & !TRASH_WAS_TRACKED) as *mut obm_object);
            (*o).ob_refcnt = 0;
            if link & TRASH_WAS_TRACKED != 0 {
                let ty = type_of(o);
                let g = head_of(o);
                // Re-track only when finalize is still to run: it may resurrect.
                if ty.finalize.is_some() && list::flags(g) & FINALIZED == 0 {
                    crate::gc::relink_young(g);
                }
            }
            t.depth.set(1);
            destroy(o);
            t.depth.set(0);
        }
    }
}

/// Finalize (once), untrack, dealloc, free.
///
/// # Safety
/// As `dealloc`.
#[inline(always)]
unsafe fn destroy(o: *mut obm_object) {
    // SAFETY: o is live with refcount 0 and owned by us (contract).
    unsafe {
        let ty = type_of(o);
        if let Some(fin) = ty.finalize {
            let g = head_of(o);
            if list::flags(g) & FINALIZED == 0 {
                list::set_flag(g, FINALIZED);
                // A temporary reference, so that incref/decref inside finalize
                // do not free the object under it.
                (*o).ob_refcnt = 1;
                fin(o);
                let rc = (*o).ob_refcnt;
                if is_immortal_count(rc) {
                    return; // finalize made it immortal
                }
                let rc = rc - 1;
                (*o).ob_refcnt = rc;
                if rc > 0 {
                    return; // resurrected
                }
                if rc < 0 {
                    negative_refcount(o);
                }
            }
        }
        let gc = type_is_gc(ty);
        if gc {
            let g = head_of(o);
            if list::is_tracked(g) {
                list::remove(g);
            }
        }
        if type_is_weakrefable(ty) {
            // Untracked first: a callback may run a collection.
            crate::gc::weak::clear_on_death(o);
        }
        if let Some(d) = ty.dealloc {
            d(o);
        } else if type_has_ref_map(ty) {
            drop_listed_refs(o, ty);
        }
        release(o, ty);
    }
}

/// Untracks `o` if it is tracked, and frees its memory, uncounting it from
/// the census: the end of every destruction, and all of it for an object
/// whose type has no finalize, dealloc, weak references or listed references.
///
/// # Safety
/// `o` is an object of `ty` with refcount 0 (finalized, dealloc'd) that
/// nobody will use again.
#[inline(always)]
unsafe fn release(o: *mut obm_object, ty: &obm_type) {
    if type_is_gc(ty) {
        // SAFETY: a GC object has a header.
        let g = unsafe { head_of(o) };
        // SAFETY: g is the object's live header; tracked, it is on one of
        // the collector's lists.
        unsafe {
            if list::is_tracked(g) {
                list::remove(g);
            }
        }
        crate::gc::note_gc_object_freed();
    }
    // SAFETY: the object starts its prefix size into its block (creation).
    let base = unsafe { (o as *mut u8).sub(prefix_size(ty)) };
    // SAFETY: base is the object's live block, not used again.
    let Some(block) = (unsafe { crate::domain::object_local_block(base) }) else {
        // SAFETY: as above.
        return unsafe { free_block_slow(base, ty) };
    };
    // The census first: then the free, like every slower way out, is a
    // tail call.
    if !crate::census::destroyed_fast(ty as *const obm_type as *const c_void, block.size()) {
        // SAFETY: as above.
        return unsafe { free_block_slow(base, ty) };
    }
    // SAFETY: as above.
    unsafe { block.free() }
}

/// The end of `release` when the block is not the calling thread's (or
/// hooks are installed), or its type is past its first slot in the census.
/// Out of line, so that `release` makes no call it returns from, and so
/// keeps no stack frame.
///
/// # Safety
/// As `release`; `base` is the object's block.
#[inline(never)]
unsafe fn free_block_slow(base: *mut u8, ty: &obm_type) {
    let bytes = crate::census::block_bytes(base);
    // SAFETY: per the contract.
    unsafe { crate::domain::object_free(base) };
    crate::census::destroyed(ty as *const obm_type as *const c_void, bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trash_links_round_trip_and_look_dead() {
        for link in [
            0usize,
            1,
            0x10,
            0x7FFF_FFF1,
            0x8000_0000,
            0x7FFF_FFFF_FFF0 | 1,
        ] {
            let rc = encode_trash_link(link);
            assert_eq!(decode_trash_link(rc), link);
            assert!(rc < 0 && (rc as i32) < 0 && !is_immortal_count(rc));
        }
    }

    #[test]
    fn immortal_counts() {
        assert!(is_immortal_count(OBM_IMMORTAL_REFCNT));
        assert!(is_immortal_count(OBM_STATIC_REFCNT));
        assert!(is_immortal_count(0x8000_0000));
        assert!(!is_immortal_count(0x7FFF_FFFF));
        assert!(!is_immortal_count(1));
        assert!(!is_immortal_count(-1));
    }
}
