#!/usr/bin/env bash
# tests/compat/pipelines.sh DIR LINES
# bash and coreutils over generated data. Generates a LINES-line CSV file
# with awk (a fixed-seed generator), then runs pipelines of sort, uniq,
# cut, tr, wc, join, paste, comm, split, tac, tail, xargs -P2,
# sha256sum/md5sum, base64, sed, awk, grep, gzip, numfmt and bash's own
# associative arrays, string operations, read loops and mapfile over it.
# No head after a big producer: under pipefail its SIGPIPE would fail the
# script; `sed -n 1,Np` reads to the end instead.
# Everything printed is a function of LINES: the run with obmem must print
# exactly what the run without it prints.
set -euo pipefail

dir=$1
lines=$2
export LC_ALL=C TZ=UTC
mkdir -p "$dir"
cd "$dir"

section() { echo "== $1"; }

awk -v n="$lines" 'BEGIN {
    s = 4242
    split("red green blue cyan magenta yellow black white orange purple", col, " ")
    for (i = 1; i <= n; i++) {
        s = (s * 1103515245 + 12345) % 2147483648; a = s
        s = (s * 1103515245 + 12345) % 2147483648; b = s
        printf "%d,%s,%d,%08x,user%d@host%d.example,%s\n", i, col[1 + a % 10], b % 100000,
            a, b % 5000, a % 97, substr("the quick brown fox jumps over the lazy dog", 1 + a % 20, 1 + b % 25)
    }
}' >data.csv

section "input"
wc -l -c <data.csv
sha256sum data.csv

section "sort"
sort -t, -k3,3n -k1,1n data.csv | sha256sum
sort -t, -k2,2 -k3,3nr -S 8M --parallel=2 data.csv | sed -n '1,3p'
sort -u -t, -k5,5 data.csv | wc -l
sort -t, -k4,4 -r data.csv | tail -n 2
sort -R --random-source=data.csv data.csv | sha256sum

section "uniq"
cut -d, -f2 data.csv | sort | uniq -c | sort -k1,1nr -k2
cut -d, -f7 data.csv | sort | uniq -d | wc -l
cut -d, -f6 data.csv | sort | uniq -u | sed -n '1,5p'

section "tr, wc, sed"
tr 'a-z' 'A-Z' <data.csv | tr -s 'O' | tr -d ',' | sha256sum
tr -c 'a-z\n' '_' <data.csv | wc -c
sed -E 's/user([0-9]+)@host([0-9]+)/\2:\1/; s/,([a-z]+),/,<\1>,/' data.csv | sha256sum
sed -n '1000~997p' data.csv | sed -n '1,5p'
wc -w data.csv

section "awk"
awk -F, '{ s[$2] += $3; n[$2]++ } END { for (k in s) printf "%s %d %d\n", k, n[k], s[k] }' data.csv | sort
awk -F, 'length($7) > 20 { c++ } END { print c + 0 }' data.csv
awk -F, '{ w[$5] = w[$5] " " $1 } END { for (k in w) print k, length(w[k]) }' data.csv | sort | sha256sum

section "grep"
grep -c 'fox' data.csv
grep -E -o 'host[0-9]+' data.csv | sort | uniq -c | sort -k1,1nr -k2 | sed -n '1,5p'
grep -v -F -e red -e blue data.csv | sha256sum

section "join, paste, comm"
cut -d, -f1,2 data.csv | sort -t, -k1,1 >left.txt
cut -d, -f1,4 data.csv | sort -t, -k1,1 >right.txt
join -t, left.txt right.txt | sha256sum
paste -d'|' <(cut -d, -f2 data.csv) <(cut -d, -f3 data.csv) | sort | uniq | wc -l
cut -d, -f5 data.csv | sort -u >a.txt
cut -d, -f5 data.csv | sed -n "1,$((lines / 2))p" | sort -u >b.txt
comm -3 a.txt b.txt | wc -l
comm -12 a.txt b.txt | sha256sum

section "split, xargs, digests"
mkdir -p parts
split -l $((lines / 16 + 1)) -d -a 3 data.csv parts/p
ls parts | wc -l
# shellcheck disable=SC2011 # (split's names: p000, p001, ...)
(cd parts && ls | xargs -P2 -n 3 sha256sum | sort -k2)
# shellcheck disable=SC2011
(cd parts && ls | xargs -P2 -n 2 md5sum | sort -k2 | md5sum)
cat parts/* | cmp - data.csv && echo "parts rejoin"
tac data.csv | sed -n '1,2p'
base64 -w 76 data.csv | base64 -d | cmp - data.csv && echo "base64 round trip"
gzip -c -6 data.csv | gzip -dc | sha256sum
numfmt --to=iec 1048576 123456789

section "bash"
declare -A count=()
declare -A last=()
nread=0
while IFS=, read -r id color val hex mail text; do
    count[$color]=$((${count[$color]:-0} + 1))
    host=${mail#*@}
    last[${host%.example}]="$id:${text^^}:${hex:2:4}:$((val % 1000))"
    nread=$((nread + 1))
done <data.csv
echo "read $nread"
for k in $(printf '%s\n' "${!count[@]}" | sort); do echo "$k ${count[$k]}"; done
echo "hosts ${#last[@]}"
for k in $(printf '%s\n' "${!last[@]}" | sort | sed -n '1,10p'); do echo "$k ${last[$k]}"; done
mapfile -t arr <data.csv
echo "mapfile ${#arr[@]}"
s=""
for ((i = 0; i < ${#arr[@]}; i += 7)); do s+="${arr[i]//,/;}"; done
echo "concat ${#s}"
printf '%s' "$s" | sha256sum
big=$(printf '%s\n' "${arr[@]}" | sort -r)
echo "big ${#big}"
unset arr big s count last
echo "== end"
