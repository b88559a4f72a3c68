//! The sampled heap profiler (docs/API.md §9): about one allocation per
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
//! The profiler costs `malloc`'s fast path nothing while off: that path
//! serves sizes up to `unticked_max()`, a global word that holds
//! `DIRECT_MAX` while off and 0 while on, so its size test is also the
//! profiler's (`unticked`). Every other allocation path calls `tick`:
//! while off, one compare of a global word with zero and one predictable
//! branch; on, that word is the countdown's TLS offset, and the countdown
//! costs a load of it, one subtraction in TLS memory and one branch more.
//! (Counting down while off too, with a countdown that only made threads
//! notice a start, took the same instructions but measurably more time: a
//! store on every malloc.)
//! `decide` makes the sampling exact from a start whatever the thread's
//! countdown was left at.
//!
//! # Sampled blocks
//! A sampled allocation is served as a large block (`large/`)
//! whose header carries the sample's tag and weights, whatever
//! its size: its free finds the sample again at no cost to the free fast
//! path (a large block never takes it), so the dump's live bytes are live.
//! A page of memory per live sample is the price; at the default 512 KiB
//! interval that is under 1% of the live heap. Freed one-page samples are
//! kept for the next samples (`large::alloc_sample`), without a region's
//! bookkeeping and its lock; others go back to their region, whose pages
//! serve the next large blocks. Either way a sample rarely costs a system
//! call. Allocations
//! made while allocator hooks are installed (`obm_set_allocator`, the
//! debug hooks) are not sampled: the hooks must see every block.
//!
//! # Stacks
//! Unwound from the DWARF call-frame information, which needs no frame
//! pointers: Rust's release builds, distribution Pythons and most C
//! libraries are compiled without them, and a frame-pointer walk stops (or
//! goes astray) at the first such frame. On x86-64, `unwind.rs` caches
//! each return address's rule (about 530 instructions per sample, against
//! ~18,000 for libgcc's `_Unwind_Backtrace`, which it falls back to for
//! the stacks it cannot walk, such as those through a signal handler;
//! `OBMEM_PROF_UNWIND=libgcc` uses libgcc's for every sample). Neither
//! calls malloc nor takes a lock of obmem's. `OBMEM_PROF_UNWIND=fp` walks
//! frame pointers instead, for programs built with them throughout; it
//! starts from the program's frame pointer (obmem keeps none), so the
//! allocating call site itself is missing (BENCHMARKS.md, issue 14). At
//! most `stacks::DEPTH` frames are kept, obmem's own frames dropped. A
//! thread's flag (`BUSY`) keeps an allocation made by the unwinder itself
//! from being sampled.
//!
//! # Threads, fork
//! The countdown is per thread and needs nothing at thread exit; the table
//! is global. After `fork` the child keeps the parent's profile: its live
//! samples are the blocks it inherited, and profiling goes on if it was
//! on (`OBMEM_PROF_DUMP` writes the child's own `<prefix>.<pid>.folded`).

pub mod dump;
mod math;
mod symtab;
#[cfg(target_arch = "x86_64")]
mod unwind;

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering::*};

use crate::env::ProfUnwind;
use crate::os;
use crate::size_class::DIRECT_MAX;
use crate::stacks;

/// While profiling, the offset of the countdown (`LEFT`, the first word of
/// the slot) from the thread pointer, the same in every thread
/// (initial-exec TLS); 0 while off. `tick` tests it and counts down
/// through it.
static COUNTDOWN_AT: AtomicUsize = AtomicUsize::new(0);

/// True while profiling (one compare in memory and a branch).
#[inline(always)]
pub fn active() -> bool {
    COUNTDOWN_AT.load(Relaxed) != 0
}

/// The largest size `malloc` may serve without `tick`: `DIRECT_MAX` while
/// off, 0 while profiling. A thread that reads it just before a start or
/// a stop counts one allocation less or asks `tick` once for nothing.
static UNTICKED_MAX: AtomicUsize = AtomicUsize::new(DIRECT_MAX);

fn set_active(on: bool) {
    if on {
        COUNTDOWN_AT.store(countdown_offset(), SeqCst);
        UNTICKED_MAX.store(0, SeqCst);
    } else {
        UNTICKED_MAX.store(DIRECT_MAX, SeqCst);
        COUNTDOWN_AT.store(0, SeqCst);
    }
}

/// Whether `malloc` of `n` bytes may skip `tick`: not profiling, and
/// `n <= DIRECT_MAX`, in one compare with memory and one branch (the size
/// test the fast path makes anyway).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn unticked(n: usize) -> bool {
    // SAFETY: reads the aligned word UNTICKED_MAX, which is only stored
    // to atomically.
    unsafe {
        core::arch::asm!(
            "cmp {n}, qword ptr [rip + {max}]",
            "ja {no}",
            n = in(reg) n,
            max = sym UNTICKED_MAX,
            no = label { return false; },
            options(nostack, readonly),
        );
    }
    true
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub fn unticked(n: usize) -> bool {
    n <= UNTICKED_MAX.load(Relaxed)
}

#[cfg(target_arch = "x86_64")]
fn countdown_offset() -> usize {
    let at: usize;
    // SAFETY: reads the GOT entry of the slot's TLS offset (`tls.rs`).
    unsafe {
        core::arch::asm!(
            "mov {}, qword ptr [rip + obmem_tls_prof@GOTTPOFF]",
            out(reg) at,
            options(nostack, readonly, preserves_flags),
        )
    };
    at
}

#[cfg(not(target_arch = "x86_64"))]
fn countdown_offset() -> usize {
    1 // only tested against 0
}

/// The mean sample interval in bytes (0 before the first start).
static MEAN: AtomicUsize = AtomicUsize::new(0);

/// How stacks are captured (`OBMEM_PROF_UNWIND`, an `env::ProfUnwind`).
static UNWIND: AtomicU8 = AtomicU8::new(ProfUnwind::Dwarf as u8);

pub fn set_unwind(how: ProfUnwind) {
    UNWIND.store(how as u8, Relaxed);
}

/// Stacks captured since the start of the process, and how many of them
/// libgcc's unwinder walked (slow: the text dump reports both).
static CAPTURES: AtomicUsize = AtomicUsize::new(0);
static LIBGCC_CAPTURES: AtomicUsize = AtomicUsize::new(0);

/// (stacks captured, of which by libgcc's unwinder), since the start.
pub fn captures() -> (usize, usize) {
    (CAPTURES.load(Relaxed), LIBGCC_CAPTURES.load(Relaxed))
}

// The thread's TLS words (`tls::prof_slot`).
const LEFT: usize = 0;
const RNG: usize = 1;
const BUSY: usize = 2;
/// The mean `LEFT` was drawn with (0: none drawn yet).
const DRAWN_MEAN: usize = 3;

/// While profiling, counts `n` allocated bytes against the calling
/// thread's countdown; true when it runs out (then call `sampled`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn tick(n: usize) -> bool {
    // SAFETY: COUNTDOWN_AT is 0 or the TLS offset of the word `LEFT` of
    // this thread's profiler slot (`tls.rs`), which only this module uses.
    unsafe {
        core::arch::asm!(
            "cmp qword ptr [rip + {at}], 0",
            "je 2f",
            "mov {t}, qword ptr [rip + {at}]",
            "sub qword ptr fs:[{t}], {n}",
            "js {ran_out}",
            "2:",
            at = sym COUNTDOWN_AT,
            t = out(reg) _,
            n = in(reg) n,
            ran_out = label { return true; },
            options(nostack),
        );
    }
    false
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub fn tick(n: usize) -> bool {
    if !active() {
        return false;
    }
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

/// Uniform in (0, 1]: 53 random bits, plus one so it is never 0.
fn uniform(s: *mut [usize; 4]) -> f64 {
    ((next_random(s) >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// An exponentially distributed interval of mean `mean`, at least 1.
fn draw(s: *mut [usize; 4], mean: usize) -> usize {
    let v = -math::ln(uniform(s)) * mean as f64;
    (v as usize).max(1)
}

/// The countdown in slot `s` ran out in an allocation: whether the
/// profile's sampling process, of mean `mean`, has a point in it, and the
/// next countdown.
///
/// The countdown's zero is a point of a Poisson process over the bytes
/// the thread allocates, of mean interval `DRAWN_MEAN`; it lies `-LEFT`
/// bytes before the block's end. If that is `mean`, the point is one of
/// the profile's and the block is sampled. Otherwise (the first point
/// since a start, or a thread's first allocation) the profile's process
/// begins there: a point of a denser process (a profile of a shorter
/// interval) is kept with probability `drawn / mean`, which
/// thins it to the profile's rate, and the profile's next point is drawn
/// from it. The process being memoryless, the sample points after a start
/// are then exactly the profile's, whenever the start happened (the test
/// below checks it); only a start at an interval shorter than that of the
/// thread's last profile misses the points of the old interval's
/// remainder (one old interval at most, per thread).
///
/// # Safety
/// `s` is a thread's slot, used by that thread only, whose countdown ran
/// out (`tick`).
unsafe fn decide(s: *mut [usize; 4], mean: usize) -> bool {
    // SAFETY: per the contract.
    let (left, drawn) = unsafe { ((*s)[LEFT] as isize, (*s)[DRAWN_MEAN]) };
    let kept =
        drawn == mean || (drawn != 0 && drawn < mean && uniform(s) * (mean as f64) < drawn as f64);
    let (hit, next) = if kept {
        (true, draw(s, mean))
    } else {
        // The profile's first point after this one, in the block or not.
        let d = draw(s, mean);
        let rest = left.unsigned_abs();
        if d > rest {
            (false, d - rest)
        } else {
            (true, draw(s, mean))
        }
    };
    // SAFETY: per the contract.
    unsafe {
        (*s)[LEFT] = next;
        (*s)[DRAWN_MEAN] = mean;
    }
    hit
}

/// The estimate a sample of `n` bytes stands for: (bytes, blocks in
/// 1/BLOCK_UNIT), `n / p` and `1 / p` with `p = 1 - exp(-n / mean)`.
pub fn weight(n: usize, mean: usize) -> (u64, u64) {
    let n = n.max(1) as f64;
    let x = n / mean as f64;
    // Most samples are of blocks far smaller than the interval: then the
    // series of p, whose next term is below 1e-9 of it, spares the call.
    let p = if x < 1.0 / 64.0 {
        x * (1.0 - x * (0.5 - x * (1.0 / 6.0 - x * (1.0 / 24.0))))
    } else {
        math::one_minus_exp_neg(x)
    };
    if p <= 0.0 {
        return (mean as u64, mean as u64 * stacks::BLOCK_UNIT);
    }
    // Positive, so adding a half and truncating rounds.
    (
        (n / p + 0.5) as u64,
        (stacks::BLOCK_UNIT as f64 / p + 0.5) as u64,
    )
}

/// The sampling decision `tick` asked for, and the sampled block: `n`
/// bytes aligned to `align` (zeroed if `zero`) as a large block tagged
/// with its sample. Null if this allocation is not sampled after all
/// (profiling is off, `allowed` is false, the thread is capturing a stack,
/// or memory ran out): the caller then allocates as usual.
#[cold]
#[inline(never)]
pub fn sampled(n: usize, align: usize, zero: bool, fp: usize, allowed: bool) -> *mut u8 {
    let s = crate::heap::tls::prof_slot();
    let mean = MEAN.load(Relaxed);
    // SAFETY: the calling thread's slot, whose countdown ran out.
    let hit = mean != 0 && unsafe { decide(s, mean) };
    // SAFETY: the calling thread's slot (see `tick`).
    unsafe {
        if !hit || !active() || !allowed || (*s)[BUSY] != 0 {
            return core::ptr::null_mut();
        }
        (*s)[BUSY] = 1;
    }
    // Not zeroed: `capture` writes the first `depth`, the only ones read.
    let mut frames = [MaybeUninit::<usize>::uninit(); stacks::DEPTH];
    let depth = capture(&mut frames, fp, here());
    // SAFETY: capture initialised frames[..depth] (depth <= DEPTH).
    let frames = unsafe { core::slice::from_raw_parts(frames.as_ptr() as *const usize, depth) };
    let (p, zeroed) = crate::large::alloc_sample(n, align);
    if !p.is_null() {
        if zero && !zeroed {
            // SAFETY: a fresh block of at least n bytes.
            unsafe { core::ptr::write_bytes(p, 0, n) };
        }
        let (bytes, blocks) = weight(n, mean);
        if let Some(tag) = stacks::record(frames, bytes, blocks) {
            // SAFETY: `alloc_sample` just returned p, a live large block
            // not yet handed out.
            unsafe { crate::large::set_sample(p, tag, bytes, blocks) };
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
    frames: &'a mut [MaybeUninit<usize>; stacks::DEPTH],
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
        self.frames[self.depth].write(ip);
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

/// Where a DWARF walk starts (x86-64): this point of the caller of
/// `capture`, whose frame stays live during it.
#[cfg(target_arch = "x86_64")]
type Here = unwind::Regs;
#[cfg(not(target_arch = "x86_64"))]
type Here = ();

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn here() -> Here {
    unwind::Regs::here()
}
#[cfg(not(target_arch = "x86_64"))]
fn here() -> Here {}

/// Writes into `frames` the calling thread's return addresses, innermost
/// first, obmem's own dropped; returns how many. `fp` is where a
/// frame-pointer walk starts (`frame_pointer`), `from` a DWARF walk
/// (`here()` in the caller).
#[inline(never)]
fn capture(frames: &mut [MaybeUninit<usize>; stacks::DEPTH], fp: usize, from: Here) -> usize {
    let mut c = Capture {
        frames,
        depth: 0,
        own: own_text(),
    };
    CAPTURES.fetch_add(1, Relaxed);
    let how = UNWIND.load(Relaxed);
    if how == ProfUnwind::Fp as u8 {
        capture_fp(&mut c, fp);
        return c.depth;
    }
    // SAFETY: `from` was taken in our caller, which is still running.
    #[cfg(target_arch = "x86_64")]
    if how == ProfUnwind::Dwarf as u8 && unsafe { unwind::walk(&mut c, from) }.is_ok() {
        return c.depth;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let () = from;
    c.depth = 0;
    LIBGCC_CAPTURES.fetch_add(1, Relaxed);
    // SAFETY: the callback and its argument are valid for the call.
    unsafe { _Unwind_Backtrace(unwind_frame, &raw mut c as *mut core::ffi::c_void) };
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
        if !fp.is_multiple_of(8) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// How often the first block after a start is sampled, over `trials`
    /// threads that each allocated a few blocks of `n` bytes under a
    /// countdown of mean `old` (0: none, a new thread), then start a
    /// profile of mean `mean`.
    fn first_block_sampled(old: usize, mean: usize, n: usize, trials: usize) -> f64 {
        let mut hits = 0;
        let mut rng: [usize; 4] = [0, 0x9e37_79b9_7f4a_7c15, 0, 0];
        let s = &raw mut rng;
        for t in 0..trials {
            // SAFETY: a local slot, used by this thread only.
            unsafe {
                (*s)[LEFT] = 0;
                (*s)[DRAWN_MEAN] = 0;
                let tick = |s: *mut [usize; 4]| {
                    (*s)[LEFT] = ((*s)[LEFT] as isize - n as isize) as usize;
                    ((*s)[LEFT] as isize) < 0
                };
                if old != 0 {
                    for _ in 0..(t % 64) {
                        if tick(s) {
                            decide(s, old);
                        }
                    }
                }
                if tick(s) && decide(s, mean) {
                    hits += 1;
                }
            }
        }
        hits as f64 / trials as f64
    }

    /// The series for small blocks agrees with expm1 where they meet and
    /// below; the weights are n / p and 1 / p.
    #[test]
    fn weight_matches_its_definition() {
        for mean in [4096usize, 524288, 1 << 30] {
            for n in [
                1usize,
                16,
                100,
                4096,
                mean / 64 - 1,
                mean / 64,
                mean,
                4 * mean,
            ] {
                let p = -(-(n.max(1) as f64) / mean as f64).exp_m1();
                let (bytes, blocks) = weight(n, mean);
                let (eb, ek) = (n.max(1) as f64 / p, stacks::BLOCK_UNIT as f64 / p);
                assert!(
                    (bytes as f64 - eb).abs() <= 0.5 + eb * 1e-9,
                    "{n} of {mean}: {bytes} vs {eb}"
                );
                assert!(
                    (blocks as f64 - ek).abs() <= 0.5 + ek * 1e-9,
                    "{n} of {mean}: {blocks} vs {ek}"
                );
            }
        }
    }

    /// A start, from any state, samples the first block with probability
    /// `1 - exp(-n / mean)` exactly (within 5 standard deviations), as in
    /// the steady state: the estimate is unbiased from the start.
    #[test]
    fn sampling_is_exact_from_a_start() {
        let trials = 200_000;
        for (old, mean, n) in [
            (0, 65536, 4096),         // a new thread
            (262144, 1 << 20, 16384), // the same, at a larger scale
            (65536, 65536, 4096),     // a restart at the same interval
            (16384, 65536, 4096),     // after a profile of a shorter interval
        ] {
            let p = -(-(n as f64) / mean as f64).exp_m1();
            let sd = (p * (1.0 - p) / trials as f64).sqrt();
            let got = first_block_sampled(old, mean, n, trials);
            assert!(
                (got - p).abs() < 5.0 * sd,
                "old {old}, mean {mean}, n {n}: sampled {got:.5}, expected {p:.5} +- {sd:.5}"
            );
        }
    }
}
