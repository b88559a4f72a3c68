//! The exported C functions: thin wrappers over the core modules.

pub mod gc;
pub mod object;
