//! The calling thread's heap pointer, the object layer's trashcan state
//! and the heap profiler's sampling state, in native TLS.
//!
//! On x86-64 the slots are defined in assembly and reached with the
//! initial-exec model (`mov reg, [rip + sym@GOTTPOFF]; mov reg, fs:[reg]`):
//! two loads, where Rust's `thread_local!` in a shared library goes through
//! a call to `__tls_get_addr` on every malloc, free and deallocation.
//! Stable Rust cannot choose the TLS model, hence the assembly. The cost is
//! a static TLS reservation of 56 bytes, which glibc has room for also when
//! the library is dlopen'ed. Other targets use `thread_local!`.
//!
//! A thread without a heap reads the address of the placeholder heap
//! `heap::NO_HEAP`, never null: the slot's initial value in the TLS image
//! (`.tdata`) is that address, relocated by the dynamic loader before any
//! thread copies the image. So the fast paths need no null test.

use crate::heap::Heap;

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::Heap;

    core::arch::global_asm!(
        ".section .tdata,\"awT\",@progbits",
        ".globl obmem_tls_heap",
        ".hidden obmem_tls_heap",
        ".p2align 3",
        ".type obmem_tls_heap,@object",
        ".size obmem_tls_heap,8",
        "obmem_tls_heap:",
        ".quad {no_heap}",
        ".text",
        no_heap = sym crate::heap::NO_HEAP,
    );

    core::arch::global_asm!(
        // Global but hidden: with several codegen units (a non-LTO build) the
        // references sit in other object files; hidden keeps it out of the
        // dynamic symbol table.
        ".section .tbss,\"awT\",@nobits",
        ".globl obmem_tls_trash",
        ".hidden obmem_tls_trash",
        ".p2align 3",
        ".type obmem_tls_trash,@object",
        ".size obmem_tls_trash,16",
        "obmem_tls_trash:",
        ".zero 16",
        ".text",
    );

    core::arch::global_asm!(
        ".section .tbss,\"awT\",@nobits",
        ".globl obmem_tls_prof",
        ".hidden obmem_tls_prof",
        ".p2align 3",
        ".type obmem_tls_prof,@object",
        ".size obmem_tls_prof,32",
        "obmem_tls_prof:",
        ".zero 32",
        ".text",
    );

    /// This thread's 32 zero-initialised bytes for the heap profiler.
    #[inline(always)]
    pub fn prof_slot() -> *mut [usize; 4] {
        let v: *mut [usize; 4];
        // SAFETY: as in `trash_slot`.
        unsafe {
            core::arch::asm!(
                "mov {v}, qword ptr fs:[0]",
                "add {v}, qword ptr [rip + obmem_tls_prof@GOTTPOFF]",
                v = out(reg) v,
                options(nostack, readonly, pure),
            );
        }
        v
    }

    /// This thread's 16 zero-initialised bytes for the trashcan.
    #[inline(always)]
    pub fn trash_slot() -> *mut [usize; 2] {
        let v: *mut [usize; 2];
        // SAFETY: fs:0 holds the thread pointer (the TCB's self-pointer);
        // adding the slot's offset from the GOT gives its address.
        unsafe {
            core::arch::asm!(
                "mov {v}, qword ptr fs:[0]",
                "add {v}, qword ptr [rip + obmem_tls_trash@GOTTPOFF]",
                v = out(reg) v,
                options(nostack, readonly, pure),
            );
        }
        v
    }

    #[inline(always)]
    pub fn get() -> *mut Heap {
        let v: *mut Heap;
        // SAFETY: reads this thread's 8-byte TLS slot defined above; the
        // GOT entry holds its offset from the thread pointer (fs base).
        unsafe {
            core::arch::asm!(
                "mov {v}, qword ptr [rip + obmem_tls_heap@GOTTPOFF]",
                "mov {v}, qword ptr fs:[{v}]",
                v = out(reg) v,
                options(nostack, readonly, preserves_flags, pure),
            );
        }
        v
    }

    #[inline(always)]
    pub fn set(h: *mut Heap) {
        // SAFETY: writes this thread's TLS slot, as in `get`.
        unsafe {
            core::arch::asm!(
                "mov {t}, qword ptr [rip + obmem_tls_heap@GOTTPOFF]",
                "mov qword ptr fs:[{t}], {h}",
                t = out(reg) _,
                h = in(reg) h,
                options(nostack, preserves_flags),
            );
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use super::Heap;
    use core::cell::Cell;

    thread_local! {
        static CURRENT: Cell<*mut Heap> = const { Cell::new(core::ptr::null_mut()) };
    }

    #[inline(always)]
    pub fn get() -> *mut Heap {
        let h = CURRENT.with(|c| c.get());
        if h.is_null() {
            crate::heap::no_heap()
        } else {
            h
        }
    }

    #[inline(always)]
    pub fn set(h: *mut Heap) {
        CURRENT.with(|c| c.set(h))
    }

    thread_local! {
        static TRASH: core::cell::UnsafeCell<[usize; 2]> =
            const { core::cell::UnsafeCell::new([0; 2]) };
    }

    #[inline(always)]
    pub fn trash_slot() -> *mut [usize; 2] {
        TRASH.with(|t| t.get())
    }

    thread_local! {
        static PROF: core::cell::UnsafeCell<[usize; 4]> =
            const { core::cell::UnsafeCell::new([0; 4]) };
    }

    #[inline(always)]
    pub fn prof_slot() -> *mut [usize; 4] {
        PROF.with(|t| t.get())
    }
}

pub use imp::{get, prof_slot, set, trash_slot};
