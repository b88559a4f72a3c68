// Export mimalloc's malloc/free/... from the cdylib: rustc hides every
// symbol that is not a Rust #[no_mangle] item with a version script of its
// own; ld merges exports.map with it, and explicit names beat its `local: *`.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rustc-link-arg-cdylib=-Wl,--version-script={dir}/exports.map");
    println!("cargo:rerun-if-changed=exports.map");
}
