#!/usr/bin/env python3
"""Writes hand-made seed inputs for fuzz_api.c (or, with --threads, for
fuzz_threads.c) into a directory.

Each fuzz_api.c seed is a sequence of operations: the operation's index in
the ops[] table of fuzz_api.c (read from the source, so the seeds follow the
table), then its argument bytes. A fuzz_threads.c seed is a header (slots,
flags) and operations whose selector byte holds the slot (bits 0-1) and an
index of the kind_of[] table (bits 2-7), also read from the source.
Usage: make_seeds.py [--threads] OUTDIR
"""
import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if len(sys.argv) == 3 and sys.argv[1] == "--threads":
    sys.path.insert(0, HERE)
    import threads_seeds

    threads_seeds.main(sys.argv[2])
    sys.exit(0)
src = open(os.path.join(HERE, "fuzz_api.c")).read()
table = src[src.index("} ops[] = {"):]
table = table[: table.index("};")]
OPS = re.findall(r'\{"(\w+)", op_\w+, CAT_\w+\}', table)
IDX = {n: i for i, n in enumerate(OPS)}


def op(name, *args):
    out = bytearray([IDX[name]])
    for a in args:
        if isinstance(a, (bytes, bytearray)):
            out += a
        else:
            out.append(a & 0xFF)
    return bytes(out)


def u16(v):
    return struct.pack("<H", v)


def u32(v):
    return struct.pack("<I", v)


# pick_size selectors: (<96) u16 % 513, (<150) u16 % 4097, (<190) 4097 + u32 %,
# (<220) edge table index, (<240) large 131073 + u32 % 4 MiB
def small(n):
    return bytes([0]) + u16(n)


def mid(n):
    return bytes([100]) + u16(n)


def medium(n):
    return bytes([160]) + u32(n - 4097)


def edge(i):
    return bytes([200, i])


def large(n):
    return bytes([235]) + u32(n - 131073)


F_RAW, F_MEM, F_OBJ, F_LIBC = range(4)
seeds = {}

s = b""
for f in range(4):
    for sz in (small(0), small(1), small(100), mid(4000), medium(60000), large(300000), edge(45)):
        s += op("malloc", f, sz)
for k in range(8):
    s += op("realloc", 8 * (k + 1) + 1, mid(3000 + 100 * k), k)
    s += op("usable", 0x80 | k)
for k in range(6):
    s += op("free", k, k)
s += op("calloc", F_MEM, medium(20000), 3) + op("calloc", F_LIBC, small(300), 7)
s += op("reallocarray", 1, mid(2000), 5) + op("reallocarray", 0, small(10), 3)
s += op("verify_blocks")
seeds["alloc_mix"] = s

s = b""
for fn in range(5):
    for al in (0, 3, 4, 6, 12, 14, 16, 21):
        s += op("aligned", fn, al, small(100 + al))
    s += op("aligned", fn, 201, 40, small(64))  # 2^40 alignment: may fail
s += op("aligned", 2, 240) + u16(48) + small(10)  # non-power-of-two memalign
seeds["aligned"] = s

s = b""
for w in range(10):
    for f in range(4):
        s += op("malloc", f, small(50)) if w == 2 else b""
        s += op("overflow", w, f, w * 20) + bytes([7, 1, 2, 3, 4, 5])
seeds["overflow"] = s

s = b""
for f in range(4):
    s += op("stats_delta", f, small(40), 0) + op("stats_delta", f, large(500000), 1)
    s += op("stats_delta", f, medium(100000), 0)
s += op("stats", 0) + op("stats", 1) + op("stats", 3)
seeds["stats"] = s

s = b""
for f in range(4):
    s += op("remote", 1, f, small(200)) + op("remote", 1, f, large(200000))
    s += op("malloc", f, mid(1000))
s += op("remote", 2, 0, 0, mid(3000)) + op("remote", 0, 1, 0) + op("remote", 0, 2, 1)
s += op("remote", 3, F_LIBC, 5, small(128)) + op("remote", 3, F_RAW, 2, small(64))
s += op("free", 0, 0) + op("free", 1, 0) + op("free", 2, 1)
seeds["remote"] = s

s = b""
for d in range(3):
    s += op("getalloc", d, 0, small(77)) + op("getalloc", d, 1) + op("getalloc", d, 3)
seeds["allocator_table"] = s

# Objects. chain args: kinds byte (2 bits per link: GC, GC_FIN, GC_RESCUE,
# GC_NOCLEAR), length (1 + b % 80), flags (1 ring, 2 track, 4 keep head,
# 8 reverse decref order, 0x30 slot, 0x40 mix in leaves).
seeds["trashcan_chain"] = op("chain", 0, 79, 0) + op("chain", 0x55, 70, 8) + op("chain", 0xAA, 79, 0x40)
seeds["tracked_ring"] = op("chain", 0x00, 30, 3) + op("collect", 2) + op("chain", 0x44, 20, 3) + op("collect", 0)
seeds["rescue_ring"] = (op("chain", 0x28, 12, 3) + op("collect", 2) + op("collect", 2)
                        + op("chain", 0xAA, 60, 0x43) + op("collect", 1) + op("collect", 2))
seeds["noclear"] = op("chain", 0xFF, 5, 3) + op("chain", 0x3C, 9, 3) + op("collect", 2) + op("collect", 0)
seeds["saveall"] = (op("set_debug", 1) + op("chain", 0x14, 10, 3) + op("collect", 2)
                    + op("garbage", 1, 3) + op("garbage", 2, 0) + op("garbage", 0) + op("collect", 2))
seeds["debug_stats"] = op("set_debug", 5) + op("chain", 0x00, 8, 3) + op("collect", 2) + op("set_debug", 6) + op("collect", 1)
seeds["freeze"] = (op("chain", 0, 6, 7) + op("freeze", 1) + op("collect", 2) + op("chain", 0, 4, 3)
                   + op("collect", 2) + op("freeze", 0) + op("collect", 2))

s = op("threshold", 2, 1, 1) + op("enable", 0)
for k in range(12):
    s += op("new", k % 8, 0, 0) + op("track", k) + op("set_slot", k, 0, 1, k + 3)
s += op("chain", 0x1B, 40, 3) + op("threshold", 1, 10, 0) + op("chain", 0, 30, 2)
s += op("threshold", 10, 11, 12) + op("chain", 0, 20, 3) + op("enable", 1) + op("chain", 0, 5, 3)
seeds["auto_collect"] = s

s = op("callback", 1) + op("callback", 3) + op("callback", 5 | 8) + op("callback", 0xF0)
s += op("chain", 0, 5, 3) + op("collect", 0) + op("callback", 2) + op("callback", 0) + op("collect", 2)
s += op("callback", 6) + op("collect", 1)
seeds["callbacks"] = s

s = op("chain", 0x00, 10, 6) + op("chain", 0x00, 4, 0x16)
for k in range(6):
    s += op("get_objects", k * 50, 5 + 8 * k, 0) + op("get_referents", k, 0, 1) + op("get_referrers", k, 7, 0, 1)
s += op("get_objects", 255, 0, 0) + op("get_objects", 0x0F, 0, 0) + op("get_referents", 0, 0, 0)
seeds["introspect"] = s

s = op("lock", 1) + op("lock", 1) + op("chain", 0, 10, 3) + op("collect", 2) + op("lock", 0)
s += op("new", 4, 200) + u16(500) + op("verify_obj", 0) + op("new_bad", 0) + op("new_bad", 1)
s += op("new_bad", 2) + op("new_bad", 3) + op("incref", 0, 1) + op("decref", 0, 1) + op("incref", 255, 0)
s += op("new", 6, 0, 1) + op("decref", 3, 0) + op("new", 5, 250) + u16(5) + op("decref", 4, 0)
seeds["objects_misc"] = s

# Weak references (weakref args: w, then the object picked: w & 3 == 3
# drops weakref (next byte % count), w & 4 gives it a callback) and immortal
# objects (immortal args: w & 7 == 7 is immortalize_frozen, else the object).
seeds["weak_ring"] = (op("chain", 0x00, 10, 7) + op("weakref", 4, 0) + op("weakref", 0, 3)
                      + op("weakref", 4, 5) + op("weakref", 4, 9) + op("decref", 0, 0)
                      + op("collect", 2) + op("weakref", 3, 1) + op("weakref", 3, 0))
seeds["weak_rescue"] = (op("chain", 0xAA, 12, 7) + op("weakref", 4, 1) + op("weakref", 0, 1)
                        + op("weakref", 4, 6) + op("weakref", 0, 6) + op("decref", 0, 0)
                        + op("collect", 2) + op("collect", 2) + op("clear_slots", 1) + op("collect", 2))
seeds["weak_refcount"] = (op("new", 1, 0, 0) + op("new", 5, 0, 0) + op("weakref", 4, 0)
                          + op("weakref", 0, 0) + op("weakref", 4, 1) + op("decref", 0, 0)
                          + op("decref", 0, 0) + op("weakref", 4, 0) + op("chain", 0x55, 70, 0x04)
                          + op("weakref", 4, 40) + op("decref", 2, 0))
seeds["immortal"] = (op("chain", 0x00, 10, 7) + op("immortal", 0, 0) + op("decref", 0, 0)
                     + op("collect", 2) + op("chain", 0x00, 6, 7) + op("freeze", 1)
                     + op("immortal", 7) + op("weakref", 4, 12) + op("collect", 2) + op("freeze", 0)
                     + op("collect", 2))

# Ephemerons (ephemeron args: w, key, value; w & 3 == 0: NULL value;
# w & 0xF0 == 0xF0: the EINVAL checks). Object indices are creation order.
def new(kind):
    return op("new", kind, 0, 0)


def eph(key, val):
    return op("ephemeron", 1, key, val)


def slot(i, k, j):
    return op("set_slot", i, k, 1, j)


def track(*ix):
    return b"".join(op("track", i) for i in ix)


def decref(*ix):
    return b"".join(op("decref", i, 0) for i in ix)


# K 0, V 1, E 2 (K -> V), V -> K: the value's reference back to its key
# does not keep either alive; then the same with E garbage too (V -> E).
seeds["eph_value_cycle"] = (new(0) + new(0) + track(0, 1) + eph(0, 1) + slot(1, 0, 0)
                            + decref(1, 0) + op("collect", 2) + decref(2)
                            + new(1) + new(0) + track(3, 4) + eph(3, 4) + slot(4, 0, 3) + slot(4, 1, 5)
                            + decref(3, 4, 5) + op("collect", 0) + op("collect", 2))
# A chain K0 -> V1 -> K2 -> V3 -> K4 -> V5 through ephemerons 6, 7, 8: alive
# while K0 is, resolved in one collection, then K0 dies by its count.
s = new(0) + new(0) + new(0) + new(0) + new(4) + new(5) + track(0, 1, 2, 3)
s += eph(0, 1) + eph(2, 3) + eph(4, 5) + slot(1, 0, 2) + slot(3, 0, 4)
s += decref(1, 2, 3, 4, 5) + op("collect", 2) + op("collect", 2) + decref(0) + op("collect", 2)
seeds["eph_chain"] = s
# The same chain, its head key in a garbage cycle (K0 <-> 9), newest
# ephemeron first; and chains through an ephemeron as a value.
s = new(0) + new(0) + new(0) + new(0) + new(1) + new(5) + track(0, 1, 2, 3, 4)
s += eph(4, 5) + eph(2, 3) + eph(0, 1) + slot(1, 0, 2) + slot(3, 0, 4) + new(0) + track(9)
s += slot(0, 0, 9) + slot(9, 0, 0) + decref(1, 2, 3, 4, 5, 9) + op("collect", 2)
s += decref(0) + op("collect", 2) + new(0) + new(0) + track(10, 11) + eph(10, 11) + eph(11, 12)
s += eph(10, 13) + decref(12, 13, 11) + op("collect", 2) + decref(10)
seeds["eph_garbage_chain"] = s
# Resurrection: the key's finalizer resurrects it (kind 2); the value,
# held only by a reachable ephemeron, refers back to the key. Then the
# value's finalizer resurrects the value.
s = new(2) + new(1) + track(0, 1) + eph(0, 1) + slot(1, 0, 0) + decref(0, 1)
s += op("collect", 2) + op("collect", 2) + op("clear_slots", 0) + op("collect", 2)
s += new(0) + new(2) + track(3, 4) + eph(3, 4) + slot(4, 0, 3) + slot(3, 1, 4) + decref(3, 4)
s += op("collect", 2) + op("collect", 1) + op("collect", 2)
seeds["eph_resurrect"] = s
# Generations, freezing, immortal keys and values, SAVEALL, weakrefs to the
# same key, introspection, and the EINVAL cases.
s = new(0) + new(0) + track(0, 1) + eph(0, 1) + op("collect", 1) + new(0) + track(3)
s += slot(1, 0, 0) + slot(3, 0, 2) + decref(2) + op("weakref", 4, 0) + op("weakref", 0, 0)
s += op("collect", 0) + op("collect", 1) + decref(0, 1) + op("collect", 2) + decref(3)
s += new(0) + new(0) + track(4, 5) + op("immortal", 4) + eph(4, 5) + slot(5, 0, 4)
s += decref(5) + op("collect", 2) + eph(5, 4) + op("immortal", 5) + op("collect", 2)
s += new(0) + new(0) + track(8, 9) + eph(8, 9) + slot(9, 0, 8) + op("freeze", 1)
s += op("collect", 2) + op("freeze", 0) + decref(8, 9) + op("set_debug", 1) + op("collect", 2)
s += op("garbage", 1, 0) + op("set_debug", 0) + op("garbage", 0) + op("collect", 2)
s += op("ephemeron", 0xF1, 0, 0) + op("ephemeron", 0xF1, 10, 10) + op("ephemeron", 1, 10, 0)
s += new(7) + op("ephemeron", 2, 11, 0) + op("ephemeron", 0xF0, 3)
s += op("get_referents", 10, 0, 1) + op("get_referrers", 9, 0, 1) + op("get_objects", 0, 0, 0)
seeds["eph_misc"] = s
# Death by count in the trashcan: a long chain whose members key
# ephemerons that hold the next member's successors.
s = op("chain", 0x00, 60, 0x06)
for k in range(0, 56, 7):
    s += eph(k, k + 3)
s += op("decref", 0, 0) + op("collect", 2)
seeds["eph_trashcan"] = s

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, "seed-" + name), "wb") as f:
        f.write(data)
print(f"{len(seeds)} seeds in {out} ({len(OPS)} operations)")
