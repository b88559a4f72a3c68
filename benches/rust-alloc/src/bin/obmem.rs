#[path = "../workload.rs"]
mod workload;

#[global_allocator]
static GLOBAL: obmem::Obmem = obmem::Obmem;

fn main() {
    workload::run("obmem");
}
