"""An allocation-heavy Python run for `make run`: under PYTHONMALLOC=malloc
every object goes through obmem's malloc; OBMEM_SHOW_STATS=1 prints the
allocator's table when the interpreter exits."""
import json

records = [{"id": i, "name": f"user{i}", "tags": [str(i % 7), str(i % 11)]} for i in range(100_000)]
text = json.dumps(records)
back = json.loads(text)
words = {}
for r in back:
    for t in r["tags"]:
        words[t] = words.get(t, 0) + 1
print(f"python3: {len(back)} records, {len(text)} bytes of JSON, {len(words)} distinct tags")
