#[path = "../workload.rs"]
mod workload;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    workload::run("mimalloc");
}
