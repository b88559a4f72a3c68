#!/usr/bin/env bash
# `make install` into a temporary prefix, then build programs the way a
# user would (pkg-config and -lobmem; CMake's find_package(obmem CONFIG)
# with a C++ project) and check they run on the installed library through
# its versioned soname, or on the static library. pkg-config, cmake and
# g++ are installed with apt-get if missing (tests/lib.sh; a failure if
# they cannot be).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/lib.sh
missing=0
for tool in pkg-config:pkg-config cmake:cmake g++:g++; do
    require_cmd "${tool%%:*}" "${tool#*:}" || missing=1
done
if ((missing)); then
    finish
    exit 1
fi
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
make -s install PREFIX="$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cat > "$prefix/user.c" <<'C'
#include <obmem.h>
#include <stdio.h>
#include <stdlib.h>
int main(void) { void *p = malloc(600); printf("%zu\n", obm_usable_size(p)); free(p); return 0; }
C
gcc "$prefix/user.c" $(pkg-config --cflags --libs obmem) -Wl,-rpath,"$prefix/lib" -o "$prefix/user"
check() { if eval "$2"; then pass "$1"; else fail "$1" "false: $2"; fi; }
check "installed soname is versioned" '[ -L "$prefix/lib/libobmem.so.0" ] && readelf -d "$prefix/user" | grep -q "libobmem.so.0"'
check "pkg-config program uses obmem's malloc" '[ "$("$prefix/user")" = 640 ]'
check "static library installed" '[ -f "$prefix/lib/libobmem.a" ]'
# Every program run with LD_PRELOAD loads what the library needs: libm
# would cost each process start about 0.1 ms (the profiler's math is its
# own), libgcc_s as much and Rust's std 200 KiB more of mapped code (the C
# library is built without std, with libgcc's unwinder linked in).
check "libobmem.so needs only libc and the loader" \
    '[ "$(readelf -d "$prefix/lib/libobmem.so.0" | sed -n "s/.*(NEEDED).*\[\(.*\)\]/\1/p" | sort | tr "\n" " ")" = "ld-linux-x86-64.so.2 libc.so.6 " ]'
nm -C "$prefix/lib/libobmem.so.0" >"$prefix/nm.txt" 2>&1 || true
check "libobmem.so has no Rust std (no std:: symbols)" 'grep -q " obm_new$" "$prefix/nm.txt" && ! grep -q " std::" "$prefix/nm.txt"'

# CMake: a C++ project finds the package and links obmem::obmem (shared) and
# obmem::obmem_static; both programs' malloc (and so operator new) is obmem's.
mkdir -p "$prefix/cmproj"
cat > "$prefix/cmproj/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.13)
project(obmem_user CXX)
find_package(obmem 0.1 CONFIG REQUIRED)
add_executable(user_shared user.cpp)
target_link_libraries(user_shared PRIVATE obmem::obmem)
add_executable(user_static user.cpp)
target_link_libraries(user_static PRIVATE obmem::obmem_static)
CM
cat > "$prefix/cmproj/user.cpp" <<'CPP'
#include <obmem.h>
#include <cstdio>
#include <string>
#include <vector>
int main() {
    std::vector<std::string> v;
    for (int i = 0; i < 1000; i++) v.push_back(std::string(100, 'x') + std::to_string(i));
    char *p = new char[600];
    std::printf("%zu %zu\n", obm_usable_size(p), v.size());
    delete[] p;
    return 0;
}
CPP
cmake_ok=0
if cmake -S "$prefix/cmproj" -B "$prefix/cmbuild" -DCMAKE_PREFIX_PATH="$prefix" >"$prefix/cmake.log" 2>&1 &&
    cmake --build "$prefix/cmbuild" >>"$prefix/cmake.log" 2>&1; then
    cmake_ok=1
else
    sed -e 's/^/    /' "$prefix/cmake.log" | tail -n 30
fi
check "cmake: find_package(obmem CONFIG) configures and builds a C++ project" '[ $cmake_ok = 1 ]'
check "cmake: obmem::obmem links libobmem.so.0 and serves operator new" \
    '[ "$("$prefix/cmbuild/user_shared")" = "640 1000" ] && readelf -d "$prefix/cmbuild/user_shared" | grep -q "libobmem.so.0"'
check "cmake: obmem::obmem_static links libobmem.a and serves operator new" \
    '[ "$("$prefix/cmbuild/user_static")" = "640 1000" ] && ! readelf -d "$prefix/cmbuild/user_static" | grep -q libobmem'
# The version file: a newer or another major version is refused.
mkdir -p "$prefix/cmver"
printf 'cmake_minimum_required(VERSION 3.13)\nproject(v NONE)\nfind_package(obmem %s CONFIG REQUIRED)\n' 9.0 >"$prefix/cmver/CMakeLists.txt"
check "cmake: find_package(obmem 9.0) is refused by the version file" \
    '! cmake -S "$prefix/cmver" -B "$prefix/cmver/b" -DCMAKE_PREFIX_PATH="$prefix" >"$prefix/cmver.log" 2>&1 && grep -q "version: 0.1.0" "$prefix/cmver.log"'
finish
