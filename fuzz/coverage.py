#!/usr/bin/env python3
"""Summarises libFuzzer -print_coverage=1 output of obmem's sources.

Reads one output per harness mode and prints, per source file of src/, the
edges covered (per function the best of the modes, a lower bound of their
union) and the functions never entered in any mode.

Usage: coverage.py COVERAGE_OUTPUT...
"""
import collections
import re
import sys

pat = re.compile(r"^(UN)?COVERED_FUNC: hits: (\d+) edges: (\d+)/(\d+) (\S+) (\S+?):(\d+)")
best = {}
for path in sys.argv[1:]:
    for line in open(path, errors="replace"):
        m = pat.match(line)
        if not m or "/src/" not in m.group(6):
            continue
        key = (m.group(6).split("/src/", 1)[1], m.group(5), int(m.group(7)))
        cov, tot = int(m.group(3)), int(m.group(4))
        if m.group(1):
            cov = 0
        old = best.get(key)
        best[key] = (max(cov, old[0] if old else 0), tot)

files = collections.defaultdict(lambda: [0, 0, 0, 0])
never = collections.defaultdict(list)
for (f, fn, line), (cov, tot) in best.items():
    s = files[f]
    s[0] += cov
    s[1] += tot
    s[2] += cov > 0
    s[3] += 1
    if cov == 0:
        name = re.sub(r"::h[0-9a-f]{16}$", "", fn)
        never[f].append(f"{name}:{line}")

print(f"{'src/ file':32} {'edges':>11} {'%':>5} {'functions':>10}")
tc = tt = 0
for f in sorted(files):
    c, t, fc, ft = files[f]
    tc += c
    tt += t
    print(f"{f:32} {c:5}/{t:<5} {100 * c / max(t, 1):5.1f} {fc:4}/{ft:<4}")
print(f"{'total':32} {tc:5}/{tt:<5} {100 * tc / max(tt, 1):5.1f}")
print("\nfunctions never entered:")
for f in sorted(never):
    print(f"  {f}: " + ", ".join(sorted(never[f])))
