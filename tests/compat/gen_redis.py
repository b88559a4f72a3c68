#!/usr/bin/env python3
"""tests/compat/gen_redis.py: a deterministic data set for redis-server.

    python3 gen_redis.py SEED SCALE LOAD.resp QUERIES.txt EXPECTED.txt

LOAD.resp: SCALE commands in the Redis protocol, for `redis-cli --pipe`:
SET (values up to 2 MiB), APPEND, SETRANGE, INCRBY, RPUSH/LPUSH/LPOP,
SADD/SREM, ZADD/ZINCRBY, HSET/HDEL, DEL and UNLINK of big keys (with
lazyfree on, a bio thread frees those: blocks allocated by the main thread
are freed by another). QUERIES.txt: one redis-cli command a line, read
from its standard input. EXPECTED.txt: what redis-cli prints for them
(non-tty output: one line per reply element), computed here by simulating
the commands.
"""
import heapq
import random
import sys


def resp(*args):
    out = ["*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append("$%d\r\n" % len(b))
        out.append(b.decode("latin-1") + "\r\n")
    return "".join(out)


def fmt_score(x):
    # Redis prints integral scores without a fraction.
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def main():
    seed, scale = int(sys.argv[1]), int(sys.argv[2])
    load_path, queries_path, expected_path = sys.argv[3:6]
    rng = random.Random(seed)
    alpha = "abcdefghijklmnopqrstuvwxyz0123456789"
    strings, lists, sets, zsets, hashes = {}, {}, {}, {}, {}
    nkeys = max(50, scale // 40)
    maxbig = min(150, scale // 300)  # big values: at most ~70 MiB in all
    nbig = 0
    cmds = []

    def word(lo, hi):
        return "".join(rng.choices(alpha, k=rng.randrange(lo, hi)))

    def drop(key):
        for d in (strings, lists, sets, zsets, hashes):
            d.pop(key, None)

    for _ in range(scale):
        op = rng.randrange(100)
        k = rng.randrange(nkeys)
        if op < 14:
            key, v = "str:%d" % k, word(1, 200)
            strings[key] = v
            cmds.append(resp("SET", key, v))
        elif op < 16 and nbig < maxbig:
            nbig += 1
            key = "big:%d" % (k % 20)
            n = rng.choice([5000, 70000, 300000, 1536 * 1024])
            v = (word(8, 9) * (n // 8 + 1))[:n]
            drop(key)
            strings[key] = v
            cmds.append(resp("SET", key, v))
        elif op < 16:
            pass
        elif op < 22:
            key, v = "str:%d" % k, word(1, 50)
            if key in strings:
                strings[key] += v
                cmds.append(resp("APPEND", key, v))
        elif op < 24:
            key = "str:%d" % k
            if key in strings:
                off, v = rng.randrange(0, 300), word(1, 20)
                s = strings[key]
                if len(s) < off:
                    s += "\0" * (off - len(s))
                strings[key] = s[:off] + v + s[off + len(v):]
                cmds.append(resp("SETRANGE", key, off, v))
        elif op < 32:
            key, by = "cnt:%d" % (k % 100), rng.randrange(-1000, 100000)
            strings[key] = str(int(strings.get(key, "0")) + by)
            cmds.append(resp("INCRBY", key, by))
        elif op < 46:
            key = "list:%d" % (k % 200)
            items = [word(1, 40) for _ in range(rng.randrange(1, 30))]
            lst = lists.setdefault(key, [])
            if rng.randrange(2):
                lst.extend(items)
                cmds.append(resp("RPUSH", key, *items))
            else:
                for it in items:
                    lst.insert(0, it)
                cmds.append(resp("LPUSH", key, *items))
        elif op < 50:
            key = "list:%d" % (k % 200)
            if key in lists:
                n = rng.randrange(1, 10)
                del lists[key][:n]
                if not lists[key]:
                    del lists[key]
                cmds.append(resp("LPOP", key, n))
        elif op < 60:
            key = "set:%d" % (k % 150)
            ms = [word(1, 12) for _ in range(rng.randrange(1, 40))]
            sets.setdefault(key, set()).update(ms)
            cmds.append(resp("SADD", key, *ms))
        elif op < 63:
            key = "set:%d" % (k % 150)
            if key in sets and sets[key]:
                ms = heapq.nsmallest(rng.randrange(1, 5), sets[key])
                sets[key] -= set(ms)
                if not sets[key]:
                    del sets[key]
                cmds.append(resp("SREM", key, *ms))
        elif op < 75:
            key = "zset:%d" % (k % 150)
            z = zsets.setdefault(key, {})
            args = []
            for _ in range(rng.randrange(1, 20)):
                m, sc = word(1, 10), rng.randrange(-10000, 10000)
                z[m] = sc
                args += [sc, m]
            cmds.append(resp("ZADD", key, *args))
        elif op < 78:
            key = "zset:%d" % (k % 150)
            if key in zsets:
                m = min(zsets[key])
                by = rng.randrange(1, 500)
                zsets[key][m] += by
                cmds.append(resp("ZINCRBY", key, by, m))
        elif op < 92:
            key = "hash:%d" % (k % 150)
            h = hashes.setdefault(key, {})
            args = []
            for _ in range(rng.randrange(1, 15)):
                f, v = word(1, 10), word(0, 300)
                h[f] = v
                args += [f, v]
            cmds.append(resp("HSET", key, *args))
        elif op < 95:
            key = "hash:%d" % (k % 150)
            if key in hashes:
                f = max(hashes[key])
                del hashes[key][f]
                if not hashes[key]:
                    del hashes[key]
                cmds.append(resp("HDEL", key, f))
        else:
            # Delete a big value or a long list, half with UNLINK (freed by
            # the lazyfree thread when large enough).
            key = rng.choice(["big:%d" % (k % 20), "list:%d" % (k % 200), "hash:%d" % (k % 150)])
            drop(key)
            cmds.append(resp("UNLINK" if rng.randrange(2) else "DEL", key))

    with open(load_path, "w", encoding="latin-1", newline="") as f:
        f.write("".join(cmds))

    queries, expected = [], []

    def qry(cmd, lines):
        queries.append(cmd)
        expected.extend(str(x) for x in lines)

    nall = len(strings) + len(lists) + len(sets) + len(zsets) + len(hashes)
    qry("DBSIZE", [nall])
    for key in sorted(strings)[:: max(1, len(strings) // 40)]:
        if key.startswith("big:"):
            s = strings[key]
            qry("STRLEN %s" % key, [len(s)])
            qry("GETRANGE %s 1000 1015" % key, [s[1000:1016]])
        elif "\0" not in strings[key]:
            qry("GET %s" % key, [strings[key]])
    for key in sorted(lists)[::7]:
        qry("LLEN %s" % key, [len(lists[key])])
        qry("LRANGE %s 0 5" % key, lists[key][:6])
    for key in sorted(sets)[::7]:
        qry("SCARD %s" % key, [len(sets[key])])
        qry("SORT %s ALPHA LIMIT 0 5" % key, sorted(sets[key])[:5])
    for key in sorted(zsets)[::7]:
        z = zsets[key]
        top = sorted(z.items(), key=lambda kv: (kv[1], kv[0]))[:4]
        qry("ZCARD %s" % key, [len(z)])
        qry("ZRANGE %s 0 3 WITHSCORES" % key, [x for m, s in top for x in (m, fmt_score(s))])
    for key in sorted(hashes)[::7]:
        h = hashes[key]
        qry("HLEN %s" % key, [len(h)])
        f = sorted(h)[0]
        if h[f]:
            qry("HGET %s %s" % (key, f), [h[f]])
    with open(queries_path, "w") as f:
        f.write("\n".join(queries) + "\n")
    with open(expected_path, "w") as f:
        f.write("\n".join(expected) + "\n")


if __name__ == "__main__":
    main()
