"""Two replicas of a table, written concurrently and merged both ways: the smallest complete
use of the CRR engine on plain stdlib sqlite3 connections (run: python examples/two_replicas.py)."""

import sqlite3
import tempfile
from pathlib import Path

from corrosion_py import crdt

with tempfile.TemporaryDirectory() as tmp:
    a = sqlite3.connect(Path(tmp) / "a.db", isolation_level=None)
    b = sqlite3.connect(Path(tmp) / "b.db", isolation_level=None)
    for conn in (a, b):
        crdt.init(conn)
        conn.execute("CREATE TABLE machines (id TEXT PRIMARY KEY NOT NULL, app TEXT, region TEXT)")
        crdt.as_crr(conn, "machines")

    with crdt.transaction(a) as tx:
        a.execute("INSERT INTO machines VALUES ('m1', 'web', 'ams')")
    print("a wrote version", tx.version)

    crdt.merge(b, crdt.changes(a))
    with crdt.transaction(b):  # b moves the machine while a renames its app, concurrently
        b.execute("UPDATE machines SET region = 'ord' WHERE id = 'm1'")
    with crdt.transaction(a):
        a.execute("UPDATE machines SET app = 'api' WHERE id = 'm1'")

    crdt.merge(a, crdt.changes(b, site_id=crdt.site_id(b)))  # only b's own changes
    crdt.merge(b, crdt.changes(a, site_id=crdt.site_id(a)))
    rows_a = a.execute("SELECT * FROM machines").fetchall()
    rows_b = b.execute("SELECT * FROM machines").fetchall()
    print("a:", rows_a)
    print("b:", rows_b)
    assert rows_a == rows_b == [("m1", "api", "ord")]
    a.close()
    b.close()
