#!/usr/bin/env bash
# tests/dropin/run.sh: obmem as a drop-in malloc for real programs.
# Each case runs a program twice, without and with
# LD_PRELOAD=target/release/libobmem.so (plus OBMEM_SHOW_STATS=1), and checks
#  - the same exit status and the same output (stdout, and files produced);
#  - the preload was active: stderr of the preloaded run has the statistics
#    table ("obmem statistics ...") showing real allocator traffic
#    (allocations counted in the class table, arenas allocated) -- for sort,
#    which closes stderr before exit, the dynamic linker's LD_DEBUG=bindings
#    trace shows sort's malloc/free bound to libobmem instead;
#  - obmem reported no error (no stderr line starting "obmem: ").
# Cases: python3 (PYTHONMALLOC=malloc) running alloc_heavy.py, the same
# under the debug hooks (OBMEM_MALLOC=debug), plus a ctypes
# check that malloc inside python is obmem's; sort on a 500k-line file
# (multi-threaded); gcc compiling a generated C file (same binary, same
# output); a multi-threaded C++ program (threads.cc) built without obmem;
# a C program built without obmem calling mallopt, mallinfo2, mallinfo and
# malloc_stats (glibc_surface.c), which must get obmem's answers.
# python3 and g++ are installed with apt-get if missing (tests/lib.sh; a
# failure if they cannot be).
# Prints PASS/FAIL per case and ends with "N passed, M failed".
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
LIB=$ROOT/target/release/libobmem.so
HERE=$ROOT/tests/dropin
WORK=$ROOT/build/dropin
TIMEOUT=${DROPIN_TIMEOUT:-90}
mkdir -p "$WORK"

source tests/lib.sh

if [[ ! -f $LIB ]]; then
    echo "dropin: $LIB is missing (run make build)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
require_cmd python3 python3 || true
[[ -n ${CXX:-} ]] || require_cmd g++ g++ || true

# Environment of both runs: no OBMEM_* from outside, deterministic locale.
for v in $(env | sed -n 's/^\(OBMEM_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
export LC_ALL=C

# Runs "$@" (a command) without obmem; stdout -> $name.ref.out.
run_ref() {
    local name=$1
    shift
    set +e
    timeout -k 5 "$TIMEOUT" "$@" >"$WORK/$name.ref.out" 2>"$WORK/$name.ref.err"
    echo $? >"$WORK/$name.ref.rc"
    set -e
}
# Runs "$@" with obmem preloaded and the statistics on.
run_obm() {
    local name=$1
    shift
    set +e
    timeout -k 5 "$TIMEOUT" env LD_PRELOAD="$LIB" OBMEM_SHOW_STATS=1 "$@" \
        >"$WORK/$name.obm.out" 2>"$WORK/$name.obm.err"
    echo $? >"$WORK/$name.obm.rc"
    set -e
}

# Checks the preloaded run's stderr: the table(s), with traffic, no error.
# Prints a reason and returns 1 on failure.
check_stats() {
    local err=$1 min_allocs=$2
    if ! grep -q '^obmem statistics' "$err"; then
        echo "no 'obmem statistics' table in stderr: LD_PRELOAD not active?"
        return 1
    fi
    if grep -q '^obmem: ' "$err"; then
        echo "obmem reported an error: $(grep -m1 '^obmem: ' "$err")"
        return 1
    fi
    # Class rows are 6 numbers (class size pools in-use free allocations);
    # "arenas in use N (allocated M, ...)".
    local allocs arenas
    allocs=$(awk 'NF == 6 && $1 ~ /^[0-9]+$/ && $6 ~ /^[0-9]+$/ { s += $6 } END { print s + 0 }' "$err")
    arenas=$(sed -n 's/^arenas in use.*allocated \([0-9]*\).*/\1/p' "$err" | awk '{ s += $1 } END { print s + 0 }')
    if ((allocs < min_allocs)); then
        echo "the table counts only $allocs allocations (expected >= $min_allocs)"
        return 1
    fi
    if ((arenas < 1)); then
        echo "the table shows no arena allocated"
        return 1
    fi
    echo "$allocs allocations, $arenas arenas"
}

# Compares the two runs of case $1 (exit status and stdout) and the stats.
compare_runs() {
    local name=$1 min_allocs=$2 why
    local ref_rc obm_rc
    ref_rc=$(cat "$WORK/$name.ref.rc")
    obm_rc=$(cat "$WORK/$name.obm.rc")
    if [[ $ref_rc != 0 ]]; then
        fail "$name" "the reference run without obmem failed (exit $ref_rc)" "$WORK/$name.ref.err"
        return 1
    fi
    if [[ $obm_rc != 0 ]]; then
        fail "$name" "exit $obm_rc with obmem (0 without)" "$WORK/$name.obm.err" "$WORK/$name.obm.out"
        return 1
    fi
    if ! cmp -s "$WORK/$name.ref.out" "$WORK/$name.obm.out"; then
        diff "$WORK/$name.ref.out" "$WORK/$name.obm.out" | head -n 20 >"$WORK/$name.diff" || true
        fail "$name" "output differs with obmem" "$WORK/$name.diff"
        return 1
    fi
    if ((min_allocs < 0)); then
        # No table expected (the program closes stderr before exit), but no
        # obmem error either.
        if grep -q '^obmem: ' "$WORK/$name.obm.err"; then
            fail "$name" "obmem reported an error" "$WORK/$name.obm.err"
            return 1
        fi
        echo -n >"$WORK/$name.note"
        return 0
    fi
    if ! why=$(check_stats "$WORK/$name.obm.err" "$min_allocs"); then
        fail "$name" "$why" "$WORK/$name.obm.err"
        return 1
    fi
    echo "    ($why)" >"$WORK/$name.note"
    return 0
}

# Proof through the dynamic linker that program $2's malloc and free bind to
# libobmem (LD_DEBUG=bindings output in files $1.*).
check_bindings() {
    local prefix=$1 prog=$2 sym
    for sym in malloc free; do
        if ! cat "$prefix".* 2>/dev/null |
            grep -q "binding file $prog \[0\] to $LIB \[0\]: normal symbol \`$sym'"; then
            echo "$prog's $sym is not bound to libobmem.so"
            return 1
        fi
    done
}

# ---- python3 -----------------------------------------------------------------
PY=$(command -v python3 || true)
if [[ -n $PY ]]; then
    # The real interpreter (not a pyenv shell shim).
    PY=$("$PY" -c 'import sys; print(sys.executable)')
    export PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
    PYTHONMALLOC=malloc run_ref python "$PY" "$HERE/alloc_heavy.py"
    PYTHONMALLOC=malloc run_obm python "$PY" "$HERE/alloc_heavy.py"
    if compare_runs python 1000000; then
        if ! grep -q '^done$' "$WORK/python.obm.out"; then
            fail python "alloc_heavy.py did not finish" "$WORK/python.obm.out"
        else
            pass python
            cat "$WORK/python.note"
        fi
    fi

    # The same script under the debug hooks (guards, fills, quarantine) runs
    # to the end with the same output and no report.
    cp "$WORK/python.ref.out" "$WORK/python_debug.ref.out"
    cp "$WORK/python.ref.rc" "$WORK/python_debug.ref.rc"
    OBMEM_MALLOC=debug PYTHONMALLOC=malloc run_obm python_debug "$PY" "$HERE/alloc_heavy.py"
    if compare_runs python_debug 1000000; then
        if ! grep -q '^debug hooks on: ' "$WORK/python_debug.obm.err"; then
            fail python_debug "the statistics do not show the debug hooks on" "$WORK/python_debug.obm.err"
        elif ! grep -q '^done$' "$WORK/python_debug.obm.out"; then
            fail python_debug "alloc_heavy.py did not finish" "$WORK/python_debug.obm.out"
        else
            pass python_debug
            cat "$WORK/python_debug.note"
        fi
    fi

    # Inside the preloaded interpreter, malloc is obmem's.
    probe='import ctypes as c
lib = c.CDLL(None)
lib.malloc.restype = c.c_void_p
lib.malloc.argtypes = [c.c_size_t]
lib.malloc_usable_size.restype = c.c_size_t
lib.malloc_usable_size.argtypes = [c.c_void_p]
lib.free.argtypes = [c.c_void_p]
p = lib.malloc(600)
print(lib.malloc_usable_size(p), hasattr(lib, "obm_usable_size"))
lib.free(p)'
    set +e
    out=$(PYTHONMALLOC=malloc timeout 30 env LD_PRELOAD="$LIB" "$PY" -c "$probe" 2>&1)
    set -e
    if [[ $out == "640 True" ]]; then
        pass python_malloc_is_obmem
    else
        echo "$out" >"$WORK/python_probe.out"
        fail python_malloc_is_obmem "expected '640 True' (usable size of malloc(600), obm_usable_size present), got '$out'" \
            "$WORK/python_probe.out"
    fi
else
    fail python "python3 not found"
fi

# ---- sort ----------------------------------------------------------------------
awk 'BEGIN { s = 12345; for (i = 0; i < 500000; i++) {
        s = (s * 1103515245 + 12345) % 2147483648; a = s;
        s = (s * 1103515245 + 12345) % 2147483648;
        printf "%08x,%d,line-%d-%s\n", a, s % 100000, i, substr("abcdefghijklmnopqrstuvwxyz", 1 + s % 26);
    } }' >"$WORK/sort_input.txt"
sort_cmd=(sort --parallel=4 -S 64M -t, -k2,2n -k1,1 "$WORK/sort_input.txt")
run_ref sort "${sort_cmd[@]}"
# sort closes stderr in an atexit handler (coreutils' close_stdout), before
# obmem can print its table: the proof of the preload is the dynamic
# linker's binding of sort's malloc/free to libobmem instead.
rm -f "$WORK"/sort.lddbg.*
LD_DEBUG=bindings LD_DEBUG_OUTPUT=$WORK/sort.lddbg run_obm sort "${sort_cmd[@]}"
if compare_runs sort -1; then
    if [[ $(wc -l <"$WORK/sort.obm.out") != 500000 ]]; then
        fail sort "sorted output does not have 500000 lines"
    elif ! why=$(check_bindings "$WORK/sort.lddbg" sort); then
        fail sort "$why"
    else
        pass sort
        cat "$WORK/sort.note"
    fi
fi

# ---- gcc -------------------------------------------------------------------------
# A generated C file big enough to keep cc1 busy: 400 functions and a table.
gen=$WORK/gen.c
{
    echo '#include <stdio.h>'
    echo '#include <stdlib.h>'
    echo '#include <string.h>'
    for i in $(seq 0 399); do
        echo "static unsigned long f$i(unsigned long x) { unsigned long r = x * $((i * 2 + 1))ul;"
        echo "  for (int k = 0; k < $((i % 7 + 1)); k++) { r ^= r >> $((i % 13 + 1)); r += (unsigned long)k * $i; }"
        echo "  switch (x % 5) { case 0: r += $i; break; case 1: r *= 3; break; case 2: r -= $((i * 3)); break; default: r ^= 0x$(printf %x $((i * 2654435761 % 4294967296))); }"
        echo "  return r; }"
    done
    echo 'typedef unsigned long (*fn)(unsigned long);'
    printf 'static const fn table[] = {'
    for i in $(seq 0 399); do printf 'f%d,' "$i"; done
    echo '};'
    echo 'int main(void) { unsigned long h = 1; char buf[64];'
    echo '  for (int i = 0; i < 100000; i++) { h = table[i % 400](h + (unsigned long)i);'
    echo '    snprintf(buf, sizeof buf, "%lu", h); h += strlen(buf); }'
    echo '  printf("result %lu\n", h); return 0; }'
} >"$gen"
CC_BIN=${CC:-gcc}
run_ref gcc_compile "$CC_BIN" -O2 -o "$WORK/gen_ref" "$gen"
run_obm gcc_compile "$CC_BIN" -O2 -o "$WORK/gen_obm" "$gen"
if compare_runs gcc_compile 10000; then
    set +e
    "$WORK/gen_ref" >"$WORK/gen_ref.run" 2>&1
    r1=$?
    "$WORK/gen_obm" >"$WORK/gen_obm.run" 2>&1
    r2=$?
    set -e
    if ((r1 != 0 || r2 != 0)); then
        fail gcc "the compiled programs exited $r1 (reference) and $r2 (compiled under obmem)"
    elif ! cmp -s "$WORK/gen_ref.run" "$WORK/gen_obm.run"; then
        fail gcc "the program compiled under obmem prints something else" "$WORK/gen_ref.run" "$WORK/gen_obm.run"
    elif ! cmp -s "$WORK/gen_ref" "$WORK/gen_obm"; then
        fail gcc "gcc under obmem produced a different binary"
    else
        pass gcc
        cat "$WORK/gcc_compile.note"
    fi
fi

# ---- multi-threaded C++ ---------------------------------------------------------
CXX_BIN=${CXX:-g++}
if "$CXX_BIN" -std=c++17 -O2 -pthread -o "$WORK/threads_cc" "$HERE/threads.cc" >"$WORK/threads_cc.build" 2>&1; then
    if ldd "$WORK/threads_cc" | grep -q libobmem; then
        fail cxx_threads "threads_cc is linked with obmem (it must not be)"
    else
        run_ref cxx_threads "$WORK/threads_cc"
        run_obm cxx_threads "$WORK/threads_cc"
        if compare_runs cxx_threads 100000; then
            pass cxx_threads
            cat "$WORK/cxx_threads.note"
        fi
    fi
else
    fail cxx_threads "threads.cc does not compile" "$WORK/threads_cc.build"
fi

# ---- glibc's introspection: mallopt, mallinfo2, mallinfo, malloc_stats ---------
if "${CC:-gcc}" -O1 -Wall -Wextra -Werror -Iinclude -o "$WORK/glibc_surface" \
    "$HERE/glibc_surface.c" >"$WORK/glibc_surface.build" 2>&1; then
    run_ref glibc_surface "$WORK/glibc_surface"
    run_obm glibc_surface "$WORK/glibc_surface"
    if compare_runs glibc_surface 1000; then
        err=$WORK/glibc_surface.obm.err
        if ! grep -q '^Arena 0:' "$WORK/glibc_surface.ref.err"; then
            fail glibc_surface "glibc's malloc_stats printed no 'Arena 0:' without obmem" "$WORK/glibc_surface.ref.err"
        elif grep -q '^Arena 0:' "$err" || (($(grep -c '^obmem statistics' "$err") < 2)); then
            fail glibc_surface "malloc_stats did not print obmem's table (plus the one at exit)" "$err"
        elif ! grep -q '^mallinfo2 is obmem.s: yes$' "$err"; then
            fail glibc_surface "mallinfo2 does not report obmem's figures" "$err"
        else
            pass glibc_surface
            cat "$WORK/glibc_surface.note"
        fi
    fi
else
    fail glibc_surface "glibc_surface.c does not compile" "$WORK/glibc_surface.build"
fi

finish
