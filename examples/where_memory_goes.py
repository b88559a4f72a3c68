"""Where does a Python program's memory go? Run under obmem with the heap
profiler on, this builds an in-memory index of 60,000 JSON records, then
asks obmem (through ctypes: the preloaded library's obm_prof_dump) for the
profile of what is live, folded (argv[1]) and as text (argv[2], optional):

  mkdir -p build
  PYTHONMALLOC=malloc OBMEM_PROF=262144 LD_PRELOAD=target/release/libobmem.so \\
      python3 examples/where_memory_goes.py build/where.folded build/where.txt
  inferno-flamegraph < build/where.folded > build/where.svg
"""
import ctypes
import json
import sys

OBM_PROF_FOLDED, OBM_PROF_TEXT = 0, 1


def load_records(n):
    text = json.dumps([{"id": i, "user": f"user{i}", "tags": [f"t{i % 7}", f"g{i % 11}"],
                        "score": i * 0.5} for i in range(n)])
    return json.loads(text)


def build_index(records):
    by_tag = {}
    for r in records:
        for t in r["tags"]:
            by_tag.setdefault(t, []).append(r["id"])
    return by_tag


records = load_records(60_000)
index = build_index(records)
names = sorted(r["user"].upper() for r in records)

obmem = ctypes.CDLL(None)
if not hasattr(obmem, "obm_prof_dump"):
    sys.exit("obmem is not loaded: run with LD_PRELOAD=.../libobmem.so and OBMEM_PROF=<bytes>")
obmem.obm_prof_dump.argtypes = [ctypes.c_char_p, ctypes.c_int]
for path, fmt in zip(sys.argv[1:3], (OBM_PROF_FOLDED, OBM_PROF_TEXT)):
    if obmem.obm_prof_dump(path.encode(), fmt) != 0:
        sys.exit(f"obm_prof_dump({path}) failed")
print(f"python3: {len(records)} records, {len(index)} tags, {len(names)} names; profile in {sys.argv[1]}")
