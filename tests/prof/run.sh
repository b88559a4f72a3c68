#!/usr/bin/env bash
# tests/prof/run.sh: the heap profiler on unmodified programs, through the
# environment (OBMEM_PROF=<sample bytes>, OBMEM_PROF_DUMP=<prefix>) and
# LD_PRELOAD=target/release/libobmem.so:
#  - two_sites.c (built without obmem) keeps 48 MiB at site_a and 16 MiB at
#    site_b: the folded profile written at exit attributes them 3:1 (ratio
#    in [2.0, 4.5]) and the sum within 20% of the true bytes, from 1 and
#    from 4 threads (the bounds are derived in c_tests/test_prof.c: one
#    sample per 64 KiB, more than 5 standard deviations); with the blocks
#    freed before exit, nothing is live at the sites;
#  - python3 (PYTHONMALLOC=malloc) builds ~60 MB of objects and dumps the
#    profile through ctypes: most of the top stacks go through the
#    interpreter's allocation functions (PyObject_Malloc, *_New, ...), and
#    inferno-flamegraph renders the profile to SVG (skipped with a note if
#    inferno is not installed; `make run` installs it);
#  - unwind.c, every allocation sampled (OBMEM_PROF=1): the default
#    unwinder (cached DWARF rules) finds exactly the stacks libgcc's
#    _Unwind_Backtrace finds (OBMEM_PROF_UNWIND=libgcc), through each shape
#    unwind.c makes: alloca, a realigned frame, recursion cut at 48 frames,
#    qsort's comparator, a signal handler, another thread; and it calls
#    _Unwind_Backtrace (counted by the shim count_unwind.c) only for the
#    stack through the signal handler, the one it cannot walk itself;
#  - bad values of OBMEM_PROF and an unwritable OBMEM_PROF_DUMP give one
#    "obmem: " warning each, and the program runs normally.
# python3 is installed with apt-get if missing (tests/lib.sh; a failure if
# it cannot be). Prints PASS/FAIL per case and ends with "N passed, M failed".
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
LIB=$ROOT/target/release/libobmem.so
WORK=$ROOT/build/prof
mkdir -p "$WORK"
rm -f "$WORK"/*.folded "$WORK"/*.svg
for v in $(env | sed -n 's/^\(OBMEM_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done

source tests/lib.sh
TEST_LOG_LINES=20
if [[ -z ${PYTHON:-} ]]; then
    require_cmd python3 python3 || true
    PYTHON=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || echo python3)
fi

gcc -O2 -g -rdynamic -pthread -o "$WORK/two_sites" tests/prof/two_sites.c
gcc -O2 -g -rdynamic -pthread -o "$WORK/unwind" tests/prof/unwind.c
gcc -O2 -shared -fPIC -o "$WORK/count_unwind.so" tests/prof/count_unwind.c -ldl

# sites MODE THREADS: runs two_sites under the profiler and checks its dump.
sites() {
    local mode=$1 threads=$2 name="two_sites-$1-$2" out err dump verdict
    out=$WORK/$name.out err=$WORK/$name.err
    rm -f "$WORK/$name".*.folded
    if ! timeout 60 env OBMEM_PROF=65536 OBMEM_PROF_DUMP="$WORK/$name" LD_PRELOAD="$LIB" \
        "$WORK/two_sites" "$mode" "$threads" >"$out" 2>"$err"; then
        fail "$name" "exit status" "$err"
        return
    fi
    dump=$(ls "$WORK/$name".*.folded 2>/dev/null || true)
    if [[ $(echo "$dump" | wc -w) != 1 ]]; then
        fail "$name" "expected one $name.<pid>.folded, found: ${dump:-none}" "$err"
        return
    fi
    if [[ -s $err ]]; then
        fail "$name" "unexpected stderr" "$err"
        return
    fi
    verdict=$(awk -v mode="$mode" '
        FNR == NR { truth[$1] = $2; next }
        $NF !~ /^[0-9]+$/ || NF != 2 { bad = bad " malformed:" FNR }
        /;site_a/ { a += $NF }
        /;site_b/ { b += $NF }
        END {
            ta = truth["site_a"]; tb = truth["site_b"]
            printf "site_a %.2f MiB (true %.2f), site_b %.2f MiB (true %.2f): ", a / 1048576, ta / 1048576, b / 1048576, tb / 1048576
            if (bad != "") { print "FAIL" bad; exit }
            if (mode == "free") { print (a == 0 && b == 0) ? "ok" : "FAIL: live bytes left"; exit }
            r = b > 0 ? a / b : 0
            ok = r >= 2.0 && r <= 4.5 && a + b >= 0.8 * (ta + tb) && a + b <= 1.2 * (ta + tb)
            printf "ratio %.3f, total %.1f%% of true: %s\n", r, 100 * (a + b) / (ta + tb), ok ? "ok" : "FAIL"
        }' "$out" "$dump")
    echo "    $name: $verdict"
    if [[ $verdict == *FAIL* ]]; then fail "$name" "$verdict" "$dump"; else pass "$name"; fi
}

sites keep 1
sites keep 4
sites free 1
sites free 4

# The default unwinder against libgcc's: the same stacks, each shape found.
unwind_stacks() { # UNWINDER: the sorted distinct stacks of unwind.c's dump, and
    # the calls of _Unwind_Backtrace in $prefix.calls
    local prefix=$WORK/unwind-$1
    rm -f "$prefix".*.folded
    timeout 60 env OBMEM_PROF=1 OBMEM_PROF_UNWIND="$1" OBMEM_PROF_DUMP="$prefix" COUNT_UNWIND_OUT="$prefix.calls" \
        LD_PRELOAD="$WORK/count_unwind.so $LIB" "$WORK/unwind" >"$prefix.out" 2>"$prefix.err" || return 1
    [[ ! -s $prefix.err ]] || return 1
    cut -d' ' -f1 "$prefix".*.folded | sort -u >"$prefix.stacks"
}
name=unwind-same-stacks
if ! unwind_stacks dwarf || ! unwind_stacks libgcc; then
    fail "$name" "unwind.c failed" "$WORK/unwind-dwarf.err" "$WORK/unwind-libgcc.err"
elif ! diff "$WORK/unwind-libgcc.stacks" "$WORK/unwind-dwarf.stacks" >"$WORK/$name.diff"; then
    fail "$name" "the stacks differ (< libgcc, > dwarf)" "$WORK/$name.diff"
else
    missing=
    for re in ';main;(rec;){8}leaf_alloc$' ';with_alloca;leaf_alloc$' ';realigned;leaf_alloc$' \
        ';sort_some;qsort.*;compare;leaf_alloc$' ';on_signal;leaf_alloc$' ';thread_main;rec;rec;rec;rec;leaf_alloc$' \
        '^(rec;){47}leaf_alloc$'; do
        grep -qE "$re" "$WORK/unwind-dwarf.stacks" || missing+=" $re"
    done
    calls=$(cat "$WORK/unwind-dwarf.calls") libgcc_calls=$(cat "$WORK/unwind-libgcc.calls")
    echo "    unwind.c: $(wc -l <"$WORK/unwind-dwarf.stacks") distinct stacks, the same from both unwinders;" \
        "_Unwind_Backtrace called $calls times by default, $libgcc_calls with OBMEM_PROF_UNWIND=libgcc"
    if [[ -n $missing ]]; then
        fail "$name" "no stack matches:$missing" "$WORK/unwind-dwarf.stacks"
    elif [[ $calls != 1 ]] || ((libgcc_calls < 20)); then
        fail "$name" "_Unwind_Backtrace called $calls times (expected 1: the signal handler's stack), $libgcc_calls with libgcc"
    else
        pass "$name"
    fi
fi

# python3: the interpreter's allocation functions at the top.
name=python3
folded=$WORK/python3.folded
if ! timeout 120 env PYTHONMALLOC=malloc OBMEM_PROF=524288 LD_PRELOAD="$LIB" \
    "$PYTHON" tests/prof/py_live.py "$folded" >"$WORK/$name.out" 2>"$WORK/$name.err"; then
    fail "$name" "exit status" "$WORK/$name.err"
else
    # Of the 5 stacks with the most live bytes, at least 3 pass through a
    # function of the interpreter that allocates.
    alloc_re='(^|;)_?Py[A-Za-z_]*(Malloc|Realloc|New|NewVar|Alloc|Resize|From[A-Za-z]+|Finish)(;|$)'
    # sed, not head: head would close the pipe early and sort would die of
    # SIGPIPE, which pipefail turns into a failure of the whole script.
    top=$(sort -t' ' -k2,2nr "$folded" | sed -n 1,5p)
    hits=$(printf '%s\n' "$top" | cut -d' ' -f1 | grep -cE "$alloc_re" || true)
    echo "    python3: $(wc -l <"$folded") stacks, $hits of the top 5 through an allocation function"
    printf '%s\n' "$top" | awk '{ n = split($1, f, ";"); printf "      %10d  ...;%s;%s\n", $2, f[n - 1], f[n] }'
    if ((hits >= 3)); then pass "$name"; else fail "$name" "top stacks: $hits of 5 through an allocation function" "$folded"; fi
    if command -v inferno-flamegraph >/dev/null; then
        svg=$WORK/python3.svg
        if inferno-flamegraph --title "python3 live heap (obmem)" --countname bytes <"$folded" >"$svg" 2>"$WORK/flamegraph.err" &&
            grep -q '<svg' "$svg" && grep -q 'PyEval_EvalCode' "$svg"; then
            pass "python3-flamegraph"
        else
            fail "python3-flamegraph" "inferno-flamegraph did not render the profile" "$WORK/flamegraph.err"
        fi
    else
        echo "NOTE python3-flamegraph skipped: inferno-flamegraph is not installed (make run installs it)"
    fi
fi

# Bad environment values: one warning each, the program runs normally.
bad_env() {
    local name=$1 expect=$2
    shift 2
    local err=$WORK/$name.err
    if ! timeout 60 env "$@" LD_PRELOAD="$LIB" "$WORK/two_sites" free 1 >"$WORK/$name.out" 2>"$err"; then
        fail "$name" "exit status" "$err"
    elif [[ $(grep -c '^obmem: ' "$err") != 1 || $(grep -c "$expect" "$err") != 1 ]]; then
        fail "$name" "expected one warning matching '$expect'" "$err"
    else
        pass "$name"
    fi
}
bad_env env-prof-zero "OBMEM_PROF: invalid value '0'" OBMEM_PROF=0
bad_env env-prof-text "OBMEM_PROF: invalid value 'lots'" OBMEM_PROF=lots
bad_env env-prof-huge "OBMEM_PROF: invalid value '9999999999999'" OBMEM_PROF=9999999999999
bad_env env-dump-unwritable "OBMEM_PROF_DUMP: cannot write /nonexistent-dir/p\.[0-9]*\.folded" \
    OBMEM_PROF=65536 OBMEM_PROF_DUMP=/nonexistent-dir/p

finish
