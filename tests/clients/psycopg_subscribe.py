"""psycopg 3 following a SUBSCRIBE cursor, as a Python app would (Materialize's pattern).

Usage: python3 psycopg_subscribe.py PORT. Exits non-zero with a message on any mismatch.
"""
import sys
import time
from decimal import Decimal

import psycopg

port = int(sys.argv[1])
dsn = f"host=127.0.0.1 port={port} dbname=dev user=root"

with psycopg.connect(dsn, autocommit=True) as writer, psycopg.connect(dsn) as conn:
    writer.execute("INSERT INTO product_inventory VALUES (%s, %s, %s, %s, %s, %s)", (5, "Kettle", 8, 5, "Heat", Decimal("19.90")))
    with conn.cursor() as cur:
        # psycopg opens the transaction DECLARE needs.
        cur.execute("DECLARE c CURSOR FOR SUBSCRIBE product_inventory WITH (PROGRESS)")
        cur.execute("FETCH ALL c WITH (timeout = '5s')")
        names = [d.name for d in cur.description]
        assert names[:3] == ["mz_timestamp", "mz_progressed", "mz_diff"], names
        rows = cur.fetchall()
        data = [r for r in rows if not r[1]]
        assert [r[2:] for r in data] == [(1, 5, "Kettle", 8, 5, "Heat", Decimal("19.90"))], rows
        assert any(r[1] for r in rows), "a progress row"
        snapshot_time = data[0][0]

        writer.execute("DELETE FROM product_inventory WHERE product_id = 5")
        seen = []
        deadline = time.time() + 10
        while not seen and time.time() < deadline:
            cur.execute("FETCH 10 c WITH (timeout = '1s')")
            seen = [r for r in cur.fetchall() if not r[1]]
        assert [r[2:] for r in seen] == [(-1, 5, "Kettle", 8, 5, "Heat", Decimal("19.90"))], seen
        assert seen[0][0] > snapshot_time, (seen, snapshot_time)
        cur.execute("CLOSE c")
    conn.rollback()
print("ok")
