//! The debug hooks (PYTHONMALLOC=debug style), installed by
//! `obm_setup_debug_hooks()` or `OBMEM_MALLOC=debug` / `pymalloc_debug`.
//!
//! They wrap, per domain, whatever allocator the domain had (obmem's pools,
//! or a user's hook) and give each block a guarded layout:
//!
//! ```text
//!   underlying block:  [pad][size copy: 8][id: 1][0xFD x 7][data: size][0xFD x 8]
//!                                                          ^ the pointer the program gets
//! ```
//!
//! `pad` is empty except for over-aligned requests. New data is filled with
//! 0xCD (calloc: zeros), freed data with 0xDD; the id byte is 'r', 'm' or
//! 'o' for the domain. Every block has a record in `blocks` (address, size,
//! serial, domain, state), which is what the checks trust; it also tells a
//! debug block from one allocated before the hooks, which is passed to the
//! underlying allocator untouched. A freed block keeps its record, marked
//! freed, while it waits in the `quarantine`; when it leaves, its data must
//! still be all 0xDD, or the write after free is reported.
//!
//! Checks on free and realloc: the record exists (else the pointer is not a
//! debug block: a block 16 bytes into a debug block is reported, anything
//! else is the underlying allocator's to judge), is not already freed
//! (double free), belongs to this domain (wrong domain), and has its guard
//! bytes intact (underrun, overrun). The first misuse is reported by `dump`
//! and aborts.
//!
//! The hooks also check the object and gc functions (`objects`). That is
//! the debug layer's second entrance, and a deliberate one: no allocator
//! hook sees `obm_incref`, `obm_gc_track` or a weak reference's target, so
//! the reference-count functions get a hook of their own
//! (`objects::CHECKED_REFS`, installed as the object layer's `REF_HOOK`),
//! and every other object and gc entry point calls `objects`' entry
//! functions (`enter`, `check_alive`, `track_entry`). Those test whether
//! the hooks are on themselves: no module outside `debug/` reads the flag
//! (`active`, private here). The header-inline reference counts read its
//! exported copy, `obm_debug_hooks_on`.

mod blocks;
mod dump;
pub mod objects;
mod quarantine;

use crate::config::{ALIGNMENT, QUARANTINE_MAX_BLOCK};
use crate::domain::{self, obm_allocator, obm_domain, Dispatch};
use crate::os;
use crate::sync::SpinLock;
use blocks::Record;
use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering::*};

/// Bytes before the data: the size copy, the domain id and guard bytes.
pub(crate) const FRONT: usize = 16;
/// Guard bytes after the data.
pub(crate) const TAIL: usize = 8;
/// Fill of new data, of freed data, and of guard bytes (CPython's values).
pub(crate) const CLEAN: u8 = 0xCD;
pub(crate) const DEAD: u8 = 0xDD;
pub(crate) const FORBIDDEN: u8 = 0xFD;
/// Larger requests fail at once (no machine maps them; keeps sums exact).
const MAX_REQUEST: usize = 1 << 47;
const IDS: [u8; 3] = [b'r', b'm', b'o'];

/// True once the hooks are installed on every domain (never reset).
/// Exported as `obm_debug_hooks_on` for the header-inline incref/decref
/// (`obm_incref_inline`), which leave everything to the exported functions
/// while it is set.
/// cbindgen:ignore
#[export_name = "obm_debug_hooks_on"]
static ACTIVE: AtomicBool = AtomicBool::new(false);
static SERIAL: AtomicU64 = AtomicU64::new(0);
static SETUP: SpinLock<()> = SpinLock::new(());

/// One per domain: the `ctx` of the domain's debug table.
struct Hooks {
    domain: u8,
    /// The table the hooks wrap (set once, before the hooks are published).
    underlying: AtomicPtr<obm_allocator>,
}

static HOOKS: [Hooks; 3] = [Hooks::new(0), Hooks::new(1), Hooks::new(2)];

impl Hooks {
    const fn new(domain: u8) -> Self {
        Hooks {
            domain,
            underlying: AtomicPtr::new(ptr::null_mut()),
        }
    }

    fn under(&self) -> &'static obm_allocator {
        // SAFETY: set by `setup` to a published table (CORE or a never-freed
        // slot) before this ctx was installed.
        unsafe { &*self.underlying.load(Acquire) }
    }

    fn under_malloc(&self, n: usize) -> *mut u8 {
        let u = self.under();
        // SAFETY: published tables have every function (domain::set checks).
        unsafe { (u.malloc.unwrap_unchecked())(u.ctx, n) as *mut u8 }
    }

    /// # Safety
    /// `p` is a live block of the underlying allocator.
    unsafe fn under_free(&self, p: *mut u8) {
        let u = self.under();
        // SAFETY: as in under_malloc; p per the contract.
        unsafe { (u.free.unwrap_unchecked())(u.ctx, p as *mut c_void) }
    }

    /// # Safety
    /// `p` is null or a live block of the underlying allocator.
    unsafe fn under_realloc(&self, p: *mut u8, n: usize) -> *mut u8 {
        let u = self.under();
        // SAFETY: as in under_free.
        unsafe { (u.realloc.unwrap_unchecked())(u.ctx, p as *mut c_void, n) as *mut u8 }
    }
}

/// Whether the debug hooks are installed. Private to the debug layer: the
/// layers above reach its checks through the hooks (`setup`) and through
/// `objects`' entry functions, which test it themselves.
#[inline(always)]
fn active() -> bool {
    ACTIVE.load(Relaxed)
}

/// Installs the hooks on the three domains, each wrapping the domain's
/// current allocator. Later calls do nothing (a second layer would find
/// only its own blocks' guards, and could not tell them apart).
pub fn setup() {
    let _g = SETUP.lock();
    if ACTIVE.load(Relaxed) {
        return;
    }
    for (d, h) in [
        obm_domain::OBM_DOMAIN_RAW,
        obm_domain::OBM_DOMAIN_MEM,
        obm_domain::OBM_DOMAIN_OBJ,
    ]
    .into_iter()
    .zip(&HOOKS)
    {
        h.underlying
            .store(domain::table(d) as *const _ as *mut _, Release);
        domain::set_dispatch(
            d,
            Dispatch {
                table: obm_allocator {
                    ctx: h as *const Hooks as *mut c_void,
                    malloc: Some(hook_malloc),
                    calloc: Some(hook_calloc),
                    realloc: Some(hook_realloc),
                    free: Some(hook_free),
                },
                aligned: Some(aligned),
                usable: Some(usable_size),
            },
        );
    }
    ACTIVE.store(true, Release);
}

fn hooks_of(ctx: *mut c_void) -> &'static Hooks {
    // SAFETY: the debug tables are installed with ctx = &HOOKS[d].
    unsafe { &*(ctx as *const Hooks) }
}

unsafe extern "C" fn hook_malloc(ctx: *mut c_void, n: usize) -> *mut c_void {
    alloc_block(hooks_of(ctx), n, ALIGNMENT, false) as *mut c_void
}

unsafe extern "C" fn hook_calloc(ctx: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void {
    match nelem.checked_mul(elsize) {
        Some(n) => alloc_block(hooks_of(ctx), n, ALIGNMENT, true) as *mut c_void,
        None => enomem() as *mut c_void,
    }
}

unsafe extern "C" fn hook_realloc(ctx: *mut c_void, p: *mut c_void, n: usize) -> *mut c_void {
    // SAFETY: the caller passes null or a block of this domain.
    unsafe { realloc_block(hooks_of(ctx), p as *mut u8, n) as *mut c_void }
}

unsafe extern "C" fn hook_free(ctx: *mut c_void, p: *mut c_void) {
    // SAFETY: the caller passes null or a block of this domain.
    unsafe { free_block(hooks_of(ctx), p as *mut u8, "free") }
}

#[cold]
fn enomem() -> *mut u8 {
    os::set_errno(libc::ENOMEM);
    ptr::null_mut()
}

/// A new debug block of `n` bytes aligned to `align` (a power of two).
fn alloc_block(h: &Hooks, n: usize, align: usize, zero: bool) -> *mut u8 {
    // The record keeps the alignment padding in 32 bits.
    if n > MAX_REQUEST || align > 1 << 31 {
        return enomem();
    }
    // The underlying block is 16-byte aligned; the data starts at the first
    // `align` boundary leaving room for the front bytes.
    let before = if align > ALIGNMENT { align } else { FRONT };
    let raw = h.under_malloc(before + n + TAIL);
    if raw.is_null() {
        return raw;
    }
    let addr = (raw as usize + FRONT).next_multiple_of(align);
    let r = Record {
        addr,
        size: n,
        serial: SERIAL.fetch_add(1, Relaxed) + 1,
        offset: (addr - raw as usize) as u32,
        domain: h.domain,
        freed: false,
    };
    // SAFETY: [raw, raw + before + n + TAIL) is the fresh underlying block,
    // and addr - FRONT >= raw, addr + n + TAIL <= raw + before + n + TAIL.
    unsafe {
        let front = (addr - FRONT) as *mut u8;
        (front as *mut usize).write_unaligned(n);
        front.add(8).write(IDS[h.domain as usize]);
        ptr::write_bytes(front.add(9), FORBIDDEN, FRONT - 9);
        ptr::write_bytes(addr as *mut u8, if zero { 0 } else { CLEAN }, n);
        ptr::write_bytes((addr + n) as *mut u8, FORBIDDEN, TAIL);
    }
    if !blocks::insert(r) {
        // SAFETY: raw is the block just allocated, never handed out.
        unsafe { h.under_free(raw) };
        return enomem();
    }
    addr as *mut u8
}

/// Reports a damaged guard, if any; the report says it was found
/// `{how}{op}` ("by " "free", "when the freed block left the quarantine").
fn check_guards(r: &Record, how: &str, op: &str) {
    let front = r.addr - FRONT;
    let mut expected = [FORBIDDEN; FRONT];
    expected[..8].copy_from_slice(&r.size.to_ne_bytes());
    expected[8] = IDS[r.domain as usize];
    // The damaged byte closest to the data is the one an underrun hit last.
    for i in (0..FRONT).rev() {
        // SAFETY: the front bytes lie in the underlying block (alloc_block).
        let v = unsafe { *((front + i) as *const u8) };
        if v != expected[i] {
            dump::fail(
                "buffer underrun",
                r,
                format_args!(
                    "    found {how}{op}: byte {:#x} ({} bytes before the block) is {v:#04x}, expected {:#04x}",
                    front + i,
                    FRONT - i,
                    expected[i]
                ),
            );
        }
    }
    for i in 0..TAIL {
        // SAFETY: the tail bytes lie in the underlying block.
        let v = unsafe { *((r.addr + r.size + i) as *const u8) };
        if v != FORBIDDEN {
            dump::fail(
                "buffer overrun",
                r,
                format_args!(
                    "    found {how}{op}: byte {:#x} (offset {} of a {}-byte block) is {v:#04x}, expected {FORBIDDEN:#04x}",
                    r.addr + r.size + i,
                    r.size + i,
                    r.size
                ),
            );
        }
    }
}

/// Checks `p`'s record and marks it freed. None if `p` is not a debug block.
fn take_live(h: &Hooks, p: usize, op: &str) -> Option<Record> {
    blocks::with(p, |rec| {
        let r = rec?;
        if r.freed {
            dump::fail(
                "double free",
                r,
                format_args!("    {op} of a block that was already freed"),
            );
        }
        if r.domain != h.domain {
            dump::fail(
                "free through the wrong domain",
                r,
                format_args!(
                    "    allocated through {}, given to {op} through {}",
                    dump::domain_name(r.domain),
                    dump::domain_name(h.domain)
                ),
            );
        }
        check_guards(r, "by ", op);
        r.freed = true;
        Some(*r)
    })
}

/// `p` is not a debug block. If it is the start of one's front bytes (the
/// pointer a program gets by stepping back over the header), say so; any
/// other pointer goes to the underlying allocator, which frees a block from
/// before the hooks and rejects what it never returned.
fn not_a_debug_block(p: usize, op: &str) {
    if let Some(r) = blocks::get(p + FRONT) {
        dump::fail(
            "free of a pointer obmem never returned",
            &r,
            format_args!("    {op}({p:#x}): the pointer is {FRONT} bytes before a debug block"),
        );
    }
}

/// # Safety
/// `p` is null or a block of this domain that nobody uses afterwards.
unsafe fn free_block(h: &Hooks, p: *mut u8, op: &str) {
    if p.is_null() {
        return;
    }
    let Some(r) = take_live(h, p as usize, op) else {
        not_a_debug_block(p as usize, op);
        // SAFETY: not a debug block: a block of the underlying allocator
        // from before the hooks, or a pointer it will reject.
        return unsafe { h.under_free(p) };
    };
    if r.size > QUARANTINE_MAX_BLOCK {
        return release(r.addr);
    }
    // SAFETY: the data of a live block, now ours alone (marked freed).
    unsafe { ptr::write_bytes(p, DEAD, r.size) };
    quarantine::push(r.addr, r.size, release);
}

/// A block leaves the quarantine (or skips it): check that nothing wrote to
/// it since it was freed, forget it and give it back.
fn release(addr: usize) {
    // Forgotten first, in one step with the lookup. A double free racing
    // with this finds no record and passes the pointer down, where it is
    // not a block start (it lies FRONT bytes into one) and is rejected.
    let Some(r) = blocks::remove(addr) else {
        return;
    };
    check_guards(&r, "when the freed block left the quarantine", "");
    if r.size <= QUARANTINE_MAX_BLOCK {
        // SAFETY: the block's data, freed and filled by free_block.
        let data = unsafe { core::slice::from_raw_parts(r.addr as *const u8, r.size) };
        if let Some(i) = first_other_than(data, DEAD) {
            dump::fail(
                "write after free",
                &r,
                format_args!(
                    "    found when the freed block left the quarantine: byte {:#x} (offset {i}) is {:#04x}, expected {DEAD:#04x}",
                    r.addr + i,
                    data[i]
                ),
            );
        }
    }
    let h = &HOOKS[r.domain as usize];
    // SAFETY: the underlying block of a debug block we just forgot; nobody
    // else can reach it (the program freed it).
    unsafe { h.under_free((r.addr - r.offset as usize) as *mut u8) };
}

/// The index of the first byte of `data` that is not `v`. Whole 64-byte
/// chunks are compared a word at a time (this scan is most of the cost of
/// releasing a quarantined block).
fn first_other_than(data: &[u8], v: u8) -> Option<usize> {
    let word = u64::from_ne_bytes([v; 8]);
    let mut clean = 0;
    for chunk in data.chunks_exact(64) {
        let diff = chunk.chunks_exact(8).fold(0, |acc, w| {
            acc | (u64::from_ne_bytes(w.try_into().unwrap()) ^ word)
        });
        if diff != 0 {
            break;
        }
        clean += 64;
    }
    data[clean..]
        .iter()
        .position(|&b| b != v)
        .map(|i| clean + i)
}

/// # Safety
/// `p` is null or a live block of this domain.
unsafe fn realloc_block(h: &Hooks, p: *mut u8, n: usize) -> *mut u8 {
    if p.is_null() {
        return alloc_block(h, n, ALIGNMENT, false);
    }
    let old = blocks::with(p as usize, |rec| {
        let r = rec?;
        if r.freed {
            dump::fail(
                "use after free",
                r,
                format_args!("    realloc of a block that was already freed"),
            );
        }
        Some(*r)
    });
    let Some(old) = old else {
        not_a_debug_block(p as usize, "realloc");
        // SAFETY: not a debug block: the underlying allocator's (see free).
        return unsafe { h.under_realloc(p, n) };
    };
    // Always move: a stale pointer to the old block then lands in the
    // quarantine, where a write through it is caught.
    let q = alloc_block(h, n, ALIGNMENT, false);
    if q.is_null() {
        return q;
    }
    // SAFETY: both blocks are live, distinct, and hold at least
    // min(old.size, n) bytes.
    unsafe {
        ptr::copy_nonoverlapping(p, q, old.size.min(n));
        free_block(h, p, "realloc");
    }
    q
}

/// Aligned allocation through the hooks of domain `d` (the drop-in
/// posix_memalign family uses the object domain), `align` a power of two.
fn aligned(d: obm_domain, align: usize, n: usize) -> *mut u8 {
    alloc_block(&HOOKS[d as usize], n, align, false)
}

/// The requested size of a debug block; None if `p` is not one. A freed
/// block is reported.
fn usable_size(p: *const u8, func: &str) -> Option<usize> {
    let r = blocks::get(p as usize);
    match r {
        Some(r) if r.freed => dump::fail(
            "use after free",
            &r,
            format_args!("    {func} of a block that was already freed"),
        ),
        Some(r) => Some(r.size),
        None => {
            not_a_debug_block(p as usize, func);
            None
        }
    }
}

/// Debug blocks recorded, and those waiting in the quarantine with their
/// bytes; None when the hooks are not installed.
pub fn counts() -> Option<(usize, usize, usize)> {
    if !ACTIVE.load(Acquire) {
        return None;
    }
    let (q, qb) = quarantine::size();
    Some((blocks::count(), q, qb))
}

pub fn lock_for_fork() {
    quarantine::lock_for_fork();
    blocks::lock_for_fork();
}

/// # Safety
/// Called after `lock_for_fork`, in the parent or the child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: per the contract.
    unsafe {
        blocks::unlock_after_fork();
        quarantine::unlock_after_fork();
    }
}

#[cfg(test)]
mod tests {
    use super::{first_other_than, DEAD};

    #[test]
    fn scan_for_a_changed_byte() {
        let mut v = [DEAD; 300];
        assert_eq!(first_other_than(&v, DEAD), None);
        assert_eq!(first_other_than(&v[..0], DEAD), None);
        for i in [0, 7, 63, 64, 200, 255, 256, 299] {
            v[i] = 0x41;
            assert_eq!(first_other_than(&v, DEAD), Some(i), "at {i}");
            v[i] = DEAD;
        }
    }
}
