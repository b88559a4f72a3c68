"""Builds about 60 MB of Python objects (lists, dicts, strings, bytes,
tuples), then asks obmem (preloaded, with OBMEM_PROF set) for a folded
profile of what is live, through ctypes: obm_prof_dump(argv[1], 0)."""
import ctypes
import sys

rows = []
for i in range(150_000):
    rows.append({"id": i, "name": "row-%d" % i, "tags": ["t%d" % (i % 7), "x"],
                 "blob": b"y" * (64 + i % 200), "pt": (i, i * 2.5)})
lib = ctypes.CDLL(None)
lib.obm_prof_dump.argtypes = [ctypes.c_char_p, ctypes.c_int]
if lib.obm_prof_dump(sys.argv[1].encode(), 0) != 0:
    sys.exit("obm_prof_dump failed: errno %d" % ctypes.get_errno())
print(len(rows))
