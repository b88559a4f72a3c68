"""Seeds for fuzz_threads.c (called by make_seeds.py --threads OUTDIR).

The layout (see decode() in fuzz_threads.c): byte 0 = slots - 2, byte 1 =
flags (bits 0-1 cleanup mode: 0 workers free their blocks, 1 the main
thread frees them after the threads exited, 2 half each; bit 2 the first
phase is sequenced), then operations: a selector byte (slot | kind index
<< 2) and the kind's argument bytes.
"""
import os
import re
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
src = open(os.path.join(HERE, "fuzz_threads.c")).read()
table = src[src.index("static const uint8_t kind_of[64] = {"):]
table = table[table.index("{") + 1: table.index("};")]
KINDS = re.findall(r"OP_(\w+)", table)
assert len(KINDS) == 64, len(KINDS)
FIRST = {}
for i, k in enumerate(KINDS):
    FIRST.setdefault(k.lower(), i)

MALLOC, RAW, MEM, OBJ = 3, 0, 1, 2  # families: raw, mem, object, malloc
CALLOC, REALLOC_NULL = 4, 8


def u16(v):
    return struct.pack("<H", v)


def u32(v):
    return struct.pack("<I", v)


def tiny(n):
    return bytes([0, n])


def small(n):
    return bytes([30]) + u16(n)


def mid(n):
    return bytes([100]) + u16(n)


def medium(n):
    return bytes([140]) + u32(n - 4097)


def large(n):
    return bytes([240]) + u32(n - 131073)


def op(kind, slot, *args):
    out = bytearray([FIRST[kind] << 2 | slot])
    for a in args:
        out += a if isinstance(a, (bytes, bytearray)) else bytes([a & 0xFF])
    return bytes(out)


def alloc(slot, fam, size, b=0):
    return op("alloc", slot, fam, b, size)


def aligned(slot, fn, sel, size):
    return op("aligned", slot, fn, sel, size)


def free(slot, sel, alt=0):
    return op("free", slot, sel, alt)


def realloc(slot, sel, size, alt=0):
    return op("realloc", slot, sel, alt, size)


def send(slot, sel, dst, count):
    return op("send", slot, sel, dst, count - 1)


# recv actions, 2 bits per received block (repeating every 4): 0 free,
# 1 realloc, 2 keep, 3 forward to a third slot
def recv(slot, src, count, actions=0, alt=0, size=small(64)):
    return op("recv", slot, src, count - 1, actions, alt, size)


def touch(slot, sel, seed=0x5A):
    return op("touch", slot, sel, seed)


def stats(slot, what=1):
    return op("stats", slot, what)


def exit_(slot):
    return op("exit", slot)


# burst actions: 0 free in order, 1 free in reverse, 2 send all, 3 keep
def burst(slot, fam, count, action, dst, size):
    return op("burst", slot, fam, count - 1, action, dst, size)


def yield_(slot, how=1):
    return op("yield", slot, how)


# barrier: sched (1 = next phase sequenced), main's action (0 none, 1 free,
# 2 realloc, 3 move x -> y, 4 allocate for x), slots (x | y << 2), count
def barrier(seq=0, act=0, x=0, y=0, cnt=1, size=small(100)):
    return op("barrier", 0, seq, act, x | y << 2, cnt - 1, size)


def header(slots, cleanup=0, seq=0):
    return bytes([slots - 2, cleanup | seq << 2])


seeds = {}

# Remote frees: slot 0 allocates and sends, slot 1 frees, concurrently.
s = header(2)
for r in range(4):
    s += burst(0, MALLOC, 24, 3, 0, small(48 + 16 * r))
    for k in range(3):
        s += send(0, k, 0, 8) + recv(1, 0, 8, 0x00) + alloc(1, OBJ, small(100))
    s += burst(1, MEM, 32, 2, 0, small(200)) + recv(0, 0, 8, 0x00) + recv(0, 0, 8, 0x00)
    s += barrier()
seeds["remote_free"] = s

# Exit and adoption, sequenced (deterministic): slot 0 allocates, sends
# blocks to 1 and 2 and exits; they free them into the abandoned heap; the
# successor (which adopts it) frees the rest.
s = header(3, seq=1)
for r in range(3):
    s += burst(0, MALLOC, 16, 3, 0, small(64)) + alloc(0, RAW, medium(20000))
    s += send(0, 0, 0, 6) + send(0, 0, 1, 6) + exit_(0)
    s += recv(1, 1, 6, 0x00) + recv(2, 0, 6, 0x55, 0, mid(3000))
    s += alloc(0, MALLOC, small(64)) + free(0, 0) + free(0, 1) + send(2, 0, 1, 3)
    s += recv(0, 1, 3, 0x00) + barrier(seq=1, act=1, x=0, cnt=4)
seeds["exit_adopt_sequenced"] = s

# The same concurrently, four slots, each exits in turn.
s = header(4)
for r in range(2):
    for t in range(4):
        s += burst(t, t, 20, 3, 0, small(32 + 48 * t)) + send(t, 0, t, 8)
    for t in range(4):
        s += exit_(t) + recv(t, 0, 8, 0x00) + recv(t, 1, 8, 0xAA) + recv(t, 2, 8, 0x00)
        s += alloc(t, MALLOC, small(40))
    s += barrier(act=3, x=1, y=2, cnt=8)
seeds["exit_concurrent"] = s

# Cross-thread realloc of small, medium and large blocks.
s = header(2, cleanup=1)
for size in (small(24), mid(2000), medium(60000), large(300000)):
    s += alloc(0, MALLOC, size) + alloc(0, OBJ, size) + alloc(0, MEM, size)
    s += send(0, 0, 0, 3) + recv(1, 0, 3, 0x15, 0, medium(50000))
    s += realloc(1, 0, small(10)) + send(1, 0, 0, 2) + recv(0, 0, 2, 0x05, 0, large(140000))
    s += barrier(act=2, x=1, cnt=2, size=mid(1000))
seeds["realloc_foreign"] = s

# Large and over-aligned blocks freed by other threads.
s = header(3, cleanup=2)
for r in range(3):
    s += alloc(0, MALLOC, large(200000 + r * 100000)) + aligned(0, r, 4, small(100))
    s += aligned(0, 0, 250 + r, small(300)) + aligned(0, 1, 11, medium(70000))
    s += send(0, 0, r, 4) + recv(1, 0, 4, 0x00) + recv(2, 1, 4, 0x5A, 1, large(150000))
    s += barrier(act=4, x=2, cnt=3, size=large(131100))
seeds["large_aligned"] = s

# Statistics while threads exit and free into each other's heaps.
s = header(4, seq=0)
for r in range(3):
    for t in range(4):
        s += burst(t, MALLOC, 30, 2, t, small(16 + 32 * t)) + stats(t, 3)
    for t in range(4):
        s += recv(t, 0, 8, 0x00) + exit_(t) + stats(t, 1 | 0x70) + recv(t, 1, 8, 0x00)
    s += barrier(seq=r & 1, act=1, x=r, cnt=8)
seeds["stats_during_exits"] = s

# Blocks passed along a chain of slots, calloc and every domain.
s = header(4, cleanup=1, seq=1)
for r in range(4):
    s += alloc(0, CALLOC | RAW, mid(1000), 7) + alloc(0, CALLOC | MEM, small(500), 3)
    s += alloc(0, REALLOC_NULL | OBJ, small(77)) + alloc(0, MALLOC, tiny(0))
    s += send(0, 0, 0, 4) + recv(1, 0, 4, 0xFF, 0) + recv(2, 0, 4, 0xFF, 1)
    s += recv(3, 0, 4, 0x66) + touch(3, 255) + touch(3, 0, r) + barrier(seq=1, act=4, x=3, cnt=5, size=small(48))
seeds["forward_chain"] = s

# Pools filled by one thread and emptied by others, many times.
s = header(3)
for r in range(5):
    s += burst(0, OBJ, 32, 2, 0, small(16)) + burst(0, OBJ, 32, 2, 1, small(16))
    s += recv(1, 1, 8, 0) * 4 + recv(2, 0, 8, 0) * 4 + burst(1, OBJ, 32, 0, 0, small(16))
    s += yield_(2, 0x40) + burst(2, OBJ, 32, 1, 0, small(16))
    s += barrier(seq=r & 1)
seeds["pool_churn"] = s


def main(out):
    os.makedirs(out, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(data)
    print(f"{len(seeds)} thread seeds in {out}")
