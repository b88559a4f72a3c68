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
#    inferno-flamegraph ($FLAMEGRAPH, else the PATH's) renders the profile
#    to SVG (a failure if it is not installed: `make test-prof` installs
#    it, with `cargo install inferno --locked`);
#  - unwind.c, every allocation sampled (OBMEM_PROF=1): the default
#    unwinder (cached DWARF rules) finds exactly the stacks libgcc's
#    _Unwind_Backtrace finds (OBMEM_PROF_UNWIND=libgcc), through each shape
#    unwind.c makes: alloca, a realigned frame, recursion cut at 48 frames,
#    qsort's comparator, a signal handler, another thread; and it leaves
#    libgcc only the stack through the signal handler, the one it cannot
#    walk itself (the count in the text dump's header, which the shim
#    dump_text.c writes at exit);
#  - two_sites fork: the child's own dump holds the profile it inherited,
#    less what it freed, plus what it allocated after the fork;
#  - bad values of OBMEM_PROF, OBMEM_PROF_UNWIND and OBMEM_PROF_DUMP (empty,
#    longer than 4000 bytes, unwritable) and a profile table that cannot be
#    mapped (OBMEM_FAIL_MMAP=prof-table) give one "obmem: " warning each,
#    and the program runs normally; under the debug hooks nothing is
#    sampled.
# python3 is installed with apt-get if missing (tests/lib.sh; a failure if
# it cannot be). Prints PASS/FAIL per case and ends with "N passed, M failed".
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
LIB=$ROOT/target/release/libobmem.so
WORK=$ROOT/build/prof
FLAMEGRAPH=${FLAMEGRAPH:-$(command -v inferno-flamegraph || true)}
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
gcc -O2 -shared -fPIC -o "$WORK/dump_text.so" tests/prof/dump_text.c -ldl

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

# fork: the child keeps the parent's profile (its live samples are the
# blocks it inherited; the parent's site_b blocks, which it frees, leave it),
# goes on profiling (site_c, 48 MiB) and writes its own
# <prefix>.<childpid>.folded at exit; the parent's own dump has none of the
# child's doings. Each estimate of 48 MiB is within 20% (5.4 standard
# deviations at one sample per 64 KiB, the bound derived for two_sites-keep).
fork_case() {
    local name=two_sites-fork out err verdict ppid cpid
    out=$WORK/$name.out err=$WORK/$name.err
    rm -f "$WORK/$name".*.folded
    if ! timeout 60 env OBMEM_PROF=65536 OBMEM_PROF_DUMP="$WORK/$name" LD_PRELOAD="$LIB" \
        "$WORK/two_sites" fork 1 >"$out" 2>"$err"; then
        fail "$name" "exit status" "$err"
        return
    fi
    ppid=$(sed -n 's/^parent_pid //p' "$out") cpid=$(sed -n 's/^child_pid //p' "$out")
    local dumps
    dumps=$(cd "$WORK" && ls "$name".*.folded 2>/dev/null | sort | tr '\n' ' ')
    if [[ -z $ppid || -z $cpid || $dumps != "$(printf '%s\n' "$name.$ppid.folded" "$name.$cpid.folded" | sort | tr '\n' ' ')" ]]; then
        fail "$name" "expected $name.<parent pid $ppid>.folded and $name.<child pid $cpid>.folded, found: ${dumps:-none}" "$err"
        return
    fi
    if [[ -s $err ]]; then
        fail "$name" "unexpected stderr" "$err"
        return
    fi
    verdict=$(awk -v pf="$WORK/$name.$ppid.folded" -v cf="$WORK/$name.$cpid.folded" '
        { file = FILENAME == pf ? 2 : FILENAME == cf ? 3 : 1 }
        file == 1 { truth[$1] = $2; next }
        $NF !~ /^[0-9]+$/ || NF != 2 { bad = bad " malformed:" FILENAME ":" FNR }
        /;site_a/ { a[file] += $NF }
        /;site_b/ { b[file] += $NF }
        /;site_c/ { c[file] += $NF }
        function near(x, t) { return x >= 0.8 * t && x <= 1.2 * t }
        END {
            ta = truth["site_a"]; tb = truth["site_b"]; tc = truth["child_site_c"]; M = 1048576
            printf "parent: site_a %.2f MiB (true %.2f), site_b %.2f (true %.2f), site_c %.2f (none); ", a[2] / M, ta / M, b[2] / M, tb / M, c[2] / M
            printf "child: site_a %.2f (inherited), site_b %.2f (freed), site_c %.2f (true %.2f): ", a[3] / M, b[3] / M, c[3] / M, tc / M
            if (bad != "") { print "FAIL" bad; exit }
            r = b[2] > 0 ? a[2] / b[2] : 0
            ok = r >= 2.0 && r <= 4.5 && near(a[2] + b[2], ta + tb) && c[2] == 0
            ok = ok && near(a[3], ta) && b[3] == 0 && near(c[3], tc)
            print ok ? "ok" : "FAIL"
        }' "$out" "$WORK/$name.$ppid.folded" "$WORK/$name.$cpid.folded")
    echo "    $name: $verdict"
    if [[ $verdict == *FAIL* ]]; then fail "$name" "$verdict"; else pass "$name"; fi
}
fork_case

# The default unwinder against libgcc's: the same stacks, each shape found.
unwind_stacks() { # UNWINDER: the sorted distinct stacks of unwind.c's dump, and
    # the stacks libgcc's unwinder walked in $prefix.calls
    local prefix=$WORK/unwind-$1
    rm -f "$prefix".*.folded
    timeout 60 env OBMEM_PROF=1 OBMEM_PROF_UNWIND="$1" OBMEM_PROF_DUMP="$prefix" DUMP_TEXT_OUT="$prefix.txt" \
        LD_PRELOAD="$WORK/dump_text.so $LIB" "$WORK/unwind" >"$prefix.out" 2>"$prefix.err" || return 1
    [[ ! -s $prefix.err ]] || return 1
    cut -d' ' -f1 "$prefix".*.folded | sort -u >"$prefix.stacks"
    sed -n 's/^stacks captured since the process started: [0-9]*, \([0-9]*\) of them by libgcc.s unwinder$/\1/p' \
        "$prefix.txt" >"$prefix.calls"
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
        "libgcc's unwinder walked $calls of them by default, $libgcc_calls with OBMEM_PROF_UNWIND=libgcc"
    if [[ -n $missing ]]; then
        fail "$name" "no stack matches:$missing" "$WORK/unwind-dwarf.stacks"
    elif [[ $calls != 1 ]] || ((libgcc_calls < 20)); then
        fail "$name" "libgcc's unwinder walked $calls stacks (expected 1: the signal handler's), $libgcc_calls with libgcc"
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
    # function of the interpreter that allocates. A stripped interpreter
    # (Debian's /usr/bin/python3) names only its exported functions, so
    # its allocators' static helpers show as `python3.11+0x...`: there, the
    # stacks must at least end in the interpreter's code.
    alloc_re='(^|;)_?Py[A-Za-z_]*(Malloc|Realloc|New|NewVar|Alloc|Resize|From[A-Za-z]+|Finish)(;|$)'
    what="through an allocation function"
    if ! readelf -S "$(readlink -f "$PYTHON")" 2>/dev/null | grep -q '\.symtab'; then
        echo "    python3: $(readlink -f "$PYTHON") has no symbol table: checking that the top stacks end in the interpreter"
        alloc_re='(^|;)(_?Py[A-Za-z_]*|python[0-9.]*\+0x[0-9a-f]+)$'
        what="ending in the interpreter"
    fi
    # sed, not head: head would close the pipe early and sort would die of
    # SIGPIPE, which pipefail turns into a failure of the whole script.
    top=$(sort -t' ' -k2,2nr "$folded" | sed -n 1,5p)
    hits=$(printf '%s\n' "$top" | cut -d' ' -f1 | grep -cE "$alloc_re" || true)
    echo "    python3: $(wc -l <"$folded") stacks, $hits of the top 5 $what"
    printf '%s\n' "$top" | awk '{ n = split($1, f, ";"); printf "      %10d  ...;%s;%s\n", $2, f[n - 1], f[n] }'
    if ((hits >= 3)); then pass "$name"; else fail "$name" "top stacks: $hits of 5 $what" "$folded"; fi
    if [[ -n $FLAMEGRAPH && -x $FLAMEGRAPH ]]; then
        svg=$WORK/python3.svg
        if "$FLAMEGRAPH" --title "python3 live heap (obmem)" --countname bytes <"$folded" >"$svg" 2>"$WORK/flamegraph.err" &&
            grep -q '<svg' "$svg" && grep -q 'PyEval_EvalCode' "$svg"; then
            pass "python3-flamegraph"
        else
            fail "python3-flamegraph" "inferno-flamegraph did not render the profile" "$WORK/flamegraph.err"
        fi
    else
        fail "python3-flamegraph" "inferno-flamegraph is not installed${FLAMEGRAPH:+ at $FLAMEGRAPH}: \`make test-prof\` installs it (cargo install inferno --locked)"
    fi
fi

# check_dump PREFIX WANT: the dump at exit, PREFIX.<pid>.folded, is WANT:
# "none" (no such file), "empty" (one, empty: no profile) or "sites" (one,
# with site_a and site_b live in it).
check_dump() {
    local dumps
    dumps=$(ls "$1".*.folded 2>/dev/null || true)
    case $2 in
    none) [[ -z $dumps ]] ;;
    empty) [[ $(echo "$dumps" | wc -w) == 1 && -f $dumps && ! -s $dumps ]] ;;
    sites) [[ $(echo "$dumps" | wc -w) == 1 ]] && grep -q ';site_a' "$dumps" && grep -q ';site_b' "$dumps" ;;
    *) return 1 ;;
    esac
}

# Bad environment values: one warning each, the program runs normally.
# bad_env NAME WARNINGS EXPECT DUMP [VAR=VALUE...]: runs two_sites with the
# variables; stderr must have WARNINGS "obmem: " lines, one of them matching
# EXPECT (none if WARNINGS is 0), and DUMP ("-", or "PREFIX WANT" for
# check_dump) says what the dump at exit must be.
bad_env() {
    local name=$1 warnings=$2 expect=$3 dump=$4 prefix want
    shift 4
    local err=$WORK/$name.err
    if [[ $dump != - ]]; then
        read -r prefix want <<<"$dump"
        rm -f "$prefix".*.folded
    fi
    if ! timeout 60 env "$@" LD_PRELOAD="$LIB" "$WORK/two_sites" keep 1 >"$WORK/$name.out" 2>"$err"; then
        fail "$name" "exit status" "$err"
    elif [[ $(grep -c '^obmem: ' "$err") != "$warnings" ]] || { ((warnings > 0)) && [[ $(grep -c "$expect" "$err") != 1 ]]; }; then
        fail "$name" "expected $warnings warning(s)${expect:+, one matching '$expect'}" "$err"
    elif [[ $dump != - ]] && ! check_dump "$prefix" "$want"; then
        fail "$name" "expected its dump $prefix.<pid>.folded to be: $want" "$err"
    else
        pass "$name"
    fi
}
bad_env env-prof-zero 1 "OBMEM_PROF: invalid value '0'" - OBMEM_PROF=0
bad_env env-prof-text 1 "OBMEM_PROF: invalid value 'lots'" - OBMEM_PROF=lots
bad_env env-prof-huge 1 "OBMEM_PROF: invalid value '9999999999999'" - OBMEM_PROF=9999999999999
bad_env env-dump-unwritable 1 "OBMEM_PROF_DUMP: cannot write /nonexistent-dir/p\.[0-9]*\.folded" - \
    OBMEM_PROF=65536 OBMEM_PROF_DUMP=/nonexistent-dir/p
# A bad unwinder: the default one (DWARF) finds the sites.
bad_env env-unwind-bad 1 "OBMEM_PROF_UNWIND: invalid value 'frames' (expected dwarf, libgcc or fp); using dwarf" \
    "$WORK/env-unwind-bad sites" OBMEM_PROF=65536 OBMEM_PROF_UNWIND=frames OBMEM_PROF_DUMP="$WORK/env-unwind-bad"
bad_env env-dump-empty 1 "OBMEM_PROF_DUMP: invalid value '' (expected a path prefix); using no dump" - \
    OBMEM_PROF=65536 OBMEM_PROF_DUMP=
# long_prefix N: a path prefix of exactly N bytes under $WORK/long (each
# name under 256 bytes, with room for ".<pid>.folded"), its directories made.
long_prefix() {
    local p=$WORK/long seg
    seg=$(printf '%0199d' 0 | tr 0 d)
    while (($1 - ${#p} > 220)); do p+=/$seg; done
    mkdir -p "$p"
    printf '%s/%s' "$p" "$(printf "%0$(($1 - ${#p} - 1))d" 0 | tr 0 p)"
}
# 4000 bytes is the longest prefix (config.rs): used; one more is too long.
long=$(long_prefix 4000)
bad_env env-dump-4000 0 "" "$long sites" OBMEM_PROF=65536 OBMEM_PROF_DUMP="$long"
long=$(long_prefix 4001)
bad_env env-dump-too-long 1 "OBMEM_PROF_DUMP: invalid value '$WORK/long/d.*' (expected a path prefix); using no dump (1 to 4000 bytes)" \
    "$long none" OBMEM_PROF=65536 OBMEM_PROF_DUMP="$long"
# The profile's table cannot be mapped: profiling is off, with one warning,
# and the dump at exit is that of no profile, an empty file.
bad_env env-prof-table 1 "^obmem: OBMEM_PROF: cannot map the profile's table; profiling off$" \
    "$WORK/env-prof-table empty" OBMEM_FAIL_MMAP=prof-table OBMEM_PROF=65536 OBMEM_PROF_DUMP="$WORK/env-prof-table"
# Allocator hooks (here the debug hooks) installed: nothing is sampled.
bad_env env-hooked 0 "" "$WORK/env-hooked empty" OBMEM_MALLOC=debug OBMEM_PROF=65536 OBMEM_PROF_DUMP="$WORK/env-hooked"

finish
