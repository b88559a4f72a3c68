"""An allocation-heavy, deterministic Python workload for the drop-in tests.

Run under LD_PRELOAD=libobmem.so with PYTHONMALLOC=malloc (so every Python
object goes through malloc/realloc/free) and compared with a run without the
preload: the output must be identical. It exercises dicts, lists, strings,
bytes/bytearray growth (large reallocs), json round trips, the cycle
collector, threads (concurrent malloc/free), and fork (the child allocates
and reports through a pipe).
"""
import gc
import hashlib
import json
import os
import random
import sys
import threading


def digest(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def section_dicts(rng):
    d = {}
    for i in range(200_000):
        k = "key-%d-%s" % (i, "x" * (i % 37))
        d[k] = [i, str(i * 7), (i, i + 1), {"v": i % 13}]
    # Delete a third, insert again with other sizes.
    for i in range(0, 200_000, 3):
        del d["key-%d-%s" % (i, "x" * (i % 37))]
    for i in range(50_000):
        d["new-%d" % i] = "y" * (i % 1000)
    total = sum(len(v) if isinstance(v, str) else v[0] for v in d.values())
    keys = sorted(d)
    return {"len": len(d), "total": total, "first": keys[:3], "last": keys[-3:]}


def section_lists(rng):
    lists = [[rng.random() for _ in range(rng.randint(0, 500))] for _ in range(2_000)]
    flat = sorted(x for lst in lists for x in lst)
    big = []
    for i in range(300_000):
        big.append(i * i % 1_000_003)
    big.sort()
    sl = big[1000:200_000:7]
    return {
        "n": len(flat),
        "sum": round(sum(flat), 6),
        "big": [big[0], big[-1], len(big)],
        "sl": [len(sl), sum(sl)],
    }


def section_strings(rng):
    words = ["".join(chr(97 + rng.randrange(26)) for _ in range(rng.randint(1, 12)))
             for _ in range(50_000)]
    text = " ".join(words)
    up = text.upper().replace("A", "aa").split()
    joined = "-".join(sorted(set(up)))
    parts = [("%s:%d" % (w, i)).encode() for i, w in enumerate(words[:20_000])]
    blob = b"|".join(parts)
    s = ""
    for i in range(20_000):  # quadratic-ish growth: many reallocs
        s += words[i % len(words)]
    return {
        "text": len(text),
        "up": len(up),
        "joined": hashlib.sha256(joined.encode()).hexdigest()[:16],
        "blob": hashlib.sha256(blob).hexdigest()[:16],
        "s": len(s),
    }


def section_bytes(rng):
    ba = bytearray()
    for i in range(200_000):  # grows past 128 KiB: large-block reallocs
        ba += bytes([(i * 31) & 0xFF]) * ((i % 7) + 1)
    chunks = [bytes(rng.randrange(256) for _ in range(64)) * rng.randint(1, 5000)
              for _ in range(60)]
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    mv = memoryview(ba)[1000:500_000]
    return {"ba": len(ba), "ba_hash": hashlib.sha256(ba).hexdigest()[:16],
            "chunks": h.hexdigest()[:16], "mv": sum(mv[::1000])}


def make_doc(rng, depth):
    if depth == 0:
        return rng.choice([rng.randint(-10**9, 10**9), rng.random(), "s" * rng.randint(0, 50),
                           None, True, False])
    if rng.random() < 0.5:
        return [make_doc(rng, depth - 1) for _ in range(rng.randint(0, 8))]
    return {"k%d" % i: make_doc(rng, depth - 1) for i in range(rng.randint(0, 8))}


def section_json(rng):
    out = []
    for i in range(40):
        doc = make_doc(rng, 6)
        s = json.dumps(doc, sort_keys=True)
        back = json.loads(s)
        assert back == doc, "json round trip %d differs" % i
        s2 = json.dumps(back, sort_keys=True, indent=1)
        assert json.loads(s2) == doc
        out.append((len(s), hashlib.sha256(s.encode()).hexdigest()[:8]))
    return {"docs": out[:5], "total": sum(n for n, _ in out), "all": digest(out)}


class Node:
    def __init__(self, i):
        self.i = i
        self.peer = None
        self.data = [i] * (i % 50)


def section_gc(rng):
    gc.collect()
    made = 0
    for round_ in range(20):
        nodes = [Node(i) for i in range(5000)]
        for i, n in enumerate(nodes):
            n.peer = nodes[(i * 7 + 1) % len(nodes)]  # cycles
        made += len(nodes)
        del nodes
        gc.collect()
    return {"made": made, "garbage": len(gc.garbage)}


def worker(idx, results):
    rng = random.Random(1000 + idx)
    acc = {}
    for i in range(60_000):
        k = rng.randrange(5000)
        v = acc.get(k)
        if v is None or len(v) > 20:
            acc[k] = [str(i)] * rng.randint(0, 10)
        else:
            v.append("z" * rng.randint(0, 300))
        if i % 1000 == 0:
            json.loads(json.dumps({str(kk): vv for kk, vv in list(acc.items())[:200]}))
    results[idx] = (len(acc), sum(len(v) for v in acc.values()),
                    sum(len(s) for v in acc.values() for s in v))


def section_threads(rng):
    results = [None] * 4
    threads = [threading.Thread(target=worker, args=(i, results)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"results": results}


def section_fork(rng):
    out = []
    for k in range(3):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                crng = random.Random(k)
                data = section_json(crng)
                data["extra"] = len(bytearray(3_000_000))  # a large block in the child
                os.write(w, json.dumps(data, sort_keys=True).encode())
            finally:
                os._exit(0)
        os.close(w)
        chunks = []
        while True:
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        out.append((os.waitstatus_to_exitcode(status), digest(json.loads(b"".join(chunks)))))
    return {"children": out}


def main():
    rng = random.Random(20240601)
    for name, fn in [("dicts", section_dicts), ("lists", section_lists),
                     ("strings", section_strings), ("bytes", section_bytes),
                     ("json", section_json), ("gc", section_gc),
                     ("threads", section_threads), ("fork", section_fork)]:
        res = fn(rng)
        print("%-8s %s %s" % (name, digest(res), json.dumps(res, sort_keys=True)[:200]))
        sys.stdout.flush()
    print("done")


if __name__ == "__main__":
    main()
