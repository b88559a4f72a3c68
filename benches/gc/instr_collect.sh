#!/bin/bash
# instr_collect.sh [LIBDIR [INCLUDEDIR]]: instructions per object of one full
# collection of 100,000 objects in pairs (callgrind, obm_gc_collect only),
# garbage and reachable, for a plain GC type, a weak-referenceable one, a
# weak-referenceable one with 10% of the objects weakly referenced, and a
# plain one that lists its reference (obm_type_refs) instead of a traverse.
set -u
cd "$(dirname "$0")/../.."
lib=$(cd "${1:-target/release}" && pwd)
inc=${2:-include}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
gcc -O2 -I"$inc" benches/gc/collect_one.c -L"$lib" -lobmem -Wl,-rpath,"$lib" -o "$tmp/c" || exit 1
n=100000
for v in "plain 0 0 0" "weakrefable 0 1 0" "weakrefable+10%weak 5 1 0" "listed 0 0 1"; do
    set -- $v
    for state in garbage reachable; do
        if ! "$tmp/c" 10 $state $2 $3 $4 >/dev/null 2>&1; then echo "$1 $state: n/a"; continue; fi
        i=$(valgrind --tool=callgrind --toggle-collect=obm_gc_collect --callgrind-out-file=/dev/null \
              "$tmp/c" $n $state $2 $3 $4 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
        echo "$1 $state: $(( i / n )) instructions per object"
    done
done
