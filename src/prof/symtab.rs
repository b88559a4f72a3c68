//! Names of functions `dladdr` cannot name: static functions, which only
//! the file's full symbol table (`.symtab`, kept unless the file was
//! stripped) lists. Used when a profile is dumped, never while sampling.
//! Files are mapped read-only (no allocation), a few at a time, and
//! unmapped when the dump ends.

use core::ffi::{c_char, CStr};

/// Files kept mapped during one dump.
const FILES: usize = 8;

#[derive(Clone, Copy)]
struct File {
    /// The module's load address (dladdr's `dli_fbase`); 0: free slot.
    base: usize,
    map: *const u8,
    len: usize,
}

pub struct Symtab {
    files: [File; FILES],
    next: usize,
}

const NONE: File = File {
    base: 0,
    map: core::ptr::null(),
    len: 0,
};

fn read<T: Copy>(f: &File, off: usize) -> Option<T> {
    if off.checked_add(core::mem::size_of::<T>())? > f.len {
        return None;
    }
    // SAFETY: in bounds of the mapping (checked); unaligned read.
    Some(unsafe { (f.map.add(off) as *const T).read_unaligned() })
}

impl Symtab {
    pub const fn new() -> Self {
        Symtab {
            files: [NONE; FILES],
            next: 0,
        }
    }

    fn file(&mut self, base: usize, path: *const c_char) -> Option<File> {
        if let Some(f) = self
            .files
            .iter()
            .find(|f| f.base == base && !f.map.is_null())
        {
            return Some(*f);
        }
        // SAFETY: dladdr's file name is NUL-terminated.
        let (map, len) = unsafe { crate::os::map_file(path) }?;
        let slot = &mut self.files[self.next % FILES];
        self.next += 1;
        if !slot.map.is_null() {
            // SAFETY: our mapping, no longer referenced.
            unsafe { crate::os::unmap(slot.map as *mut u8, slot.len) };
        }
        *slot = File { base, map, len };
        Some(*slot)
    }

    /// The name of the function containing `pc` in the module loaded at
    /// `base` from `path`, if the file's symbol table has one.
    pub fn lookup(&mut self, base: usize, path: *const c_char, pc: usize) -> Option<&CStr> {
        let f = self.file(base, path)?;
        if read::<[u8; 4]>(&f, 0)? != *b"\x7fELF" || read::<u8>(&f, 4)? != 2 {
            return None; // not a 64-bit ELF file
        }
        // Symbols of an executable (ET_EXEC) are absolute addresses.
        let target = if read::<u16>(&f, 16)? == 2 {
            pc
        } else {
            pc - base
        };
        let shoff = read::<u64>(&f, 0x28)? as usize;
        let shentsize = read::<u16>(&f, 0x3a)? as usize;
        let shnum = read::<u16>(&f, 0x3c)? as usize;
        for i in 0..shnum {
            let sh = shoff + i * shentsize;
            if read::<u32>(&f, sh + 4)? != 2 {
                continue; // SHT_SYMTAB only
            }
            let (off, size) = (
                read::<u64>(&f, sh + 0x18)? as usize,
                read::<u64>(&f, sh + 0x20)? as usize,
            );
            let link = read::<u32>(&f, sh + 0x28)? as usize;
            let strtab = read::<u64>(&f, shoff + link * shentsize + 0x18)? as usize;
            for s in (off..off + size).step_by(24) {
                let info = read::<u8>(&f, s + 4)?;
                let value = read::<u64>(&f, s + 8)? as usize;
                let len = read::<u64>(&f, s + 16)? as usize;
                if info & 0xf == 2 && value <= target && target < value + len {
                    let name = strtab + read::<u32>(&f, s)? as usize;
                    if name >= f.len {
                        return None;
                    }
                    // SAFETY: a string in the mapping, which stays mapped
                    // while `self` is borrowed (slots change only in `file`).
                    return Some(unsafe { CStr::from_ptr(f.map.add(name) as *const c_char) });
                }
            }
        }
        None
    }
}

impl Drop for Symtab {
    fn drop(&mut self) {
        for f in &self.files {
            if !f.map.is_null() {
                // SAFETY: our mappings; no name handed out outlives the borrow.
                unsafe { crate::os::unmap(f.map as *mut u8, f.len) };
            }
        }
    }
}
