//! Messages to stderr without allocating: a fixed buffer that implements
//! `core::fmt::Write`, and the fatal-error path every misuse report ends in.
//!
//! The lowest module of the crate, so that every other one can report: it
//! makes its own `write(2)` and `abort(3)` calls rather than going through
//! `os`.

use core::fmt::{self, Write};

/// A line buffer on the stack; output past its capacity is dropped.
pub struct LineBuf {
    buf: [u8; 1024],
    len: usize,
}

impl LineBuf {
    pub const fn new() -> Self {
        LineBuf {
            buf: [0; 1024],
            len: 0,
        }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    pub fn flush_to(&mut self, fd: i32) {
        write_all(fd, self.as_bytes());
        self.len = 0;
    }
}

impl Default for LineBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Writes one formatted message to stderr.
pub fn eprint(args: fmt::Arguments<'_>) {
    let mut b = LineBuf::new();
    let _ = b.write_fmt(args);
    b.flush_to(2);
}

/// Prints `obmem: <message>` and aborts.
#[cold]
#[inline(never)]
pub fn fatal(args: fmt::Arguments<'_>) -> ! {
    let mut b = LineBuf::new();
    let _ = b.write_str("obmem: ");
    let _ = b.write_fmt(args);
    let _ = b.write_str("\n");
    b.flush_to(2);
    abort()
}

/// The glibc-style report for a pointer obmem never returned.
#[cold]
#[inline(never)]
pub fn invalid_pointer(func: &str, p: *const u8) -> ! {
    fatal(format_args!(
        "{func}(): invalid pointer {p:p} (obmem never returned it)"
    ))
}

/// Writes all of `bytes` to `fd`, ignoring errors (used for reports).
pub fn write_all(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid slice for the length passed.
        let n = unsafe { libc::write(fd, bytes.as_ptr() as *const libc::c_void, bytes.len()) };
        if n <= 0 {
            // SAFETY: __errno_location returns the calling thread's errno slot.
            if n < 0 && unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// The C library's panic handler (`c-library` on x86-64, built without
/// std). A panic is a bug in obmem, and obmem never unwinds (`panic =
/// "abort"`): it says where, as std's handler would, and aborts.
#[cfg(all(feature = "c-library", not(test), target_arch = "x86_64"))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fatal(format_args!("internal error: {info}"))
}

/// The personality routine core's prebuilt code names in its unwind tables
/// (core is compiled for unwinding; std would provide the routine). Only an
/// unwinder reaches it, and nothing may unwind through obmem's frames:
/// refusing (`_URC_FATAL_PHASE1_ERROR`) makes a C++ exception thrown
/// across obmem end the program instead of running corrupt cleanups.
#[cfg(all(feature = "c-library", not(test), target_arch = "x86_64"))]
#[no_mangle]
extern "C" fn rust_eh_personality() -> i32 {
    3
}

/// Ends the process as glibc does on heap corruption.
pub fn abort() -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}
