#!/usr/bin/env bash
# py_instr.sh: instructions executed by CPython on the four workloads of
# benches/py_workloads.py (json, churn, tree, words), whole process, counted
# by valgrind's callgrind (deterministic), with PYTHONMALLOC=malloc and each
# allocator preloaded, against CPython's own pymalloc (PYTHONMALLOC=pymalloc,
# no preload). Prints the counts and their ratio to pymalloc's.
# Usage: bash benches/py_instr.sh [SCALE]   (from the repo root; SCALE 1: ~2 min)
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCALE=${1:-1}
PY=$(python3 -c 'import sys; print(sys.executable)')
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 1; }
declare -A LIB=(
  [pymalloc]=""
  [obmem]="$ROOT/target/release/libobmem.so"
  [mimalloc3]="$ROOT/build/mimalloc3/target/release/libmimalloc3.so"
  [glibc]=""
)
ORDER=(pymalloc obmem mimalloc3 glibc)
count() { # allocator workload
  local a=$1 w=$2 pm=malloc
  [[ $a == pymalloc ]] && pm=pymalloc
  env PYTHONMALLOC=$pm ${LIB[$a]:+LD_PRELOAD=${LIB[$a]}} valgrind --tool=callgrind \
    --callgrind-out-file=/dev/null "$PY" "$ROOT/benches/py_workloads.py" "$w" "$SCALE" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
printf '%-8s' workload; for a in "${ORDER[@]}"; do printf ' %16s' "$a"; done; printf '   (ratio to pymalloc)\n'
for w in json churn tree words; do
  declare -A N=()
  for a in "${ORDER[@]}"; do
    if [[ -n ${LIB[$a]} && ! -f ${LIB[$a]} ]]; then N[$a]=""; else N[$a]=$(count "$a" "$w"); fi
  done
  printf '%-8s' "$w"
  for a in "${ORDER[@]}"; do printf ' %16s' "${N[$a]:--}"; done
  printf '  '
  for a in "${ORDER[@]}"; do
    [[ -n ${N[$a]} ]] && awk -v x="${N[$a]}" -v p="${N[pymalloc]}" 'BEGIN { printf " %.3f", x / p }'
  done
  printf '\n'
done
