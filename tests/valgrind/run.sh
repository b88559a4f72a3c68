#!/usr/bin/env bash
# tests/valgrind/run.sh: obmem under valgrind --tool=memcheck. Under
# Valgrind, obmem declares its blocks to memcheck (src/valgrind.rs), so:
#  - a read past the end of an obm_mem_malloc block, a write before an
#    obm_raw_malloc block, a use after obm_mem_free and a double free are
#    reported, each with the stack of the block's allocation;
#  - a use of a freed obm_new object is reported with the stacks of its
#    allocation and of its free;
#  - a leaked malloc block and a leaked obm_mem_malloc block are reported
#    "definitely lost" with their allocation stacks, and the same leak in a
#    program built without obmem and run under LD_PRELOAD=libobmem.so
#    (which checks that obmem is loaded in it);
#  - correct programs report no error: tests/valgrind/cases.c's clean case
#    (every domain, calloc, realloc, large blocks, objects, a collection),
#    four C tests of objects and the collector, and examples/rust-global
#    (obmem::Obmem as a Rust program's global allocator) if it is built.
# Installs valgrind with apt-get if it is missing (tests/lib.sh; a failure
# if it cannot). Prints PASS/FAIL per case and ends with "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
LIBDIR=$ROOT/target/release
WORK=$ROOT/build/valgrind
mkdir -p "$WORK"
for v in $(env | sed -n 's/^\(OBMEM_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
source tests/lib.sh
if ! require_cmd valgrind valgrind; then
    finish
    exit 1
fi

VG=(valgrind --tool=memcheck --num-callers=16 --error-exitcode=9)
CFLAGS=(-O1 -g -Wall -Wextra -Werror -Iinclude)
LINK=(-L"$LIBDIR" -lobmem -Wl,-rpath,"$LIBDIR" -lpthread)

gcc "${CFLAGS[@]}" tests/valgrind/cases.c "${LINK[@]}" -o "$WORK/cases"

# expect NAME LOG PATTERN...: every extended regex matches some line of
# LOG, and each "@FUNC" matches a stack line naming FUNC.
expect() {
    local name=$1 log=$2 pat
    shift 2
    for pat in "$@"; do
        if [[ $pat == @* ]]; then
            pat="==[0-9]+==    (at|by) 0x[0-9A-F]+: ${pat#@} "
        fi
        if ! grep -Eq -- "$pat" "$log"; then
            fail "$name" "no line matching '$pat' in memcheck's report" "$log"
            return 0
        fi
    done
    pass "$name"
}

# run_case CASE [valgrind options]: runs the case, output in $WORK/CASE.log.
run_case() {
    local c=$1
    shift
    timeout -k 5 120 "${VG[@]}" "$@" "$WORK/cases" "$c" >"$WORK/$c.log" 2>&1 || true
}

run_case overrun
expect mem_overrun_reported "$WORK/overrun.log" \
    'Invalid read of size 1' "is 0 bytes after a block of size 24 alloc'd" @make_mem_block
run_case underrun
expect raw_underrun_reported "$WORK/underrun.log" \
    'Invalid write of size 1' "is 1 bytes before a block of size 40 alloc'd" @make_raw_block
run_case mem_uaf
expect mem_use_after_free_reported "$WORK/mem_uaf.log" \
    'Invalid read of size 8' "is 24 bytes inside a block of size 64 free'd" \
    'Block was alloc.d at' @make_mem_block @mem_use_after_free
run_case object_uaf
expect object_use_after_free_reported "$WORK/object_uaf.log" \
    'Invalid read of size 8' "inside a block of size [0-9]+ free'd" \
    'Block was alloc.d at' @new_point "free'd$" @object_use_after_free
run_case double_free
expect mem_double_free_reported "$WORK/double_free.log" \
    'Invalid free\(\)' @double_free "Address 0x[0-9a-f]+ is 0 bytes inside a block of size 48 free'd"
run_case leaks --leak-check=full
expect leaks_reported "$WORK/leaks.log" \
    '100 bytes in 1 blocks are definitely lost' @leak_malloc \
    '77 bytes in 1 blocks are definitely lost' @leak_mem 'definitely lost: 177 bytes in 2 blocks'

# The same malloc leak in a program that knows nothing of obmem, preloaded.
# It proves the preload took: obmem's own API is in the process and its
# malloc is libobmem's; otherwise it leaks nothing and exits 3.
cat >"$WORK/plain_leak.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
__attribute__((noinline)) static void *leak_plain(void) { return malloc(123); }
int main(void) {
    Dl_info info;
    void *(*volatile m)(size_t) = malloc;
    if (!dlsym(RTLD_DEFAULT, "obm_usable_size") || !dladdr((void *)m, &info) || !info.dli_fname ||
        !strstr(info.dli_fname, "libobmem")) {
        fprintf(stderr, "plain_leak: obmem is not loaded in this process\n");
        return 3;
    }
    printf("obmem loaded: malloc from %s\n", info.dli_fname);
    void *p = leak_plain();
    memset(p, 0, 123);
    return 0;
}
C
gcc -O1 -g "$WORK/plain_leak.c" -o "$WORK/plain_leak" -ldl
# valgrind runs `env`, which execs the program: follow it.
timeout -k 5 120 "${VG[@]}" --leak-check=full --trace-children=yes \
    env LD_PRELOAD="$LIBDIR/libobmem.so" "$WORK/plain_leak" >"$WORK/plain_leak.log" 2>&1 || true
expect preloaded_malloc_leak_reported "$WORK/plain_leak.log" \
    '^obmem loaded: malloc from .*/libobmem\.so' '123 bytes in 1 blocks are definitely lost' @leak_plain

# Correct programs: no error at all (--error-exitcode makes any error fail).
clean_run() {
    local name=$1 log=$WORK/$1.log rc
    shift
    set +e
    timeout -k 5 120 "${VG[@]}" --leak-check=full --errors-for-leak-kinds=definite "$@" >"$log" 2>&1
    rc=$?
    set -e
    if ((rc != 0)) || ! grep -q 'ERROR SUMMARY: 0 errors' "$log"; then
        fail "$name" "exit $rc under memcheck, or errors reported" "$log"
    else
        pass "$name"
    fi
}
clean_run clean_domains_and_objects "$WORK/cases" clean
for t in test_object_refcount test_gc_cycles test_gc_finalizers test_gc_random; do
    gcc "${CFLAGS[@]}" -std=gnu11 "c_tests/$t.c" "${LINK[@]}" -o "$WORK/$t"
    clean_run "$t" "$WORK/$t"
done
# A Rust program with obmem::Obmem as its global allocator (built by
# `make test-rust`): its HashMaps and Vecs are obmem blocks memcheck sees.
RUST_EX=$ROOT/target/rust-global/release/obmem-rust-global
if [[ -x $RUST_EX ]]; then
    clean_run rust_global_allocator "$RUST_EX"
    if ! grep -q '^ok$' "$WORK/rust_global_allocator.log"; then
        fail rust_global_allocator_ran "the example did not print ok" "$WORK/rust_global_allocator.log"
    fi
else
    echo "SKIP rust_global_allocator ($RUST_EX not built: make test-rust builds it)"
fi

finish
