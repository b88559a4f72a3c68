//! The sampled heap profiler (API.md §9): about one allocation per
//! `sample_bytes` allocated bytes records its call stack, as tcmalloc's
//! and jemalloc's profilers do.
//!
//! # Sampling
//! Each thread counts down the bytes it allocates (`tick`, a TLS word:
//! `left -= n`, sample when it goes below zero) and, after each sample,
//! draws the next interval from an exponential distribution of mean
//! `sample_bytes`, so sampling is a Poisson process over the allocated
//! bytes and no allocation pattern can alias with it. A block of `s` bytes
//! is then sampled with probability `p = 1 - exp(-s / sample_bytes)`, and
//! each sample stands for `s / p` bytes and `1 / p` blocks (tcmalloc's
//! unbiased scaling): the estimates' expectations are the true totals.
//!
//! The profiler costs the allocation fast path one load and one
//! predictable branch while off (`active`, tested by `domain.rs` and the
//! aligned entry points before anything else), and the countdown while on.
//!
//! # Sampled blocks
//! A sampled allocation is served as a large block (its own mapping,
//! `large.rs`) whose header carries the sample's tag and weights, whatever
//! its size: its free finds the sample again at no cost to the free fast
//! path (a large block never takes it), so the dump's live bytes are live.
//! A page of memory per live sample is the price; at the default 512 KiB
//! interval that is under 1% of the live heap. Allocations made while
//! allocator hooks are installed (`obm_set_allocator`, the debug hooks)
//! are not sampled: the hooks must see every block.
//!
//! # Stacks
//! Captured with libgcc's `_Unwind_Backtrace` (DWARF CFI), which needs no
//! frame pointers: Rust's release builds, distribution Pythons and most C
//! libraries are compiled without them, and a frame-pointer walk stops (or
//! goes astray) at the first such frame. It does not call malloc and takes
//! no lock of obmem's; it costs ~18,000 instructions per sample.
//! `OBMEM_PROF_UNWIND=fp` walks frame pointers instead, ~190 times
//! cheaper, for programs built with them throughout; it starts from the
//! program's frame pointer (obmem keeps none), so the allocating call site
//! itself is missing (BENCHMARKS.md, issue 14). At most `stacks::DEPTH` frames are
//! kept, obmem's own frames dropped. A thread's flag (`BUSY`) keeps an
//! allocation made by the unwinder itself from being sampled.
//!
//! # Threads, fork
//! The countdown is per thread and needs nothing at thread exit; the table
//! is global. After `fork` the child keeps the parent's profile: its live
//! samples are the blocks it inherited, and profiling goes on if it was
//! on (`OBMEM_PROF_DUMP` writes the child's own `<prefix>.<pid>.folded`).

pub mod dump;
mod symtab;

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::*};

use crate::os;
use crate::stacks;

// The flag "profiling is on" (one byte), defined in assembly, as the TLS
// slots are (`tls.rs`), so that the fast path reads it with one
// rip-relative load instead of loading its address from the GOT first.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".section .bss.obmem_prof_active,\"aw\",@nobits",
    ".globl obmem_prof_active",
    ".hidden obmem_prof_active",
    ".type obmem_prof_active,@object",
    ".size obmem_prof_active,1",
    "obmem_prof_active:",
    ".zero 1",
    ".text",
);

/// True while profiling: the entry points then call `tick`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn active() -> bool {
    // A compare in memory and a branch on it: two instructions.
    // SAFETY: reads the flag byte defined above.
    unsafe {
        core::arch::asm!(
            "cmp byte ptr [rip + obmem_prof_active], 0",
            "jne {on}",
            on = label { return true; },
            options(nostack, readonly),
        );
    }
    false
}

#[cfg(target_arch = "x86_64")]
fn set_active(on: bool) {
    extern "C" {
        static obmem_prof_active: AtomicBool;
    }
    // SAFETY: the flag byte defined above, only ever accessed as an AtomicBool
    // (or by the plain byte load of `active`, which an atomic store allows).
    unsafe { obmem_prof_active.store(on, SeqCst) };
}

#[cfg(not(target_arch = "x86_64"))]
static ACTIVE: AtomicBool = AtomicBool::new(false);

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub fn active() -> bool {
    ACTIVE.load(Relaxed)
}

#[cfg(not(target_arch = "x86_64"))]
fn set_active(on: bool) {
    ACTIVE.store(on, SeqCst);
}
/// The mean sample interval in bytes (0 before the first start).
static MEAN: AtomicUsize = AtomicUsize::new(0);
/// Bumped by every start, so threads draw a new interval at the new mean.
static EPOCH: AtomicUsize = AtomicUsize::new(0);

/// How stacks are captured.
pub(crate) const UNWIND_DWARF: u8 = 0;
pub(crate) const UNWIND_FP: u8 = 1;
static UNWIND: AtomicU8 = AtomicU8::new(UNWIND_DWARF);

/// `OBMEM_PROF_UNWIND=fp`: capture stacks by walking frame pointers.
pub fn use_frame_pointers() {
    UNWIND.store(UNWIND_FP, Relaxed);
}

// The thread's TLS words (`tls::prof_slot`).
const LEFT: usize = 0;
const RNG: usize = 1;
const BUSY: usize = 2;
const SEEN_EPOCH: usize = 3;

/// Counts `n` allocated bytes against the calling thread's interval; true
/// when this allocation is to be sampled (then call `sampled`).
#[inline(always)]
pub fn tick(n: usize) -> bool {
    let s = crate::heap::tls::prof_slot();
    // SAFETY: the slot is this thread's, and only this module uses it.
    unsafe {
        let left = ((*s)[LEFT] as isize).wrapping_sub(n as isize);
        (*s)[LEFT] = left as usize;
        left < 0
    }
}

/// Starts a new profile sampling about every `sample_bytes` bytes. False
/// with errno EINVAL for 0 or more than `PROF_MAX_SAMPLE_BYTES`, ENOMEM if the
/// table cannot be mapped.
pub fn start(sample_bytes: usize) -> bool {
    if sample_bytes == 0 || sample_bytes > crate::config::PROF_MAX_SAMPLE_BYTES {
        os::set_errno(libc::EINVAL);
        return false;
    }
    set_active(false);
    if !stacks::reset() {
        return false;
    }
    MEAN.store(sample_bytes, Relaxed);
    EPOCH.fetch_add(1, Relaxed);
    set_active(true);
    true
}

/// Stops sampling; the profile stays for `obm_prof_dump`, and the blocks
/// sampled still leave it when freed.
pub fn stop() {
    set_active(false);
}

/// The mean interval of the current (or last) profile.
pub fn mean() -> usize {
    MEAN.load(Relaxed)
}

fn next_random(s: *mut [usize; 4]) -> u64 {
    // SAFETY: the calling thread's slot (see `tick`).
    unsafe {
        let mut x = (*s)[RNG] as u64;
        if x == 0 {
            // Seed from the slot's address (distinct per thread) and the time.
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
            x = (s as u64 ^ (ts.tv_nsec as u64).rotate_left(32)) | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        (*s)[RNG] = x as usize;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// An exponentially distributed interval of mean `MEAN`, at least 1.
fn draw(s: *mut [usize; 4]) -> isize {
    // u uniform in (0, 1]: 53 random bits, plus one so it is never 0.
    let u = ((next_random(s) >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
    let v = -u.ln() * MEAN.load(Relaxed) as f64;
    (v as isize).max(1)
}

/// The estimate a sample of `n` bytes stands for: (bytes, blocks in
/// 1/BLOCK_UNIT), `n / p` and `1 / p` with `p = 1 - exp(-n / mean)`.
pub fn weight(n: usize, mean: usize) -> (u64, u64) {
    let n = n.max(1) as f64;
    let p = -(-n / mean as f64).exp_m1();
    if p <= 0.0 {
        return (mean as u64, mean as u64 * stacks::BLOCK_UNIT);
    }
    (
        (n / p).round() as u64,
        (stacks::BLOCK_UNIT as f64 / p).round() as u64,
    )
}

/// The sampling decision `tick` asked for, and the sampled block: `n`
/// bytes aligned to `align` (zeroed if `zero`) as a large block tagged
/// with its sample. Null if this allocation is not to be sampled after
/// all (a thread's first allocation of a profile, or one made while the
/// thread is capturing a stack) or memory ran out: the caller then
/// allocates as usual.
#[cold]
#[inline(never)]
pub fn sampled(n: usize, align: usize, zero: bool, fp: usize) -> *mut u8 {
    let s = crate::heap::tls::prof_slot();
    let epoch = EPOCH.load(Relaxed);
    // SAFETY: the calling thread's slot (see `tick`).
    unsafe {
        (*s)[LEFT] = draw(s) as usize;
        if (*s)[SEEN_EPOCH] != epoch {
            // The thread's countdown was of an earlier profile (or none).
            (*s)[SEEN_EPOCH] = epoch;
            return core::ptr::null_mut();
        }
        if (*s)[BUSY] != 0 {
            return core::ptr::null_mut();
        }
        (*s)[BUSY] = 1;
    }
    let mut frames = [0usize; stacks::DEPTH];
    let depth = capture(&mut frames, fp);
    let (p, zeroed) = crate::large::alloc(n, align);
    if !p.is_null() {
        if zero && !zeroed {
            // SAFETY: a fresh block of at least n bytes.
            unsafe { core::ptr::write_bytes(p, 0, n) };
        }
        let (bytes, blocks) = weight(n, MEAN.load(Relaxed));
        if let Some(tag) = stacks::record(&frames[..depth], bytes, blocks) {
            crate::large::set_sample(p, tag, bytes, blocks);
        }
    }
    // SAFETY: as above.
    unsafe { (*s)[BUSY] = 0 };
    p
}

// ---------------------------------------------------------------------------
// Stack capture

/// The range of obmem's own code, whose frames are dropped: [start, end).
/// Empty when obmem is linked into the executable (`libobmem.a`), where it
/// cannot be told apart from the program's code; the innermost frames are
/// then obmem's.
fn own_text() -> (usize, usize) {
    static RANGE: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let end = RANGE[1].load(Relaxed);
    if end != 0 {
        return (RANGE[0].load(Relaxed), end);
    }
    extern "C" {
        // Defined by the linker at the ELF header of the module it links.
        static __ehdr_start: u8;
    }
    let base = &raw const __ehdr_start as usize;
    let (mut lo, mut hi) = (usize::MAX, 0usize);
    // SAFETY: the ELF header and program headers of our own module are
    // mapped (the loader maps the first page, which holds them, with the
    // first PT_LOAD segment).
    unsafe {
        let phoff = *((base + 32) as *const u64) as usize;
        let phentsize = *((base + 54) as *const u16) as usize;
        let phnum = *((base + 56) as *const u16) as usize;
        for i in 0..phnum {
            let ph = base + phoff + i * phentsize;
            let p_type = *(ph as *const u32);
            let p_flags = *((ph + 4) as *const u32);
            let vaddr = *((ph + 16) as *const u64) as usize;
            let memsz = *((ph + 40) as *const u64) as usize;
            if p_type == 1 && p_flags & 1 != 0 {
                lo = lo.min(base + vaddr);
                hi = hi.max(base + vaddr + memsz);
            }
        }
    }
    // Linked into the executable (or the headers are unusual): keep all.
    // SAFETY: getauxval has no preconditions.
    let exe_phdr = unsafe { libc::getauxval(libc::AT_PHDR) } as usize;
    if hi == 0 || (exe_phdr >= base && exe_phdr < base + 4096) {
        lo = 1;
        hi = 1;
    }
    RANGE[0].store(lo, Relaxed);
    RANGE[1].store(hi, Relaxed);
    (lo, hi)
}

struct Capture<'a> {
    frames: &'a mut [usize; stacks::DEPTH],
    depth: usize,
    own: (usize, usize),
}

impl Capture<'_> {
    /// Takes one return address; false when the stack is full.
    fn push(&mut self, ip: usize) -> bool {
        if ip == 0 {
            return false;
        }
        if self.depth == 0 && ip >= self.own.0 && ip < self.own.1 {
            return true; // still inside obmem
        }
        self.frames[self.depth] = ip;
        self.depth += 1;
        self.depth < stacks::DEPTH
    }
}

#[allow(non_camel_case_types)]
type _Unwind_Trace_Fn =
    extern "C" fn(ctx: *mut core::ffi::c_void, arg: *mut core::ffi::c_void) -> i32;

extern "C" {
    fn _Unwind_Backtrace(trace: _Unwind_Trace_Fn, arg: *mut core::ffi::c_void) -> i32;
    fn _Unwind_GetIP(ctx: *mut core::ffi::c_void) -> usize;
}

extern "C" fn unwind_frame(ctx: *mut core::ffi::c_void, arg: *mut core::ffi::c_void) -> i32 {
    // SAFETY: arg is the Capture of `capture`, alive for the backtrace;
    // ctx is the unwinder's context for this frame.
    let (c, ip) = unsafe { (&mut *(arg as *mut Capture), _Unwind_GetIP(ctx)) };
    if c.push(ip) {
        0 // _URC_NO_REASON: go on
    } else {
        4 // _URC_NORMAL_STOP
    }
}

/// The `rbp` register: the caller's frame pointer when read on entry to a
/// function whose callers in obmem leave it alone (`domain::sample`).
#[inline(always)]
pub fn frame_pointer() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let fp: usize;
        // SAFETY: reads a register.
        unsafe {
            core::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags))
        };
        fp
    }
    #[cfg(not(target_arch = "x86_64"))]
    0
}

/// Fills `frames` with the calling thread's return addresses, innermost
/// first, obmem's own dropped; returns how many. `fp` is where a
/// frame-pointer walk starts (`frame_pointer`).
#[inline(never)]
pub fn capture(frames: &mut [usize; stacks::DEPTH], fp: usize) -> usize {
    let mut c = Capture {
        frames,
        depth: 0,
        own: own_text(),
    };
    if UNWIND.load(Relaxed) == UNWIND_FP {
        capture_fp(&mut c, fp);
    } else {
        // SAFETY: the callback and its argument are valid for the call.
        unsafe { _Unwind_Backtrace(unwind_frame, &raw mut c as *mut core::ffi::c_void) };
    }
    c.depth
}

/// Walks the frame-pointer chain from `fp`, the program's frame pointer
/// when it called obmem (obmem's release build keeps none of its own).
/// `fp` must lie above our stack frame, and each step must go up the
/// stack by less than 1 MiB and stay 8-byte aligned, which stops the walk
/// at the first frame without a frame pointer (usually before it can read
/// anything unmapped, though not provably so: hence not the default).
#[cfg(target_arch = "x86_64")]
fn capture_fp(c: &mut Capture, mut fp: usize) {
    let sp = &raw const fp as usize;
    if fp < sp || fp - sp > 1 << 20 {
        return; // not a frame pointer of this stack
    }
    loop {
        if fp % 8 != 0 {
            return;
        }
        // SAFETY: fp points into this thread's stack above our frame
        // (checked on entry and by each step below).
        let (next, ret) = unsafe { (*(fp as *const usize), *((fp + 8) as *const usize)) };
        if !c.push(ret) || next <= fp || next - fp > 1 << 20 {
            return;
        }
        fp = next;
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn capture_fp(_c: &mut Capture, _fp: usize) {}

// ---------------------------------------------------------------------------
// Start-up and exit (OBMEM_PROF, OBMEM_PROF_DUMP)

/// `OBMEM_PROF_DUMP`'s prefix, NUL-free, or empty.
static DUMP_PREFIX: crate::sync::SpinLock<([u8; 4096], usize)> =
    crate::sync::SpinLock::new(([0; 4096], 0));

/// Remembers `OBMEM_PROF_DUMP`'s prefix (`env` checked its length).
pub fn set_dump_prefix(v: &[u8]) {
    let mut p = DUMP_PREFIX.lock();
    // Room for ".<pid>.folded" and the NUL.
    let n = v.len().min(p.0.len() - 32);
    p.0[..n].copy_from_slice(&v[..n]);
    p.1 = n;
}

/// At exit: writes `<prefix>.<pid>.folded` if `OBMEM_PROF_DUMP` was set.
pub fn dump_at_exit() {
    use core::fmt::Write;
    let mut path = [0u8; 4096];
    let len = {
        let p = DUMP_PREFIX.lock();
        if p.1 == 0 {
            return;
        }
        path[..p.1].copy_from_slice(&p.0[..p.1]);
        p.1
    };
    let mut w = dump::SliceWriter {
        buf: &mut path[len..],
        len: 0,
    };
    // SAFETY: getpid has no preconditions.
    let _ = write!(w, ".{}.folded", unsafe { libc::getpid() });
    let total = len + w.len;
    // The NUL is already there (the buffer was zeroed, and room is kept).
    if !dump::dump_path(path.as_ptr() as *const core::ffi::c_char, dump::FOLDED) {
        let shown = core::str::from_utf8(&path[..total]).unwrap_or("<not UTF-8>");
        crate::report::eprint(format_args!(
            "obmem: OBMEM_PROF_DUMP: cannot write {shown}: errno {}\n",
            os::errno()
        ));
    }
}
