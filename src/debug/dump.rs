//! The debug hooks' reports: one error, named, with the block's address,
//! requested size, serial number and domain, the bad bytes and the first
//! and last bytes of the data (in the spirit of CPython's
//! `_PyObject_DebugDumpAddress`), printed to stderr; then abort.

use super::blocks::Record;
use super::{FORBIDDEN, FRONT, TAIL};
use crate::report::LineBuf;
use core::fmt::Write;

/// How many data bytes the report shows at each end of the block.
const SHOWN: usize = 8;

pub fn domain_name(d: u8) -> &'static str {
    match d {
        0 => "the raw domain (obm_raw_*)",
        1 => "the mem domain (obm_mem_*)",
        _ => "the object domain (obm_object_* and the malloc family)",
    }
}

/// Prints the report and aborts. `error` names the misuse; `detail` is one
/// line of what was found (or empty).
#[cold]
#[inline(never)]
pub fn fail(error: &str, r: &Record, detail: core::fmt::Arguments<'_>) -> ! {
    let mut b = LineBuf::new();
    let _ = writeln!(b, "obmem: debug hooks: {error} (block {:#x})", r.addr);
    b.flush_to(2);
    let _ = writeln!(b, "{detail}");
    if b.as_bytes() != b"\n" {
        b.flush_to(2);
    }
    let _ = writeln!(
        b,
        "    the block: {} bytes requested through {}, serial {}{}",
        r.size,
        domain_name(r.domain),
        r.serial,
        if r.freed { ", freed" } else { "" }
    );
    b.flush_to(2);
    let _ = writeln!(
        b,
        "    {FRONT} bytes before it: {}   (size, domain id, then {} x {FORBIDDEN:#04x})",
        Bytes(r.addr - FRONT, FRONT),
        FRONT - 9
    );
    b.flush_to(2);
    let _ = writeln!(
        b,
        "    {TAIL} bytes after it: {}   (expected {TAIL} x {FORBIDDEN:#04x})",
        Bytes(r.addr + r.size, TAIL)
    );
    b.flush_to(2);
    let first = r.size.min(SHOWN);
    let _ = writeln!(b, "    data begins: {}", Bytes(r.addr, first));
    if r.size > SHOWN {
        let last = (r.size - SHOWN).min(SHOWN);
        let _ = writeln!(
            b,
            "    data ends:   {}",
            Bytes(r.addr + r.size - last, last)
        );
    }
    b.flush_to(2);
    crate::report::abort()
}

/// `n` bytes at `addr`, shown as hex.
pub struct Bytes(pub usize, pub usize);

impl core::fmt::Display for Bytes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for i in 0..self.1 {
            // SAFETY: reports show only bytes of the block's underlying
            // allocation (header, data or tail), which is mapped.
            let v = unsafe { *((self.0 + i) as *const u8) };
            write!(f, "{}{v:02x}", if i == 0 { "" } else { " " })?;
        }
        Ok(())
    }
}
