"""psycopg 3 against a running diffmart: the calls a Python app makes.

Usage: python3 psycopg_client.py PORT. Exits non-zero with a message on any mismatch.
"""
import sys
from decimal import Decimal

import psycopg
from psycopg import errors

port = int(sys.argv[1])
dsn = f"host=127.0.0.1 port={port} dbname=dev user=root"

with psycopg.connect(dsn, autocommit=True) as conn:
    # Server-side parameters (extended protocol), text and binary results.
    conn.execute(
        "INSERT INTO product_inventory VALUES (%s, %s, %s, %s, %s, %s)",
        (41, "Lamp", 12, 5, "Lights Inc.", Decimal("24.50")),
    )
    for binary in (False, True):
        cur = conn.cursor(binary=binary)
        cur.execute(
            "SELECT product_id, product_name, current_inventory, stock_level_category, base_price "
            "FROM product_stock_status WHERE product_id = %s",
            (41,),
        )
        row = cur.fetchone()
        assert row == (41, "Lamp", Decimal(12), "Low", Decimal("24.50")), (binary, row)

    # Duplicate key: the exception class of SQLSTATE 23505.
    try:
        conn.execute("INSERT INTO product_inventory VALUES (41, 'Again', 1, 1, 'x', 1.00)")
        raise SystemExit("duplicate key was accepted")
    except errors.UniqueViolation:
        pass

    # Writes to a view are refused.
    try:
        conn.execute("DELETE FROM sales_profit")
        raise SystemExit("write to a view was accepted")
    except errors.WrongObjectType:
        pass

# psycopg's default: every statement inside a transaction, committed explicitly.
with psycopg.connect(dsn) as conn:
    with conn.cursor() as cur:
        cur.execute("UPDATE product_inventory SET stock_level = %s WHERE product_id = %s", (60, 41))
        assert cur.rowcount == 1, cur.rowcount
        cur.execute("SELECT stock_level_category FROM product_stock_status WHERE product_id = 41")
        assert cur.fetchone() == ("High",)
    conn.commit()

print("psycopg ok")
