//! The cycle collector: CPython's generational collector (Modules/gcmodule.c,
//! 3.11) for obmem's objects.
//!
//! # Model
//! Reference counting frees most objects; the collector finds groups of
//! objects that keep each other alive but are unreachable from outside.
//! Only objects of types with `OBM_TPFLAGS_HAVE_GC` that the user tracked take
//! part. They sit on one of three generation lists (young to old) or on the
//! permanent list (`freeze`), linked through the header in front of each
//! object (`list.rs`). A collection of generation g looks at generations
//! 0..=g; the survivors move to generation g+1 (or stay in 2).
//!
//! Reachability comes from reference counts, not from scanning stacks: for
//! each object the references coming from *inside* the collected set are
//! subtracted from its refcount; what is left is held from outside (by C
//! code or older objects), and everything reachable from such an object is
//! alive. The rest is garbage: finalizers run, the garbage is checked again
//! for resurrection, and what is still unreachable is cleared with `clear`,
//! which breaks the cycles so reference counting frees the objects
//! (`collect.rs`).
//!
//! # Scheduling (as CPython)
//! `count[0]` is tracked objects minus freed GC objects since the last
//! collection of generation 0; `count[1]` and `count[2]` count collections of
//! the generation below. Tracking an object when `count[0]` exceeds
//! `threshold[0]` (700) runs an automatic collection of the oldest generation
//! whose count exceeds its threshold, except that a full collection also
//! waits until the objects promoted to generation 2 since the last full
//! collection are at least 25% of the objects that survived it.
//!
//! # Thread model
//! The object and gc functions are called by one thread at a time, which the
//! user guarantees with `obm_lock` (like CPython's GIL). The collector state
//! is therefore one global whose fields are `Cell`s, reached only through
//! shared references (so re-entry from user callbacks is sound), and declared
//! `Sync` on that promise.
//!
//! # Memory
//! A collection recurses nowhere: its work lists are list heads on its
//! stack, its per-object state lives in the headers, and traversals only
//! look one reference deep. It allocates only the table of its weakly
//! referenced garbage (`weak::WeakTargets`, freed before it returns; when
//! it cannot grow, the collection walks its garbage list instead). The
//! garbage list (`DEBUG_SAVEALL`) and the callback list are small arrays
//! (`array.rs`).

pub(crate) mod array;
pub(crate) mod collect;
pub mod introspect;
pub(crate) mod list;
pub mod lock;
pub mod path;
pub mod weak;

use core::cell::{Cell, UnsafeCell};
use core::ffi::{c_int, c_uint, c_void};

use crate::object::{self, obm_object};
use array::Array;
use list::GcHead;

/// Number of generations (not counting the permanent one).
pub(crate) const NUM_GENERATIONS: usize = 3;
pub(crate) const DEFAULT_THRESHOLDS: [i32; NUM_GENERATIONS] = [700, 10, 10];

/// Debug flag: print a few lines to stderr for each collection.
pub const OBM_GC_DEBUG_STATS: c_uint = 1;
/// Debug flag: print each collectable object found.
pub const OBM_GC_DEBUG_COLLECTABLE: c_uint = 2;
/// Debug flag: print each uncollectable object found.
#[allow(dead_code)] // for C (the header), as CPython's; nothing is uncollectable here
pub const OBM_GC_DEBUG_UNCOLLECTABLE: c_uint = 4;
/// Debug flag: keep unreachable objects in the garbage list instead of clearing them.
pub const OBM_GC_DEBUG_SAVEALL: c_uint = 32;
/// Debug flags for finding leaks: COLLECTABLE | UNCOLLECTABLE | SAVEALL.
#[allow(dead_code)] // for C (the header)
pub const OBM_GC_DEBUG_LEAK: c_uint =
    OBM_GC_DEBUG_COLLECTABLE | OBM_GC_DEBUG_UNCOLLECTABLE | OBM_GC_DEBUG_SAVEALL;

/// Callback phase: a collection is about to start.
pub const OBM_GC_START: c_int = 0;
/// Callback phase: a collection has finished.
pub const OBM_GC_STOP: c_int = 1;

/// Statistics of one generation since the start of the process.
#[repr(C)]
#[derive(Clone, Copy, Default)]
#[allow(non_camel_case_types)]
pub struct obm_gc_gen_stats {
    /// Collections of this generation.
    pub collections: usize,
    /// Objects found unreachable and collected by them.
    pub collected: usize,
    /// Objects found unreachable that could not be collected.
    pub uncollectable: usize,
}

/// What a callback is told about a collection (CPython 3.15's `gc.callbacks`
/// info). Only `generation` is filled in for the OBM_GC_START phase; the
/// other fields are 0 there.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct obm_gc_info {
    /// The oldest generation collected (0, 1 or 2).
    pub generation: c_int,
    /// Unreachable objects found (resurrected ones excluded).
    pub collected: usize,
    /// Always 0: obmem's types have no legacy finalizers.
    pub uncollectable: usize,
    /// The objects the collection examined (those of the generations it
    /// collected).
    pub candidates: usize,
    /// Its wall time in nanoseconds, START callbacks excluded (STOP only).
    pub duration_ns: u64,
}

/// Called before (OBM_GC_START) and after (OBM_GC_STOP) each collection.
#[allow(non_camel_case_types)]
pub type obm_gc_callback =
    Option<unsafe extern "C" fn(phase: c_int, info: *const obm_gc_info, ctx: *mut c_void)>;

/// The collector's state (see "Thread model" above).
pub(crate) struct GcState {
    /// The lists below are initialised and the environment read.
    inited: Cell<bool>,
    gens: [UnsafeCell<GcHead>; NUM_GENERATIONS],
    permanent: UnsafeCell<GcHead>,
    pub(crate) threshold: [Cell<i32>; NUM_GENERATIONS],
    pub(crate) count: [Cell<i32>; NUM_GENERATIONS],
    pub(crate) enabled: Cell<bool>,
    /// A collection (or an introspection walk) is running: no other may start.
    pub(crate) collecting: Cell<bool>,
    pub(crate) debug: Cell<c_uint>,
    /// Objects that survived the last full collection.
    pub(crate) long_lived_total: Cell<usize>,
    /// Objects promoted to generation 2 since the last full collection.
    pub(crate) long_lived_pending: Cell<usize>,
    pub(crate) stats: [Cell<obm_gc_gen_stats>; NUM_GENERATIONS],
    /// Objects kept by DEBUG_SAVEALL; each entry owns a reference.
    pub(crate) garbage: Array<*mut obm_object>,
    callbacks: Array<(obm_gc_callback, *mut c_void)>,
}

struct Global(GcState);

// SAFETY: the gc functions are called by one thread at a time (the thread
// model above, enforced by the user with obm_lock), so the Cells are never
// accessed concurrently.
unsafe impl Sync for Global {}

static GC: Global = Global(GcState {
    inited: Cell::new(false),
    gens: [const { UnsafeCell::new(GcHead::new()) }; NUM_GENERATIONS],
    permanent: UnsafeCell::new(GcHead::new()),
    threshold: [
        Cell::new(DEFAULT_THRESHOLDS[0]),
        Cell::new(DEFAULT_THRESHOLDS[1]),
        Cell::new(DEFAULT_THRESHOLDS[2]),
    ],
    count: [const { Cell::new(0) }; NUM_GENERATIONS],
    enabled: Cell::new(true),
    collecting: Cell::new(false),
    debug: Cell::new(0),
    long_lived_total: Cell::new(0),
    long_lived_pending: Cell::new(0),
    stats: [const {
        Cell::new(obm_gc_gen_stats {
            collections: 0,
            collected: 0,
            uncollectable: 0,
        })
    }; NUM_GENERATIONS],
    garbage: Array::new(),
    callbacks: Array::new(),
});

/// The collector state, initialised on first use.
#[inline]
pub(crate) fn gc() -> &'static GcState {
    let s = &GC.0;
    if !s.inited.get() {
        s.init();
    }
    s
}

impl GcState {
    #[cold]
    fn init(&self) {
        for g in &self.gens {
            // SAFETY: the heads live in a static, so they never move.
            unsafe { list::init(g.get()) };
        }
        // SAFETY: as above.
        unsafe { list::init(self.permanent.get()) };
        self.inited.set(true);
        if let Some(t) = crate::env::gc_thresholds(DEFAULT_THRESHOLDS) {
            for (cell, v) in self.threshold.iter().zip(t) {
                cell.set(v);
            }
        }
    }

    /// The list head of generation `i` (0..=2).
    #[inline]
    pub(crate) fn gen(&self, i: usize) -> *mut GcHead {
        self.gens[i].get()
    }

    #[inline]
    pub(crate) fn permanent(&self) -> *mut GcHead {
        self.permanent.get()
    }
}

// ---------------------------------------------------------------------------
// Tracking

/// Starts tracking `o` (harmless if it already is).
///
/// # Safety
/// `o` is a live object.
#[inline(always)]
pub unsafe fn track(o: *mut obm_object) {
    // SAFETY: o is live.
    if unsafe { object::is_static(o) } {
        // SAFETY: o is live.
        return unsafe {
            track_refused(
                o,
                "is a statically allocated object, which cannot be tracked",
            )
        };
    }
    // SAFETY: o is live.
    if !unsafe { object::is_gc(o) } {
        // SAFETY: o is live.
        return unsafe { track_refused(o, "is not of a GC type (no OBM_TPFLAGS_HAVE_GC)") };
    }
    // SAFETY: a GC object has a header.
    let g = unsafe { object::head_of(o) };
    // SAFETY: g is o's header.
    if unsafe { list::is_tracked(g) } {
        return;
    }
    let s = &GC.0;
    if !s.inited.get() {
        // SAFETY: o is live.
        return unsafe { track_first(o) };
    }
    let c = s.count[0].get().saturating_add(1);
    s.count[0].set(c);
    if c > s.threshold[0].get() {
        // SAFETY: g is o's untracked header.
        return unsafe { track_past_threshold(s, g) };
    }
    // SAFETY: g is an untracked header; gen 0 is an initialised list.
    unsafe { list::append_young(g, s.gen(0)) }
}

/// `track` when generation 0 is over its threshold: an automatic
/// collection first, if enabled and none is running.
///
/// # Safety
/// `g` is the header of a live, untracked GC object.
#[cold]
#[inline(never)]
unsafe fn track_past_threshold(s: &GcState, g: *mut GcHead) {
    if s.threshold[0].get() != 0 && s.enabled.get() && !s.collecting.get() {
        // The new object is not on a list yet, so its references count as
        // external: it cannot make anything it refers to look unreachable.
        s.collecting.set(true);
        collect::collect_generations(s);
        s.collecting.set(false);
        // A finalizer or callback may have tracked it meanwhile.
        // SAFETY: as above.
        if unsafe { list::is_tracked(g) } {
            return;
        }
    }
    // SAFETY: g is an untracked header; gen 0 is an initialised list.
    unsafe { list::append_young(g, s.gen(0)) }
}

/// `track` before the collector's state is initialised. Out of line, so
/// that `track` keeps no stack frame.
///
/// # Safety
/// As `track`.
#[cold]
#[inline(never)]
unsafe fn track_first(o: *mut obm_object) {
    gc();
    // SAFETY: o is live (the contract).
    unsafe { track(o) }
}

/// The warning for an object `obm_gc_track` cannot track.
///
/// # Safety
/// As `track`: its type is read.
#[cold]
#[inline(never)]
unsafe fn track_refused(o: *mut obm_object, why: &str) {
    crate::report::eprint(format_args!(
        "obmem: obm_gc_track: {} object at {:p} {why}; ignored\n",
        // SAFETY: o is live (the contract).
        object::type_name(unsafe { (*o).ob_type }),
        o
    ));
}

/// Stops tracking `o` (harmless if it is not tracked or not a GC object).
///
/// # Safety
/// `o` is a live object.
pub unsafe fn untrack(o: *mut obm_object) {
    // SAFETY: o is live; GC objects have a header unless static.
    unsafe {
        if object::is_gc(o) && !object::is_static(o) {
            let g = object::head_of(o);
            if list::is_tracked(g) {
                list::remove(g);
            }
        }
    }
}

/// # Safety
/// `o` is a live object.
pub unsafe fn is_tracked(o: *const obm_object) -> bool {
    // SAFETY: o is live; GC objects have a header unless static.
    unsafe { object::is_gc(o) && !object::is_static(o) && list::is_tracked(object::head_of(o)) }
}

/// # Safety
/// `o` is a live object.
pub unsafe fn is_finalized(o: *const obm_object) -> bool {
    // SAFETY: o is live; objects with a header prefix have a header,
    // unless static.
    unsafe {
        object::has_head(object::type_of(o))
            && !object::is_static(o)
            && list::flags(object::head_of(o)) & list::FINALIZED != 0
    }
}

/// Links a GC object back into generation 0 without counting it (the
/// trashcan's re-tracking of an object whose finalize is still to run).
///
/// # Safety
/// `g` is the header of a live, untracked GC object.
pub(crate) unsafe fn relink_young(g: *mut GcHead) {
    let s = gc();
    // SAFETY: per the contract; gen 0 is an initialised list.
    unsafe {
        list::append(g, s.gen(0));
        list::set_generation(g, 0);
    }
}

/// Bookkeeping when a GC object is freed.
#[inline]
pub(crate) fn note_gc_object_freed() {
    // No need to initialise: the count starts at 0 and only goes down here.
    let c = &GC.0.count[0];
    if c.get() > 0 {
        c.set(c.get() - 1);
    }
}

// ---------------------------------------------------------------------------
// Collection entry points

/// Runs a collection of `generation` with callbacks, unless one is running.
/// Returns the unreachable objects found, or -1 for a bad generation.
pub fn collect_generation(generation: c_int) -> isize {
    if !(0..NUM_GENERATIONS as c_int).contains(&generation) {
        return -1;
    }
    let s = gc();
    if s.collecting.get() {
        return 0; // already collecting (a callback or finalizer asked): do nothing
    }
    s.collecting.set(true);
    let n = collect::collect_with_callback(s, generation as usize);
    s.collecting.set(false);
    n as isize
}

pub(crate) fn invoke_callbacks(s: &GcState, phase: c_int, info: &obm_gc_info) {
    // By index, re-reading the array each time: a callback may add or
    // remove callbacks (as CPython iterates gc.callbacks).
    let mut i = 0;
    while let Some((cb, ctx)) = s.callbacks.get(i) {
        if let Some(f) = cb {
            // SAFETY: the user registered f to be called with these arguments.
            unsafe { f(phase, info, ctx) };
        }
        i += 1;
    }
}

pub fn callback_add(cb: obm_gc_callback, ctx: *mut c_void) -> c_int {
    if cb.is_none() {
        return -1;
    }
    if gc().callbacks.push((cb, ctx)) {
        0
    } else {
        -1
    }
}

pub fn callback_remove(cb: obm_gc_callback, ctx: *mut c_void) -> c_int {
    let found = gc()
        .callbacks
        .remove_first(|&(c, x)| c.map(|f| f as usize) == cb.map(|f| f as usize) && x == ctx);
    if found {
        0
    } else {
        -1
    }
}

// ---------------------------------------------------------------------------
// Settings and statistics

pub fn set_threshold(t: [c_int; NUM_GENERATIONS]) {
    let s = gc();
    for (cell, v) in s.threshold.iter().zip(t) {
        cell.set(v);
    }
}

pub fn get_threshold() -> [c_int; NUM_GENERATIONS] {
    let s = gc();
    [
        s.threshold[0].get(),
        s.threshold[1].get(),
        s.threshold[2].get(),
    ]
}

pub fn get_count() -> [c_int; NUM_GENERATIONS] {
    let s = gc();
    [s.count[0].get(), s.count[1].get(), s.count[2].get()]
}

pub fn get_stats() -> [obm_gc_gen_stats; NUM_GENERATIONS] {
    let s = gc();
    [s.stats[0].get(), s.stats[1].get(), s.stats[2].get()]
}

/// Moves every tracked object to the permanent generation, which no
/// collection looks at (for fork-heavy programs: pages stay shared).
pub fn freeze() {
    let s = gc();
    // SAFETY: all heads are initialised lists; the generation bits of the
    // moved objects are updated to their new list (list.rs invariant).
    unsafe {
        for i in 0..NUM_GENERATIONS {
            list::set_generation_all(s.gen(i), list::PERMANENT);
            list::merge(s.gen(i), s.permanent());
        }
    }
    s.count[0].set(0);
}

/// Moves the permanent generation back into the oldest one.
pub fn unfreeze() {
    let s = gc();
    // SAFETY: as in freeze.
    unsafe {
        list::set_generation_all(s.permanent(), NUM_GENERATIONS - 1);
        list::merge(s.permanent(), s.gen(NUM_GENERATIONS - 1));
    }
}

/// Makes every object of the permanent generation immortal; returns how
/// many objects it holds.
pub fn immortalize_frozen() -> usize {
    let s = gc();
    let head = s.permanent();
    let mut n = 0;
    // SAFETY: an initialised list of tracked, live objects.
    unsafe {
        let mut g = list::next(head);
        while g != head {
            object::immortalize(object::object_of(g));
            n += 1;
            g = list::next(g);
        }
    }
    n
}

pub fn get_freeze_count() -> usize {
    let s = gc();
    // SAFETY: an initialised list.
    unsafe { list::size(s.permanent()) }
}

pub fn garbage_count() -> usize {
    gc().garbage.len()
}

pub fn garbage_get(i: usize) -> *mut obm_object {
    gc().garbage.get(i).unwrap_or(core::ptr::null_mut())
}

/// Empties the garbage list, dropping its references.
pub fn garbage_clear() {
    let s = gc();
    // Detach first: the decrefs run user code, which may use the list.
    let (p, n) = s.garbage.take();
    for i in 0..n {
        // SAFETY: the first n slots of the taken block are the list's
        // entries, each owning a reference.
        unsafe { object::decref(*p.add(i)) };
    }
    // SAFETY: p came from take.
    unsafe { Array::free_block(p) };
}

pub fn enable() {
    gc().enabled.set(true);
}

pub fn disable() {
    gc().enabled.set(false);
}

pub fn is_enabled() -> bool {
    gc().enabled.get()
}

pub fn set_debug(flags: c_uint) {
    gc().debug.set(flags);
}

pub fn get_debug() -> c_uint {
    gc().debug.get()
}
