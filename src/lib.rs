//! obmem: CPython's memory management for any C or C++ program.
//! (The design comment is written with the allocator core.)

#![deny(unsafe_op_in_unsafe_fn)]
#![allow(clippy::missing_safety_doc)]

pub mod arena_map;
pub mod config;
pub mod domain;
pub mod ffi;
pub mod gc;
pub mod object;
pub mod os;
pub mod report;
pub mod size_class;
pub mod sync;
