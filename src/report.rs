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

/// `num / den` rounded to `places` decimals, printed without floating
/// point: formatting an `f64` would link core's float printing, about a
/// tenth of the library's code, for two messages.
pub struct Decimal {
    scaled: u128,
    places: u32,
}

impl Decimal {
    /// `den` must not be 0; `num * 10^places` must fit in a `u128` (any
    /// `u64` with up to 9 places does).
    pub fn rounded(num: u128, den: u128, places: u32) -> Decimal {
        let scale = 10u128.pow(places);
        Decimal {
            scaled: (num * scale + den / 2) / den,
            places,
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scale = 10u128.pow(self.places);
        write!(f, "{}", self.scaled / scale)?;
        if self.places > 0 {
            let width = self.places as usize;
            write!(f, ".{:0width$}", self.scaled % scale)?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(d: Decimal) -> std::string::String {
        let mut b = LineBuf::new();
        write!(b, "{d}").unwrap();
        std::string::String::from_utf8(b.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn decimal_rounds_half_up_and_pads_the_fraction() {
        let cases: [(u128, u128, u32, &str); 8] = [
            (12_345, 1_000_000_000, 6, "0.000012"),
            (12_500, 1_000_000_000, 6, "0.000013"),
            (2_500_000_000, 1_000_000_000, 6, "2.500000"),
            (100, 3, 1, "33.3"),
            (200, 3, 1, "66.7"),
            (500, 5, 1, "100.0"),
            (7, 2, 0, "4"),
            (u64::MAX as u128, 1_000_000_000, 9, "18446744073.709551615"),
        ];
        for (num, den, places, want) in cases {
            assert_eq!(shown(Decimal::rounded(num, den, places)), want);
        }
    }
}
