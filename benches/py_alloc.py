"""Allocation-heavy CPython workload for the obmem benchmarks.

Run as `python3 py_alloc.py [rounds]`.  Every round runs the same phases,
each dominated by creating and freeing small objects: dict churn, instances
with and without __dict__, linked structures, string building and
splitting, JSON-like nested records, list/set/dict growth and an LRU-style
cache with mixed lifetimes.  The work is fully deterministic (own LCG, no
clock, no hash()-dependent output), and the script prints one checksum line
that must be identical under every allocator.

Under PYTHONMALLOC=malloc every object allocation goes to malloc/free/realloc,
so LD_PRELOAD selects the allocator being measured; under
PYTHONMALLOC=pymalloc CPython uses its own small-object allocator.
"""

import sys


class Lcg:
    __slots__ = ("state",)

    def __init__(self, seed):
        self.state = seed & 0xFFFFFFFFFFFFFFFF

    def next(self, n):
        # 64-bit LCG (Knuth MMIX constants); top bits are the good ones
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        return (self.state >> 33) % n


class Node:
    """A plain instance: object + __dict__ (or inline values) per node."""

    def __init__(self, key, value, nxt):
        self.key = key
        self.value = value
        self.next = nxt


class Point:
    __slots__ = ("x", "y", "z")

    def __init__(self, x, y, z):
        self.x = x
        self.y = y
        self.z = z


def dict_churn(rng, n):
    d = {}
    for i in range(n):
        d["key%d" % i] = (i, str(i), [i, i + 1])
    # delete a random half, then refill with differently sized values
    for _ in range(n // 2):
        d.pop("key%d" % rng.next(n), None)
    for i in range(n // 2):
        d["new%d" % i] = {"a": i, "b": [i] * (i % 7)}
    total = 0
    for k, v in d.items():
        total += len(k) + (len(v) if isinstance(v, (tuple, dict)) else 0)
    return total + len(d)


def linked_objects(n):
    head = None
    for i in range(n):
        head = Node(i, "v" + str(i), head)
    total = 0
    node = head
    while node is not None:
        total += node.key + len(node.value)
        node = node.next
    pts = [Point(i, i * 2.0, -i) for i in range(n)]
    total += int(sum(p.x + p.y + p.z for p in pts))
    return total


def strings(rng, n):
    words = ["w%x" % rng.next(1 << 20) for _ in range(n)]
    text = " ".join(words)
    parts = text.split(" ")
    upper = [w.upper() for w in parts]
    built = []
    for i, w in enumerate(upper):
        built.append(f"{i}:{w}:{len(w)}")
    joined = ",".join(built)
    pieces = joined.replace(":", "=").split(",")
    return len(joined) + len(pieces) + sum(len(p) for p in pieces[:: max(1, n // 100)])


def records(rng, n):
    recs = []
    for i in range(n):
        recs.append(
            {
                "id": i,
                "name": "user%d" % rng.next(100000),
                "tags": ["t%d" % rng.next(50) for _ in range(rng.next(6))],
                "score": rng.next(1000) / 10.0,
                "meta": {"created": i * 3, "flags": (i & 1, i & 2, i & 4)},
            }
        )
    recs.sort(key=lambda r: (r["score"], r["id"]))
    by_tag = {}
    for r in recs:
        for t in r["tags"]:
            by_tag.setdefault(t, []).append(r["id"])
    return sum(len(v) for v in by_tag.values()) + recs[0]["id"] + recs[-1]["id"]


def containers(n):
    big = []
    for i in range(n):
        big.append(i * 1000003)  # ints > 256 are heap objects
    tuples = [(i, i * 2) for i in range(n)]
    s = set(big)
    comp = {i: str(i) for i in range(0, n, 3)}
    return len(s) + len(comp) + sum(t[1] for t in tuples[:: max(1, n // 1000)])


def lru_cache(rng, n, cap):
    cache = {}
    hits = 0
    for _ in range(n):
        k = rng.next(cap * 2)
        if k in cache:
            hits += 1
            v = cache.pop(k)
            cache[k] = v  # move to the end (most recent)
        else:
            cache[k] = [k, "payload%d" % k, (k, k)]
            if len(cache) > cap:
                del cache[next(iter(cache))]  # evict the oldest
    return hits + len(cache)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    rng = Lcg(42)
    checksum = 0
    for r in range(rounds):
        checksum = (checksum * 31 + dict_churn(rng, 60000)) & 0xFFFFFFFF
        checksum = (checksum * 31 + linked_objects(80000)) & 0xFFFFFFFF
        checksum = (checksum * 31 + strings(rng, 80000)) & 0xFFFFFFFF
        checksum = (checksum * 31 + records(rng, 30000)) & 0xFFFFFFFF
        checksum = (checksum * 31 + containers(100000)) & 0xFFFFFFFF
        checksum = (checksum * 31 + lru_cache(rng, 150000, 20000)) & 0xFFFFFFFF
    print("py_alloc rounds=%d checksum=%08x" % (rounds, checksum))


if __name__ == "__main__":
    main()
