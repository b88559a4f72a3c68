#!/usr/bin/env python3
"""tests/compat/gen_sql.py: a deterministic SQL workload for sqlite3.

    python3 gen_sql.py SEED SCALE OUT.sql EXPECTED.txt
    python3 gen_sql.py --check EXPECTED.txt OUTPUT.txt

Writes a script for the sqlite3 command-line shell (tables, a big
transaction of inserts, indexes, joins, aggregates, a window function, a
recursive CTE, updates, deletes, large text values, VACUUM, an integrity
check) and, in EXPECTED.txt, what the checked queries must print, computed
here in Python from the same data. Each query is preceded by `.print @name`
so the output splits into sections; a section whose name starts with `@u_`
is not predicted here (its output is only compared between the glibc and
the obmem runs). SCALE is the number of orders (customers: SCALE / 10).
"""
import random
import sys

CITIES = ["Amsterdam", "Berlin", "Cairo", "Dakar", "Edinburgh", "Fes",
          "Geneva", "Hanoi", "Istanbul", "Jakarta", "Kyoto", "Lima"]
PRODUCTS = ["apple", "bread", "chair", "drill", "easel", "flute", "glove",
            "hammer", "ink", "jacket", "kettle", "lamp", "mirror", "nail",
            "oven", "pen", "quilt", "rope", "saw", "tent"]
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
         "hotel", "india", "juliet", "kilo", "lima", "mike", "november"]


def q(s):
    return "'" + s.replace("'", "''") + "'"


def main():
    seed, scale, out_sql, out_exp = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    rng = random.Random(seed)
    ncust = max(10, scale // 10)
    norders = scale

    customers = {}
    for cid in range(1, ncust + 1):
        name = "%s-%s-%d" % (rng.choice(WORDS), rng.choice(WORDS), cid)
        customers[cid] = [name, rng.choice(CITIES), rng.randrange(-5000, 100000)]
    orders = {}
    for oid in range(1, norders + 1):
        cid = rng.randrange(1, ncust + 1)
        # Most notes are short; one in 50 is long (2-40 KiB: overflow pages).
        if rng.randrange(50) == 0:
            note = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(300, 6000)))
        else:
            note = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(0, 8)))
        orders[oid] = [cid, rng.choice(PRODUCTS), rng.randrange(1, 50), rng.randrange(1, 2000), note]
    tags = []
    for oid in range(1, norders + 1, 3):
        for t in rng.sample(WORDS, rng.randrange(0, 4)):
            tags.append((oid, t))

    sql = []
    exp = []
    w = sql.append

    def section(name, lines=None):
        w(".print @" + name)
        if lines is not None:
            exp.append("@" + name)
            exp.extend(str(x) for x in lines)

    w(".bail on")
    w(".headers off")
    w(".mode list")
    w("PRAGMA cache_size = -2000;")  # 2 MB: pages are evicted and reloaded
    w("PRAGMA foreign_keys = ON;")
    w("CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT, balance INTEGER);")
    w("CREATE TABLE orders(id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id),"
      " product TEXT, qty INTEGER, price INTEGER, note TEXT);")
    w("CREATE TABLE tags(order_id INTEGER, tag TEXT, PRIMARY KEY(order_id, tag)) WITHOUT ROWID;")
    # The customers in autocommit batches of 200, the orders in one big
    # transaction.
    ids = sorted(customers)
    for i in range(0, len(ids), 200):
        w("BEGIN;")
        for cid in ids[i:i + 200]:
            n, c, b = customers[cid]
            w("INSERT INTO customers VALUES(%d,%s,%s,%d);" % (cid, q(n), q(c), b))
        w("COMMIT;")
    w("BEGIN;")
    for oid in sorted(orders):
        cid, p, qty, price, note = orders[oid]
        w("INSERT INTO orders VALUES(%d,%d,%s,%d,%d,%s);" % (oid, cid, q(p), qty, price, q(note)))
    for oid, t in tags:
        w("INSERT INTO tags VALUES(%d,%s);" % (oid, q(t)))
    w("COMMIT;")
    w("CREATE INDEX orders_customer ON orders(customer_id);")
    w("CREATE INDEX orders_product_qty ON orders(product, qty);")
    w("CREATE INDEX customers_city ON customers(city, balance);")
    w("CREATE INDEX tags_tag ON tags(tag);")

    def totals():
        return (len(orders), sum(o[2] for o in orders.values()),
                sum(o[2] * o[3] for o in orders.values()),
                sum(len(o[4]) for o in orders.values()))

    section("counts", ["%d|%d|%d|%d" % ((len(customers),) + totals()[:3])])
    w("SELECT (SELECT count(*) FROM customers), count(*), sum(qty), sum(qty*price) FROM orders;")

    section("note_bytes", [totals()[3]])
    w("SELECT sum(length(note)) FROM orders;")

    def by_city():
        agg = {}
        for cid, (n, c, b) in customers.items():
            a = agg.setdefault(c, [0, 0, 0])
            a[0] += 1
            a[1] += b
        for cid, _, qty, price, _ in orders.values():
            agg[customers[cid][1]][2] += qty * price
        return ["%s|%d|%d|%d" % (c, a[0], a[1], a[2]) for c, a in sorted(agg.items())]

    section("by_city", by_city())
    w("SELECT c.city, (SELECT count(*) FROM customers c2 WHERE c2.city = c.city),"
      " (SELECT sum(balance) FROM customers c2 WHERE c2.city = c.city),"
      " coalesce((SELECT sum(o.qty*o.price) FROM orders o JOIN customers c3 ON o.customer_id = c3.id"
      " WHERE c3.city = c.city), 0)"
      " FROM (SELECT DISTINCT city FROM customers) c ORDER BY c.city;")

    def top_customers():
        spent = {}
        cnt = {}
        for cid, _, qty, price, _ in orders.values():
            spent[cid] = spent.get(cid, 0) + qty * price
            cnt[cid] = cnt.get(cid, 0) + 1
        top = sorted(spent, key=lambda c: (-spent[c], c))[:25]
        return ["%d|%s|%d|%d" % (c, customers[c][0], cnt[c], spent[c]) for c in top]

    section("top_customers", top_customers())
    w("SELECT c.id, c.name, count(*), sum(o.qty*o.price) AS spent FROM customers c"
      " JOIN orders o ON o.customer_id = c.id GROUP BY c.id ORDER BY spent DESC, c.id LIMIT 25;")

    def products():
        agg = {}
        for _, p, qty, price, _ in orders.values():
            a = agg.setdefault(p, [0, 0, 0, 10 ** 9])
            a[0] += 1
            a[1] += qty
            a[2] = max(a[2], price)
            a[3] = min(a[3], price)
        return ["%s|%d|%d|%d|%d" % (p, a[0], a[1], a[2], a[3]) for p, a in sorted(agg.items())]

    section("products", products())
    w("SELECT product, count(*), sum(qty), max(price), min(price) FROM orders GROUP BY product ORDER BY product;")

    section("no_orders", [len(set(customers) - {o[0] for o in orders.values()})])
    w("SELECT count(*) FROM customers WHERE id NOT IN (SELECT customer_id FROM orders);")

    section("like", [sum(1 for n, _, _ in customers.values() if n.startswith("echo-"))])
    w("SELECT count(*) FROM customers WHERE name LIKE 'echo-%';")

    def tag_counts():
        agg = {}
        for oid, t in tags:
            if oid in orders:
                agg[t] = agg.get(t, 0) + 1
        return ["%s|%d" % (t, n) for t, n in sorted(agg.items())]

    section("tags", tag_counts())
    w("SELECT t.tag, count(*) FROM tags t JOIN orders o ON o.id = t.order_id GROUP BY t.tag ORDER BY t.tag;")

    # Window function: the three biggest orders of each product.
    def ranked():
        res = []
        for p in sorted(set(o[1] for o in orders.values())):
            rows = sorted(((o[2] * o[3], oid) for oid, o in orders.items() if o[1] == p),
                          key=lambda r: (-r[0], r[1]))[:3]
            res += ["%s|%d|%d|%d" % (p, oid, v, i + 1) for i, (v, oid) in enumerate(rows)]
        return res

    section("ranked", ranked())
    w("SELECT product, id, v, r FROM (SELECT product, id, qty*price AS v,"
      " row_number() OVER (PARTITION BY product ORDER BY qty*price DESC, id) AS r FROM orders)"
      " WHERE r <= 3 ORDER BY product, r;")

    # Recursive CTE.
    n = 5000 + seed % 1000
    section("cte", ["%d|%d" % (n, sum(i * i % 1009 for i in range(1, n + 1)))])
    w("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %d)"
      " SELECT count(*), sum(i * i %% 1009) FROM s;" % n)

    # A sort with no index, through a temp b-tree.
    def sorted_page():
        rows = sorted(orders.items(), key=lambda kv: (kv[1][4][:20], kv[0]))
        return ["%d|%s" % (oid, o[4][:20]) for oid, o in rows[100:120]]

    section("sorted_page", sorted_page())
    w("SELECT id, substr(note, 1, 20) FROM orders ORDER BY substr(note, 1, 20), id LIMIT 20 OFFSET 100;")

    # Updates and deletes, then the aggregates again.
    w("BEGIN;")
    w("UPDATE orders SET qty = qty + 1 WHERE id % 7 = 0;")
    for oid in orders:
        if oid % 7 == 0:
            orders[oid][2] += 1
    w("UPDATE customers SET balance = balance - 100 WHERE city IN ('Berlin', 'Kyoto');")
    for c in customers.values():
        if c[1] in ("Berlin", "Kyoto"):
            c[2] -= 100
    w("UPDATE orders SET note = upper(note) WHERE length(note) > 2000;")
    for o in orders.values():
        if len(o[4]) > 2000:
            o[4] = o[4].upper()
    w("DELETE FROM tags WHERE order_id IN (SELECT id FROM orders WHERE price > 1800);")
    w("DELETE FROM orders WHERE price > 1800;")
    for oid in [oid for oid, o in orders.items() if o[3] > 1800]:
        del orders[oid]
    tags = [(oid, t) for oid, t in tags if oid in orders]
    w("COMMIT;")
    # A rolled-back transaction changes nothing.
    w("BEGIN;")
    w("DELETE FROM orders WHERE qty < 25;")
    w("UPDATE customers SET name = name || name;")
    w("ROLLBACK;")

    section("counts2", ["%d|%d|%d|%d" % ((len(customers),) + totals()[:3])])
    w("SELECT (SELECT count(*) FROM customers), count(*), sum(qty), sum(qty*price) FROM orders;")
    section("upper_notes", [sum(1 for o in orders.values() if len(o[4]) > 2000 and o[4] == o[4].upper())])
    w("SELECT count(*) FROM orders WHERE length(note) > 2000 AND note = upper(note);")
    section("by_city2", by_city())
    w("SELECT c.city, (SELECT count(*) FROM customers c2 WHERE c2.city = c.city),"
      " (SELECT sum(balance) FROM customers c2 WHERE c2.city = c.city),"
      " coalesce((SELECT sum(o.qty*o.price) FROM orders o JOIN customers c3 ON o.customer_id = c3.id"
      " WHERE c3.city = c.city), 0)"
      " FROM (SELECT DISTINCT city FROM customers) c ORDER BY c.city;")
    section("top_customers2", top_customers())
    w("SELECT c.id, c.name, count(*), sum(o.qty*o.price) AS spent FROM customers c"
      " JOIN orders o ON o.customer_id = c.id GROUP BY c.id ORDER BY spent DESC, c.id LIMIT 25;")
    section("products2", products())
    w("SELECT product, count(*), sum(qty), max(price), min(price) FROM orders GROUP BY product ORDER BY product;")
    section("tags2", tag_counts())
    w("SELECT t.tag, count(*) FROM tags t JOIN orders o ON o.id = t.order_id GROUP BY t.tag ORDER BY t.tag;")

    # Not predicted here: floating-point averages, a string aggregate and a
    # digest of a full dump (compared between the two runs only).
    section("u_averages")
    w("SELECT product, round(avg(price), 3), round(avg(qty * 1.0), 3) FROM orders GROUP BY product ORDER BY product;")
    section("u_group_concat")
    w("SELECT city, group_concat(name, ',') FROM (SELECT city, name FROM customers ORDER BY city, id LIMIT 200)"
      " GROUP BY city ORDER BY city;")
    section("u_json")
    w("SELECT json_group_array(json_object('id', id, 'p', product, 'q', qty)) FROM"
      " (SELECT id, product, qty FROM orders ORDER BY id LIMIT 50);")

    w("VACUUM;")
    section("integrity", ["ok"])
    w("PRAGMA integrity_check;")
    section("counts3", ["%d|%d|%d|%d" % ((len(customers),) + totals()[:3])])
    w("SELECT (SELECT count(*) FROM customers), count(*), sum(qty), sum(qty*price) FROM orders;")
    section("end", [])

    with open(out_sql, "w") as f:
        f.write("\n".join(sql) + "\n")
    with open(out_exp, "w") as f:
        f.write("\n".join(exp) + "\n")


def sections(path):
    res = {}
    cur = None
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("@"):
                cur = line
                res[cur] = []
            elif cur is not None:
                res[cur].append(line)
    return res


def check(expected_path, output_path):
    """Exit 1, naming the first differing section, unless every predicted
    section of EXPECTED is in OUTPUT with the same lines."""
    exp = sections(expected_path)
    out = sections(output_path)
    bad = 0
    for name, lines in exp.items():
        got = out.get(name)
        if got is None:
            print("section %s missing from the output" % name)
            bad += 1
        elif got != lines:
            print("section %s differs from the prediction:" % name)
            for i in range(max(len(got), len(lines))):
                e = lines[i] if i < len(lines) else "<none>"
                g = got[i] if i < len(got) else "<none>"
                if e != g:
                    print("  line %d: expected %r, got %r" % (i + 1, e[:200], g[:200]))
                    break
            bad += 1
    print("%d predicted sections, %d differ, %d sections in the output" % (len(exp), bad, len(out)))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    if sys.argv[1] == "--check":
        check(sys.argv[2], sys.argv[3])
    else:
        main()
