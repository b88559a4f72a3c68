//! Writing a profile: folded stacks (`outer;...;inner <live bytes>`, the
//! input of flamegraph.pl, inferno and speedscope) or a text report of the
//! top stacks by live bytes. Frames are named by `dladdr` (the symbol, or
//! `library+0xoffset` when the address has none). Nothing is allocated:
//! the output goes through a buffer on the stack.

use core::ffi::{c_char, c_int, CStr};
use core::fmt::{self, Write};

use super::symtab::Symtab;
use crate::os;
use crate::report::Decimal;
use crate::stacks::{self, Row, BLOCK_UNIT};

pub(crate) const FOLDED: c_int = 0;
pub(crate) const TEXT: c_int = 1;

/// Stacks the text report lists.
const TOP: usize = 25;

/// Formats into a byte slice, dropping what does not fit.
pub struct SliceWriter<'a> {
    pub buf: &'a mut [u8],
    pub len: usize,
}

impl Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// A buffered writer to a file descriptor that remembers the first error.
struct FdWriter {
    fd: i32,
    buf: [u8; 8192],
    len: usize,
    /// The errno of the first failed write.
    error: Option<i32>,
}

impl FdWriter {
    fn flush(&mut self) {
        if self.error.is_none()
            && self.len > 0
            && !os::write_checked(self.fd, &self.buf[..self.len])
        {
            self.error = Some(os::errno());
        }
        self.len = 0;
    }
}

impl Write for FdWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut b = s.as_bytes();
        while !b.is_empty() {
            if self.len == self.buf.len() {
                self.flush();
            }
            let n = b.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
            self.len += n;
            b = &b[n..];
        }
        Ok(())
    }
}

/// Writes the name of the code at return address `ip`: its dynamic symbol
/// (dladdr), else its symbol in the file's `.symtab` (static functions),
/// else `library+0xoffset`, else the address; `;` and spaces (which the
/// folded format reserves) become `_`.
fn write_frame(w: &mut impl Write, syms: &mut Symtab, ip: usize) {
    // The call instruction, not the one after it (which may be in the
    // next function when the call was the last instruction).
    let pc = ip.saturating_sub(1);
    let mut info = libc::Dl_info {
        dli_fname: core::ptr::null(),
        dli_fbase: core::ptr::null_mut(),
        dli_sname: core::ptr::null(),
        dli_saddr: core::ptr::null_mut(),
    };
    // SAFETY: dladdr only reads the loader's tables; info is writable.
    let found = unsafe { libc::dladdr(pc as *const libc::c_void, &mut info) } != 0;
    let clean = |w: &mut dyn Write, p: *const c_char| {
        // SAFETY: dladdr's strings are NUL-terminated and live as long as
        // the module is loaded.
        let s = unsafe { CStr::from_ptr(p) }.to_bytes();
        for &c in s {
            let c = if c == b';' || c == b' ' || !c.is_ascii_graphic() {
                b'_'
            } else {
                c
            };
            let _ = w.write_char(c as char);
        }
    };
    if found && !info.dli_sname.is_null() {
        clean(w, info.dli_sname);
        return;
    }
    if found && !info.dli_fname.is_null() {
        if let Some(name) = syms.lookup(info.dli_fbase as usize, info.dli_fname, pc) {
            clean(w, name.as_ptr());
            return;
        }
        // SAFETY: as above.
        let path = unsafe { CStr::from_ptr(info.dli_fname) }.to_bytes();
        let base = path.rsplit(|&c| c == b'/').next().unwrap_or(path);
        for &c in base {
            let c = if c == b';' || c == b' ' { b'_' } else { c };
            let _ = w.write_char(c as char);
        }
        let _ = write!(w, "+{:#x}", pc - info.dli_fbase as usize);
        return;
    }
    let _ = write!(w, "{pc:#x}");
}

/// The name of a row without frames.
fn no_frames(r: &Row) -> &'static str {
    if r.overflow {
        "[stacks beyond the profile's table]"
    } else {
        "[no stack]"
    }
}

fn folded(w: &mut FdWriter) {
    let mut syms = Symtab::new();
    stacks::for_each(|r| {
        if r.live_bytes <= 0 {
            return;
        }
        if r.depth == 0 {
            let _ = w.write_str(no_frames(r));
        }
        for i in (0..r.depth).rev() {
            write_frame(w, &mut syms, r.frames[i]);
            if i > 0 {
                let _ = w.write_char(';');
            }
        }
        let _ = writeln!(w, " {}", r.live_bytes);
    });
}

fn text(w: &mut FdWriter) {
    let mut syms = Symtab::new();
    let (mut live, mut blocks, mut alloc, mut stacks) = (0i64, 0i64, 0u64, 0usize);
    stacks::for_each(|r| {
        live += r.live_bytes.max(0);
        blocks += r.live_blocks.max(0);
        alloc += r.alloc_bytes;
        stacks += 1;
    });
    let _ = writeln!(
        w,
        "obmem heap profile: one sample per {} bytes on average; {} stacks",
        super::mean(),
        stacks
    );
    let _ = writeln!(
        w,
        "estimated live: {} bytes in {} blocks; allocated since the start: {} bytes",
        live,
        blocks / BLOCK_UNIT as i64,
        alloc
    );
    let (captures, by_libgcc) = super::captures();
    let _ = writeln!(
        w,
        "stacks captured since the process started: {captures}, {by_libgcc} of them by libgcc's unwinder"
    );
    // The top stacks by live bytes, by repeated selection (no buffer).
    let mut last: Option<(i64, usize)> = None;
    for rank in 1..=TOP {
        let mut best: Option<(i64, usize, Row)> = None;
        let mut i = 0usize;
        stacks::for_each(|r| {
            let key = (r.live_bytes, usize::MAX - i);
            i += 1;
            if r.live_bytes <= 0 || last.is_some_and(|l| key >= l) {
                return;
            }
            if best.as_ref().is_none_or(|b| key > (b.0, b.1)) {
                best = Some((key.0, key.1, *r));
            }
        });
        let Some((lb, k, r)) = best else { break };
        last = Some((lb, k));
        let pct = Decimal::rounded(lb as u128 * 100, live.max(1) as u128, 1);
        let _ = writeln!(
            w,
            "\n#{rank}: {lb} bytes live ({pct}%) in {} blocks; {} bytes allocated",
            r.live_blocks / BLOCK_UNIT as i64,
            r.alloc_bytes
        );
        if r.depth == 0 {
            let _ = writeln!(w, "    {}", no_frames(&r));
        }
        for &ip in &r.frames[..r.depth] {
            let _ = w.write_str("    ");
            write_frame(w, &mut syms, ip);
            let _ = w.write_char('\n');
        }
    }
}

/// Writes the current (or last) profile to `path` in `format`. False with
/// errno set (EINVAL for a bad format, else open's or write's) on failure.
pub fn dump_path(path: *const c_char, format: c_int) -> bool {
    if path.is_null() || (format != FOLDED && format != TEXT) {
        os::set_errno(libc::EINVAL);
        return false;
    }
    // SAFETY: a NUL-terminated path, per obm_prof_dump's contract.
    let fd = unsafe { os::create_file(path) };
    if fd < 0 {
        return false;
    }
    let mut w = FdWriter {
        fd,
        buf: [0; 8192],
        len: 0,
        error: None,
    };
    if format == FOLDED {
        folded(&mut w);
    } else {
        text(&mut w);
    }
    w.flush();
    let closed = os::close(fd);
    if let Some(e) = w.error {
        os::set_errno(e);
        return false;
    }
    closed
}
