#!/usr/bin/env bash
# tests/faults/run.sh: build and run the fault-injection and memory-return
# tests (docs/reliability/faults.md) against target/release/libobmem.so.
#
#   bash tests/faults/run.sh                 # every test of `make test-faults`
#   bash tests/faults/run.sh mem_return soak # only these (the default set runs a
#                                            # 5 s soak_smoke; soak alone lasts SOAK_SECONDS, default 600)
#
# Each tests/faults/NAME.c is compiled into build/faults/NAME, linked with
# -lobmem as a user would, except the programs in UNLINKED, which are built
# without obmem and run under LD_PRELOAD (that is what they test). Each
# tests/faults/lib_*.c is built into build/faults/lib_*.so (the plugins the
# dlopen test loads). Every test runs in its own process with a timeout and
# prints PASS/FAIL with its time; the exit status is non-zero if one failed.
#
# Environment: FAULTS_TIMEOUT (seconds per test, default 300), CC,
# FAULTS_LIBDIR (the directory of the libobmem.so to test, default
# target/release; e.g. a build of another commit),
# FAULTS_FULL=1 (longer variants), SOAK_SECONDS, DRIFT_SECONDS; the tests
# read these themselves. OBMEM_* variables of the caller are dropped: each
# test sets the ones it needs.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
LIBDIR=${FAULTS_LIBDIR:-$ROOT/target/release}
BUILD=$ROOT/build/faults
CC=${CC:-gcc}
TIMEOUT=${FAULTS_TIMEOUT:-300}
CFLAGS=(-std=gnu11 -O2 -g -Wall -Wextra -Werror -Iinclude -Ic_tests -Itests/faults)

DEFAULT=(fault_mmap fault_rlimit fault_cancel fault_fork_threads fault_dlopen
    fault_dlopen_preload race_large_move mem_return mem_drift soak_smoke)
# Built without -lobmem, run under LD_PRELOAD=libobmem.so.
UNLINKED=" fault_dlopen_preload "

while IFS= read -r v; do unset "$v"; done < <(env | sed -n 's/^\(OBMEM_[A-Za-z0-9_]*\)=.*/\1/p')

if [[ ! -f $LIBDIR/libobmem.so ]]; then
    echo "faults: $LIBDIR/libobmem.so is missing (run make build)" >&2
    exit 1
fi
mkdir -p "$BUILD"
export FAULTS_BUILD=$BUILD FAULTS_LIB=$LIBDIR/libobmem.so

names=("$@")
((${#names[@]} > 0)) || names=("${DEFAULT[@]}")

passed=0
failed=0
failed_names=()
result() { # name status secs [log]
    if [[ $2 == ok ]]; then
        printf 'PASS %-22s %6ss\n' "$1" "$3"
        passed=$((passed + 1))
    else
        printf 'FAIL %-22s %6ss  (%s)\n' "$1" "$3" "$2"
        [[ -n ${4:-} && -s $4 ]] && sed -e 's/^/    /' "$4" | tail -n 60
        failed=$((failed + 1))
        failed_names+=("$1")
    fi
}

# Binaries are written under a temporary name and renamed, so that another
# run of this script (make test in parallel) never sees a half-written
# program or plugin.
# The plugins for the dlopen tests.
for src in tests/faults/lib_*.c; do
    [[ -e $src ]] || continue
    so=$BUILD/$(basename "${src%.c}").so
    if "$CC" "${CFLAGS[@]}" -shared -fPIC "$src" -o "$so.tmp.$$" -lpthread >"$so.log" 2>&1; then
        mv -f "$so.tmp.$$" "$so"
    else
        rm -f "$so.tmp.$$"
        result "$(basename "$src")" "compile error" 0 "$so.log"
    fi
done

for name in "${names[@]}"; do
    name=${name##*/}
    name=${name%.c}
    src=tests/faults/$name.c
    # fault_dlopen_preload is fault_dlopen built without obmem; soak_smoke
    # is a 5-second soak (make soak runs it for SOAK_SECONDS).
    extra=()
    [[ $name == fault_dlopen_preload ]] && src=tests/faults/fault_dlopen.c
    [[ $name == soak_smoke ]] && src=tests/faults/soak.c && extra=(SOAK_SECONDS=5)
    # These measure memory going back as blocks are freed (RSS, arenas in
    # use, what fits under RLIMIT_AS after a free): that is the purge policy
    # with no delay (OBMEM_PURGE_DELAY_MS=0, the behaviour before the delay
    # existed). The delay itself is tested in c_tests/test_purge.c.
    case $name in
        mem_return | mem_drift | fault_rlimit | fault_cancel) extra=(OBMEM_PURGE_DELAY_MS=0) ;;
        # fault_mmap counts mapping calls and expects a freed large block's
        # mapping to be reused from the cache: on a loaded machine a pause
        # longer than the purge delay would let it expire first.
        fault_mmap) extra=(OBMEM_PURGE_DELAY_MS=86400000) ;;
    esac
    exe=$BUILD/$name
    log=$BUILD/$name.log
    if [[ ! -f $src ]]; then
        result "$name" "no such test: $src" 0
        continue
    fi
    preload=()
    if [[ $UNLINKED == *" $name "* ]]; then
        build=("$CC" "${CFLAGS[@]}" -DFAULTS_UNLINKED "$src" -o "$exe.tmp.$$" -ldl -lpthread)
        preload=(LD_PRELOAD="$LIBDIR/libobmem.so")
    else
        build=("$CC" "${CFLAGS[@]}" "$src" -L"$LIBDIR" -lobmem -Wl,-rpath,"$LIBDIR" -ldl -lpthread
            -o "$exe.tmp.$$")
    fi
    if ! "${build[@]}" >"$log" 2>&1; then
        rm -f "$exe.tmp.$$"
        result "$name" "compile error" 0 "$log"
        continue
    fi
    mv -f "$exe.tmp.$$" "$exe"
    start=$(date +%s.%N)
    set +e
    timeout -k 10 "$TIMEOUT" env "${preload[@]}" "${extra[@]}" "$exe" </dev/null >"$log" 2>&1
    rc=$?
    set -e
    secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    # Each test's own result lines (indented, or starting with "summary")
    # are worth seeing even when it passes.
    if ((rc == 0)); then
        result "$name" ok "$secs"
        grep -E '^(summary|  )' "$log" | grep -v '^  .* ok (' | sed -e 's/^/    /' | head -n 40 || true
    elif ((rc == 124 || rc == 137)); then
        result "$name" "timed out after ${TIMEOUT}s" "$secs" "$log"
    elif ((rc > 128)); then
        result "$name" "signal $((rc - 128)) SIG$(kill -l $((rc - 128)) 2>/dev/null || echo '?')" "$secs" "$log"
    else
        result "$name" "exit code $rc" "$secs" "$log"
    fi
done

((failed == 0)) || echo "failed: ${failed_names[*]}"
echo "faults: $passed passed, $failed failed"
((failed == 0))
