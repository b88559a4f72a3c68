//! Stack capture from the DWARF call-frame information (`.eh_frame`) with
//! each return address's rule cached: the default unwinder of the heap
//! profiler on x86-64 (BENCHMARKS.md, issue 14: about 35 times cheaper
//! per sample than libgcc's `_Unwind_Backtrace`, which finds each frame's
//! FDE and runs its CFA program anew every time).
//!
//! On x86-64, the rule compilers emit at a call site is almost always one
//! of a few: the caller's stack pointer (the CFA) is `rsp + N` or
//! `rbp + N`, the return address is at CFA - 8, and the caller's `rbp` is
//! either unchanged or saved at CFA - M. Such a rule packs with its return
//! address into one 64-bit word of a direct-mapped table, written and read
//! atomically, so threads share it without a lock. A miss finds the FDE
//! with libgcc's `_Unwind_Find_FDE` (what `_Unwind_Backtrace` uses, so
//! nothing new is relied on), and interprets the CIE's and FDE's CFA
//! programs up to the call site. Anything else (a CFA or register rule
//! given by a DWARF expression, as for signal frames or stack
//! realignment, an unknown op, a stack whose bounds are unknown) makes the
//! whole capture fall back to `_Unwind_Backtrace`, which gives the frames
//! it always gave.
//!
//! Reads stay inside the thread's stack: between the stack pointer at the
//! start and the stack's top (the thread pointer for threads glibc
//! created, whose descriptor sits above their stack; glibc's
//! `__libc_stack_end` for the main thread; neither: libgcc's unwinder),
//! and each step must go strictly up the stack and stay 8-byte aligned;
//! the walk stops at the first step that does not. On a stack a coroutine
//! library switched to, below the thread's own, the top is only an upper
//! bound, and the walk relies on the call-frame information as libgcc's
//! does (which checks nothing).

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::Capture;

/// The caller's registers from a frame's: its CFA is `rbp + cfa_off`
/// (`cfa_rbp`) or `rsp + cfa_off`; its `rbp` is saved at CFA - `rbp_at`
/// (0: unchanged); the return address at CFA - 8. `last`: the outermost
/// frame (the return address is undefined).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Rule {
    cfa_rbp: bool,
    cfa_off: usize,
    rbp_at: usize,
    last: bool,
}

/// The walk cannot be done here: fall back to libgcc's unwinder.
pub(super) struct Unsupported;

// The cache: direct-mapped, each slot a return address (above bit 17) and
// its rule (below), 0 when empty.
const SLOTS_LOG2: u32 = 12;
static CACHE: [AtomicU64; 1 << SLOTS_LOG2] = [const { AtomicU64::new(0) }; 1 << SLOTS_LOG2];
const KEY_SHIFT: u32 = 17;
const OFF_BITS: u32 = 9; // cfa_off / 8
const AT_BITS: u32 = 6; // rbp_at / 8

fn pack(ip: usize, r: Rule) -> Option<u64> {
    let (off, at) = (r.cfa_off / 8, r.rbp_at / 8);
    if ip >> (64 - KEY_SHIFT) != 0 || off >> OFF_BITS != 0 || at >> AT_BITS != 0 {
        return None;
    }
    Some(
        (ip as u64) << KEY_SHIFT
            | (r.cfa_rbp as u64) << (OFF_BITS + AT_BITS + 1)
            | (off as u64) << (AT_BITS + 1)
            | (at as u64) << 1
            | r.last as u64,
    )
}

fn unpack(v: u64) -> Rule {
    Rule {
        cfa_rbp: v >> (OFF_BITS + AT_BITS + 1) & 1 != 0,
        cfa_off: (v >> (AT_BITS + 1) & ((1 << OFF_BITS) - 1)) as usize * 8,
        rbp_at: (v >> 1 & ((1 << AT_BITS) - 1)) as usize * 8,
        last: v & 1 != 0,
    }
}

fn slot(ip: usize) -> &'static AtomicU64 {
    let h = (ip as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SLOTS_LOG2);
    &CACHE[h as usize]
}

/// The rule of the frame whose code is at `ip - 1` (a return address, or
/// just past the current instruction): None if no FDE covers it (the end
/// of the stack, as for libgcc).
fn rule_of(ip: usize) -> Result<Option<Rule>, Unsupported> {
    let s = slot(ip);
    let v = s.load(Relaxed);
    if v >> KEY_SHIFT == ip as u64 {
        return Ok(Some(unpack(v)));
    }
    let r = cfi::rule_at(ip - 1)?;
    if let Some(v) = r.and_then(|r| pack(ip, r)) {
        s.store(v, Relaxed);
    }
    Ok(r)
}

/// The highest address of the calling thread's stack, if known.
fn stack_top(sp: usize) -> Option<usize> {
    let tp: usize;
    // SAFETY: fs:0 holds the thread pointer (the TCB's self-pointer).
    unsafe {
        core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags))
    };
    if sp < tp {
        return Some(tp);
    }
    extern "C" {
        // glibc's: the main thread's stack pointer at process start.
        static __libc_stack_end: usize;
    }
    // SAFETY: set by the loader before any code of ours runs, then constant.
    let end = unsafe { __libc_stack_end };
    (sp < end).then_some(end)
}

/// Where a walk starts: the address just past an instruction of a
/// function, and the registers rsp and rbp there.
#[derive(Clone, Copy)]
pub(super) struct Regs {
    ip: usize,
    sp: usize,
    fp: usize,
}

impl Regs {
    /// This point of the function this is inlined into.
    #[inline(always)]
    pub(super) fn here() -> Regs {
        let (ip, sp, fp): (usize, usize, usize);
        // SAFETY: reads registers; `ip` is the address just past the `lea`,
        // where `sp` is the value of rsp.
        unsafe {
            core::arch::asm!(
                "lea {ip}, [rip]",
                "mov {sp}, rsp",
                "mov {fp}, rbp",
                ip = out(reg) ip,
                sp = out(reg) sp,
                fp = out(reg) fp,
                options(nomem, nostack, preserves_flags),
            )
        };
        Regs { ip, sp, fp }
    }
}

/// Pushes the return addresses of the calling thread's stack from `from`
/// (the frame it was taken in first) into `c`, innermost first, up to the
/// end of the stack or of `c`. Starting in the sampling function rather
/// than here skips the frames in between (`capture`, `walk`).
///
/// # Safety
/// `from` was taken (`Regs::here`) in a function still running: a caller
/// of `walk`, on this thread.
#[inline(never)]
pub(super) unsafe fn walk(c: &mut Capture, from: Regs) -> Result<(), Unsupported> {
    let Regs {
        mut ip,
        mut sp,
        mut fp,
    } = from;
    let top = stack_top(sp).ok_or(Unsupported)?;
    loop {
        let Some(r) = rule_of(ip)? else {
            return Ok(());
        };
        if r.last {
            return Ok(());
        }
        let cfa = if r.cfa_rbp { fp } else { sp }.wrapping_add(r.cfa_off);
        if cfa <= sp || cfa > top || !cfa.is_multiple_of(8) || r.rbp_at > cfa - sp {
            return Ok(()); // not a step up this stack: stop
        }
        // SAFETY: sp < cfa <= top, within the thread's stack, and
        // cfa - rbp_at >= sp (checked), so both words lie in it.
        unsafe {
            ip = *((cfa - 8) as *const usize);
            if r.rbp_at != 0 {
                fp = *((cfa - r.rbp_at) as *const usize);
            }
        }
        sp = cfa;
        if !c.push(ip) {
            return Ok(());
        }
    }
}

/// Finding and interpreting the call-frame information.
/// cbindgen:ignore
mod cfi {
    use super::{Rule, Unsupported};

    #[repr(C)]
    struct DwarfEhBases {
        tbase: usize,
        dbase: usize,
        func: usize,
    }

    extern "C" {
        fn _Unwind_Find_FDE(pc: usize, bases: *mut DwarfEhBases) -> *const u8;
    }

    /// Reads `[p, end)` of an `.eh_frame` section.
    #[derive(Clone, Copy)]
    struct Cursor {
        p: usize,
        end: usize,
    }

    impl Cursor {
        fn bytes<const N: usize>(&mut self) -> Result<[u8; N], Unsupported> {
            if self.end - self.p < N {
                return Err(Unsupported);
            }
            // SAFETY: [p, p + N) lies within the entry `_Unwind_Find_FDE`
            // returned (its length bounds `end`), in a loaded module.
            let v = unsafe { core::ptr::read_unaligned(self.p as *const [u8; N]) };
            self.p += N;
            Ok(v)
        }
        fn u8(&mut self) -> Result<u8, Unsupported> {
            Ok(self.bytes::<1>()?[0])
        }
        fn u32(&mut self) -> Result<u32, Unsupported> {
            Ok(u32::from_le_bytes(self.bytes()?))
        }
        fn skip(&mut self, n: usize) -> Result<(), Unsupported> {
            if self.end - self.p < n {
                return Err(Unsupported);
            }
            self.p += n;
            Ok(())
        }
        fn uleb(&mut self) -> Result<u64, Unsupported> {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let b = self.u8()?;
                if shift < 64 {
                    v |= ((b & 0x7f) as u64) << shift;
                }
                shift += 7;
                if b & 0x80 == 0 {
                    return Ok(v);
                }
            }
        }
        fn sleb(&mut self) -> Result<i64, Unsupported> {
            let (mut v, mut shift) = (0i64, 0);
            loop {
                let b = self.u8()?;
                if shift < 64 {
                    v |= ((b & 0x7f) as i64) << shift;
                }
                shift += 7;
                if b & 0x80 == 0 {
                    if shift < 64 && b & 0x40 != 0 {
                        v |= -1i64 << shift;
                    }
                    return Ok(v);
                }
            }
        }
        /// Skips a pointer in encoding `enc` (DW_EH_PE_*).
        fn skip_pointer(&mut self, enc: u8) -> Result<(), Unsupported> {
            if enc == 0xff {
                return Ok(()); // omitted
            }
            match enc & 0x0f {
                0x00 | 0x04 | 0x0c => self.skip(8),
                0x03 | 0x0b => self.skip(4),
                0x02 | 0x0a => self.skip(2),
                0x01 => self.uleb().map(drop),
                0x09 => self.sleb().map(drop),
                _ => Err(Unsupported),
            }
        }
        /// A CIE or FDE from its length field: the cursor over its content.
        fn entry(p: usize) -> Result<Cursor, Unsupported> {
            // SAFETY: p is the start of an entry of a loaded `.eh_frame`.
            let len = unsafe { core::ptr::read_unaligned(p as *const u32) };
            if len == 0 || len == u32::MAX {
                return Err(Unsupported); // a terminator, or a 64-bit length
            }
            Ok(Cursor {
                p: p + 4,
                end: p + 4 + len as usize,
            })
        }
    }

    const RBP: u64 = 6;
    const RSP: u64 = 7;
    const RA: u64 = 16;

    /// How a register of the caller is found (the registers we track).
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Reg {
        Same,
        At(i64),
        Undefined,
    }

    #[derive(Clone, Copy)]
    struct Row {
        cfa_reg: u64,
        cfa_off: i64,
        rbp: Reg,
        ra: Reg,
    }

    impl Row {
        fn set(&mut self, reg: u64, r: Reg) -> Result<(), Unsupported> {
            match reg {
                RBP => self.rbp = r,
                RA => self.ra = r,
                RSP => return Err(Unsupported),
                _ => {} // a register we do not restore
            }
            Ok(())
        }
        fn get(&self, reg: u64) -> Reg {
            match reg {
                RBP => self.rbp,
                RA => self.ra,
                _ => Reg::Same,
            }
        }
    }

    /// The CIE's fields the FDE's program needs.
    struct Cie {
        /// A 'z' augmentation: FDEs carry augmentation data too.
        augmented: bool,
        code_align: u64,
        data_align: i64,
        fde_enc: u8,
        init: Cursor,
    }

    fn parse_cie(p: usize) -> Result<Cie, Unsupported> {
        let mut c = Cursor::entry(p)?;
        if c.u32()? != 0 {
            return Err(Unsupported); // not a CIE
        }
        let version = c.u8()?;
        let mut aug = [0u8; 8];
        let mut n = 0;
        loop {
            let b = c.u8()?;
            if b == 0 {
                break;
            }
            if n == aug.len() {
                return Err(Unsupported);
            }
            aug[n] = b;
            n += 1;
        }
        let aug = &aug[..n];
        let code_align = c.uleb()?;
        let data_align = c.sleb()?;
        let ra = if version == 1 {
            c.u8()? as u64
        } else {
            c.uleb()?
        };
        if ra != RA || (!aug.is_empty() && aug[0] != b'z') {
            return Err(Unsupported);
        }
        let mut fde_enc = 0;
        if !aug.is_empty() {
            let len = c.uleb()? as usize;
            let data_end = c.p.checked_add(len).ok_or(Unsupported)?;
            for &a in &aug[1..] {
                match a {
                    b'R' => fde_enc = c.u8()?,
                    b'L' => drop(c.u8()?),
                    b'P' => {
                        let enc = c.u8()?;
                        c.skip_pointer(enc)?;
                    }
                    _ => return Err(Unsupported), // 'S' (a signal frame) and others
                }
            }
            if c.p > data_end {
                return Err(Unsupported);
            }
            c.p = data_end;
        }
        Ok(Cie {
            augmented: !aug.is_empty(),
            code_align,
            data_align,
            fde_enc,
            init: c,
        })
    }

    /// Runs CFA program `c` of the function at `func` on `row`, up to the
    /// row of `pc`; `init` is the row after the CIE's initial program.
    fn run(
        mut c: Cursor,
        cie: &Cie,
        func: usize,
        pc: usize,
        row: &mut Row,
        init: &Row,
    ) -> Result<(), Unsupported> {
        let mut loc = func;
        let mut saved = [*row; 4];
        let mut nsaved = 0;
        let off = |v: i64| v.wrapping_mul(cie.data_align);
        while c.p < c.end {
            let op = c.u8()?;
            let advance = match op >> 6 {
                1 => Some((op & 0x3f) as u64),
                2 => {
                    let v = c.uleb()? as i64;
                    row.set((op & 0x3f) as u64, Reg::At(off(v)))?;
                    None
                }
                3 => {
                    let reg = (op & 0x3f) as u64;
                    row.set(reg, init.get(reg))?;
                    None
                }
                _ => match op {
                    0x00 => None,                                        // nop
                    0x02 => Some(c.u8()? as u64),                        // advance_loc1
                    0x03 => Some(u16::from_le_bytes(c.bytes()?) as u64), // advance_loc2
                    0x04 => Some(c.u32()? as u64),                       // advance_loc4
                    0x05 => {
                        // offset_extended
                        let reg = c.uleb()?;
                        let v = c.uleb()? as i64;
                        row.set(reg, Reg::At(off(v)))?;
                        None
                    }
                    0x06 => {
                        // restore_extended
                        let reg = c.uleb()?;
                        row.set(reg, init.get(reg))?;
                        None
                    }
                    0x07 => {
                        // undefined
                        let reg = c.uleb()?;
                        row.set(reg, Reg::Undefined)?;
                        None
                    }
                    0x08 => {
                        // same_value
                        let reg = c.uleb()?;
                        row.set(reg, Reg::Same)?;
                        None
                    }
                    0x0a => {
                        // remember_state
                        if nsaved == saved.len() {
                            return Err(Unsupported);
                        }
                        saved[nsaved] = *row;
                        nsaved += 1;
                        None
                    }
                    0x0b => {
                        // restore_state
                        if nsaved == 0 {
                            return Err(Unsupported);
                        }
                        nsaved -= 1;
                        *row = saved[nsaved];
                        None
                    }
                    0x0c => {
                        // def_cfa
                        row.cfa_reg = c.uleb()?;
                        row.cfa_off = c.uleb()? as i64;
                        None
                    }
                    0x0d => {
                        // def_cfa_register
                        row.cfa_reg = c.uleb()?;
                        None
                    }
                    0x0e => {
                        // def_cfa_offset
                        row.cfa_off = c.uleb()? as i64;
                        None
                    }
                    0x11 => {
                        // offset_extended_sf
                        let reg = c.uleb()?;
                        let v = c.sleb()?;
                        row.set(reg, Reg::At(off(v)))?;
                        None
                    }
                    0x12 => {
                        // def_cfa_sf
                        row.cfa_reg = c.uleb()?;
                        row.cfa_off = off(c.sleb()?);
                        None
                    }
                    0x13 => {
                        // def_cfa_offset_sf
                        row.cfa_off = off(c.sleb()?);
                        None
                    }
                    0x10 | 0x16 => {
                        // expression, val_expression: fine for a register
                        // we do not restore.
                        let reg = c.uleb()?;
                        let len = c.uleb()? as usize;
                        c.skip(len)?;
                        if matches!(reg, RBP | RSP | RA) {
                            return Err(Unsupported);
                        }
                        None
                    }
                    0x2e => {
                        // GNU_args_size
                        c.uleb()?;
                        None
                    }
                    // set_loc, register, def_cfa_expression, val_offset,
                    // and the rest.
                    _ => return Err(Unsupported),
                },
            };
            if let Some(delta) = advance {
                loc = loc.wrapping_add(delta.wrapping_mul(cie.code_align) as usize);
                if loc > pc {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The rule of the frame executing at `pc`; None if no FDE covers it.
    pub(super) fn rule_at(pc: usize) -> Result<Option<Rule>, Unsupported> {
        let mut bases = DwarfEhBases {
            tbase: 0,
            dbase: 0,
            func: 0,
        };
        // SAFETY: libgcc's lookup; it reads the loaded modules' tables.
        let fde = unsafe { _Unwind_Find_FDE(pc, &mut bases) } as usize;
        if fde == 0 {
            return Ok(None);
        }
        let mut c = Cursor::entry(fde)?;
        let cie_ptr = c.p;
        let cie_off = c.u32()? as usize;
        let cie = parse_cie(cie_ptr.checked_sub(cie_off).ok_or(Unsupported)?)?;
        c.skip_pointer(cie.fde_enc)?; // pc_begin: libgcc decoded it into bases.func
        c.skip_pointer(cie.fde_enc & 0x0f)?; // pc_range
        if cie.augmented {
            let len = c.uleb()? as usize;
            c.skip(len)?;
        }
        let mut row = Row {
            cfa_reg: RSP,
            cfa_off: 8,
            rbp: Reg::Same,
            ra: Reg::At(-8),
        };
        let default = row;
        run(cie.init, &cie, bases.func, usize::MAX, &mut row, &default)?;
        let init = row;
        run(c, &cie, bases.func, pc, &mut row, &init)?;
        let cfa_rbp = match row.cfa_reg {
            RSP => false,
            RBP => true,
            _ => return Err(Unsupported),
        };
        let last = row.ra == Reg::Undefined;
        if !last && row.ra != Reg::At(-8) {
            return Err(Unsupported);
        }
        let rbp_at = match row.rbp {
            Reg::Same | Reg::Undefined => 0,
            Reg::At(o) if o <= -16 && o % 8 == 0 => o.unsigned_abs() as usize,
            Reg::At(_) => return Err(Unsupported),
        };
        if !last && (row.cfa_off < 8 || row.cfa_off % 8 != 0) {
            return Err(Unsupported);
        }
        Ok(Some(Rule {
            cfa_rbp,
            cfa_off: row.cfa_off.max(0) as usize,
            rbp_at,
            last,
        }))
    }
}
