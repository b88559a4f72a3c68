#!/usr/bin/env bash
# tests/compat/gen_cproj.sh DIR NMODULES
# Generates a small multi-file C/C++ project in DIR: NMODULES C modules
# (modN.c + modN.h, each with a few functions, a lookup table, structs,
# a qsort callback, string formatting and heap use), a generated header
# shared by all, NMODULES / 20 + 1 C++ modules (std::map, std::string,
# std::vector, templates, lambdas), a main.c that calls every module, and a
# Makefile that compiles with pattern rules (-O2 -g), archives the modules
# into libmods.a with ar and links the program `prog` with g++. Building it
# (`make -j2`) runs make, the gcc and g++ drivers, cc1, cc1plus, as, ar,
# collect2 and ld. The output depends on NMODULES and on the directory
# (the debug information records it), nothing else: no dates, no __FILE__.
set -euo pipefail

dir=$1
n=$2
ncxx=$((n / 20 + 1))
mkdir -p "$dir"
cd "$dir"

{
    echo '#ifndef COMMON_H'
    echo '#define COMMON_H'
    echo '#include <stddef.h>'
    echo '#include <stdint.h>'
    echo 'typedef struct { uint64_t key; char name[24]; double weight; } item;'
    echo 'uint64_t mix64(uint64_t x);'
    for i in $(seq 0 $((n - 1))); do
        echo "#define MOD${i}_SALT 0x$(printf %x $(((i * 2654435761 + 97) % 4294967296)))u"
    done
    echo '#endif'
} >common.h

for i in $(seq 0 $((n - 1))); do
    {
        echo "#ifndef MOD${i}_H"
        echo "#define MOD${i}_H"
        echo '#include "common.h"'
        echo "uint64_t mod${i}_run(uint64_t seed, char *out, size_t outlen);"
        echo '#endif'
    } >"mod$i.h"
    {
        echo '#include <stdio.h>'
        echo '#include <stdlib.h>'
        echo '#include <string.h>'
        echo "#include \"mod$i.h\""
        printf 'static const uint32_t table%d[64] = {' "$i"
        for k in $(seq 0 63); do printf '%du,' $(((i * 7919 + k * 104729) % 65536)); done
        echo '};'
        echo "static int cmp$i(const void *a, const void *b) {"
        echo '    const item *x = a, *y = b;'
        echo '    if (x->key != y->key) return x->key < y->key ? -1 : 1;'
        echo '    return strcmp(x->name, y->name);'
        echo '}'
        for f in 0 1 2; do
            echo "static uint64_t step${i}_$f(uint64_t x) {"
            echo "    for (int k = 0; k < $((i % 5 + f + 2)); k++) {"
            echo "        x ^= x >> $((i % 17 + 3)); x *= 0x$(printf %x $(((i + 1) * (f + 3) * 40503 % 65536 | 1)))ull;"
            echo "        x += table${i}[(x >> 7) & 63] + MOD${i}_SALT;"
            echo '    }'
            echo '    return x;'
            echo '}'
        done
        echo "uint64_t mod${i}_run(uint64_t seed, char *out, size_t outlen) {"
        echo "    size_t count = $((i % 50 + 20));"
        echo '    item *v = malloc(count * sizeof *v);'
        echo '    if (!v) abort();'
        echo '    uint64_t h = seed;'
        echo '    for (size_t k = 0; k < count; k++) {'
        echo "        h = mix64(step${i}_0(h) ^ k);"
        echo "        v[k].key = step${i}_1(h) % $((i % 9 + 5));"
        echo "        snprintf(v[k].name, sizeof v[k].name, \"m$i-%llx\", (unsigned long long)(h & 0xffffff));"
        echo '        v[k].weight = (double)(h % 1000) / 7.0;'
        echo '    }'
        echo "    qsort(v, count, sizeof *v, cmp$i);"
        echo '    double w = 0;'
        echo "    for (size_t k = 0; k < count; k++) { w += v[k].weight; h = step${i}_2(h + v[k].key); }"
        echo "    snprintf(out, outlen, \"mod$i first=%s last=%s w=%.3f\", v[0].name, v[count - 1].name, w);"
        echo '    free(v);'
        echo '    return h;'
        echo '}'
    } >"mod$i.c"
done

for j in $(seq 0 $((ncxx - 1))); do
    sed -e "s/@J@/$j/g" -e "s/@N@/$((200 + j * 50))/g" >"cxx$j.cc" <<'END'
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>
extern "C" uint64_t cxx@J@_run(uint64_t seed, char *out, size_t outlen);
namespace {
template <typename K, typename V> struct Index {
    std::map<K, std::vector<V>> m;
    void add(const K &k, V v) { m[k].push_back(std::move(v)); }
    size_t total() const {
        size_t t = 0;
        for (const auto &kv : m) t += kv.second.size();
        return t;
    }
};
}
uint64_t cxx@J@_run(uint64_t seed, char *out, size_t outlen) {
    Index<std::string, std::string> idx;
    uint64_t h = seed ^ @J@u;
    for (int i = 0; i < @N@; i++) {
        h = h * 6364136223846793005ull + 1442695040888963407ull;
        std::string k = "k" + std::to_string(h % 37);
        idx.add(k, std::string(h % 90 + 1, static_cast<char>('a' + h % 26)));
    }
    std::vector<std::string> keys;
    for (const auto &kv : idx.m) keys.push_back(kv.first);
    std::sort(keys.begin(), keys.end(), [](const std::string &a, const std::string &b) {
        return a.size() != b.size() ? a.size() > b.size() : a < b;
    });
    size_t chars = 0;
    for (const auto &kv : idx.m)
        for (const auto &s : kv.second) chars += s.size();
    std::snprintf(out, outlen, "cxx@J@ keys=%zu first=%s values=%zu chars=%zu", keys.size(),
                  keys.front().c_str(), idx.total(), chars);
    return h ^ chars;
}
END
done

{
    echo '#include <stdio.h>'
    echo '#include "common.h"'
    for i in $(seq 0 $((n - 1))); do echo "#include \"mod$i.h\""; done
    for j in $(seq 0 $((ncxx - 1))); do
        echo "uint64_t cxx${j}_run(uint64_t seed, char *out, size_t outlen);"
    done
    echo 'uint64_t mix64(uint64_t x) {'
    echo '    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33;'
    echo '    x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33; return x;'
    echo '}'
    echo 'int main(void) {'
    echo '    char buf[256];'
    echo '    uint64_t h = 12345;'
    for i in $(seq 0 $((n - 1))); do
        echo "    h = mod${i}_run(h, buf, sizeof buf); printf(\"%s h=%016llx\\n\", buf, (unsigned long long)h);"
    done
    for j in $(seq 0 $((ncxx - 1))); do
        echo "    h = cxx${j}_run(h, buf, sizeof buf); printf(\"%s h=%016llx\\n\", buf, (unsigned long long)h);"
    done
    echo '    printf("final %016llx\n", (unsigned long long)h);'
    echo '    return 0;'
    echo '}'
} >main.c

{
    echo 'CC = gcc'
    echo 'CXX = g++'
    echo 'CFLAGS = -O2 -g -Wall -Wextra -Werror -fno-ident'
    echo 'CXXFLAGS = -O2 -g -std=c++17 -Wall -Wextra -Werror -fno-ident'
    printf 'MODS ='
    for i in $(seq 0 $((n - 1))); do printf ' mod%d.o' "$i"; done
    for j in $(seq 0 $((ncxx - 1))); do printf ' cxx%d.o' "$j"; done
    echo
    echo 'prog: main.o libmods.a'
    printf '\t$(CXX) $(CXXFLAGS) -o $@ main.o -L. -lmods\n'
    echo 'libmods.a: $(MODS)'
    printf '\trm -f $@\n\tar rcsD $@ $(MODS)\n'
    echo '%.o: %.c common.h'
    printf '\t$(CC) $(CFLAGS) -c -o $@ $<\n'
    echo '%.o: %.cc'
    printf '\t$(CXX) $(CXXFLAGS) -c -o $@ $<\n'
    echo 'clean:'
    printf '\trm -f prog main.o libmods.a $(MODS)\n'
    echo '.PHONY: clean'
} >Makefile
