//! One collection, step by step (CPython's `gc_collect_main`).
//!
//! 1. Merge the generations 0..=g into generation g: that list is "young".
//! 2. `update_refs` + `subtract_refs` (fused, see below): for each young
//!    object, `gc_refs` = its refcount minus the references to it from young
//!    objects. `gc_refs > 0` means something outside young holds it.
//! 3. `move_unreachable`: walk young; an object with `gc_refs > 0` is
//!    reachable and so is everything it refers to (they are marked or moved
//!    back); the others go to the `unreachable` list, from which a later
//!    reachable object may still pull them back. Survivors then join the
//!    next generation.
//! 4. Weak references with a callback to unreachable objects are cleared;
//!    the callbacks of those that are reachable run (`weak.rs`).
//! 5. `finalize` runs on each unreachable object that has one and has not
//!    been finalized.
//! 6. If a callback or finalizer ran, it may have resurrected objects: steps
//!    2-3 run again on the unreachable set alone, and whatever is now held
//!    from outside (transitively) moves to the old generation.
//! 7. Every remaining weak reference to the garbage is cleared (ephemerons
//!    drop their values) before any `clear`.
//! 8. `clear` on each object still unreachable (or, with DEBUG_SAVEALL, keep
//!    it in the garbage list); reference counting then frees the cycles.
//!    Objects that survive their `clear` move to the old generation.
//!
//! Ephemerons: `move_unreachable` visits an ephemeron's value only once its
//! key is known reachable, resuming the walk until a fixpoint
//! (`resolve_ephemerons`, docs/GC.md).
//!
//! Memory: `gc_refs` lives in the `prev` field of each header while the set
//! is being examined (the list is singly linked meanwhile, and
//! `move_unreachable` restores it); the work lists are heads on this stack.
//! Every traversal looks one reference deep, so nothing recurses.
//!
//! Passes: a collection that finds no finalizer to run walks the young
//! objects twice (steps 2 and 3) and the garbage once more (step 8); steps
//! 4 and 7 visit only the garbage with weak references, which step 3 notes
//! (`weak::WeakTargets`). Members of the unreachable list are recognised
//! by a mark in their header (`COLLECTING` with generation `PERMANENT`,
//! which no collected object can otherwise have) instead of CPython's
//! tagged `next` links, so the list needs no pass to untag it.
//!
//! Fusing steps 2: the first pass initialises an object's `gc_refs` the first
//! time it is seen, either as a referent or in list order, and decrements it
//! for each reference from a young object. Membership of young is read from
//! the generation bits (tracked and generation <= g), which the list module
//! keeps equal to the object's list; this saves one pass over the heap.

use core::ffi::{c_int, c_void};
use core::ptr;

use super::list::{
    self, GcHead, COLLECTING, FINALIZED, GEN_MASK, GEN_SHIFT, PERMANENT, REFS_SHIFT,
};
use super::weak;
use super::{
    GcState, NUM_GENERATIONS, OBM_GC_DEBUG_COLLECTABLE, OBM_GC_DEBUG_SAVEALL, OBM_GC_DEBUG_STATS,
};
use crate::object::{self, obm_object, type_name};
use crate::report::Decimal;

/// Collects the oldest generation whose count exceeds its threshold, if any
/// (the automatic collection). Returns the unreachable objects found.
pub(crate) fn collect_generations(s: &GcState) -> usize {
    for i in (0..NUM_GENERATIONS).rev() {
        if s.count[i].get() > s.threshold[i].get() {
            // A full collection waits until the objects promoted since the
            // last one are 25% of those that survived it, which keeps the
            // total cost linear in the number of objects (CPython issue 4074).
            if i == NUM_GENERATIONS - 1 && s.long_lived_pending.get() < s.long_lived_total.get() / 4
            {
                continue;
            }
            return collect_with_callback(s, i);
        }
    }
    0
}

/// A collection of generation `g` between the START and STOP callbacks.
/// The caller has set `s.collecting`.
pub(crate) fn collect_with_callback(s: &GcState, g: usize) -> usize {
    let mut info = super::obm_gc_info {
        generation: g as c_int,
        collected: 0,
        uncollectable: 0,
        candidates: 0,
        duration_ns: 0,
    };
    super::invoke_callbacks(s, super::OBM_GC_START, &info);
    // SAFETY: s.collecting is set, so no other collection runs; the lists
    // hold only tracked, live objects (list.rs and object.rs invariants).
    unsafe { collect_main(s, g, &mut info) };
    super::invoke_callbacks(s, super::OBM_GC_STOP, &info);
    info.collected + info.uncollectable
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Fills in `info`'s collected, uncollectable, candidates and duration.
///
/// # Safety
/// See `collect_with_callback`.
unsafe fn collect_main(s: &GcState, g: usize, info: &mut super::obm_gc_info) {
    let debug = s.debug.get();
    let t1 = now_ns();
    if debug & OBM_GC_DEBUG_STATS != 0 {
        crate::report::eprint(format_args!("gc: collecting generation {g}...\n"));
        // SAFETY: the heads are initialised lists.
        unsafe { show_stats_each_generation(s) };
    }

    if g + 1 < NUM_GENERATIONS {
        s.count[g + 1].set(s.count[g + 1].get().saturating_add(1));
    }
    for i in 0..=g {
        s.count[i].set(0);
    }

    // SAFETY: (the whole body) the heads are initialised lists (GcState::init)
    // and the local heads below never move while objects link to them.
    unsafe {
        for i in 0..g {
            list::merge(s.gen(i), s.gen(g));
        }
        let young = s.gen(g);
        let (old, old_gen) = if g + 1 < NUM_GENERATIONS {
            (s.gen(g + 1), g + 1)
        } else {
            (young, g)
        };

        // Steps 2 and 3.
        if object::ref_maps_used() {
            update_and_subtract_refs::<true>(young, g);
        } else {
            update_and_subtract_refs::<false>(young, g);
        }
        let mut unreachable = GcHead::new();
        let unreachable = &raw mut unreachable;
        list::init(unreachable);
        // The garbage with weak entries, for steps 4 and 7.
        let weakly = weak::WeakTargets::new();
        let weakly = weak::entries_alive().then_some(&weakly);
        let r = move_unreachable_any(young, unreachable, old_gen, ptr::null_mut(), weakly);
        // Reachable ephemerons with an unreachable key: the resurrection
        // check needs them after user code ran, so they are held till then.
        let mut e = r.pending;
        while !e.is_null() {
            object::incref(e as *mut obm_object);
            e = (*e).eph_next;
        }
        info.candidates = r.survivors + r.unreachable;

        if young != old {
            if g == NUM_GENERATIONS - 2 {
                s.long_lived_pending
                    .set(s.long_lived_pending.get() + r.survivors);
            }
            list::merge(young, old);
        } else {
            s.long_lived_pending.set(0);
            s.long_lived_total.set(r.survivors);
        }
        if debug & OBM_GC_DEBUG_COLLECTABLE != 0 {
            print_collectable(unreachable);
        }

        // Step 4: weakrefs with a callback to the garbage are cleared, and
        // the callbacks of those that are reachable run (if any weakref
        // has a callback).
        let callbacks = if weak::callbacks_alive() {
            weak::handle_callbacks(unreachable, weakly)
        } else {
            0
        };

        // Steps 5 and 6. Without a callback or finalizer no user code ran,
        // so nothing can be resurrected and both are skipped.
        let mut final_unreachable = GcHead::new();
        let final_unreachable = &raw mut final_unreachable;
        list::init(final_unreachable);
        let finalizers = if r.finalizers > 0 {
            finalize_garbage(unreachable)
        } else {
            0
        };
        let collected = if callbacks + finalizers > 0 {
            handle_resurrected_objects(unreachable, final_unreachable, old, old_gen, r.pending)
        } else {
            list::merge(unreachable, final_unreachable);
            r.unreachable
        };
        let mut e = r.pending;
        while !e.is_null() {
            let next = core::mem::replace(&mut (*e).eph_next, ptr::null_mut());
            object::decref(e as *mut obm_object);
            e = next;
        }

        // Step 7: every weakref to the real garbage (including any made by
        // a finalizer) is cleared before any clear runs; ephemerons keyed by
        // it drop their values.
        // Once user code ran, it may have made entries `weakly` lacks.
        if weak::entries_alive() {
            let weakly = weakly.filter(|_| callbacks + finalizers == 0);
            weak::clear_garbage_refs(final_unreachable, weakly);
        }

        // Step 8.
        delete_garbage(s, final_unreachable, old, old_gen);

        // Objects with a legacy (tp_del-style) finalizer are CPython's only
        // uncollectable ones; obmem's types have none.
        let uncollectable = 0;
        info.duration_ns = now_ns() - t1;
        if debug & OBM_GC_DEBUG_STATS != 0 {
            crate::report::eprint(format_args!(
                "gc: done, {} unreachable, {} uncollectable, {}s elapsed\n",
                collected + uncollectable,
                uncollectable,
                Decimal::rounded(info.duration_ns.into(), 1_000_000_000, 6)
            ));
        }
        let mut st = s.stats[g].get();
        st.collections += 1;
        st.collected += collected;
        st.uncollectable += uncollectable;
        s.stats[g].set(st);
        info.collected = collected;
        info.uncollectable = uncollectable;
    }
}

/// # Safety
/// The generation heads are initialised lists.
unsafe fn show_stats_each_generation(s: &GcState) {
    // SAFETY: per the contract.
    unsafe {
        crate::report::eprint(format_args!(
            "gc: objects in each generation: {} {} {}\ngc: objects in permanent generation: {}\n",
            list::size(s.gen(0)),
            list::size(s.gen(1)),
            list::size(s.gen(2)),
            list::size(s.permanent())
        ));
    }
}

// ---------------------------------------------------------------------------
// gc_refs

/// Starts examining `g`: gc_refs = refcount, COLLECTING set, generation
/// bits 0 (so that only `move_unreachable` sets the unreachable mark).
///
/// # Safety
/// `g` is the header of a tracked, live GC object.
#[inline(always)]
unsafe fn init_refs(g: *mut GcHead) {
    // SAFETY: per the contract.
    unsafe {
        let o = object::object_of(g);
        let rc = (*o).ob_refcnt;
        if rc <= 0 {
            zero_refcount_tracked(o);
        }
        (*g).prev = ((*g).prev & FINALIZED) | COLLECTING | ((rc as usize) << REFS_SHIFT);
    }
}

/// The `gc_refs` of `g`, meaningful between `update_refs` and
/// `move_unreachable`.
///
/// # Safety
/// `g` is a valid header.
#[inline(always)]
unsafe fn get_refs(g: *const GcHead) -> usize {
    // SAFETY: g is a valid header.
    unsafe { (*g).prev >> REFS_SHIFT }
}

/// Sets the `gc_refs` of `g`, in place of its `prev` link.
///
/// # Safety
/// `g` is the header of a member of the set being collected, between
/// `update_refs` and `move_unreachable`, when `prev` holds `gc_refs` and
/// the list is linked through `next` only (the module docs); `refs` fits
/// above the flag bits.
#[inline(always)]
unsafe fn set_refs(g: *mut GcHead, refs: usize) {
    // SAFETY: g is a valid header.
    unsafe { (*g).prev = ((*g).prev & list::FLAGS_MASK) | (refs << REFS_SHIFT) };
}

/// One reference from inside the set to `g`'s object.
///
/// # Safety
/// `g` has COLLECTING set; `parent` is the live object whose traverse saw it.
#[inline(always)]
unsafe fn decref_refs(g: *mut GcHead, parent: *mut obm_object) {
    // SAFETY: per the contract.
    unsafe {
        if get_refs(g) == 0 {
            too_many_references(parent, object::object_of(g));
        }
        (*g).prev -= 1 << REFS_SHIFT;
    }
}

#[cold]
#[inline(never)]
fn zero_refcount_tracked(o: *mut obm_object) -> ! {
    // SAFETY: o is on a gc list, so its type pointer was valid when tracked.
    let t = unsafe { (*o).ob_type };
    crate::report::fatal(format_args!(
        "gc: tracked {} object at {:p} has refcount {} (freed while tracked, or a decref too many)",
        type_name(t),
        o,
        // SAFETY: as above.
        unsafe { (*o).ob_refcnt }
    ))
}

#[cold]
#[inline(never)]
fn too_many_references(parent: *mut obm_object, child: *mut obm_object) -> ! {
    // SAFETY: both are live objects being examined by the collector.
    let (pt, ct) = unsafe { ((*parent).ob_type, (*child).ob_type) };
    crate::report::fatal(format_args!(
        "gc: the traverse of {} object at {:p} visits {} object at {:p} more often than its refcount allows \
         (a reference that is visited but not counted)",
        type_name(pt),
        parent,
        type_name(ct),
        child
    ))
}

/// Calls `visit(field, arg)` on each reference `o` owns. With `MAP`
/// false (no object of a type with a reference map was ever made), the
/// type's traverse is called without testing for one: a collection of a
/// program without such types runs the loop it ran before they existed.
///
/// # Safety
/// `o` is a live GC object; with `MAP` false, its type has a traverse.
#[inline(always)]
unsafe fn traverse<const MAP: bool>(
    o: *mut obm_object,
    visit: unsafe extern "C" fn(*mut obm_object, *mut c_void) -> c_int,
    arg: *mut c_void,
) {
    // SAFETY: per the contract: a GC type has traverse or a reference map
    // (obm_new refuses one without), a type with a map sets what `MAP`
    // reads before its first object exists, and a type must not change
    // while objects of it exist (obm_type's contract). The return value
    // only matters to introspection (a visitor here never stops the
    // traversal).
    unsafe {
        if MAP {
            let _ = object::visit_refs(o, visit, arg);
        } else {
            let tr = object::type_of(o).traverse;
            debug_assert!(tr.is_some());
            let _ = tr.unwrap_unchecked()(o, Some(visit), arg);
        }
    }
}

/// The header of `op` if it is a GC object (not a static one, which has
/// none), else null.
///
/// # Safety
/// `op` is null or a live object.
#[inline(always)]
unsafe fn gc_head_or_null(op: *mut obm_object) -> *mut GcHead {
    // SAFETY: per the contract.
    unsafe {
        // A static object has no header; the low-half test (immortal or
        // not) is one instruction, the exact test runs for immortals only.
        if op.is_null()
            || !object::is_gc(op)
            || (object::is_immortal_low(op) && object::is_static(op))
        {
            ptr::null_mut()
        } else {
            object::head_of(op)
        }
    }
}

struct FusedCtx {
    /// The generation bits of the oldest collected generation.
    max_gen_bits: usize,
    parent: *mut obm_object,
    /// The first misuse found (reported after the pass, so that the visitor
    /// calls nothing): a tracked object with refcount <= 0 (`bad_parent`
    /// null), or one visited more often than its refcount allows.
    bad_parent: *mut obm_object,
    bad_child: *mut obm_object,
}

/// Steps 2 fused (see the module docs). After it every young object has
/// COLLECTING and its final gc_refs; `young` is singly linked.
///
/// # Safety
/// `young` is generation `max_gen`'s list after the merge; the generation
/// bits of every tracked object name its list.
unsafe fn update_and_subtract_refs<const MAP: bool>(young: *mut GcHead, max_gen: usize) {
    let mut ctx = FusedCtx {
        max_gen_bits: max_gen << GEN_SHIFT,
        parent: ptr::null_mut(),
        bad_parent: ptr::null_mut(),
        bad_child: ptr::null_mut(),
    };
    // SAFETY: per the contract; this pass never changes `next` links.
    unsafe {
        let mut g = list::next(young);
        while g != young {
            if (*g).prev & COLLECTING == 0 {
                init_refs(g);
            }
            let o = object::object_of(g);
            ctx.parent = o;
            traverse::<MAP>(o, visit_decref_fused, &raw mut ctx as *mut c_void);
            g = list::next(g);
        }
    }
    if !ctx.bad_child.is_null() {
        if ctx.bad_parent.is_null() {
            zero_refcount_tracked(ctx.bad_child);
        }
        too_many_references(ctx.bad_parent, ctx.bad_child);
    }
}

/// The hottest function of a collection (once per reference): one load
/// and one store of the header, and no call (a misuse is noted in the
/// context), so that it needs no stack frame.
unsafe extern "C" fn visit_decref_fused(op: *mut obm_object, arg: *mut c_void) -> c_int {
    // SAFETY: arg is the FusedCtx of update_and_subtract_refs; op is a
    // reference owned by a live object, so it is null or live.
    unsafe {
        let ctx = &mut *(arg as *mut FusedCtx);
        let g = gc_head_or_null(op);
        if g.is_null() {
            return 0;
        }
        let p = (*g).prev;
        if p & COLLECTING != 0 {
            if p < 1 << REFS_SHIFT {
                ctx.bad_parent = ctx.parent;
                ctx.bad_child = op;
                return 0;
            }
            (*g).prev = p - (1 << REFS_SHIFT);
            return 0;
        }
        // Not seen yet: young iff tracked and of a collected generation;
        // then gc_refs = refcount - 1 (this reference).
        if !list::is_tracked(g) || p & GEN_MASK > ctx.max_gen_bits {
            return 0;
        }
        let rc = (*op).ob_refcnt;
        if rc <= 0 {
            ctx.bad_parent = ptr::null_mut();
            ctx.bad_child = op;
            return 0;
        }
        (*g).prev = (p & FINALIZED) | COLLECTING | (((rc - 1) as usize) << REFS_SHIFT);
    }
    0
}

/// CPython's `update_refs`: gc_refs = refcount for every member.
///
/// # Safety
/// `containers` is a normal list of tracked, live GC objects.
unsafe fn update_refs(containers: *mut GcHead) {
    // SAFETY: per the contract.
    unsafe {
        let mut g = list::next(containers);
        while g != containers {
            init_refs(g);
            g = list::next(g);
        }
    }
}

/// CPython's `subtract_refs`: remove references from members to members.
///
/// # Safety
/// After `update_refs` on the same list.
unsafe fn subtract_refs(containers: *mut GcHead) {
    // SAFETY: per the contract.
    unsafe {
        let mut g = list::next(containers);
        while g != containers {
            let o = object::object_of(g);
            traverse::<true>(o, visit_decref, o as *mut c_void);
            g = list::next(g);
        }
    }
}

unsafe extern "C" fn visit_decref(op: *mut obm_object, parent: *mut c_void) -> c_int {
    // SAFETY: op is null or live (owned by a live object); only members of
    // the examined set have COLLECTING.
    unsafe {
        let g = gc_head_or_null(op);
        if !g.is_null() && (*g).prev & COLLECTING != 0 {
            decref_refs(g, parent as *mut obm_object);
        }
    }
    0
}

// ---------------------------------------------------------------------------
// move_unreachable

/// The mark of a member of the unreachable list (see the module docs).
const UNREACHABLE_MARK: usize = COLLECTING | (PERMANENT << GEN_SHIFT);

/// Whether `g` carries the mark of the unreachable list.
///
/// # Safety
/// `g` is a valid header.
#[inline(always)]
pub(crate) unsafe fn is_marked_unreachable(g: *const GcHead) -> bool {
    // SAFETY: g is a valid header.
    unsafe { (*g).prev & (COLLECTING | GEN_MASK) == UNREACHABLE_MARK }
}

/// What `move_unreachable` found.
pub(crate) struct Moved {
    /// Members left in young (reachable).
    survivors: usize,
    /// Members moved to the unreachable list.
    unreachable: usize,
    /// Of these, how many have a finalizer still to run (an upper bound: an
    /// object moved back to young is not subtracted).
    finalizers: usize,
    /// Reachable ephemerons whose key is unreachable, linked through
    /// `eph_next` (the caller releases the links with `release_links`).
    pending: *mut weak::obm_weakref,
}

struct ReachCtx {
    young: *mut GcHead,
    /// Objects moved back from the unreachable list.
    moved_back: usize,
    /// Reachable ephemerons whose key was not known to be alive when they
    /// were scanned, linked through `eph_next`.
    pending: *mut weak::obm_weakref,
    /// Ephemerons outside the examined set whose value reference was not
    /// counted as external (the resurrection check's; see
    /// `handle_resurrected_objects`), linked through `eph_next`, read only.
    outside: *mut weak::obm_weakref,
}

/// Moves the members of `young` with gc_refs 0 that nothing reachable
/// refers to into `unreachable`, marked; restores the prev links of
/// `young`, clears COLLECTING on its members and sets their generation to
/// `survivor_gen`. With `EPH` (some ephemeron exists), an ephemeron's value
/// is reachable only through a reachable ephemeron whose key is reachable
/// (see `resolve_ephemerons`); without, ephemerons cost nothing here.
/// With `NOTE` (`weakly` given: some weak entry exists), the members moved
/// to `unreachable` that have weak entries are noted in `weakly`; without,
/// noting costs nothing here.
///
/// Invariant of the walk: the members of `young` to the left of `g` are
/// reachable and scanned, have valid prev links and no COLLECTING; the
/// original members not left of `g` are either right of it (unscanned) or
/// in `unreachable` (marked, with valid links: it is a normal list).
///
/// # Safety
/// After steps 2 on `young`; `unreachable` is an empty list.
unsafe fn move_unreachable<const EPH: bool, const MAP: bool, const NOTE: bool>(
    young: *mut GcHead,
    unreachable: *mut GcHead,
    survivor_gen: usize,
    outside: *mut weak::obm_weakref,
    weakly: Option<&weak::WeakTargets>,
) -> Moved {
    let mut ctx = ReachCtx {
        young,
        moved_back: 0,
        pending: ptr::null_mut(),
        outside,
    };
    let mut r = Moved {
        survivors: 0,
        unreachable: 0,
        finalizers: 0,
        pending: ptr::null_mut(),
    };
    let survivor_bits = survivor_gen << GEN_SHIFT;
    // SAFETY: per the contract. `prev` is always young or a scanned member.
    unsafe {
        let mut prev = young;
        loop {
            let mut g = list::next(prev);
            while g != young {
                let o = object::object_of(g);
                if get_refs(g) > 0 {
                    // Reachable: so is everything it refers to. visit_reachable
                    // may append to young, and may change g.next when g is last:
                    // read the next member only after the traversal.
                    if EPH && weak::is_ephemeron(o) {
                        scan_ephemeron(o as *mut weak::obm_weakref, &mut ctx);
                    } else {
                        traverse::<MAP>(o, visit_reachable, &raw mut ctx as *mut c_void);
                    }
                    // Restore the prev link, leave the set, join the
                    // survivors' generation: one store.
                    (*g).prev = ((*g).prev & FINALIZED) | prev as usize | survivor_bits;
                    prev = g;
                    // Counted in memory on purpose: with the count in a
                    // register, a ring of mapped objects (each marking the
                    // next one reachable just before it is scanned)
                    // collected 2-3x slower on the machine of
                    // BENCHMARKS.md, most likely because the loads of the
                    // next member then ran ahead of the store that marked it.
                    let count = &raw mut r.survivors;
                    count.write_volatile(count.read_volatile() + 1);
                } else {
                    // Maybe unreachable: move it, a later visit may bring it back.
                    (*prev).next = (*g).next;
                    list::append(g, unreachable);
                    (*g).prev |= UNREACHABLE_MARK;
                    r.unreachable += 1;
                    if (*g).prev & FINALIZED == 0 && object::type_of(o).finalize.is_some() {
                        r.finalizers += 1;
                    }
                    if let (true, Some(w)) = (NOTE, weakly) {
                        w.note(g);
                    }
                }
                g = (*prev).next as *mut GcHead;
            }
            // The tail may have moved to unreachable: young's last member is
            // the last scanned one (resolve_ephemerons appends after it).
            (*young).prev = prev as usize;
            if !EPH || !resolve_ephemerons(&mut ctx) {
                break;
            }
        }
    }
    r.unreachable -= ctx.moved_back;
    r.pending = ctx.pending;
    r
}

/// Whether `key` is known to be reachable at this point of the walk: not
/// a collected GC object, already scanned, or ahead with gc_refs > 0 (or
/// moved back). Once the walk is over, "not marked unreachable" remains.
///
/// # Safety
/// `key` is a live object; during `move_unreachable`.
#[inline(always)]
unsafe fn key_is_alive(key: *mut obm_object) -> bool {
    // SAFETY: per the contract.
    unsafe {
        let g = gc_head_or_null(key);
        g.is_null() || (*g).prev & COLLECTING == 0 || (!is_marked_unreachable(g) && get_refs(g) > 0)
    }
}

/// Scans the reachable ephemeron `e`: its value is reachable now if its key
/// is known alive, else `e` waits on the pending list.
///
/// # Safety
/// `e` is a live ephemeron; during `move_unreachable`.
unsafe fn scan_ephemeron(e: *mut weak::obm_weakref, ctx: &mut ReachCtx) {
    // SAFETY: per the contract.
    unsafe {
        let key = weak::key_of(e);
        if key.is_null() {
            return; // the key died: no value any more
        }
        if key_is_alive(key) {
            visit_reachable(weak::value_of(e), ctx as *mut ReachCtx as *mut c_void);
        } else {
            (*e).eph_next = ctx.pending;
            ctx.pending = e;
        }
    }
}

/// After a walk: the pending ephemerons whose key turned out reachable
/// make their values reachable (moved back to young, to be scanned by the
/// resumed walk), and so do the `outside` ones. Returns whether anything
/// moved back; the pending ephemerons whose key is still unreachable stay.
///
/// # Safety
/// During `move_unreachable`, between two walks.
unsafe fn resolve_ephemerons(ctx: &mut ReachCtx) -> bool {
    // visit_reachable takes the context as a raw pointer, so all accesses
    // below go through it.
    let c: *mut ReachCtx = ctx;
    let arg = c as *mut c_void;
    // SAFETY: per the contract; the listed entries are live ephemerons.
    unsafe {
        let before = (*c).moved_back;
        let mut e = core::mem::replace(&mut (*c).pending, ptr::null_mut());
        while !e.is_null() {
            let next = (*e).eph_next;
            if key_is_alive(weak::key_of(e)) {
                (*e).eph_next = ptr::null_mut();
                visit_reachable(weak::value_of(e), arg);
            } else {
                (*e).eph_next = (*c).pending;
                (*c).pending = e;
            }
            e = next;
        }
        let mut e = (*c).outside;
        while !e.is_null() {
            let key = weak::key_of(e);
            if !key.is_null() && key_is_alive(key) {
                visit_reachable(weak::value_of(e), arg);
            }
            e = (*e).eph_next;
        }
        (*c).moved_back != before
    }
}

/// Unlinks a list of ephemerons built through `eph_next`.
///
/// # Safety
/// `e` is null or the head of such a list of live ephemerons.
pub(crate) unsafe fn release_links(mut e: *mut weak::obm_weakref) {
    // SAFETY: per the contract.
    unsafe {
        while !e.is_null() {
            e = core::mem::replace(&mut (*e).eph_next, ptr::null_mut());
        }
    }
}

unsafe extern "C" fn visit_reachable(op: *mut obm_object, arg: *mut c_void) -> c_int {
    // SAFETY: arg is move_unreachable's ReachCtx; op is null or live; the
    // list states are those described in move_unreachable.
    unsafe {
        let ctx = &mut *(arg as *mut ReachCtx);
        let g = gc_head_or_null(op);
        if g.is_null() {
            return 0;
        }
        let p = (*g).prev;
        // Not in the set, or already scanned and known reachable.
        if p & COLLECTING == 0 {
            return 0;
        }
        if p & GEN_MASK == 0 {
            // Ahead of the walk (members of the set have generation bits 0
            // until marked unreachable): tell it this one is reachable, by
            // making gc_refs > 0 (only that matters from now on).
            (*g).prev = p | 1 << REFS_SHIFT;
        } else {
            // It had gc_refs 0 when the walk passed it, but it is reachable
            // after all: back to young, where the walk will scan it.
            let (before, after) = (list::prev(g), list::next(g));
            (*before).next = after as usize;
            list::set_prev(after, before);
            list::append(g, ctx.young);
            (*g).prev &= !GEN_MASK;
            set_refs(g, 1);
            ctx.moved_back += 1;
        }
    }
    0
}

/// DEBUG_COLLECTABLE: names each unreachable object.
///
/// # Safety
/// `list` is a normal list of live GC objects.
unsafe fn print_collectable(list: *mut GcHead) {
    // SAFETY: per the contract.
    unsafe {
        let mut g = list::next(list);
        while g != list {
            let o = object::object_of(g);
            crate::report::eprint(format_args!(
                "gc: collectable <{} {:p}>\n",
                type_name((*o).ob_type),
                o
            ));
            g = list::next(g);
        }
    }
}

/// The full CPython `deduce_unreachable`, on an arbitrary list.
///
/// # Safety
/// `base` is a list of tracked, live GC objects without COLLECTING;
/// `unreachable` an empty list.
unsafe fn deduce_unreachable(
    base: *mut GcHead,
    unreachable: *mut GcHead,
    survivor_gen: usize,
    outside: *mut weak::obm_weakref,
) -> Moved {
    // SAFETY: per the contract.
    unsafe {
        update_refs(base);
        subtract_refs(base);
        subtract_outside_ephemerons(outside);
        move_unreachable_any(base, unreachable, survivor_gen, outside, None)
    }
}

/// The reference of each `outside` ephemeron to a value in the set, while
/// its key is in the set too, is not external: it counts only if the key
/// turns out reachable (`resolve_ephemerons`).
///
/// # Safety
/// After `subtract_refs`; `outside` is null or a list of live ephemerons.
unsafe fn subtract_outside_ephemerons(mut e: *mut weak::obm_weakref) {
    // SAFETY: per the contract; COLLECTING marks the members of the set.
    unsafe {
        while !e.is_null() {
            let key = gc_head_or_null(weak::key_of(e));
            let value = gc_head_or_null(weak::value_of(e));
            if !key.is_null()
                && !value.is_null()
                && (*key).prev & COLLECTING != 0
                && (*value).prev & COLLECTING != 0
            {
                decref_refs(value, e as *mut obm_object);
            }
            e = (*e).eph_next;
        }
    }
}

/// `move_unreachable` with ephemeron handling only when ephemerons exist,
/// the test for reference maps only once a type with one was used, and
/// the notes of weakly referenced garbage only if `weakly` is given.
///
/// # Safety
/// As `move_unreachable`.
unsafe fn move_unreachable_any(
    young: *mut GcHead,
    unreachable: *mut GcHead,
    survivor_gen: usize,
    outside: *mut weak::obm_weakref,
    weakly: Option<&weak::WeakTargets>,
) -> Moved {
    // SAFETY: per the contract.
    unsafe {
        let mu = match (
            weak::ephemerons_alive(),
            object::ref_maps_used(),
            weakly.is_some(),
        ) {
            (true, true, true) => move_unreachable::<true, true, true>,
            (true, true, false) => move_unreachable::<true, true, false>,
            (true, false, true) => move_unreachable::<true, false, true>,
            (true, false, false) => move_unreachable::<true, false, false>,
            (false, true, true) => move_unreachable::<false, true, true>,
            (false, true, false) => move_unreachable::<false, true, false>,
            (false, false, true) => move_unreachable::<false, false, true>,
            (false, false, false) => move_unreachable::<false, false, false>,
        };
        mu(young, unreachable, survivor_gen, outside, weakly)
    }
}

// ---------------------------------------------------------------------------
// Finalizers, resurrection, clearing

/// Calls `finalize` on each member of `collectable` that has one and has not
/// been finalized. Returns how many ran.
///
/// # Safety
/// `collectable` is a normal list of tracked GC objects.
unsafe fn finalize_garbage(collectable: *mut GcHead) -> usize {
    let mut ran = 0;
    // A finalizer may free or untrack any object, so always take the first
    // member and move it to `seen` before calling user code.
    let mut seen = GcHead::new();
    let seen = &raw mut seen;
    // SAFETY: per the contract; `seen` does not move while used.
    unsafe {
        list::init(seen);
        while !list::is_empty(collectable) {
            let g = list::next(collectable);
            list::move_to(g, seen);
            let o = object::object_of(g);
            if list::flags(g) & FINALIZED == 0 {
                if let Some(fin) = object::type_of(o).finalize {
                    list::set_flag(g, FINALIZED);
                    object::incref(o);
                    fin(o);
                    object::decref(o);
                    ran += 1;
                }
            }
        }
        list::merge(seen, collectable);
    }
    ran
}

/// Moves what finalizers resurrected (held from outside again, directly or
/// not) to `old`; the rest goes to `still_unreachable`. Returns its size.
/// `ephemerons` are the reachable ephemerons whose key was unreachable:
/// their values are held only if their keys are resurrected.
///
/// # Safety
/// `unreachable` is a normal list of tracked, live GC objects (marked
/// unreachable: update_refs resets the mark); `still_unreachable` an empty
/// list.
unsafe fn handle_resurrected_objects(
    unreachable: *mut GcHead,
    still_unreachable: *mut GcHead,
    old: *mut GcHead,
    old_gen: usize,
    ephemerons: *mut weak::obm_weakref,
) -> usize {
    // SAFETY: per the contract.
    unsafe {
        let r = deduce_unreachable(unreachable, still_unreachable, old_gen, ephemerons);
        release_links(r.pending);
        list::merge(unreachable, old);
        r.unreachable
    }
}

/// Breaks the cycles of `collectable` with `clear` (or saves the objects in
/// the garbage list); objects that survive move to `old`, unmarked.
///
/// # Safety
/// `collectable` is a normal list of tracked, live GC objects.
unsafe fn delete_garbage(s: &GcState, collectable: *mut GcHead, old: *mut GcHead, old_gen: usize) {
    let saveall = s.debug.get() & OBM_GC_DEBUG_SAVEALL != 0;
    // SAFETY: per the contract. Each object is live while it is first in the
    // list: a freed object is untracked (and so unlinked) by its dealloc.
    unsafe {
        while !list::is_empty(collectable) {
            let g = list::next(collectable);
            let o = object::object_of(g);
            if saveall {
                if s.garbage.push(o) {
                    object::incref(o);
                }
            } else {
                let ty = object::type_of(o);
                if let Some(clear) = ty.clear {
                    object::incref(o);
                    let _ = clear(o);
                    object::decref(o);
                } else if object::type_has_ref_map(ty) {
                    object::incref(o);
                    object::drop_listed_refs(o, ty);
                    object::decref(o);
                }
            }
            if list::next(collectable) == g {
                // Still alive (no clear, SAVEALL, or held by something else):
                // it may die later.
                list::move_to(g, old);
                (*g).prev = ((*g).prev & !(COLLECTING | GEN_MASK)) | (old_gen << GEN_SHIFT);
            }
        }
    }
}
