//! A multi-threaded Rust program with obmem as its global allocator: four
//! threads churn HashMaps and Vecs, then the program checks, with obmem's
//! statistics, that obmem served them, and that the C library's malloc
//! is still glibc's (obmem is used without its `override` feature).
//! Exits 0 and prints "ok" when every check holds.

use obmem::Obmem;
use std::collections::HashMap;
use std::ffi::CStr;
use std::thread;

#[global_allocator]
static GLOBAL: Obmem = Obmem;

extern "C" {
    // obmem's C API, as a C program would call it.
    fn obm_usable_size(p: *const core::ffi::c_void) -> usize;
    fn obm_print_stats(fd: i32);
}

/// Allocations counted by obmem's size classes.
fn obmem_allocations() -> usize {
    let s = obmem::direct::snapshot();
    s.classes[..s.num_classes]
        .iter()
        .map(|c| c.allocations)
        .sum()
}

/// Word counts of generated text: a HashMap of Strings and a Vec per key.
fn churn(seed: u64) -> usize {
    let mut rng = seed | 1;
    let mut total = 0;
    for _ in 0..20 {
        let mut index: HashMap<String, Vec<u32>> = HashMap::new();
        for pos in 0..2000u32 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            index
                .entry(format!("w{}", rng % 500))
                .or_default()
                .push(pos);
        }
        total += index.values().map(Vec::len).sum::<usize>();
    }
    total
}

/// The file defining the symbol `name` as the dynamic linker resolves it.
fn defined_in(name: &CStr) -> String {
    // SAFETY: dlsym and dladdr only read the C strings and fill `info`.
    unsafe {
        let sym = libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr());
        let mut info: libc::Dl_info = std::mem::zeroed();
        if sym.is_null() || libc::dladdr(sym, &mut info) == 0 || info.dli_fname.is_null() {
            return String::from("?");
        }
        CStr::from_ptr(info.dli_fname)
            .to_string_lossy()
            .into_owned()
    }
}

fn main() {
    let before = obmem_allocations();
    let threads: Vec<_> = (0..4u64)
        .map(|t| thread::spawn(move || churn(t + 1)))
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("a churn thread panicked"), 20 * 2000);
    }
    let counted = obmem_allocations() - before;
    println!("obmem served {counted} allocations of the four threads");
    // Each round inserts 2000 Strings (format!) into 500 keys' Vecs.
    assert!(
        counted >= 4 * 20 * 2000,
        "obmem counted only {counted} allocations"
    );

    let v: Vec<u8> = Vec::with_capacity(600);
    // obmem's 640-byte class (the request under memcheck, which tracks each
    // block); obm_usable_size aborts for a pointer obmem never returned.
    // SAFETY: a live block of the global allocator, which is obmem.
    let usable = unsafe { obm_usable_size(v.as_ptr().cast()) };
    let memcheck = std::env::var("LD_PRELOAD").is_ok_and(|v| v.contains("vgpreload_memcheck"));
    assert_eq!(usable, if memcheck { 600 } else { 640 });

    for name in [c"malloc", c"free", c"mallopt"] {
        let lib = defined_in(name);
        println!("{} is defined in {lib}", name.to_str().unwrap_or("?"));
        assert!(lib.contains("libc.so"), "{name:?} is not glibc's: {lib}");
    }
    // SAFETY: writes the statistics table to stdout.
    unsafe { obm_print_stats(1) };
    println!("ok");
}
