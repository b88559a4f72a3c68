//! The C ABI: thin `extern "C"` wrappers over the core modules. Nothing here
//! holds logic beyond argument checks and C conventions (errno, NULL).

pub mod domains;
pub mod gc;
// The C names of glibc's malloc: only when the library replaces it.
#[cfg(feature = "override")]
pub mod glibc;
#[cfg(feature = "override")]
pub mod malloc;
pub mod object;
pub mod profile;
pub mod stats;
pub mod weak;
