#!/bin/bash
# Builds and runs the object/collector benchmarks of obmem, CPython and Boehm
# GC on the same shapes, then prints ns/object and the ratios.
#   benches/gc/run.sh           full run (1e5, 1e6 and 3e6 objects)
#   benches/gc/run.sh --quick   1e5 objects only, fewer iterations
# GC_BENCH_ROUNDS=N (default 3): rounds in which the implementations take
# turns; each figure printed is the best of its rounds.
# The collections also run with libobmem.a linked into the benchmark
# ("static"): the user's traverse function and obmem's visitors are then
# near each other in memory. Through libobmem.so every traversal crosses
# between the program and the library four times per object (call and
# return of traverse and of the visitor); on the machine of BENCHMARKS.md
# these transfers between distant addresses are a large part of the cost
# of collecting reachable objects, and the same benchmark code placed in a
# shared library beside libobmem.so runs as fast as the static link. The
# last lines (benches/gc/call_distance.c) measure that cost alone: the
# same loop, traverse and visitor, with the loop and visitor in the
# program or in a shared library.
# Needs cargo, gcc and python3; installs Debian's libgc-dev if missing (as
# root or through sudo -n).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${GC_BENCH_ROUNDS:-3}
case $rounds in
    '' | *[!0-9]* | 0*) echo "GC_BENCH_ROUNDS=$rounds: must be a positive integer" >&2; exit 2 ;;
esac
root=$PWD
out=$root/build/bench_gc
mkdir -p "$out"
args=("$@")

cargo build --release --quiet --features c-library
gcc -std=gnu11 -O2 -Wall -Wextra -Iinclude benches/gc/bench_obmem.c -Ltarget/release -lobmem \
    -Wl,-rpath,"$root/target/release" -o "$out/bench_obmem"
gcc -std=gnu11 -O2 -Wall -Wextra -Iinclude benches/gc/bench_obmem.c target/release/libobmem.a \
    -lpthread -ldl -lm -o "$out/bench_obmem_static"
gcc -std=gnu11 -O2 -Wall -Wextra -fPIC -shared -DLIBRARY_HALF benches/gc/call_distance.c \
    -o "$out/libcall_distance.so"
gcc -std=gnu11 -O2 -Wall -Wextra benches/gc/call_distance.c -L"$out" -lcall_distance \
    -Wl,-rpath,"$out" -o "$out/call_distance"

have_boehm=1
if ! echo '#include <gc.h>' | gcc -E -x c - >/dev/null 2>&1; then
    # apt_install (tests/lib.sh): as root, else through sudo -n.
    source tests/lib.sh
    APT_LOG=$out/apt.log
    if ! apt_install libgc-dev; then
        echo "could not install libgc-dev (see $APT_LOG): Boehm GC is left out" >&2
        have_boehm=0
    fi
fi
if [ $have_boehm = 1 ]; then
    gcc -std=gnu11 -O2 -Wall -Wextra benches/gc/bench_boehm.c -lgc -o "$out/bench_boehm"
fi

# The implementations take turns, GC_BENCH_ROUNDS rounds (default 3), and
# each figure is the best of its rounds: on a shared machine a quiet minute
# for one implementation and a busy one for the next would otherwise make
# the ratios.
results=$out/results.txt
: > "$results"
echo "python3: $(python3 --version 2>&1)" >&2
for ((r = 1; r <= rounds; r++)); do
    echo "round $r of $rounds: obmem..." >&2
    "$out/bench_obmem" "${args[@]}" | tee -a "$results" >&2
    echo "round $r of $rounds: obmem, linked statically (collections only)..." >&2
    "$out/bench_obmem_static" --collect "${args[@]}" | sed -e 's/^obmem /obmem-static /' | tee -a "$results" >&2
    echo "round $r of $rounds: CPython..." >&2
    python3 benches/gc/bench_cpython.py "${args[@]}" | tee -a "$results" >&2
    if [ $have_boehm = 1 ]; then
        echo "round $r of $rounds: Boehm GC..." >&2
        "$out/bench_boehm" "${args[@]}" | tee -a "$results" >&2
    fi
done

python3 - "$results" "$rounds" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    impl, bench, shape, state, n, ns = line.split()
    key = (impl, bench, shape, state, n)
    rows[key] = min(float(ns), rows.get(key, float("inf")))  # best of the rounds

def get(impl, *k):
    return rows.get((impl,) + k)

print()
print(f"ns per operation (lower is better; best of {sys.argv[2]} rounds)")
for bench in ("incref_decref", "incref_decref_immortal", "create_destroy", "weakref_create_drop"):
    o = get("obmem", bench, "-", "-", next(k[4] for k in rows if k[0] == "obmem" and k[1] == bench))
    cp = [v for k, v in rows.items() if k[0] == "cpython" and k[1] == bench]
    line = f"  {bench:<16} obmem {o:8.2f}"
    if cp:
        line += f"   cpython {cp[0]:8.2f}   cpython/obmem {cp[0] / o:6.1f}x"
    print(line)
print()
print(f"full collection, ns per object (lower is better; best of {sys.argv[2]} rounds)")
print("  (listed: the same shape of a type that lists its reference in an obm_type_refs map)")
print(f"  {'shape':<8} {'state':<10} {'N':>8} {'obmem':>8} {'static':>8} {'listed':>8} {'cpython':>8} {'boehm':>8} {'cpy/obm':>8} {'boehm/obm':>9} {'boehm/static':>12} {'boehm/listed':>12}")
keys = sorted({(k[2], k[3], int(k[4])) for k in rows if k[1] == "collect" and k[2][0] != "o"},
              key=lambda k: (k[2], k[0], k[1]))
for shape, state, n in keys:
    o = get("obmem", "collect", shape, state, str(n))
    c = get("cpython", "collect", shape, state, str(n))
    b = get("boehm", "collect", shape, state, str(n))
    st = get("obmem-static", "collect", shape, state, str(n))
    li = get("obmem", "collect", "o" + shape, state, str(n))
    fmt = lambda v: f"{v:8.2f}" if v is not None else f"{'-':>8}"
    ratio = lambda v, base=o: f"{v / base:7.2f}x" if v is not None and base else f"{'-':>8}"
    print(f"  {shape:<8} {state:<10} {n:>8} {fmt(o)} {fmt(st)} {fmt(li)} {fmt(c)} {fmt(b)} {ratio(c)} {ratio(b):>9} {ratio(b, st):>12} {ratio(b, li):>12}")
PY
"$out/call_distance"
