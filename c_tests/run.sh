#!/usr/bin/env bash
# c_tests/run.sh: build and run every c_tests/test_*.c and c_tests/test_*.cc
# against target/release/libobmem.so. Run from the repository root (after
# `make build`). Prints PASS/FAIL per test and ends with one line
# "N passed, M failed"; exits non-zero if anything failed.
#
# The tests listed in DEBUG_CLEAN run a second time ("name+debug") with
# OBMEM_MALLOC=debug, where they must pass silently too.
#
# Environment: TEST_TIMEOUT (seconds per test, default 120), CC, CXX,
# and optionally a list of test names as arguments (e.g. test_malloc_basic).
# g++ (the header as C++, the .cc tests) is installed with apt-get if it is
# missing (tests/lib.sh); if it cannot be, that is a failure.
# OBMEM_* variables of the caller are removed: each test sets its own.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
LIBDIR=$ROOT/target/release
BUILD=$ROOT/build/c_tests
CC=${CC:-gcc}
CXX=${CXX:-g++}
TIMEOUT=${TEST_TIMEOUT:-120}

mkdir -p "$BUILD"
# Tests set the OBMEM_* variables they need themselves; none leak in from
# the caller's environment (OBMEM_MALLOC=debug would change usable sizes).
while IFS= read -r v; do unset "$v"; done < <(env | sed -n 's/^\(OBMEM_[A-Za-z0-9_]*\)=.*/\1/p')
source tests/lib.sh
TEST_LOG_LINES=200
if [[ $CXX == g++ ]]; then
    require_cmd g++ g++ || true
fi

if [[ ! -f $LIBDIR/libobmem.so ]]; then
    echo "c_tests: $LIBDIR/libobmem.so is missing (run make build)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
if [[ ! -f include/obmem.h ]]; then
    echo "c_tests: include/obmem.h is missing" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

# Programs linked with -lobmem load the library by its soname (e.g.
# libobmem.so.0); `make build` makes that link, do it here too if missing.
soname=$(readelf -d "$LIBDIR/libobmem.so" 2>/dev/null |
    sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p' || true)
if [[ -n $soname && $soname != libobmem.so && ! -e $LIBDIR/$soname ]]; then
    ln -sf libobmem.so "$LIBDIR/$soname"
fi

# The header must compile on its own, as strict C and as C++.
log=$BUILD/header_c.log
printf '#include <obmem.h>\n#include <obmem.h>\nint main(void) { return 0; }\n' >"$BUILD/header_c.c"
if "$CC" -std=c11 -Wall -Wextra -Werror -pedantic -Iinclude -c "$BUILD/header_c.c" \
    -o "$BUILD/header_c.o" >"$log" 2>&1; then
    pass header_c
else
    fail header_c "does not compile standalone as C" "$log"
fi
log=$BUILD/header_cxx.log
printf '#include <obmem.h>\n#include <obmem.h>\nint main() { return 0; }\n' >"$BUILD/header_cxx.cc"
if "$CXX" -std=c++17 -Wall -Wextra -Werror -pedantic -Iinclude -c "$BUILD/header_cxx.cc" \
    -o "$BUILD/header_cxx.o" >"$log" 2>&1; then
    pass header_cxx
else
    fail header_cxx "does not compile standalone as C++" "$log"
fi

shopt -s nullglob
sources=(c_tests/test_*.c c_tests/test_*.cc)
shopt -u nullglob
if (($# > 0)); then
    wanted=()
    for arg in "$@"; do
        arg=${arg##*/}
        arg=${arg%.c}
        arg=${arg%.cc}
        for src in "${sources[@]}"; do
            n=${src##*/}
            n=${n%.*}
            [[ $n == "$arg" ]] && wanted+=("$src")
        done
    done
    sources=("${wanted[@]}")
fi

# Correct programs that do not look at allocator internals (usable sizes,
# statistics): they run a second time under the debug hooks, which must
# stay silent (test_debug_hooks covers what the hooks report).
DEBUG_CLEAN=" test_refcount_inline test_gc_random_weak test_weakref test_ephemeron test_immortal test_fork_gc_lock
  test_domains_hooks test_hook_aligned test_hook_remote test_malloc_calloc
  test_gc_callbacks test_gc_cycles test_gc_debug test_gc_finalizers test_gc_introspect
  test_gc_random test_gc_trashcan test_gc_env test_object_refcount test_census test_gc_path test_ref_map "

# run_one NAME EXE [ENV...]: runs a built test and reports it.
run_one() {
    local name=$1 exe=$2 log=$BUILD/$1.log start secs rc sig
    shift 2
    start=$SECONDS
    # In a subshell whose stderr is dropped: bash's own "Aborted" notice for
    # a test killed by a signal would otherwise clutter the report.
    rc=$( (
        set +e
        timeout -k 10 "$TIMEOUT" env "$@" "$exe" </dev/null >"$log" 2>&1
        echo $?
    ) 2>/dev/null)
    secs=$((SECONDS - start))
    if ((rc == 0)); then
        pass "$name"
        if ((secs >= 20)); then echo "    (took ${secs}s)"; fi
    elif ((rc == 124)); then
        fail "$name" "timed out after ${TIMEOUT}s" "$log"
    elif ((rc == 137 && secs >= TIMEOUT)); then
        fail "$name" "timed out after ${TIMEOUT}s, killed" "$log"
    elif ((rc > 128)); then
        sig=$((rc - 128))
        fail "$name" "signal $sig SIG$(kill -l "$sig" 2>/dev/null || echo '?')" "$log"
    else
        fail "$name" "exit code $rc" "$log"
    fi
}

for src in "${sources[@]}"; do
    file=${src##*/}
    name=${file%.*}
    exe=$BUILD/$name
    log=$BUILD/$name.log
    case $file in
    *.cc) compiler=("$CXX" -std=c++17) ;;
    *) compiler=("$CC" -std=gnu11) ;;
    esac
    # A test may ask for more link flags in a comment line
    # " * c_tests/run.sh: link with FLAGS".
    extra=()
    read -r -a extra < <(sed -n 's|^ \* c_tests/run.sh: link with \(.*\)$|\1|p' "$src") || true
    if ! "${compiler[@]}" -O1 -g -Wall -Wextra -Werror -Iinclude "$src" \
        -L"$LIBDIR" -lobmem -Wl,-rpath,"$LIBDIR" -lpthread ${extra[@]+"${extra[@]}"} -o "$exe" >"$log" 2>&1; then
        fail "$name" "compile error" "$log"
        continue
    fi
    run_one "$name" "$exe"
    if [[ $DEBUG_CLEAN == *" $name "* ]]; then
        run_one "$name+debug" "$exe" OBMEM_MALLOC=debug
    fi
done

finish
