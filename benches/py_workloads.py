"""Four allocation-heavy CPython workloads of different shapes, for
comparing allocators under PYTHONMALLOC=malloc (benches/py_instr.sh).

Usage: python3 py_workloads.py WORKLOAD [SCALE]
  json   JSON round trips of nested records (dicts, lists, strings, numbers)
  churn  churn of short-lived dicts, lists and tuples of mixed sizes
  tree   building and walking binary trees (many small objects, deep)
  words  counting words of generated text (strings, a growing dict)
Deterministic (own LCG); prints one checksum line.
"""

import json
import sys


class Lcg:
    __slots__ = ("s",)

    def __init__(self, seed):
        self.s = seed

    def next(self, n):
        self.s = (self.s * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        return (self.s >> 33) % n


def w_json(scale):
    r = Lcg(1)
    total = 0
    for i in range(400 * scale):
        rec = {
            "id": i,
            "name": "user%d" % r.next(100000),
            "tags": ["t%d" % r.next(50) for _ in range(r.next(8) + 1)],
            "scores": [r.next(1000) / 7 for _ in range(r.next(12) + 1)],
            "nested": {"a": {"b": [r.next(10) for _ in range(5)]}, "c": None},
        }
        s = json.dumps([rec] * 4)
        back = json.loads(s)
        total += len(s) + len(back[0]["tags"])
    return total


def w_churn(scale):
    r = Lcg(2)
    keep = [None] * 512
    total = 0
    for i in range(60000 * scale):
        k = r.next(6)
        if k == 0:
            v = {j: j * 2 for j in range(r.next(12))}
        elif k == 1:
            v = [j for j in range(r.next(40))]
        elif k == 2:
            v = tuple(range(r.next(10)))
        elif k == 3:
            v = {"x": i, "y": str(i), "z": [i, i + 1]}
        elif k == 4:
            v = (i, (i, i), [i])
        else:
            v = set(range(r.next(16)))
        keep[r.next(512)] = v
        total += len(v)
    return total


class Node:
    __slots__ = ("left", "right", "val")

    def __init__(self, left, right, val):
        self.left, self.right, self.val = left, right, val


def make(depth, val):
    if depth == 0:
        return Node(None, None, val)
    return Node(make(depth - 1, 2 * val), make(depth - 1, 2 * val + 1), val)


def walk(t):
    total, stack = 0, [t]
    while stack:
        n = stack.pop()
        total += n.val & 0xFF
        if n.left is not None:
            stack.append(n.left)
            stack.append(n.right)
    return total


def w_tree(scale):
    total = 0
    long_lived = make(14, 1)
    for i in range(12 * scale):
        total += walk(make(12, i))
    return total + walk(long_lived)


def w_words(scale):
    r = Lcg(4)
    syll = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "an", "el", "is", "ou"]
    counts = {}
    for line in range(6000 * scale):
        words = ["".join(syll[r.next(12)] for _ in range(r.next(3) + 1)) for _ in range(12)]
        text = " ".join(words).upper().lower()
        for w in text.split():
            counts[w] = counts.get(w, 0) + 1
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    return sum(c for _, c in top) + len(counts)


WORKLOADS = {"json": w_json, "churn": w_churn, "tree": w_tree, "words": w_words}

if __name__ == "__main__":
    name = sys.argv[1]
    scale = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    print("%s checksum=%d" % (name, WORKLOADS[name](scale)))
