//! Generates `include/obmem.h` from the crate's `extern "C"` items with cbindgen.
//! The header is committed; `make check-header` fails when it is stale.

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    // The soname carries the major version: libobmem.so.0.
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libobmem.so.{major}");
    // Never unloaded: blocks obmem handed out, its fork handlers and its
    // thread-exit destructors outlive a dlclose of the library.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // The heap profiler's stack capture uses libgcc's unwinder; without std
    // (`c-library` on x86-64, lib.rs) nothing links libgcc_s, so the
    // unwinder is linked in.
    let x86_64 = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "x86_64");
    if std::env::var_os("CARGO_FEATURE_C_LIBRARY").is_some() && x86_64 {
        println!("cargo:rustc-cdylib-link-arg=-lgcc_eh");
        // Relative relocations packed (DT_RELR, binutils 2.38 and glibc
        // 2.36), where the linker can: every process start otherwise reads
        // and applies 1,800 of them one by one, most for the placeholder
        // heap's table of pointers (BENCHMARKS.md, eighth session).
        if linker_packs_relocations() {
            println!("cargo:rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs");
        }
    }
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(format!("{crate_dir}/cbindgen.toml"))
        .expect("cbindgen.toml is readable");
    match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            bindings.write_to_file(format!("{crate_dir}/include/obmem.h"));
        }
        // A syntax error is reported by rustc with a better message; keep the old header.
        Err(e) => println!("cargo:warning=cbindgen could not generate obmem.h: {e}"),
    }
}

/// Whether the C compiler (rustc's linker driver) links a shared library
/// with `-z pack-relative-relocs` against this system's C library.
fn linker_packs_relocations() -> bool {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let src = out.join("relr_probe.c");
    if std::fs::write(&src, "static int x; int *p = &x;\n").is_err() {
        return false;
    }
    std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-Wl,-z,pack-relative-relocs", "-o"])
        .arg(out.join("relr_probe.so"))
        .arg(&src)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
