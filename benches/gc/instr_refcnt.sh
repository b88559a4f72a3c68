#!/bin/bash
# instr_refcnt.sh [LIBDIR [INCLUDEDIR]]: instructions per incref+decref pair (mortal and
# immortal object, exported and header-inline functions) and per weakref create+drop, counted by callgrind as
# (instructions at 600k - at 200k) / 400k, through the exported functions,
# with the library of LIBDIR (default target/release), plus the time per
# pair (best of 5 runs of 20M). Modes the library lacks print "n/a".
set -u
cd "$(dirname "$0")/../.."
lib=$(cd "${1:-target/release}" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
inc=${2:-include}
gcc -O2 -I"$inc" benches/gc/bench_refcnt.c -L"$lib" -lobmem -Wl,-rpath,"$lib" -o "$tmp/b" || exit 1
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$tmp/b" "$1" "$2" 2>&1 |
            sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
for m in mortal immortal inline inline_immortal weakref; do
    a=$(count $m 200000); b=$(count $m 600000)
    if [ -z "$a" ] || [ -z "$b" ] || ! "$tmp/b" $m 1 >/dev/null 2>&1; then echo "$m: n/a"; continue; fi
    echo "$m: $(( (b - a) / 400000 )) instructions per pair; $("$tmp/b" $m 20000000 time)"
done
