//! The OS layer: the memory system calls (mmap, munmap, madvise, mremap,
//! getrlimit), errno, the files the profile and the symbol tables need
//! (open, fstat, write, close), /proc/self/maps (read) and the environment
//! (getenv).
//!
//! It is not the only module that calls libc: a call that belongs to one
//! module's concern is made there (the spin lock's `sched_yield` in
//! `sync.rs`, the thread-exit key in `heap/registry.rs`, the gc lock's
//! mutex in `gc/lock.rs`, ...). docs/ARCHITECTURE.md ("Layers") lists every
//! libc call made outside this module; a new one is added there.
//!
//! Every function here is safe to call before anything is initialised and
//! never allocates. Mapping functions return null on failure (errno set by
//! the kernel); callers turn that into ENOMEM.

use crate::config::PAGE_SIZE;
use crate::fault::{self, Site};
use core::ptr;

/// Maps `size` bytes of fresh zeroed read-write memory for `site`, or
/// returns null.
pub fn map(size: usize, site: Site) -> *mut u8 {
    if fault::inject(site, size) {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    }
    map_raw(size)
}

/// `map` without fault injection.
fn map_raw(size: usize) -> *mut u8 {
    map_raw_at(0, size, 0)
}

/// An anonymous mapping of `size` bytes, at `hint` when `flags` has
/// `MAP_FIXED_NOREPLACE` (which never replaces an existing mapping), or
/// null.
fn map_raw_at(hint: usize, size: usize, flags: libc::c_int) -> *mut u8 {
    // SAFETY: an anonymous private mapping, without MAP_FIXED, touches no
    // existing memory.
    let p = unsafe {
        libc::mmap(
            hint as *mut libc::c_void,
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        p as *mut u8
    }
}

/// Maps `size` bytes starting at an address `base` such that `base + offset`
/// is aligned to `align` (a power of two >= PAGE_SIZE; `offset` a multiple
/// of PAGE_SIZE), by over-mapping and trimming both ends.
pub fn map_aligned_at(size: usize, align: usize, offset: usize, site: Site) -> *mut u8 {
    // Counted (and traced) as the over-sized mapping it makes.
    if fault::inject(site, size.saturating_add(align)) {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    }
    map_aligned_raw(size, align, offset)
}

fn map_aligned_raw(size: usize, align: usize, offset: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two() && offset.is_multiple_of(PAGE_SIZE));
    let Some(total) = size.checked_add(align) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    let raw = map_raw(total);
    if raw.is_null() {
        return map_exact_aligned(size, align, offset);
    }
    let start = ((raw as usize + offset + align - 1) & !(align - 1)) - offset;
    let head = start - raw as usize;
    let tail = total - head - size;
    // SAFETY: [raw, raw+head) and [start+size, raw+total) are parts of the
    // mapping just made, which nobody else knows about.
    unsafe {
        if head > 0 {
            unmap(raw, head);
        }
        if tail > 0 {
            unmap((start + size) as *mut u8, tail);
        }
    }
    start as *mut u8
}

/// `map_aligned_raw` without the `align` bytes of slack, which the limit
/// on the address space (RLIMIT_AS) may not leave even though `size`
/// bytes fit. The kernel finds room for `size` bytes: that place is kept
/// if aligned, else the aligned place just below it is tried (the kernel
/// gives the top of the highest gap that fits, so in the hole a freed
/// aligned block left, that is the block's place), else the highest free
/// aligned place below it, found in /proc/self/maps. A slow path: it runs
/// only when the over-sized mapping failed.
fn map_exact_aligned(size: usize, align: usize, offset: usize) -> *mut u8 {
    let p = map_raw(size);
    if p.is_null() || (p as usize + offset).is_multiple_of(align) {
        return p;
    }
    // SAFETY: p is the mapping just made, which nobody else knows about.
    unsafe { unmap(p, size) };
    let p = p as usize;
    let below = ((p + offset) & !(align - 1)).wrapping_sub(offset);
    if below < p {
        let q = map_fixed_noreplace(below, size);
        if !q.is_null() {
            return q;
        }
    }
    let at = highest_free_aligned(p, size, align, offset);
    if at != 0 && at != below {
        let q = map_fixed_noreplace(at, size);
        if !q.is_null() {
            return q;
        }
    }
    set_errno(libc::ENOMEM);
    ptr::null_mut()
}

/// A mapping of `size` bytes at `at` if that range is free, else null.
fn map_fixed_noreplace(at: usize, size: usize) -> *mut u8 {
    let q = map_raw_at(at, size, libc::MAP_FIXED_NOREPLACE);
    if !q.is_null() && q as usize != at {
        // A kernel before 4.17 takes the flag for a hint and may map
        // elsewhere. SAFETY: q is the mapping just made.
        unsafe { unmap(q, size) };
        return ptr::null_mut();
    }
    q
}

/// The highest free place for `size` bytes below `near` whose start plus
/// `offset` is aligned to `align`, from the gaps between the mappings
/// /proc/self/maps lists; 0 if none or unreadable. Not above: mappings
/// grow down from below the stack, whose room to grow is the gap above
/// them.
fn highest_free_aligned(near: usize, size: usize, align: usize, offset: usize) -> usize {
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return 0;
    }
    let mut scan = GapScan::new(near, size, align, offset);
    let mut buf = [0u8; 1024];
    loop {
        // SAFETY: buf is a writable buffer of buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        scan.feed(&buf[..n as usize]);
    }
    close(fd);
    scan.best
}

/// `highest_free_aligned`'s parser, fed the text of /proc/self/maps in
/// pieces: its lines, in address order, start "start-end " in hex.
struct GapScan {
    near: usize,
    size: usize,
    align: usize,
    offset: usize,
    /// 0: in a line's start address, 1: in its end, 2: in the rest.
    field: u8,
    start: usize,
    end: usize,
    prev_end: usize,
    best: usize,
}

impl GapScan {
    fn new(near: usize, size: usize, align: usize, offset: usize) -> Self {
        GapScan {
            near,
            size,
            align,
            offset,
            field: 0,
            start: 0,
            end: 0,
            prev_end: 0,
            best: 0,
        }
    }

    fn feed(&mut self, text: &[u8]) {
        for &c in text {
            let digit = (c as char).to_digit(16).map(|d| d as usize);
            match (self.field, digit) {
                (0, Some(d)) => self.start = self.start.wrapping_mul(16).wrapping_add(d),
                (1, Some(d)) => self.end = self.end.wrapping_mul(16).wrapping_add(d),
                (0, None) => self.field = 1,
                (1, None) => {
                    self.gap_before(self.start);
                    self.prev_end = self.end;
                    self.field = 2;
                }
                _ if c == b'\n' => (self.field, self.start, self.end) = (0, 0, 0),
                _ => {}
            }
        }
    }

    /// Looks at the free gap from the last mapping's end to `start`.
    fn gap_before(&mut self, start: usize) {
        let top = start.saturating_sub(self.size).wrapping_add(self.offset) & !(self.align - 1);
        let Some(at) = top.checked_sub(self.offset) else {
            return;
        };
        if at >= self.prev_end && at + self.size <= start && at < self.near {
            self.best = self.best.max(at);
        }
    }
}

/// Reserves address space aligned to its own size: `max` bytes, or,
/// where the system refuses, the largest of `max / 2`, `max / 4`, ... down
/// to `min` (powers of two). Returns the mapping and its size, or null.
/// The caller does the fault injection (one call, however many sizes are
/// tried).
pub fn reserve_aligned(max: usize, min: usize) -> (*mut u8, usize) {
    let mut size = max;
    while size >= min {
        let p = map_aligned_raw(size, size, 0);
        if !p.is_null() {
            return (p, size);
        }
        size /= 2;
    }
    (ptr::null_mut(), 0)
}

/// Maps `size` bytes aligned to `align`.
pub fn map_aligned(size: usize, align: usize, site: Site) -> *mut u8 {
    map_aligned_at(size, align, 0, site)
}

/// Whether the process has a limit on its address space (RLIMIT_AS), which
/// reserved but unused address space counts against.
pub fn address_space_limited() -> bool {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: rl is a valid out-pointer.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut rl) } == 0;
    ok && rl.rlim_cur != libc::RLIM_INFINITY
}

/// Returns a mapping (or part of one) to the OS.
///
/// # Safety
/// `[p, p+size)` must be mapped by this module and hold no live block.
pub unsafe fn unmap(p: *mut u8, size: usize) {
    // free() must preserve errno, and it may get here.
    let saved = errno();
    // SAFETY: per the contract above.
    unsafe { libc::munmap(p as *mut libc::c_void, size) };
    set_errno(saved);
}

/// Tells the OS the pages of `[p, p+size)` may be dropped; they read as
/// zero afterwards and cost no memory until written.
///
/// # Safety
/// `[p, p+size)` must be mapped by this module and hold no live block.
pub unsafe fn discard(p: *mut u8, size: usize) {
    let saved = errno();
    // SAFETY: per the contract above.
    unsafe { libc::madvise(p as *mut libc::c_void, size, libc::MADV_DONTNEED) };
    set_errno(saved);
}

/// Asks for transparent huge pages in `[p, p+size)` (where the system
/// leaves the choice to programs: THP "madvise" mode); harmless elsewhere.
///
/// # Safety
/// `[p, p+size)` must be a mapping made by this module.
pub unsafe fn advise_huge(p: *mut u8, size: usize) {
    let saved = errno();
    // SAFETY: per the contract; MADV_HUGEPAGE only changes how the kernel backs it.
    unsafe { libc::madvise(p as *mut libc::c_void, size, libc::MADV_HUGEPAGE) };
    set_errno(saved);
}

/// Asks for small pages only in `[p, p+size)`, whatever the system's THP
/// mode (with "always", the kernel would otherwise back it with huge pages).
///
/// # Safety
/// `[p, p+size)` must be a mapping made by this module.
pub unsafe fn advise_no_huge(p: *mut u8, size: usize) {
    let saved = errno();
    // SAFETY: per the contract; MADV_NOHUGEPAGE only changes how the kernel backs it.
    unsafe { libc::madvise(p as *mut libc::c_void, size, libc::MADV_NOHUGEPAGE) };
    set_errno(saved);
}

/// Grows or shrinks a mapping in place; false if the pages after it are taken.
///
/// # Safety
/// `[p, p+old)` must be a mapping made by this module.
pub unsafe fn remap_in_place(p: *mut u8, old: usize, new: usize) -> bool {
    if new > old && fault::inject(Site::LargeGrow, new - old) {
        return false;
    }
    // SAFETY: without MREMAP_MAYMOVE the mapping either changes size in place or not at all.
    let r = unsafe { libc::mremap(p as *mut libc::c_void, old, new, 0) };
    r != libc::MAP_FAILED
}

/// Moves the pages of `[old_p, old_p+old)` to `new_p` (a reserved region of
/// `new` bytes, which it replaces) without copying them.
///
/// # Safety
/// Both regions are mappings made by this module; `new_p` holds nothing live.
pub unsafe fn remap_to(old_p: *mut u8, old: usize, new_p: *mut u8, new: usize) -> bool {
    if fault::inject(Site::LargeMove, new) {
        return false;
    }
    // SAFETY: MREMAP_FIXED replaces the mapping at new_p, which the caller owns.
    let r = unsafe {
        libc::mremap(
            old_p as *mut libc::c_void,
            old,
            new,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            new_p as *mut libc::c_void,
        )
    };
    r != libc::MAP_FAILED
}

#[inline]
pub fn errno() -> i32 {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

#[inline]
pub fn set_errno(e: i32) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e };
}

/// Writes all of `bytes` to `fd`; false (errno set) on an error.
pub fn write_checked(fd: i32, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid slice for the length passed.
        let n = unsafe { libc::write(fd, bytes.as_ptr() as *const libc::c_void, bytes.len()) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            return false;
        }
        bytes = &bytes[n as usize..];
    }
    true
}

/// Creates (or truncates) the file `path` for writing, mode 0644: its
/// descriptor, or -1 with errno set.
///
/// # Safety
/// `path` is a NUL-terminated string.
pub unsafe fn create_file(path: *const core::ffi::c_char) -> i32 {
    // SAFETY: per the contract.
    unsafe {
        libc::open(
            path,
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644 as libc::c_uint,
        )
    }
}

/// Maps the file `path` read-only: its address and size, or None.
///
/// # Safety
/// `path` is a NUL-terminated string.
pub unsafe fn map_file(path: *const core::ffi::c_char) -> Option<(*const u8, usize)> {
    // SAFETY: per the contract; st is plain data filled by fstat.
    unsafe {
        let fd = libc::open(path, libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let mut st: libc::stat = core::mem::zeroed();
        let size = if libc::fstat(fd, &mut st) == 0 {
            st.st_size as usize
        } else {
            0
        };
        let p = if size > 0 {
            libc::mmap(
                ptr::null_mut(),
                size,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                fd,
                0,
            )
        } else {
            libc::MAP_FAILED
        };
        libc::close(fd);
        (p != libc::MAP_FAILED).then_some((p as *const u8, size))
    }
}

/// Closes `fd`; false (errno set) if the kernel reports an error.
pub fn close(fd: i32) -> bool {
    // SAFETY: closing a descriptor has no memory-safety preconditions.
    unsafe { libc::close(fd) == 0 }
}

/// Reads an environment variable without allocating. The bytes live as long
/// as the environment is not modified, which callers tolerate by copying
/// what they need at once.
pub fn getenv(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv takes a NUL-terminated name and returns null or a
    // NUL-terminated string.
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        None
    } else {
        // SAFETY: p is a NUL-terminated string from the environment.
        Some(unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The highest aligned place below `near` in the gaps of a made-up
    /// maps text, fed in pieces that split lines and numbers.
    #[test]
    fn gap_scan_finds_the_highest_aligned_place() {
        let maps = "10000-20000 r-xp 00000000 08:01 1 /bin/x\n\
                    100000-140000 rw-p 00000000 00:00 0\n\
                    1c0000-1d0000 rw-p 00000000 00:00 0 [heap]\n\
                    300000-380000 rw-p 00000000 00:00 0\n\
                    7f0000-800000 rw-p 00000000 00:00 0 [stack]\n";
        let scan = |near, size, align, offset| {
            let mut found = [0; 4];
            for (piece, best) in [1, 7, 64, 4096].into_iter().zip(&mut found) {
                let mut s = GapScan::new(near, size, align, offset);
                maps.as_bytes().chunks(piece).for_each(|c| s.feed(c));
                assert_eq!(s.prev_end, 0x80_0000, "every line read");
                *best = s.best;
            }
            assert!(found.iter().all(|&b| b == found[0]), "{found:x?}");
            found[0]
        };
        // Below the stack, not in the gap above the last mapping.
        assert_eq!(scan(0x7f_0000, 0x1_0000, 0x1_0000, 0), 0x7e_0000);
        // Below `near` only.
        assert_eq!(scan(0x30_0000, 0x1_0000, 0x1_0000, 0), 0x2f_0000);
        assert_eq!(scan(0x30_0000, 0x4_0000, 0x4_0000, 0), 0x2c_0000);
        // An offset: the place starts a page before an aligned address.
        assert_eq!(scan(0x30_0000, 0x1_0000, 0x4_0000, 0x1000), 0x2b_f000);
        // Too big for every gap below 0x300000 but the one from 0x1d0000.
        assert_eq!(scan(0x30_0000, 0x13_0000, 0x1_0000, 0), 0x1d_0000);
        assert_eq!(scan(0x30_0000, 0x14_0000, 0x1_0000, 0), 0);
        // The gap from 0x140000 to 0x1c0000 holds an aligned 0x40000 only at
        // 0x180000, and no aligned 0x80000: the one from 0x20000 does.
        assert_eq!(scan(0x1c_0000, 0x4_0000, 0x4_0000, 0), 0x18_0000);
        assert_eq!(scan(0x1c_0000, 0x8_0000, 0x8_0000, 0), 0x8_0000);
        assert_eq!(scan(0x1c_0000, 0x8_0000, 0x10_0000, 0), 0);
    }
}
