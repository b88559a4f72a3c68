#!/usr/bin/env bash
# tests/valgrind/run.sh: obmem under valgrind --tool=memcheck. Under
# Valgrind, obmem declares its blocks to memcheck (src/valgrind.rs), so:
#  - a read past the end of an obm_mem_malloc block (also with the
#    --soname-synonyms=somalloc=libobmem.so* a user may pass) and of an
#    obm_object_malloc block, a write before an obm_raw_malloc block, a use
#    after obm_mem_free and a double free are reported, each with the
#    stack of the block's allocation (for the object domain, obmem's
#    memcheck hooks', not Valgrind's malloc: obm_object_* are not malloc's
#    aliases);
#  - a use of a freed obm_new object is reported with the stacks of its
#    allocation and of its free;
#  - a leaked malloc block and a leaked obm_mem_malloc block are reported
#    "definitely lost" with their allocation stacks, and the same leak in a
#    program built without obmem and run under LD_PRELOAD=libobmem.so
#    (which checks that obmem is loaded in it);
#  - correct programs report no error: tests/valgrind/cases.c's clean case
#    (every domain, calloc, realloc, large blocks, objects, a collection),
#    object_hooks (a hook on the object domain sees every obm_object_*
#    call) and mixed (malloc's blocks, Valgrind's, through the object
#    domain and obm_usable_size), the C tests in CLEAN_TESTS, and
#    examples/rust-global (obmem::Obmem as a Rust program's global
#    allocator) if it is built;
#  - with --soname-synonyms=somalloc=nouserintercepts, where Valgrind
#    leaves obmem's malloc family in place (README, Valgrind): the leaks
#    are reported and the clean case and the C tests in NUI_TESTS (hooks
#    on the object domain seeing the malloc family, calloc's contract)
#    report no error.
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
    run_case_as "$1" "$@"
}
# run_case_as NAME CASE [valgrind options]: the same, output in $WORK/NAME.log.
run_case_as() {
    local name=$1 c=$2
    shift 2
    timeout -k 5 120 "${VG[@]}" "$@" "$WORK/cases" "$c" >"$WORK/$name.log" 2>&1 || true
}

run_case overrun
expect mem_overrun_reported "$WORK/overrun.log" \
    'Invalid read of size 1' "is 0 bytes after a block of size 24 alloc'd" @make_mem_block
# What README says a user may pass for an allocator in a shared library
# (Valgrind replaces libobmem's malloc without it already).
run_case_as overrun_somalloc overrun '--soname-synonyms=somalloc=libobmem.so*'
expect mem_overrun_reported_somalloc "$WORK/overrun_somalloc.log" \
    'Invalid read of size 1' "is 0 bytes after a block of size 24 alloc'd" @make_mem_block
run_case object_overrun
expect object_overrun_reported "$WORK/object_overrun.log" \
    'Invalid read of size 1' "is 0 bytes after a block of size 24 alloc'd" \
    @obmem::valgrind::alloc_block @make_object_block
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
    timeout -k 5 120 "${VG[@]}" --leak-check=full --errors-for-leak-kinds=definite \
        --suppressions=tests/valgrind/immortal.supp "$@" >"$log" 2>&1
    rc=$?
    set -e
    if ((rc != 0)) || ! grep -q 'ERROR SUMMARY: 0 errors' "$log"; then
        fail "$name" "exit $rc under memcheck, or errors reported" "$log"
    else
        pass "$name"
    fi
}
clean_run clean_domains_and_objects "$WORK/cases" clean
clean_run object_domain_hooked "$WORK/cases" object_hooks
clean_run malloc_blocks_through_object_domain "$WORK/cases" mixed

# build_test NAME: builds c_tests/NAME.c into $WORK/NAME.
build_test() {
    gcc "${CFLAGS[@]}" -std=gnu11 "c_tests/$1.c" "${LINK[@]}" -o "$WORK/$1"
}
# C tests that run clean under memcheck as it is by default. Left out: the
# tests of allocator internals (class sizes, usable sizes, statistics,
# purging, errno of the malloc family, invalid pointers, the debug hooks,
# the profiler), which under memcheck see Valgrind's malloc family instead
# of obmem's; test_gc_trashcan (too slow under memcheck), test_gc_path and
# test_fork_threads (children that look at internals), and
# test_threads_many and test_threads_stress (clean, but 30 s together).
# test_immortal and test_refcount_inline drop an immortal object on purpose
# (tests/valgrind/immortal.supp).
CLEAN_TESTS=(test_object_refcount test_gc_cycles test_gc_finalizers test_gc_random
    test_gc_random_weak test_gc_callbacks test_gc_debug test_gc_env test_gc_generations
    test_gc_introspect test_census test_weakref test_ephemeron test_fork_gc_lock
    test_hook_remote test_immortal test_refcount_inline)
for t in "${CLEAN_TESTS[@]}"; do
    build_test "$t"
    clean_run "$t" "$WORK/$t"
done

# somalloc=nouserintercepts: Valgrind replaces no malloc outside libc and
# libstdc++, so obmem serves the malloc family as well, through the same
# memcheck hooks. Hooks on the object domain then see malloc and the
# aligned functions (test_domains_hooks, test_hook_aligned; under the
# default interception the malloc family is Valgrind's and they cannot),
# and calloc keeps its contract (test_malloc_calloc: zeroed reused blocks,
# ENOMEM on overflow, which Valgrind's calloc does not set).
NUI=--soname-synonyms=somalloc=nouserintercepts
run_case_as leaks_nouserintercepts leaks --leak-check=full "$NUI"
expect leaks_reported_nouserintercepts "$WORK/leaks_nouserintercepts.log" \
    '100 bytes in 1 blocks are definitely lost' @leak_malloc @obmem::valgrind::alloc_block \
    '77 bytes in 1 blocks are definitely lost' @leak_mem 'definitely lost: 177 bytes in 2 blocks'
clean_run clean_domains_and_objects_nouserintercepts "$NUI" "$WORK/cases" clean
NUI_TESTS=(test_domains_hooks test_hook_aligned test_malloc_calloc)
for t in "${NUI_TESTS[@]}"; do
    build_test "$t"
    clean_run "${t}_nouserintercepts" "$NUI" "$WORK/$t"
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
