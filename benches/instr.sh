#!/usr/bin/env bash
# Instructions per malloc+free, counted by valgrind's callgrind, for every
# allocator of `make bench`: deterministic (prodcons within ~0.1%), unlike
# time on a shared machine, so it is the figure of record for the
# allocators' own cost.  Run by benches/run.sh after its tables, or alone:
# `bash benches/instr.sh`.
# See benches/README.md ("Instructions table").
#
#   ring512, ring64  build/bench/ring --slots 1000 --min 16 --max 512 (64):
#                    (instructions of the whole program at 600k pairs - at
#                    200k pairs) / 400k, so start-up and exit cancel (the
#                    method of BENCHMARKS.md's pair count).  That includes
#                    the benchmark loop, so the same loop is also counted
#                    without malloc/free (ring --null 1, "harness only") and
#                    "net" = ring - harness: the allocator's malloc + free,
#                    calls included.
#   prodcons         build/bench/prodcons-count (prodcons.c built with
#                    -DCOUNT_ALLOC), 2 threads, malloc on one, free on the
#                    other: only the instructions inside malloc and free are
#                    counted (callgrind --collect-atstart=no
#                    --toggle-collect=counted_malloc/counted_free, inclusive
#                    of callees), since the whole program's count includes
#                    spin-waiting; (count at 300k blocks - at 100k) / 200k.
#
# Environment: BENCH_ALLOCATORS, OBMEM_SO, BENCH_NO_INSTALL, BENCH_CC,
# BENCH_CFLAGS as for run.sh; BENCH_TIMEOUT (per callgrind run, default 300).
# valgrind is installed with apt-get if missing (as root or through sudo
# -n); without it the table is skipped with a note (exit 0).  Exit status
# 1 if a run failed, found corrupted blocks, gave a checksum different
# from glibc's or did not use the allocator it was meant to.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BENCH_DIR=$ROOT/benches
BUILD=$ROOT/build/bench
LOGS=$BUILD/logs/instr
TIMEOUT=${BENCH_TIMEOUT:-300}
OBMEM_SO=${OBMEM_SO:-$ROOT/target/release/libobmem.so}
OBMEM_NOSTATS_SO=${OBMEM_NOSTATS_SO:-$ROOT/target/nostats/release/libobmem.so}
read -r -a ALLOCATORS <<<"${BENCH_ALLOCATORS:-glibc obmem mimalloc3 mimalloc2 jemalloc tcmalloc}"
CC=${BENCH_CC:-gcc}
CFLAGS=${BENCH_CFLAGS:--O2 -g -Wall -Wextra}

RING_LO=200000 RING_HI=600000  # malloc+free pairs of the two ring runs
PC_LO=100000 PC_HI=300000      # blocks of the two prodcons runs

NOTES=()
PROBLEMS=()
say() { printf '%s\n' "$*"; }
note() { NOTES+=("$*"); }
problem() { say "PROBLEM: $*"; PROBLEMS+=("$*"); }

source "$BENCH_DIR/allocators.sh"

mkdir -p "$BUILD" "$LOGS"
rm -f "$LOGS"/*.out "$LOGS"/*.err
install_missing valgrind:valgrind

finish() {
    local x
    for x in ${NOTES[@]+"${NOTES[@]}"}; do
        [[ $x == obmem-nostats* ]] || say "  note: $x"  # not measured here
    done
    if ((${#PROBLEMS[@]})); then
        say "  ${#PROBLEMS[@]} problem(s) in the instructions table:"
        for x in "${PROBLEMS[@]}"; do say "    - $x"; done
        exit 1
    fi
    exit 0
}

say ""
say "== Instructions per malloc+free (callgrind: counts, not time; the figure of record on a noisy machine)"
if ! command -v valgrind >/dev/null; then
    say "  skipped: valgrind is not installed and could not be installed (apt-get install valgrind, as root or through sudo -n)"
    finish
fi

locate_allocators
# shellcheck disable=SC2086 # CFLAGS is a list of flags
$CC $CFLAGS -pthread -o "$BUILD/ring" "$BENCH_DIR/ring.c" -ldl
# shellcheck disable=SC2086
$CC $CFLAGS -pthread -DCOUNT_ALLOC -o "$BUILD/prodcons-count" "$BENCH_DIR/prodcons.c" -ldl

if [[ ${BENCH_INSTR_FROM_RUN:-0} != 1 ]]; then
    say "  $(valgrind --version); compiler: $($CC --version | awk 'NR == 1'); CFLAGS: $CFLAGS"
    for a in "${ACTIVE[@]}"; do
        say "  $(printf '%-9s' "$a") ${SO[$a]:-(no preload)}  [${VERSION[$a]:-}]"
    done
fi

declare -A REF_SUM=()  # run tag -> glibc's checksum
COUNT=""

# cg ALLOC TAG [callgrind options] -- CMD...: runs CMD under callgrind with
# ALLOC preloaded; sets COUNT to the instructions collected, or "" after
# recording a problem.  ALLOC "harness" = no preload, the loop without
# malloc/free.
cg() {
    local a=$1 tag=$2 opts=() pre=() out err rc=0 line from sum
    shift 2
    while [[ $1 != -- ]]; do opts+=("$1"); shift; done
    shift
    out=$LOGS/$tag.$a.out err=$LOGS/$tag.$a.err
    [[ -n ${SO[$a]:-} ]] && pre=(LD_PRELOAD="${SO[$a]}")
    COUNT=""
    { env -u LD_PRELOAD timeout -k 5 "$TIMEOUT" env ${pre[@]+"${pre[@]}"} \
        valgrind --tool=callgrind --callgrind-out-file=/dev/null ${opts[@]+"${opts[@]}"} "$@" \
        >"$out" 2>"$err"; } 2>/dev/null || rc=$?
    line=$(grep '^RESULT ' "$out" | tail -1 || true)
    if ((rc != 0)) || [[ -z $line ]]; then
        local why="exit status $rc"
        ((rc == 124 || rc == 137)) && why="timed out after ${TIMEOUT}s"
        ((rc == 0)) && why="no RESULT line"
        problem "$tag under $a: $why; logs: ${out%.out}.{out,err}"
        return
    fi
    from=$(field malloc_from "$line") sum=$(field checksum "$line")
    if [[ $(field errors "$line") != 0 ]]; then
        problem "$tag under $a: corrupted blocks ($(field errors "$line")); see $out"
        return
    fi
    if [[ $a != harness && $from != "${EXPECT[$a]}" ]]; then
        problem "$tag under $a: malloc resolved to $from, expected ${EXPECT[$a]}"
        return
    fi
    if [[ $a == glibc ]]; then
        REF_SUM[$tag]=$sum
    elif [[ $a != harness && -n ${REF_SUM[$tag]:-} && $sum != "${REF_SUM[$tag]}" ]]; then
        problem "$tag under $a: checksum $sum differs from glibc's ${REF_SUM[$tag]}"
        return
    fi
    COUNT=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$err" | tail -1)
    [[ -n $COUNT ]] || problem "$tag under $a: no 'Collected' line from callgrind; see $err"
}

# per ALLOC TAG LO HI [callgrind options] -- CMD... (without the count
# argument, appended): sets PER to (count at HI - count at LO) / (HI - LO),
# or "" if a run failed
PER=""
per() {
    local a=$1 tag=$2 lo=$3 hi=$4 c1 c2
    shift 4
    local opts=()
    while [[ $1 != -- ]]; do opts+=("$1"); shift; done
    shift
    PER=""
    cg "$a" "$tag.$lo" ${opts[@]+"${opts[@]}"} -- "$@" "$lo"
    c1=$COUNT
    [[ -n $c1 ]] || return 0
    cg "$a" "$tag.$hi" ${opts[@]+"${opts[@]}"} -- "$@" "$hi"
    c2=$COUNT
    [[ -n $c2 ]] || return 0
    PER=$(awk -v a="$c1" -v b="$c2" -v n=$((hi - lo)) 'BEGIN { printf "%.1f", (b - a) / n }')
}

declare -A R512=() R64=() PC=()
TOGGLE=(--collect-atstart=no --toggle-collect=counted_malloc --toggle-collect=counted_free)
# glibc first: its checksums are the reference
ORDER=(harness)
[[ " ${ACTIVE[*]} " == *" glibc "* ]] && ORDER+=(glibc)
for a in "${ACTIVE[@]}"; do [[ $a != glibc ]] && ORDER+=("$a"); done
START=$SECONDS
for a in "${ORDER[@]}"; do
    null=()
    [[ $a == harness ]] && null=(--null 1)
    per "$a" ring512 $RING_LO $RING_HI -- "$BUILD/ring" --min 16 --max 512 --slots 1000 ${null[@]+"${null[@]}"} --ops
    R512[$a]=$PER
    per "$a" ring64 $RING_LO $RING_HI -- "$BUILD/ring" --min 16 --max 64 --slots 1000 ${null[@]+"${null[@]}"} --ops
    R64[$a]=$PER
    [[ $a == harness ]] && continue
    per "$a" prodcons $PC_LO $PC_HI "${TOGGLE[@]}" -- "$BUILD/prodcons-count" --min 16 --max 512 --ring 1024 --blocks
    PC[$a]=$PER
done

# net ALLOC: ring count minus the harness's; ratio X OBMEM_X
net() { awk -v a="$1" -v h="$2" 'BEGIN { if (a != "" && h != "") printf "%.1f", a - h; else print "-" }'; }
rel() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "-" && a != "" && b != "-" && b != "" && b > 0) printf "%.2fx", a / b; else print "-" }'; }

say "   ring512/ring64: build/bench/ring --slots 1000 --min 16 --max 512 (64) --ops N, whole program,"
say "     (instructions at N=600k - at N=200k) / 400k pairs; net = minus the harness (same loop, --null 1)"
say "   prodcons: build/bench/prodcons-count (2 threads), only instructions inside malloc+free"
say "     (callgrind --toggle-collect), (at 300k blocks - at 100k) / 200k; includes 10 for the wrappers' calls;
     the rings are exact from run to run, prodcons within ~0.1% (how valgrind interleaves the threads)"
say "   /obmem = allocator / obmem (net for the rings): below 1.00x = fewer instructions than obmem"
printf '  %-16s %8s %7s %7s   %8s %7s %7s   %9s %7s\n' allocator ring512 net /obmem ring64 net /obmem prodcons /obmem
n512o=$(net "${R512[obmem]:-}" "${R512[harness]:-}") n64o=$(net "${R64[obmem]:-}" "${R64[harness]:-}")
for a in "${ORDER[@]}"; do
    [[ $a == harness ]] && continue
    n512=$(net "${R512[$a]:-}" "${R512[harness]:-}") n64=$(net "${R64[$a]:-}" "${R64[harness]:-}")
    printf '  %-16s %8s %7s %7s   %8s %7s %7s   %9s %7s\n' "$a" "${R512[$a]:--}" "$n512" "$(rel "$n512" "$n512o")" \
        "${R64[$a]:--}" "$n64" "$(rel "$n64" "$n64o")" "${PC[$a]:--}" "$(rel "${PC[$a]:-}" "${PC[obmem]:-}")"
done
printf '  %-16s %8s %7s %7s   %8s %7s %7s   %9s %7s\n' "(harness only)" "${R512[harness]:--}" - - "${R64[harness]:--}" - - - -
say "  (callgrind took $((SECONDS - START)) s; logs: ${LOGS#"$ROOT"/}/)"
finish
