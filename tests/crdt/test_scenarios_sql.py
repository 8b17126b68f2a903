"""The SQL surface installed by ``crdt.register``: ``crsql_as_crr``, ``crsql_site_id``,
``crsql_db_version``, ``crsql_pack_columns`` and the ``crsql_changes`` view (cr-sqlite's SQL API);
upstream's tests drive everything through this surface."""

from __future__ import annotations

from typing import Any

import attrs

PK1 = b"\x01\x09\x01"
INSERT_CHANGE = "INSERT INTO crsql_changes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
COLUMNS = ["table", "pk", "cid", "val", "col_version", "db_version", "site_id", "cl", "seq"]


def _registered(make_db: Any, h: Any, *schema: str) -> Any:
    c = make_db(*schema)
    h.crdt.register(c)
    return c


def test_sql_functions(make_db: Any, h: Any) -> None:
    c = _registered(make_db, h, h.SIMPLE_SCHEMA)
    c.execute("SELECT crsql_as_crr('foo')")
    assert h.crdt.changes(c) == []
    assert c.execute("SELECT crsql_site_id()").fetchone()[0] == h.site(c)
    assert c.execute("SELECT crsql_db_version()").fetchone()[0] == 0
    h.write(c, "INSERT INTO foo VALUES (1, 1)")
    assert c.execute("SELECT crsql_db_version()").fetchone()[0] == 1
    got = c.execute("SELECT crsql_pack_columns(12, 'str', x'010203')").fetchone()[0]
    assert got == bytes.fromhex("03090C0B037374720C03010203")
    assert c.execute("SELECT crsql_pack_columns(1)").fetchone()[0] == PK1
    assert c.execute("SELECT crsql_pack_columns(-1)").fetchone()[0] == bytes.fromhex(
        "0141ffffffffffffffff"
    )


def test_changes_view_matches_api(make_db: Any, h: Any) -> None:
    c = _registered(make_db, h, h.SIMPLE_SCHEMA, "CREATE TABLE bar (a PRIMARY KEY NOT NULL, b, c)")
    h.crdt.as_crr(c, "foo")
    h.crdt.as_crr(c, "bar")
    h.write(c, "INSERT INTO foo VALUES (1, 1)", "INSERT INTO bar VALUES ('k', 1.5, x'00')")
    h.write(c, "DELETE FROM foo", "UPDATE bar SET c = NULL")
    cur = c.execute("SELECT * FROM crsql_changes ORDER BY db_version, seq")
    assert [d[0] for d in cur.description] == COLUMNS
    rows = cur.fetchall()
    assert rows == [attrs.astuple(x) for x in h.crdt.changes(c)]
    local = c.execute(
        "SELECT count(*) FROM crsql_changes WHERE site_id = crsql_site_id()"
    ).fetchone()[0]
    assert local == len(rows) == 3
    assert (
        c.execute(
            "SELECT count(*) FROM crsql_changes WHERE site_id IS NOT crsql_site_id()"
        ).fetchone()[0]
        == 0
    )


def test_insert_into_changes_merges_inside_transaction(make_db: Any, h: Any) -> None:
    src = make_db(h.SIMPLE_SCHEMA, crr=["foo"])
    dst = _registered(make_db, h, h.SIMPLE_SCHEMA)
    h.crdt.as_crr(dst, "foo")
    h.write(
        src, "INSERT INTO foo VALUES (1, 1)", "DELETE FROM foo", "INSERT INTO foo VALUES (1, 7)"
    )
    with h.crdt.transaction(dst):
        for ch in h.raw_changes(src):
            dst.execute(INSERT_CHANGE, attrs.astuple(ch))
    assert h.rows(dst) == [(1, 7)]
    assert h.changes(dst) == h.changes(src)
    assert h.dbv(dst) == 0


def test_insert_into_changes_with_explicit_begin_commit(make_db: Any, h: Any) -> None:
    src = make_db(h.SIMPLE_SCHEMA, crr=["foo"])
    dst = _registered(make_db, h, h.SIMPLE_SCHEMA)
    h.crdt.as_crr(dst, "foo")
    h.write(src, "INSERT INTO foo VALUES (1, 1)", "INSERT INTO foo VALUES (2, 2)")
    h.write(src, "UPDATE foo SET b = 5 WHERE a = 2")
    dst.execute("BEGIN")
    for ch in h.raw_changes(src):
        dst.execute(INSERT_CHANGE, attrs.astuple(ch))
    dst.execute("COMMIT")
    assert h.rows(dst) == [(1, 1), (2, 5)]
    assert h.changes(dst) == h.changes(src)


def test_sync_between_views(make_db: Any, h: Any) -> None:
    # upstream's sync helper, verbatim through SQL on both ends
    a = _registered(make_db, h, h.SIMPLE_SCHEMA)
    b = _registered(make_db, h, h.SIMPLE_SCHEMA)
    for c in (a, b):
        c.execute("SELECT crsql_as_crr('foo')")
    h.write(a, "INSERT INTO foo VALUES (1, 1)")
    h.write(b, "INSERT INTO foo VALUES (2, 2)")
    for src, dst in ((a, b), (b, a)):
        site = dst.execute("SELECT crsql_site_id()").fetchone()[0]
        rows = src.execute(
            "SELECT * FROM crsql_changes WHERE db_version > ? AND site_id IS NOT ?", (0, site)
        ).fetchall()
        dst.execute("BEGIN")
        for row in rows:
            dst.execute(INSERT_CHANGE, row)
        dst.execute("COMMIT")
    assert h.rows(a) == h.rows(b) == [(1, 1), (2, 2)]
