#!/usr/bin/env bash
# benches/rust_alloc.sh: one Rust workload (benches/rust-alloc: 4 threads
# building and dropping HashMap<String, Vec<u32>> word indexes) with three
# #[global_allocator]s: std's System (glibc), obmem::Obmem and the mimalloc
# crate. Runs each binary RUNS times (default 5), interleaved, and prints
# the median wall time of each; then, if valgrind is installed, the
# instructions of a 20-round run of each under callgrind (the figure that
# does not depend on the machine's load).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
TARGET=target/rust-alloc
cargo build --release --locked --manifest-path benches/rust-alloc/Cargo.toml --target-dir "$TARGET"
declare -A times
for ((i = 0; i < RUNS; i++)); do
    for a in system obmem mimalloc; do
        times[$a]+="$("$TARGET/release/$a" | awk '{ print $2 }') "
    done
done
echo "Rust global allocators, median of $RUNS runs (benches/rust_alloc.sh):"
for a in system obmem mimalloc; do
    printf '  %-9s %s ms   (runs: %s)\n' "$a" \
        "$(tr ' ' '\n' <<<"${times[$a]}" | sed '/^$/d' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')" \
        "${times[$a]% }"
done

if command -v valgrind >/dev/null; then
    echo "Instructions (callgrind, whole program, ROUNDS=20):"
    for a in system obmem mimalloc; do
        n=$(ROUNDS=20 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$TARGET/release/$a" 2>&1 |
            sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
        printf '  %-9s %s\n' "$a" "$n"
    done
fi
