#[path = "../workload.rs"]
mod workload;

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

fn main() {
    workload::run("system");
}
