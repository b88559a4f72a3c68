#!/usr/bin/env bash
# tests/compat/run.sh [--quick] [CASE...]: real programs under
# LD_PRELOAD=target/release/libobmem.so, each compared with the same run on
# glibc's malloc. CASEs: python sqlite git make pipelines redis (all by
# default). --quick runs smaller workloads (`make test-compat-quick`, under
# about a minute and a half on two cores); without it the full workloads
# run (`make test-compat`).
#
#  python     CPython's own regression tests, `python3 -m test`, with
#             PYTHONMALLOC=malloc: the outcome of every test case must match
#  sqlite     sqlite3 running a generated SQL workload (gen_sql.py): the
#             output must match, and match what the generator predicts
#  git        a generated repository (gen_repo.sh): commits, branches,
#             merges, tags, fast-import, gc --aggressive, repack, fsck,
#             bundle, clones; the object names and reports must match
#  make       make -j2 building a generated C/C++ project (gen_cproj.sh):
#             identical object files, archive and program
#  pipelines  bash and coreutils pipelines over generated data
#             (pipelines.sh): identical output
#  redis      redis-server loaded over loopback (gen_redis.py data set,
#             redis-benchmark, redis-cli checks), shut down cleanly
#
# Every case also checks that obmem was really in use in the preloaded run
# (the statistics table of OBMEM_SHOW_STATS=1, or libobmem.so in
# /proc/PID/maps of the running process) and that obmem reported no error.
# Missing Debian packages (sqlite3, git, make, gcc, g++, redis-server,
# redis-tools) are installed with apt-get (through sudo -n when not root).
#
# Prints one line per case: PASS/FAIL/SKIP, name, the wall-clock time of
# the glibc and the obmem run and their CPU time (user + system of the
# processes started, from bash's `times`: less sensitive to other load on
# the machine), notes; ends with "N passed, M failed". Logs of the
# last run of each case are kept in build/compat/<case>/ (glibc.* and
# obmem.* for the two runs, reason on failure); temporary files go to a
# directory under $TMPDIR (or /tmp), removed at exit unless COMPAT_KEEP=1.
# COMPAT_TIMEOUT overrides the time limit of one run (seconds).
# COMPAT_OBMEM_ENV adds VAR=VALUE words to the environment of every obmem
# run, e.g. COMPAT_OBMEM_ENV=OBMEM_MALLOC=debug for the debug hooks.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
LIB=$ROOT/target/release/libobmem.so
HERE=$ROOT/tests/compat
LOGS=$ROOT/build/compat

MODE=full
CASES=()
for arg in "$@"; do
    case $arg in
    --quick) MODE=quick ;;
    --full) MODE=full ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
        exit 0
        ;;
    python | sqlite | git | make | pipelines | redis) CASES+=("$arg") ;;
    *)
        echo "compat: unknown argument '$arg' (see --help)" >&2
        exit 2
        ;;
    esac
done
((${#CASES[@]})) || CASES=(python sqlite git make pipelines redis)

# Workload sizes.
if [[ $MODE == quick ]]; then
    PY_LIST=$HERE/regrtest_quick.txt
    SQL_SCALE=20000
    GIT_COMMITS=60 GIT_IMPORTED=1000
    MAKE_MODULES=30
    PIPE_LINES=40000
    REDIS_SCALE=20000
    # shellcheck disable=SC2054 # (-t takes a comma-separated list)
    REDIS_BENCH=(-n 10000 -t set,get,incr,lpush,lpop,sadd,hset,zadd,lrange_100,mset)
    # shellcheck disable=SC2054
    REDIS_BENCH_P=(-n 30000 -P 16 -t set,get,lpush,sadd,hset)
    RUN_TIMEOUT=${COMPAT_TIMEOUT:-180}
else
    PY_LIST=$HERE/regrtest_full.txt
    SQL_SCALE=200000
    GIT_COMMITS=400 GIT_IMPORTED=20000
    MAKE_MODULES=200
    PIPE_LINES=300000
    REDIS_SCALE=100000
    REDIS_BENCH=(-n 50000)
    REDIS_BENCH_P=(-n 200000 -P 16)
    RUN_TIMEOUT=${COMPAT_TIMEOUT:-1200}
fi

# Extra environment of the obmem runs (word-split on purpose).
# shellcheck disable=SC2206
OBM_EXTRA=(${COMPAT_OBMEM_ENV:-})
for w in "${OBM_EXTRA[@]}"; do
    [[ $w == [A-Za-z_]*=* ]] || {
        echo "compat: COMPAT_OBMEM_ENV must hold VAR=VALUE words, not '$w'" >&2
        exit 2
    }
done

# The same environment for both runs: no OBMEM_* or LD_PRELOAD from
# outside, a fixed locale and time zone.
for v in $(env | sed -n 's/^\(OBMEM_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
unset LD_PRELOAD
export LC_ALL=C TZ=UTC

# Only the logs of the cases about to run are replaced.
mkdir -p "$LOGS"
for c in "${CASES[@]}"; do rm -rf "${LOGS:?}/$c"; done
rm -f "$LOGS/install.log"
TMPROOT=$(mktemp -d "${TMPDIR:-/tmp}/obmem-compat.XXXXXX")
cleanup() {
    if [[ ${COMPAT_KEEP:-0} == 1 ]]; then
        echo "compat: temporary files kept in $TMPROOT"
    else
        rm -rf "$TMPROOT"
    fi
}
trap cleanup EXIT

if [[ ! -f $LIB ]]; then
    echo "compat: $LIB is missing (run make build)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

# ---- installing what is missing ---------------------------------------------------
# apt_install PKG... and need_cmd CMD PKG (tests/lib.sh; its pass/fail
# bookkeeping is replaced by this script's own below), logging to
# build/compat/install.log.
source "$ROOT/tests/lib.sh"
APT_LOG=$LOGS/install.log

# The real python interpreter (pyenv's python3 is a shell shim), with
# CPython's test package; Debian's interpreter gets it from
# libpython3.X-testsuite.
PY=
find_python() {
    local cand
    cand=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || return 1
    PY=$cand
}
# (Debian's libpython3.X-stdlib has test.support and test.libregrtest but
# not the tests.)
has_regrtest() {
    "$1" -c 'import importlib.util, sys, test.libregrtest, test.support
sys.exit(importlib.util.find_spec("test.test_dict") is None)' >/dev/null 2>&1
}

MISSING=()
REDIS_MISSING=0
for c in "${CASES[@]}"; do
    case $c in
    sqlite) need_cmd sqlite3 sqlite3 || MISSING+=("sqlite3 (Debian package sqlite3)") ;;
    git) need_cmd git git || MISSING+=("git") ;;
    make)
        need_cmd make make || MISSING+=("make")
        need_cmd gcc gcc || MISSING+=("gcc")
        need_cmd g++ g++ || MISSING+=("g++")
        need_cmd ar binutils || MISSING+=("ar (binutils)")
        ;;
    redis)
        if ! need_cmd redis-server redis-server || ! need_cmd redis-benchmark redis-tools ||
            ! need_cmd redis-cli redis-tools; then
            REDIS_MISSING=1
        fi
        ;;
    esac
done
if ! find_python; then
    MISSING+=("python3 (the generators and the python case need it)")
elif [[ " ${CASES[*]} " == *" python "* ]] && ! has_regrtest "$PY"; then
    ver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    if [[ $PY == /usr/bin/* ]]; then
        apt_install "libpython$ver-testsuite" || true
    fi
    has_regrtest "$PY" || MISSING+=("CPython's test package for $PY (Debian: libpython$ver-testsuite)")
fi
for d in timeout cmp sha256sum; do
    command -v "$d" >/dev/null 2>&1 || MISSING+=("$d (coreutils/diffutils)")
done
export PY

# ---- helpers for the cases (they run in a subshell each) -----------------------
# Each case runs as `( set -e; case_NAME )` with CD=build/compat/NAME (its
# logs) and T=<temporary directory>/NAME. It records the two run times with
# run_timed, calls fail "reason" to fail (which exits the subshell), note
# "text" to add a remark, skip "reason" to be skipped.

fail() {
    echo "$*" >>"$CD/reason"
    exit 1
}
note() { echo "$*" >>"$CD/note"; }
skip() {
    echo "$*" >"$CD/skip"
    exit 0
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
# read_cpu VAR: user + system CPU time of this shell's waited-for children,
# in ms, into VAR (bash's `times`, run in this shell, not in a $(...)
# subshell; its second line reads "0m1.234s 0m0.056s").
read_cpu() {
    times >"$T/.times"
    printf -v "$1" %s "$(awk 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60000 + a[2] * 1000 }
        printf "%d\n", t }' "$T/.times")"
}
# start_clock / stop_clock KIND: adds the wall and CPU time between the two
# to $CD/KIND.ms and $CD/KIND.cpu.ms.
start_clock() {
    CLOCK_WALL=$(now_ms)
    read_cpu CLOCK_CPU
}
stop_clock() {
    local cpu
    read_cpu cpu
    add_ms "$1" $(($(now_ms) - CLOCK_WALL))
    add_ms "$1.cpu" $((cpu - CLOCK_CPU))
}

# run_timed KIND BASE [VAR=VALUE...] -- CMD...: runs CMD (KIND glibc: as
# is; KIND obmem: with LD_PRELOAD=libobmem.so) under `timeout`, stdout to
# BASE.out, stderr to BASE.err; sets RC and records the time in
# $CD/KIND.ms (added up over several calls).
run_timed() {
    local kind=$1 base=$2
    shift 2
    local envs=()
    while [[ $1 != -- ]]; do
        envs+=("$1")
        shift
    done
    shift
    [[ $kind == obmem ]] && envs+=("LD_PRELOAD=$LIB" "${OBM_EXTRA[@]}")
    start_clock
    # (In an || list, a failure is not an error for errexit or the ERR trap.)
    RC=0
    timeout -k 10 "$RUN_TIMEOUT" env "${envs[@]}" "$@" >"$base.out" 2>"$base.err" || RC=$?
    stop_clock "$kind"
    if ((RC == 124 || RC == 137)); then
        fail "$kind run of $1 timed out after $RUN_TIMEOUT s (logs: ${base#"$ROOT"/}.*)"
    fi
}
add_ms() {
    local prev=0
    [[ -f $CD/$1.ms ]] && prev=$(cat "$CD/$1.ms")
    echo $((prev + $2)) >"$CD/$1.ms"
}

# stats_tables FILE: how many statistics tables (one per process that exited
# with OBMEM_SHOW_STATS=1 and stderr open) FILE has.
stats_tables() { grep -c '^obmem statistics' "$1" || true; }
# stats_allocs FILE: allocations counted in the class rows of the tables.
stats_allocs() {
    awk 'NF == 6 && $1 ~ /^[0-9]+$/ && $6 ~ /^[0-9]+$/ { s += $6 } END { printf "%d\n", s }' "$1"
}
# check_stats FILE MIN_TABLES MIN_ALLOCS: the preloaded run wrote at least
# MIN_TABLES tables counting MIN_ALLOCS allocations, and no obmem error.
check_stats() {
    local f=$1 tables allocs
    no_obmem_error "$f"
    tables=$(stats_tables "$f")
    allocs=$(stats_allocs "$f")
    ((tables >= $2)) || fail "only $tables obmem statistics tables in ${f#"$ROOT"/} (expected >= $2): was LD_PRELOAD active?"
    ((allocs >= $3)) || fail "the statistics tables count $allocs allocations (expected >= $3)"
    note "$tables stats tables, $allocs allocations"
}
# no_obmem_error FILE...: no line starting with "obmem: " (obmem's error
# reports: invalid free, double free, debug hook findings).
no_obmem_error() {
    local f
    for f in "$@"; do
        if grep -q '^obmem: ' "$f"; then
            fail "obmem reported an error in ${f#"$ROOT"/}: $(grep -m1 '^obmem: ' "$f")"
        fi
    done
}
# same FILE1 FILE2 WHAT: fail with a diff excerpt unless identical.
same() {
    if ! cmp -s "$1" "$2"; then
        diff "$1" "$2" | head -n 40 >"$CD/diff.txt" || true
        fail "$3 differs between glibc and obmem (${1#"$ROOT"/} vs ${2#"$ROOT"/}; see ${CD#"$ROOT"/}/diff.txt)"
    fi
}
# child_pid PID: the (first) child process of PID, e.g. the program that
# `timeout` runs; empty if none yet.
child_pid() {
    local c=
    if [[ -r /proc/$1/task/$1/children ]]; then
        read -r c _ <"/proc/$1/task/$1/children" || true
    elif command -v ps >/dev/null 2>&1; then
        c=$(ps -o pid= --ppid "$1" 2>/dev/null | awk 'NR == 1 { print $1 }')
    fi
    echo "$c"
}
# wait_mapped PID WHAT: polls until libobmem.so is mapped into the child of
# PID (`timeout` PID) and its image is WHAT; 0 when seen, 1 if PID ended
# first or 20 s passed.
wait_mapped() {
    local tpid=$1 what=$2 pid i
    for ((i = 0; i < 400; i++)); do
        pid=$(child_pid "$tpid")
        if [[ -n $pid ]] && [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == *"$what"* ]]; then
            grep -q libobmem "/proc/$pid/maps" 2>/dev/null && return 0
            return 1
        fi
        kill -0 "$tpid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- python ----------------------------------------------------------------------
case_python() {
    local tests=() t
    while read -r t; do
        [[ -z $t || $t == \#* ]] && continue
        if "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('test.$t') is None)" 2>/dev/null; then
            tests+=("$t")
        else
            note "$t not in this Python's test package: left out"
        fi
    done <"$PY_LIST"
    ((${#tests[@]})) || fail "none of the tests of ${PY_LIST#"$ROOT"/} exists"
    note "$PY, ${#tests[@]} test files"
    # Both runs from a scratch directory (regrtest creates its own there);
    # PYTHONMALLOC=malloc in both, so that every object is a malloc block.
    local common=(PYTHONMALLOC=malloc PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1)
    local kind
    for kind in glibc obmem; do
        mkdir -p "$T/$kind"
        cd "$T/$kind"
        if [[ $kind == glibc ]]; then
            run_timed glibc "$CD/glibc" "${common[@]}" -- \
                "$PY" -m test --junit-xml "$CD/glibc.xml" "${tests[@]}"
            echo "$RC" >"$CD/glibc.rc"
        else
            # Started in the background to look at the interpreter's
            # /proc/PID/maps while it runs (OBMEM_SHOW_STATS would write into
            # the stderr of the interpreters that the tests start and check).
            local tpid mapped=0
            start_clock
            timeout -k 10 "$RUN_TIMEOUT" env "${common[@]}" LD_PRELOAD="$LIB" "${OBM_EXTRA[@]}" \
                "$PY" -m test --junit-xml "$CD/obmem.xml" "${tests[@]}" \
                >"$CD/obmem.out" 2>"$CD/obmem.err" &
            tpid=$!
            wait_mapped "$tpid" python && mapped=1
            RC=0
            wait "$tpid" || RC=$?
            stop_clock obmem
            echo "$RC" >"$CD/obmem.rc"
            ((RC != 124 && RC != 137)) || fail "the obmem run timed out after $RUN_TIMEOUT s"
            ((mapped)) || fail "libobmem.so was not in /proc/PID/maps of the running interpreter"
        fi
        cd "$ROOT"
    done
    local rg ro
    rg=$(cat "$CD/glibc.rc")
    ro=$(cat "$CD/obmem.rc")
    [[ -s $CD/glibc.xml ]] || fail "the glibc run wrote no JUnit report (exit $rg; see ${CD#"$ROOT"/}/glibc.out)"
    [[ -s $CD/obmem.xml ]] || fail "the obmem run wrote no JUnit report (exit $ro; see ${CD#"$ROOT"/}/obmem.out)"
    "$PY" "$HERE/junit_cases.py" "$CD/glibc.xml" >"$CD/glibc.cases"
    "$PY" "$HERE/junit_cases.py" "$CD/obmem.xml" >"$CD/obmem.cases"
    same "$CD/glibc.cases" "$CD/obmem.cases" "the outcome of the test cases"
    [[ $rg == "$ro" ]] || fail "regrtest exited $ro with obmem, $rg with glibc"
    grep '^Total tests:' "$CD/glibc.out" >"$CD/glibc.summary" || true
    grep '^Total tests:' "$CD/obmem.out" >"$CD/obmem.summary" || true
    same "$CD/glibc.summary" "$CD/obmem.summary" "the 'Total tests' summary"
    no_obmem_error "$CD/obmem.out" "$CD/obmem.err"
    local bad
    bad=$(grep -c -v ' ok$\| skipped$' "$CD/glibc.cases" || true)
    if ((rg != 0 || bad != 0)); then
        note "glibc itself: exit $rg, $bad failed test cases (the same with obmem)"
    fi
    note "$(wc -l <"$CD/glibc.cases") test cases with the same outcome$(sed 's/^/; /' "$CD/glibc.summary")"

    # In the same environment, malloc is obmem's and Python uses it.
    local probe='import ctypes as c, _testcapi
lib = c.CDLL(None)
lib.malloc.restype = c.c_void_p
lib.malloc.argtypes = [c.c_size_t]
lib.malloc_usable_size.restype = c.c_size_t
lib.malloc_usable_size.argtypes = [c.c_void_p]
lib.free.argtypes = [c.c_void_p]
ok = hasattr(lib, "obm_usable_size")
p = lib.malloc(600)
if ok:
    lib.obm_usable_size.restype = c.c_size_t
    lib.obm_usable_size.argtypes = [c.c_void_p]
    ok = lib.malloc_usable_size(p) == lib.obm_usable_size(p) >= 600
print(_testcapi.pymem_getallocatorsname(), "libobmem" in open("/proc/self/maps").read(), ok)
lib.free(p)'
    local out
    out=$(env "${common[@]}" LD_PRELOAD="$LIB" "${OBM_EXTRA[@]}" timeout 60 "$PY" -c "$probe" 2>&1) || true
    [[ $out == "malloc True True" ]] ||
        fail "probe in the preloaded interpreter: expected 'malloc True True' (Python's allocator, libobmem mapped, malloc_usable_size(malloc(600)) == obm_usable_size >= 600), got '$out'"
}

# ---- sqlite ------------------------------------------------------------------------
case_sqlite() {
    "$PY" "$HERE/gen_sql.py" 20240611 "$SQL_SCALE" "$T/workload.sql" "$CD/expected.txt"
    note "$SQL_SCALE orders, $(wc -c <"$T/workload.sql") bytes of SQL"
    local kind
    for kind in glibc obmem; do
        rm -f "$T/$kind.db"
        run_timed "$kind" "$CD/$kind" OBMEM_SHOW_STATS=1 -- sqlite3 "$T/$kind.db" <"$T/workload.sql"
        ((RC == 0)) || fail "sqlite3 exited $RC in the $kind run (see ${CD#"$ROOT"/}/$kind.err)"
        # A second process: the dump of the final database, hashed.
        run_timed "$kind" "$CD/$kind.dump" OBMEM_SHOW_STATS=1 -- sqlite3 "$T/$kind.db" .dump
        ((RC == 0)) || fail "sqlite3 .dump exited $RC in the $kind run"
        sha256sum <"$CD/$kind.dump.out" >"$CD/$kind.dump.sha256"
        rm -f "$CD/$kind.dump.out"
    done
    same "$CD/glibc.out" "$CD/obmem.out" "sqlite3's output"
    same "$CD/glibc.dump.sha256" "$CD/obmem.dump.sha256" "the dump of the final database"
    "$PY" "$HERE/gen_sql.py" --check "$CD/expected.txt" "$CD/obmem.out" >"$CD/check.txt" ||
        fail "the output differs from the generator's prediction: $(head -n 3 "$CD/check.txt" | tr '\n' ' ')"
    check_stats "$CD/obmem.err" 1 $((SQL_SCALE * 5))
    check_stats "$CD/obmem.dump.err" 1 1000
    note "$(tail -n 1 "$CD/check.txt")"
}

# ---- git ---------------------------------------------------------------------------
case_git() {
    local kind
    for kind in glibc obmem; do
        run_timed "$kind" "$CD/$kind" OBMEM_SHOW_STATS=1 -- \
            bash "$HERE/gen_repo.sh" "$T/$kind" "$GIT_COMMITS" "$GIT_IMPORTED"
        ((RC == 0)) || fail "gen_repo.sh exited $RC in the $kind run (see ${CD#"$ROOT"/}/$kind.err)"
        grep -q '^== end$' "$CD/$kind.out" || fail "gen_repo.sh did not finish in the $kind run"
        # fsck --strict finds nothing.
        if sed -n '/^== fsck$/,/^== heads$/p' "$CD/$kind.out" | grep -v '^== ' | grep -q .; then
            fail "git fsck reported problems in the $kind run"
        fi
        rm -rf "${T:?}/$kind"
    done
    same "$CD/glibc.out" "$CD/obmem.out" "the repository report"
    # Each commit of the loop runs 2 git processes.
    check_stats "$CD/obmem.err" $((GIT_COMMITS * 2)) $((GIT_COMMITS * 1000))
    note "main $(sed -n '/^== heads$/{n;p}' "$CD/obmem.out" | cut -c1-12), $(sed -n '/^== counts$/{n;p}' "$CD/obmem.out") commits"
}

# ---- make --------------------------------------------------------------------------
case_make() {
    # Both builds in the same directory (the debug information records it).
    local src=$T/proj kind f
    bash "$HERE/gen_cproj.sh" "$src" "$MAKE_MODULES"
    for kind in glibc obmem; do
        make -C "$src" clean >/dev/null
        run_timed "$kind" "$CD/$kind" OBMEM_SHOW_STATS=1 -- make -C "$src" -j2
        ((RC == 0)) || fail "make -j2 exited $RC in the $kind run (see ${CD#"$ROOT"/}/$kind.err)"
        mkdir -p "$T/$kind"
        cp "$src"/*.o "$src/libmods.a" "$src/prog" "$T/$kind/"
    done
    local n=0
    for f in "$T/glibc"/*; do
        cmp -s "$f" "$T/obmem/${f##*/}" || fail "${f##*/} built with obmem differs from the glibc build"
        n=$((n + 1))
    done
    # The program built under obmem, run under obmem, prints what the glibc
    # build prints without it.
    "$T/glibc/prog" >"$CD/prog.glibc.out"
    env LD_PRELOAD="$LIB" "${OBM_EXTRA[@]}" "$T/obmem/prog" >"$CD/prog.obmem.out"
    same "$CD/prog.glibc.out" "$CD/prog.obmem.out" "the built program's output"
    # make, and per module at least gcc, cc1 and as.
    check_stats "$CD/obmem.err" $((MAKE_MODULES * 3)) $((MAKE_MODULES * 10000))
    note "$n identical files (objects, libmods.a, prog)"
}

# ---- pipelines ---------------------------------------------------------------------
case_pipelines() {
    local kind
    for kind in glibc obmem; do
        run_timed "$kind" "$CD/$kind" OBMEM_SHOW_STATS=1 -- bash "$HERE/pipelines.sh" "$T/$kind" "$PIPE_LINES"
        ((RC == 0)) || fail "pipelines.sh exited $RC in the $kind run (see ${CD#"$ROOT"/}/$kind.err)"
        grep -q '^== end$' "$CD/$kind.out" || fail "pipelines.sh did not finish in the $kind run"
        rm -rf "${T:?}/$kind"
    done
    same "$CD/glibc.out" "$CD/obmem.out" "the pipelines' output"
    # Tables come from bash and the tools that keep stderr open (most of
    # coreutils close it at exit, before obmem's destructor prints).
    check_stats "$CD/obmem.err" 5 100000
    # Each tool, preloaded the same way, reads its own /proc/self/maps.
    local probes=(
        "sort /proc/self/maps" "uniq /proc/self/maps" "cut -c1-300 /proc/self/maps"
        "tac /proc/self/maps" "cat /proc/self/maps" "tail -n +1 /proc/self/maps"
        "paste /proc/self/maps" "sed -n p /proc/self/maps" "awk 1 /proc/self/maps"
        "grep -h . /proc/self/maps" "xargs -a /proc/self/maps -d \\n -n 10000 printf %s\\n"
        "bash -c read_maps"
    )
    local p missing=()
    for p in "${probes[@]}"; do
        local out
        if [[ $p == "bash -c read_maps" ]]; then
            out=$(env LD_PRELOAD="$LIB" bash -c 'while read -r l; do echo "$l"; done </proc/self/maps' 2>&1 || true)
        else
            # shellcheck disable=SC2086
            out=$(env LD_PRELOAD="$LIB" $p 2>&1 || true)
        fi
        [[ $out == *libobmem* ]] || missing+=("${p%% *}")
    done
    ((${#missing[@]} == 0)) || fail "libobmem.so not mapped in: ${missing[*]}"
    note "$PIPE_LINES lines; libobmem mapped in all ${#probes[@]} probed tools"
}

# ---- redis -------------------------------------------------------------------------
REDIS_TPID=
case_redis() {
    if ((REDIS_MISSING)); then
        if [[ $MODE == quick ]]; then
            skip "redis-server/redis-tools are missing and could not be installed (see build/compat/install.log)"
        fi
        fail "redis-server/redis-tools are missing and could not be installed (see build/compat/install.log)"
    fi
    trap 'if [[ -n $REDIS_TPID ]]; then kill "$REDIS_TPID" 2>/dev/null || true; fi' EXIT
    "$PY" "$HERE/gen_redis.py" 31337 "$REDIS_SCALE" "$T/load.resp" "$T/queries.txt" "$CD/expected.txt"
    head -c 1048576 /dev/urandom | base64 -w 0 >"$T/onemeg.txt"
    note "$(redis-server --version | sed -n 's/.*\(v=[^ ]*\).*malloc=\([^ ]*\).*/redis \1 built with \2/p')"
    # Debian's redis-server is linked with libjemalloc: which allocator does
    # each of its allocation symbols bind to under the preload? Binding
    # everything at start (LD_BIND_NOW) makes the linker report them all.
    rm -f "$T"/bind.*
    env LD_PRELOAD="$LIB" LD_BIND_NOW=1 LD_DEBUG=bindings LD_DEBUG_OUTPUT="$T/bind" \
        redis-server --version >/dev/null
    local sym to_obmem=() to_other=() b
    for sym in malloc calloc realloc free malloc_usable_size posix_memalign aligned_alloc nallocx mallctl malloc_stats_print; do
        b=$(cat "$T"/bind.* | grep -m1 "binding file [^ ]*redis-server \[0\] to .*: normal symbol \`$sym'" || true)
        [[ -z $b ]] && continue
        if [[ $b == *"to $LIB "* ]]; then
            to_obmem+=("$sym")
        else
            to_other+=("$sym->$(echo "$b" | sed 's/.* to \([^ ]*\) .*/\1/; s|.*/||')")
        fi
    done
    grep -h "binding file [^ ]*redis-server \[0\] to .*: normal symbol \`\(malloc\|free\|n\?allocx\|mallctl\|.*alloc.*\)'" "$T"/bind.* |
        sed 's/^ *[0-9]*: *//' | sort -u >"$CD/bindings.txt" || true
    [[ " ${to_obmem[*]} " == *" malloc "* && " ${to_obmem[*]} " == *" free "* ]] ||
        fail "redis-server's malloc/free do not bind to libobmem.so (see ${CD#"$ROOT"/}/bindings.txt)"
    note "redis-server binds ${to_obmem[*]} to obmem; ${to_other[*]:-nothing else}"
    local kind
    for kind in glibc obmem; do
        redis_run "$kind"
    done
    same "$CD/glibc.digest" "$CD/obmem.digest" "the data set's DEBUG DIGEST"
    same "$CD/glibc.queries" "$CD/obmem.queries" "the replies to the queries"
    same "$CD/glibc.checks" "$CD/obmem.checks" "the redis-cli checks"
    note "$(sed -n 's/^mem_allocator:\(.*\)$/INFO mem_allocator: \1/p' "$CD/obmem.info" | tr -d '\r')"
}

# redis_run KIND: one server's life: start, load, query, reload, benchmark,
# checks, shutdown.
redis_run() {
    local kind=$1
    local dir=$T/$kind port pre=() i
    mkdir -p "$dir"
    [[ $kind == obmem ]] && pre=(LD_PRELOAD="$LIB" OBMEM_SHOW_STATS=1 "${OBM_EXTRA[@]}")
    start_clock
    for _ in 1 2 3; do
        port=$(free_port)
        timeout -k 10 "$RUN_TIMEOUT" env "${pre[@]}" redis-server \
            --port "$port" --bind 127.0.0.1 --protected-mode no --daemonize no \
            --save '' --appendonly no --dir "$dir" --logfile "$CD/$kind.log" \
            --enable-debug-command local --lazyfree-lazy-user-del yes \
            >"$CD/$kind.server.out" 2>"$CD/$kind.server.err" &
        REDIS_TPID=$!
        for ((i = 0; i < 200; i++)); do
            [[ $(redis-cli -p "$port" PING 2>/dev/null) == PONG ]] && break
            kill -0 "$REDIS_TPID" 2>/dev/null || break
            sleep 0.05
        done
        [[ $(redis-cli -p "$port" PING 2>/dev/null) == PONG ]] && break
        kill "$REDIS_TPID" 2>/dev/null || true
        wait "$REDIS_TPID" 2>/dev/null || true
        REDIS_TPID=
    done
    [[ -n $REDIS_TPID ]] || fail "redis-server ($kind) did not answer PING (see ${CD#"$ROOT"/}/$kind.log)"
    local spid
    spid=$(child_pid "$REDIS_TPID")
    [[ -n $spid ]] || fail "no redis-server process under timeout"
    if [[ $kind == obmem ]]; then
        grep -q libobmem "/proc/$spid/maps" || fail "libobmem.so is not in /proc/$spid/maps of the preloaded redis-server"
        grep -q libjemalloc "/proc/$spid/maps" && note "libjemalloc.so is mapped too"
    else
        ! grep -q libobmem "/proc/$spid/maps" || fail "libobmem.so is mapped into the glibc redis-server"
    fi
    local cli=(redis-cli -p "$port")
    # The generated data set, through the protocol.
    env "${pre[@]}" timeout "$RUN_TIMEOUT" "${cli[@]}" --pipe <"$T/load.resp" >"$CD/$kind.pipe" 2>&1 ||
        fail "redis-cli --pipe failed ($kind): $(tail -n 2 "$CD/$kind.pipe" | tr '\n' ' ')"
    grep -q '^errors: 0,' "$CD/$kind.pipe" || fail "the load had errors ($kind): $(tail -n 1 "$CD/$kind.pipe")"
    "${cli[@]}" <"$T/queries.txt" >"$CD/$kind.queries"
    cmp -s "$CD/$kind.queries" "$CD/expected.txt" ||
        fail "the replies ($kind) differ from gen_redis.py's prediction (diff ${CD#"$ROOT"/}/$kind.queries ${CD#"$ROOT"/}/expected.txt)"
    "${cli[@]}" DEBUG DIGEST >"$CD/$kind.digest"
    # Save and load the data set (RDB), same digest.
    [[ $("${cli[@]}" DEBUG RELOAD) == OK ]] || fail "DEBUG RELOAD failed ($kind)"
    [[ $("${cli[@]}" DEBUG DIGEST) == $(cat "$CD/$kind.digest") ]] || fail "the digest changed across DEBUG RELOAD ($kind)"
    # Load from a second process; the benchmark client is preloaded too.
    local bench=(redis-benchmark -h 127.0.0.1 -p "$port" -q -c 20 -r 100000 -d 64)
    env "${pre[@]}" timeout "$RUN_TIMEOUT" "${bench[@]}" "${REDIS_BENCH[@]}" >"$CD/$kind.bench" 2>&1 ||
        fail "redis-benchmark failed ($kind): $(tail -n 2 "$CD/$kind.bench" | tr '\r\n' '  ')"
    env "${pre[@]}" timeout "$RUN_TIMEOUT" "${bench[@]}" "${REDIS_BENCH_P[@]}" >"$CD/$kind.bench-pipelined" 2>&1 ||
        fail "redis-benchmark -P 16 failed ($kind): $(tail -n 2 "$CD/$kind.bench-pipelined" | tr '\r\n' '  ')"
    local nb
    nb=$(tr '\r' '\n' <"$CD/$kind.bench" | grep -c 'requests per second' || true)
    nb=$((nb + $(tr '\r' '\n' <"$CD/$kind.bench-pipelined" | grep -c 'requests per second' || true)))
    echo "$nb" >"$CD/$kind.nbench"
    ((nb >= 10)) || fail "redis-benchmark ($kind) reported only $nb tests"
    # A few values set and read back.
    {
        "${cli[@]}" SET compat:greeting "hello, obmem"
        "${cli[@]}" GET compat:greeting
        "${cli[@]}" -x SET compat:onemeg <"$T/onemeg.txt"
        "${cli[@]}" STRLEN compat:onemeg
        "${cli[@]}" --raw GET compat:onemeg | sha256sum # the value and a newline
        "${cli[@]}" INCRBY compat:counter 41
        "${cli[@]}" INCR compat:counter
        "${cli[@]}" RPUSH compat:list a b c d e
        "${cli[@]}" LRANGE compat:list 1 3
        "${cli[@]}" MGET compat:greeting compat:counter nosuchkey
        "${cli[@]}" UNLINK compat:onemeg
        "${cli[@]}" EXISTS compat:onemeg
    } >"$CD/$kind.checks" 2>&1
    local want
    want="OK
hello, obmem
OK
$(wc -c <"$T/onemeg.txt")
$({ cat "$T/onemeg.txt" && echo; } | sha256sum)
41
42
5
b
c
d
hello, obmem
42

1
0"
    [[ $(cat "$CD/$kind.checks") == "$want" ]] ||
        fail "redis-cli checks ($kind) returned something else (see ${CD#"$ROOT"/}/$kind.checks)"
    "${cli[@]}" INFO memory >"$CD/$kind.info"
    "${cli[@]}" INFO stats >>"$CD/$kind.info"
    # Clean shutdown: exit status 0, the farewell in the log, no crash report.
    "${cli[@]}" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
    local rc=0
    wait "$REDIS_TPID" || rc=$?
    REDIS_TPID=
    stop_clock "$kind"
    ((rc == 0)) || fail "redis-server ($kind) exited $rc (see ${CD#"$ROOT"/}/$kind.log)"
    grep -q 'ready to exit, bye bye' "$CD/$kind.log" || fail "redis-server ($kind) did not log its clean exit"
    if grep -q -E 'REDIS BUG REPORT|crashed by signal|Guru Meditation' "$CD/$kind.log"; then
        fail "redis-server ($kind) logged a crash report"
    fi
    if [[ $kind == obmem ]]; then
        check_stats "$CD/obmem.server.err" 1 $((REDIS_SCALE * 5))
        no_obmem_error "$CD/obmem.bench" "$CD/obmem.bench-pipelined" "$CD/obmem.pipe"
    fi
}

# ---- main --------------------------------------------------------------------------
fmt_s() { [[ -f $1 ]] && awk -v ms="$(cat "$1")" 'BEGIN { printf "%.1f s", ms / 1000 }' || echo "-"; }

echo "compat ($MODE): ${CASES[*]}; logs in ${LOGS#"$ROOT"/}/${OBM_EXTRA[*]:+; obmem runs with ${OBM_EXTRA[*]}}"
passed=0
failed=0
skipped=0
failed_names=()
if ((${#MISSING[@]})); then
    for m in "${MISSING[@]}"; do echo "FAIL setup: missing $m (see ${LOGS#"$ROOT"/}/install.log)"; done
    failed=$((failed + 1))
    failed_names+=(setup)
fi
total_t0=$(now_ms)
for c in "${CASES[@]}"; do
    CD=$LOGS/$c
    T=$TMPROOT/$c
    mkdir -p "$CD" "$T"
    t0=$(now_ms)
    set +e
    (
        set -eE
        trap 'echo "line $LINENO: \"$BASH_COMMAND\" failed" >>"$CD/reason"' ERR
        "case_$c"
    )
    rc=$?
    set -e
    wall=$(($(now_ms) - t0))
    times="glibc $(fmt_s "$CD/glibc.ms") (cpu $(fmt_s "$CD/glibc.cpu.ms")), obmem $(fmt_s "$CD/obmem.ms") (cpu $(fmt_s "$CD/obmem.cpu.ms")), total $(awk -v ms=$wall 'BEGIN { printf "%.1f s", ms / 1000 }')"
    if [[ -f $CD/skip ]]; then
        echo "SKIP $c ($(cat "$CD/skip")) !!! NOT TESTED !!!"
        skipped=$((skipped + 1))
    elif ((rc == 0)); then
        echo "PASS $c ($times)"
        passed=$((passed + 1))
    else
        echo "FAIL $c ($times)"
        if [[ -f $CD/reason ]]; then
            sed -e 's/^/    /' "$CD/reason"
        else
            echo "    exited $rc"
        fi
        [[ -f $CD/diff.txt ]] && head -n 20 "$CD/diff.txt" | sed -e 's/^/    | /'
        failed=$((failed + 1))
        failed_names+=("$c")
    fi
    [[ -f $CD/note ]] && sed -e 's/^/    /' "$CD/note"
    rm -rf "${T:?}"
done
echo "compat ($MODE) took $(awk -v ms=$(($(now_ms) - total_t0)) 'BEGIN { printf "%.1f s", ms / 1000 }')"
((failed == 0)) || echo "failed: ${failed_names[*]}"
if ((skipped)); then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
((failed == 0))
