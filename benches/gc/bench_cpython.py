"""CPython's side of benches/gc: the same shapes with __slots__ instances.
Prints lines in the format of bench_obmem.c:
    cpython <benchmark> <shape> <state> <N> <ns per object or op>
The interpreter's own objects are frozen first, so gc.collect() looks at the
benchmark's objects only, as obm_gc_collect does."""
import gc
import sys
import time
import weakref


class Obj:
    __slots__ = ("other",)


class WObj:
    __slots__ = ("other", "__weakref__")


weak = []  # the wpairs10 shape's weak references


def build(shape, n):
    if shape != "ring":
        cls = WObj if shape[0] == "w" else Obj
        keep = []
        for i in range(n // 2):
            a = cls()
            b = cls()
            a.other = b
            b.other = a
            keep.append(a)
            if shape == "wpairs10" and i % 5 == 0:
                weak.append(weakref.ref(a))
        return keep
    head = cur = Obj()
    for _ in range(n - 1):
        x = Obj()
        cur.other = x
        cur = x
    cur.other = head
    return [head]


def bench_collect(shape, state, n):
    keep = build(shape, n)
    holder = None
    if state == "garbage":
        del keep[:]
    else:
        holder = keep  # the list is one more tracked object; negligible
    keep = None
    t0 = time.perf_counter()
    found = gc.collect()
    t = time.perf_counter() - t0
    expect = n if state == "garbage" else 0
    if found != expect:
        sys.exit(f"gc.collect() found {found}, expected {expect}")
    del holder
    gc.collect()
    if any(r() is not None for r in weak):
        sys.exit("a weakref to garbage is not cleared")
    del weak[:]
    return t


def main():
    quick = "--quick" in sys.argv
    gc.collect()
    gc.freeze()
    gc.disable()
    # create + destroy a tracked object, automatic collection enabled
    gc.enable()
    iters = 1_000_000 if quick else 5_000_000
    best = 1e9
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(iters):
            Obj()
        best = min(best, time.perf_counter() - t0)
    print(f"cpython create_destroy - - {iters} {best / iters * 1e9:.2f}")
    o = WObj()
    best = 1e9
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(iters):
            weakref.ref(o)
        best = min(best, time.perf_counter() - t0)
    print(f"cpython weakref_create_drop - - {iters} {best / iters * 1e9:.2f}")
    gc.disable()
    sizes = [100_000] if quick else [100_000, 1_000_000, 3_000_000]
    for n in sizes:
        for shape in ("pairs", "ring", "wpairs", "wpairs10"):
            for state in ("garbage", "reachable"):
                best = min(bench_collect(shape, state, n) for _ in range(3))
                print(f"cpython collect {shape} {state} {n} {best / n * 1e9:.2f}", flush=True)


main()
