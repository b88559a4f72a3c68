#!/usr/bin/env bash
# `make install` into a temporary prefix, then build a program the way a
# user would (pkg-config, -lobmem) and check it runs on the installed
# library through its versioned soname.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v pkg-config >/dev/null || { apt-get update -qq && apt-get install -y -qq pkg-config >/dev/null; }
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
pass=0 fail=0
check() { if eval "$2"; then echo "PASS $1"; pass=$((pass+1)); else echo "FAIL $1"; fail=$((fail+1)); fi; }
check "installed soname is versioned" '[ -L "$prefix/lib/libobmem.so.0" ] && readelf -d "$prefix/user" | grep -q "libobmem.so.0"'
check "pkg-config program uses obmem's malloc" '[ "$("$prefix/user")" = 640 ]'
check "static library installed" '[ -f "$prefix/lib/libobmem.a" ]'
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
