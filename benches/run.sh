#!/usr/bin/env bash
# obmem allocator benchmarks: `make bench` or `bash benches/run.sh` from the
# repo root.  Compiles the C workloads into build/bench/, runs each one under
# glibc, obmem, mimalloc3 (v3, built from crates.io into build/mimalloc3/),
# mimalloc2 (Debian's 2.0.9), jemalloc and tcmalloc (all via LD_PRELOAD, same
# binary, same arguments, same seed) and prints one table per workload.
# See benches/README.md for the workloads and how to read the output.
#
# Environment knobs (all optional):
#   BENCH_REPS=N          runs per measurement, best time kept (default 3)
#   BENCH_SCALE=F         multiply every iteration count by F (default 1;
#                         0.1 gives a quick smoke run)
#   BENCH_ALLOCATORS="…"  subset/order of: glibc obmem mimalloc3 mimalloc2
#                         jemalloc tcmalloc ("mimalloc" = mimalloc2)
#   BENCH_WORKLOADS="…"   subset/order of: ring512 ring64 ring64k realloc
#                         prodcons larson larson-thr mstress cfrac large python
#                         ringlarge
#   OBMEM_SO=path         obmem library (default target/release/libobmem.so)
#   OBMEM_NOSTATS_SO=path obmem built without its statistics counters
#                         (cargo build --release --no-default-features --features c-library
#                         --target-dir target/nostats; `make bench` builds it):
#                         the rings also run it ("obmem-nostats") and under
#                         the debug hooks ("obmem-debug", OBMEM_MALLOC=debug)
#   BENCH_NO_INSTALL=1    do not apt-get install the comparison allocators
#                         (mimalloc3 is still built with cargo)
#   BENCH_TIMEOUT=S       per-run time limit in seconds (default 60)
#   BENCH_INSTR=0         skip the instructions table (benches/instr.sh, which
#                         counts instructions per malloc+free with callgrind;
#                         it also runs alone: bash benches/instr.sh)
#   BENCH_CC, BENCH_CFLAGS compiler and flags (default gcc, -O2 -g -Wall -Wextra)
# Exit status: 0 if every run that was attempted succeeded with correct
# results, 1 if any run crashed, timed out, found corrupted blocks or
# produced a checksum different from glibc's.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BENCH_DIR=$ROOT/benches
BUILD=$ROOT/build/bench
LOGS=$BUILD/logs
RESULTS=$BUILD/results.tsv

REPS=${BENCH_REPS:-3}
SCALE=${BENCH_SCALE:-1}
TIMEOUT=${BENCH_TIMEOUT:-60}
OBMEM_SO=${OBMEM_SO:-$ROOT/target/release/libobmem.so}
OBMEM_NOSTATS_SO=${OBMEM_NOSTATS_SO:-$ROOT/target/nostats/release/libobmem.so}
read -r -a ALLOCATORS <<<"${BENCH_ALLOCATORS:-glibc obmem mimalloc3 mimalloc2 jemalloc tcmalloc}"
read -r -a WORKLOADS <<<"${BENCH_WORKLOADS:-ring512 ring64 ring64k realloc prodcons larson larson-thr mstress cfrac large python ringlarge}"
# not CC/CFLAGS: a Makefile may export those for other targets
CC=${BENCH_CC:-gcc}
CFLAGS=${BENCH_CFLAGS:--O2 -g -Wall -Wextra}

PROBLEMS=()       # human-readable list of failures, printed at the end
NOTES=()          # skipped allocators etc.

say() { printf '%s\n' "$*"; }
note() { NOTES+=("$*"); }  # printed in the header and again at the end
problem() { say "PROBLEM: $*"; PROBLEMS+=("$*"); }

# scale an iteration count, never below 1
n() { awk -v n="$1" -v s="$SCALE" 'BEGIN { v = int(n * s); print (v < 1 ? 1 : v) }'; }

# ----------------------------------------- install and locate allocators --
# (shared with benches/instr.sh)
source "$BENCH_DIR/allocators.sh"

# ------------------------------------------------------------------ build --
build() {
    mkdir -p "$BUILD" "$LOGS"
    local prog
    for prog in ring realloc_grow prodcons larson larson_threads mstress cfrac_like malloc_large grow timeexec; do
        # shellcheck disable=SC2086 # CFLAGS is a list of flags
        $CC $CFLAGS -pthread -o "$BUILD/$prog" "$BENCH_DIR/$prog.c" -ldl
    done
}

# ---------------------------------------------------------------- running --
# run_one ALLOC OUTFILE CMD...: run CMD with ALLOC preloaded (the python
# workload passes its own timeexec wrapper); returns the exit status.
run_one() {
    local alloc=$1 out=$2
    shift 2
    local pre=()
    [[ -n ${SO[$alloc]:-} ]] && pre=(LD_PRELOAD="${SO[$alloc]}")
    [[ -n ${ENVS[$alloc]:-} ]] && pre+=("${ENVS[$alloc]}")
    # only the measured program gets the preload, not timeout(1); the outer
    # 2>/dev/null only silences bash's own "Aborted"/"Segmentation fault"
    # report, the program's stderr goes to the .err file
    { env -u LD_PRELOAD timeout -k 5 "$TIMEOUT" env "${pre[@]}" "$@" >"$out" 2>"${out%.out}.err"; } 2>/dev/null
}

# Workload definitions: title, unit, command (arguments scaled by BENCH_SCALE).
workload_title() {
    case $1 in
    ring512) echo "1. ring, 16-512 B, 1000 live blocks (single thread; ns per malloc+free pair)" ;;
    ring64) echo "2. ring, 16-64 B, 1000 live blocks (single thread; ns per malloc+free pair)" ;;
    ring64k) echo "3. ring, 1-64 KiB, 1000 live blocks, every page touched (single thread; ns per malloc+free pair)" ;;
    realloc) echo "4. realloc growth: 16 interleaved buffers grown by 16-256 B steps to 1 MiB (ns per realloc)" ;;
    prodcons) echo "5. producer/consumer, 2 threads, SPSC ring, 16-512 B (ns per block, malloc on one thread, free on the other)" ;;
    larson) echo "6. larson-like server, 2 threads x 1000 slots, 16-1024 B, set hand-off every 10k ops (aggregate ns per op)" ;;
    larson-thr) echo "7. larson with thread replacement (mimalloc-bench's larson): 2 threads x 1000 slots, 16-1000 B, each thread replaced by a new one every 50k ops (aggregate ns per op)" ;;
    mstress) echo "8. mstress: 4 threads per round, replaced every round, short- and long-lived blocks, 16 B-256 KiB, blocks passed between threads (ns per malloc+free)" ;;
    cfrac) echo "9. cfrac-like big-number arithmetic, single thread, 8-40 B blocks, one malloc per result (ns per malloc+free)" ;;
    large) echo "10. large blocks (mimalloc-bench's malloc-large): 20 live blocks of 5-25 MiB, zeroed, one replaced at random per step (ns per replacement; notes: minor page faults)" ;;
    python) echo "11. CPython allocation-heavy script (benches/py_alloc.py), PYTHONMALLOC=malloc (wall seconds of the whole process)" ;;
    ringlarge) echo "12. ring, 128-256 KiB, 100 live blocks, a random one replaced (single thread; ns per malloc+free pair)" ;;
    esac
}

workload_cmd() {
    case $1 in
    ring512) echo "$BUILD/ring --min 16 --max 512 --slots 1000 --ops $(n 40000000)" ;;
    ring64) echo "$BUILD/ring --min 16 --max 64 --slots 1000 --ops $(n 40000000)" ;;
    ring64k) echo "$BUILD/ring --min 1024 --max 65536 --slots 1000 --stride 4096 --ops $(n 3000000)" ;;
    realloc) echo "$BUILD/realloc_grow --buffers 16 --max 1048576 --step-min 16 --step-max 256 --rounds $(n 24)" ;;
    prodcons) echo "$BUILD/prodcons --min 16 --max 512 --ring 1024 --blocks $(n 3000000)" ;;
    larson) echo "$BUILD/larson --threads 2 --slots 1000 --min 16 --max 1024 --handoff 10000 --ops $(n 10000000)" ;;
    larson-thr) echo "$BUILD/larson_threads --threads 2 --slots 1000 --min 16 --max 1000 --life 50000 --lives $(n 500)" ;;
    mstress) echo "$BUILD/mstress --threads 4 --scale 50 --rounds $(n 200)" ;;
    cfrac) echo "$BUILD/cfrac_like --limbs 4 --fb 60 --steps $(n 1000000)" ;;
    large) echo "$BUILD/malloc_large --live 20 --min-mib 5 --max-mib 25 --ops $(n 500)" ;;
    python) echo "$PYTHON $BENCH_DIR/py_alloc.py $(n 3)" ;;
    ringlarge) echo "$BUILD/ring --min 131072 --max 262144 --slots 100 --random 1 --ops $(n 1000000)" ;;
    esac
}

# Per-(workload, allocator) results of the current workload.
declare -A BEST=() RSS=() SUM=() ERR=() FROM=() EXTRA=()

# measure WORKLOAD ALLOC REP: one run; records the result or a problem.
measure() {
    local w=$1 a=$2 rep=$3 out="$LOGS/$1.$2.$3.out" rc=0 line t rss sum
    local -a cmd
    read -r -a cmd <<<"$(workload_cmd "$w")"
    if [[ $w == python ]]; then
        local -a envs=(-e PYTHONHASHSEED=0 -e PYTHONMALLOC=malloc)
        [[ $a == pymalloc ]] && envs=(-e PYTHONHASHSEED=0 -e PYTHONMALLOC=pymalloc)
        [[ -n ${SO[$a]:-} ]] && envs+=(-e "LD_PRELOAD=${SO[$a]}")
        # timeexec itself runs without the preload; only python gets it
        { env -u LD_PRELOAD timeout -k 5 "$TIMEOUT" "$BUILD/timeexec" "${envs[@]}" -- "${cmd[@]}" \
            >"$out" 2>"${out%.out}.err"; } 2>/dev/null || rc=$?
    elif [[ $a == harness ]]; then
        run_one glibc "$out" "${cmd[@]}" --null 1 || rc=$?
    else
        run_one "$a" "$out" "${cmd[@]}" || rc=$?
    fi
    if ((rc != 0)); then
        local why="exit status $rc" detail
        if ((rc == 124 || rc == 137)); then
            why="timed out after ${TIMEOUT}s"
        elif ((rc == 2)) && [[ $w != python ]]; then
            why="found corrupted blocks ($(grep -o 'errors=[0-9]*' "$out" || true))"
        elif ((rc > 128 && rc < 160)); then
            why="killed by signal $((rc - 128))"
        fi
        ERR[$a]="FAILED: $why"
        detail=$(grep -v '^\s*$' "${out%.out}.err" 2>/dev/null | tail -1 | cut -c1-160 || true)
        problem "$w under $a (run $rep): $why${detail:+ [$detail]}; logs: ${out%.out}.{out,err}"
        return
    fi
    line=$(grep '^RESULT ' "$out" | tail -1 || true)
    if [[ -z $line ]]; then
        ERR[$a]="FAILED: no RESULT line"
        problem "$w under $a (run $rep): no RESULT line; see $out"
        return
    fi
    if [[ $w == python ]]; then
        t=$(field wall_s "$line")
        sum=$(grep -o 'checksum=[0-9a-f]*' "$out" | head -1 | cut -d= -f2 || true)
    else
        t=$(field ns_per_op "$line")
        sum=$(field checksum "$line")
        FROM[$a]=$(field malloc_from "$line")
        [[ $w == larson ]] && EXTRA[$a]="$(awk -v v="$(field ops_per_s "$line")" 'BEGIN { printf "%.1f Mops/s", v / 1e6 }'), waited at $(field wait_pct "$line")% of hand-offs"
        [[ $w == larson-thr ]] && EXTRA[$a]="$(awk -v v="$(field ops_per_s "$line")" 'BEGIN { printf "%.1f Mops/s", v / 1e6 }'), $(field threads_created "$line") threads"
        [[ $w == cfrac ]] && EXTRA[$a]="$(field relations "$line") relations verified"
        [[ $w == large ]] && EXTRA[$a]="$(field minflt "$line") minor faults"
    fi
    rss=$(field maxrss_kib "$line")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$a" "$rep" "$t" "$rss" "$sum" >>"$RESULTS"
    if [[ -z ${BEST[$a]:-} ]] || awk -v a="$t" -v b="${BEST[$a]}" 'BEGIN { exit !(a < b) }'; then
        BEST[$a]=$t
    fi
    if [[ -z ${RSS[$a]:-} ]] || ((rss > RSS[$a])); then RSS[$a]=$rss; fi
    SUM[$a]=$sum
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }

print_table() {
    local w=$1 unit=$2
    shift 2
    local a base_t=${BEST[glibc]:-} base_rss=${RSS[glibc]:-} base_sum=${SUM[glibc]:-} notes
    printf '  %-22s %12s %9s %14s %9s  %s\n' allocator "$unit" "vs glibc" "peak RSS KiB" "RSS/glibc" notes
    for a in "$@"; do
        notes=""
        local label=$a
        [[ $a == pymalloc ]] && label="pymalloc (no preload)"
        [[ $w == python && $a == glibc ]] && label="glibc malloc"
        [[ $a == harness ]] && label="(harness only)"
        if [[ -n ${ERR[$a]:-} ]]; then
            notes=${ERR[$a]}
            [[ -z ${BEST[$a]:-} ]] && { printf '  %-22s %12s %9s %14s %9s  %s\n' "$label" - - - - "$notes"; continue; }
        fi
        if [[ -n ${FROM[$a]:-} && -n ${EXPECT[$a]:-} && ${FROM[$a]} != "${EXPECT[$a]}" ]]; then
            notes+="${notes:+; }WRONG ALLOCATOR: malloc came from ${FROM[$a]}"
            problem "$w under $a: malloc resolved to ${FROM[$a]}, expected ${EXPECT[$a]}"
        fi
        if [[ -n $base_sum && $base_sum != - && -n ${SUM[$a]:-} && ${SUM[$a]} != "$base_sum" ]]; then
            notes+="${notes:+; }CHECKSUM MISMATCH (${SUM[$a]} vs glibc $base_sum)"
            problem "$w under $a: checksum ${SUM[$a]} differs from glibc's $base_sum"
        fi
        [[ -n ${EXTRA[$a]:-} ]] && notes+="${notes:+; }${EXTRA[$a]}"
        local rt rr
        rt=$(ratio "$base_t" "${BEST[$a]}") rr=$(ratio "${RSS[$a]}" "$base_rss")
        [[ $a == harness ]] && rt=- rr=- notes="same loop, no malloc/free (not an allocator)"
        printf '  %-22s %12s %9s %14s %9s  %s\n' "$label" "${BEST[$a]}" "$rt" "${RSS[$a]}" "$rr" "$notes"
    done
    return 0
}

VARIANT_LINES=""
declare -A SUMMARY=() SUMMARY_RSS=()  # "workload alloc" -> ratio vs glibc

run_workload() {
    local w=$1 a rep unit="ns/op"
    local -a allocs=("${ACTIVE[@]}")
    BEST=() RSS=() SUM=() ERR=() FROM=() EXTRA=()
    if [[ $w == python ]]; then
        if [[ -z ${PYTHON:-} ]]; then
            say ""; say "== $(workload_title "$w")"; say "  skipped: python3 not available"
            NOTES+=("python workload skipped: python3 not available")
            return
        fi
        unit="seconds"
        allocs+=(pymalloc)
    fi
    # the small-block rings also run their loop without malloc/free, to show
    # how much of each ns/op is the benchmark's own work (RNG, writes, checks)
    [[ $w == ring512 || $w == ring64 ]] && allocs+=(harness)
    if [[ ($w == ring512 || $w == ring64) && " ${ACTIVE[*]} " == *" obmem "* ]]; then
        [[ -n ${SO[obmem-nostats]:-} ]] && allocs+=(obmem-nostats)
        allocs+=(obmem-debug)
    fi
    say ""
    say "== $(workload_title "$w")"
    say "   cmd: $(workload_cmd "$w" | sed "s|$ROOT/||g")   (best of $REPS)"
    if [[ $w == large ]]; then
        # An allocator's runs back to back: the large blocks get huge pages,
        # and a run right after glibc's (400 MB of small pages just freed)
        # pays about a second of kernel time for the memory it leaves behind,
        # whichever allocator it is (BENCHMARKS.md). Interleaved, the same
        # allocator followed glibc in every round; now only its first run does.
        for a in "${allocs[@]}"; do
            for ((rep = 1; rep <= REPS; rep++)); do
                [[ -n ${ERR[$a]:-} ]] && continue
                measure "$w" "$a" "$rep"
            done
        done
    else
        for ((rep = 1; rep <= REPS; rep++)); do
            for a in "${allocs[@]}"; do
                [[ -n ${ERR[$a]:-} ]] && continue  # a failed allocator is not retried
                measure "$w" "$a" "$rep"
            done
        done
    fi
    print_table "$w" "$unit" "${allocs[@]}"
    local v
    for v in obmem-nostats obmem-debug; do
        if [[ -n ${BEST[$v]:-} && -n ${BEST[obmem]:-} && -z ${ERR[$v]:-} ]]; then
            VARIANT_LINES+=$(printf '  %-10s %-14s %s\n' "$w" "$v" "$(ratio "${BEST[$v]}" "${BEST[obmem]}")")$'\n'
        fi
    done
    for a in "${allocs[@]}"; do
        [[ $a == obmem-nostats || $a == obmem-debug ]] && continue
        if [[ -n ${BEST[$a]:-} && -z ${ERR[$a]:-} && $a != harness ]]; then
            SUMMARY["$w $a"]=$(ratio "${BEST[glibc]:-0}" "${BEST[$a]}")
            SUMMARY_RSS["$w $a"]=$(ratio "${RSS[$a]}" "${RSS[glibc]:-0}")
        fi
    done
    return 0
}

print_summary() {
    local w a
    local -a cols=("${ACTIVE[@]}")
    [[ " ${WORKLOADS[*]} " == *" python "* && -n ${PYTHON:-} ]] && cols+=(pymalloc)
    say ""
    say "== Summary: speed vs glibc (glibc time / allocator time; >1 is faster)"
    printf '  %-10s' workload
    for a in "${cols[@]}"; do printf ' %9s' "$a"; done
    printf '\n'
    for w in "${WORKLOADS[@]}"; do
        printf '  %-10s' "$w"
        for a in "${cols[@]}"; do printf ' %9s' "${SUMMARY["$w $a"]:--}"; done
        printf '\n'
    done
    if [[ -n $VARIANT_LINES ]]; then
        say ""
        say "== obmem variants on the rings (variant time / obmem time; >1 is slower)"
        printf '%s' "${VARIANT_LINES:-}"
    fi
    say ""
    say "== Summary: peak RSS vs glibc (allocator RSS / glibc RSS; <1 is smaller)"
    printf '  %-10s' workload
    for a in "${cols[@]}"; do printf ' %9s' "$a"; done
    printf '\n'
    for w in "${WORKLOADS[@]}"; do
        printf '  %-10s' "$w"
        for a in "${cols[@]}"; do printf ' %9s' "${SUMMARY_RSS["$w $a"]:--}"; done
        printf '\n'
    done
}

# CPU use by other processes (other developers' builds and tests skew the
# figures).  cpu_sample prints "busy total ours" in clock ticks: busy and
# total from /proc/stat (all cores), ours = this script's CPU plus that of
# every child it has waited for (/proc/$$/stat utime stime cutime cstime).
cpu_sample() {
    local ours
    ours=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$$/stat")
    awk -v o="$ours" '/^cpu / { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6, o }' /proc/stat
}
# other_load_pct "SAMPLE_BEFORE" "SAMPLE_AFTER": % of all cores used by others
other_load_pct() {
    awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ");
        tot = y[2] - x[2]; oth = (y[1] - x[1]) - (y[3] - x[3]);
        printf "%.0f", (tot > 0 && oth > 0) ? 100 * oth / tot : 0 }'
}
LOAD_WARN=10  # percent of all cores

# ------------------------------------------------------------------- main --
mkdir -p "$BUILD" "$LOGS"
rm -f "$LOGS"/*.out "$LOGS"/*.err
INSTALL_EXTRA=()
[[ " ${WORKLOADS[*]} " == *" python "* ]] && INSTALL_EXTRA+=(python3:python3)
[[ ${BENCH_INSTR:-1} != 0 ]] && INSTALL_EXTRA+=(valgrind:valgrind)
install_missing "${INSTALL_EXTRA[@]}"
locate_allocators
build
PYTHON=""
if command -v python3 >/dev/null; then
    # the real interpreter, not a wrapper script (pyenv shims are bash scripts)
    PYTHON=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || true)
fi
printf 'workload\tallocator\trep\ttime\tmaxrss_kib\tchecksum\n' >"$RESULTS"

S0=$(cpu_sample)
sleep 1
BUSY=$(other_load_pct "$S0" "$(cpu_sample)")
((BUSY > LOAD_WARN)) && note "other processes were using ${BUSY}% of the CPUs when the run started: timings will be noisy"

say "obmem allocator benchmarks  ($(date '+%F %T'))"
say "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
say "other CPU load before the run: ${BUSY}% of all cores"
say "compiler: $($CC --version | awk 'NR == 1'); CFLAGS: $CFLAGS; reps: $REPS; scale: $SCALE"
[[ -n $PYTHON ]] && say "python: $PYTHON ($("$PYTHON" -c 'import platform; print(platform.python_version())'))"
for a in "${ACTIVE[@]}"; do
    say "  $(printf '%-9s' "$a") ${SO[$a]:-(no preload)}  [${VERSION[$a]:-}]"
done
((${#NOTES[@]})) && for x in "${NOTES[@]}"; do say "  note: $x"; done

# smoke test: an allocator that cannot run a tiny ring is dropped up front
SMOKE=()
for a in "${ACTIVE[@]}"; do
    if run_one "$a" "$LOGS/smoke.$a.out" "$BUILD/ring" --ops 20000 --slots 100 &&
        line=$(grep '^RESULT ' "$LOGS/smoke.$a.out") &&
        [[ $(field malloc_from "$line") == "${EXPECT[$a]}" ]]; then
        SMOKE+=("$a")
    else
        problem "$a failed the smoke test (see $LOGS/smoke.$a.{out,err}); not measured"
    fi
done
ACTIVE=("${SMOKE[@]}")
if [[ " ${ACTIVE[*]} " != *" glibc "* ]]; then
    note "glibc is not in the run: ratio columns are empty"
fi

START=$SECONDS
S_START=$(cpu_sample)
for w in "${WORKLOADS[@]}"; do
    if [[ -z $(workload_title "$w") ]]; then
        note "unknown workload '$w' ignored"
        continue
    fi
    S_W=$(cpu_sample)
    run_workload "$w"
    OTHER=$(other_load_pct "$S_W" "$(cpu_sample)")
    if ((OTHER > LOAD_WARN)); then
        say "  WARNING: other processes used ${OTHER}% of the CPUs during this workload; its figures are unreliable"
        note "other processes used ${OTHER}% of the CPUs during workload $w"
    fi
done
OTHER=$(other_load_pct "$S_START" "$(cpu_sample)")
print_summary
say ""
say "ratios: time = glibc / allocator (>1 faster than glibc); RSS = allocator / glibc (<1 smaller)."
say "time is the best of $REPS runs, peak RSS the largest; raw data: ${RESULTS#"$ROOT"/}, logs: ${LOGS#"$ROOT"/}/"
say "benchmarks took $((SECONDS - START)) s; other processes used ${OTHER}% of the CPUs meanwhile"

if [[ ${BENCH_INSTR:-1} != 0 ]]; then
    BENCH_INSTR_FROM_RUN=1 bash "$BENCH_DIR/instr.sh" || problem "benches/instr.sh found problems (listed above)"
fi

if [[ -f $BENCH_DIR/gc/run.sh ]]; then
    say ""
    say "== benches/gc/run.sh"
    bash "$BENCH_DIR/gc/run.sh" || problem "benches/gc/run.sh exited with status $?"
fi

if ((${#NOTES[@]})); then
    say ""
    for x in "${NOTES[@]}"; do say "note: $x"; done
fi
if ((${#PROBLEMS[@]})); then
    say ""
    say "${#PROBLEMS[@]} problem(s):"
    for x in "${PROBLEMS[@]}"; do say "  - $x"; done
    exit 1
fi
