"""seq numbering (0, 1, 2, ... across a transaction's writes): a translation of upstream
``test_seq.py``."""

from __future__ import annotations

from typing import Any

THREE_COLS = "CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b, c, d)"


def _seqs(h: Any, c: Any, version: int) -> list[int]:
    return [r[8] for r in h.changes(c) if r[5] == version]


def test_seq_restarts_each_transaction(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 1)", "INSERT INTO foo VALUES (2, 2)")
    assert _seqs(h, c, 1) == [0, 1]
    h.write(c, "INSERT INTO foo VALUES (3, 3)", "INSERT INTO foo VALUES (4, 4)")
    assert _seqs(h, c, 2) == [0, 1]


def test_seq_increments_by_one(make_db: Any, h: Any) -> None:
    c = make_db(THREE_COLS, crr=["foo"])
    h.write(c, *[f"INSERT INTO foo VALUES ({i}, 1, 2, 3)" for i in (1, 2, 3)])
    assert _seqs(h, c, 1) == list(range(9))
    # cid order within a row: b, c, d
    assert [r[2] for r in h.changes(c)][:3] == ["b", "c", "d"]

    h.write(c, "UPDATE foo SET b = 10, c = 20")
    assert _seqs(h, c, 2) == list(range(6))
    h.write(c, "UPDATE foo SET d = 30")
    assert _seqs(h, c, 3) == list(range(3))
    h.write(c, "DELETE FROM foo")
    assert _seqs(h, c, 4) == list(range(3))
    assert h.changes(c) == [
        ("foo", h.pk(i), "-1", None, 2, 4, h.site(c), 2, i - 1) for i in (1, 2, 3)
    ]


def test_seq_spans_tables(make_db: Any, h: Any) -> None:
    c = make_db(
        "CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b)",
        "CREATE TABLE bar (a INTEGER PRIMARY KEY NOT NULL, b)",
        crr=["foo", "bar"],
    )
    h.write(c, "INSERT INTO foo VALUES (1, 1)", "INSERT INTO bar VALUES (1, 1)")
    assert h.cols(c, "table", "seq") == [("foo", 0), ("bar", 1)]


def test_seq_for_table_created_later(make_db: Any, h: Any) -> None:
    c = make_db("CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b)", crr=["foo"])
    for i in range(5):
        h.write(c, f"INSERT INTO foo VALUES ({i}, {i})")
    c.execute("CREATE TABLE bar (a INTEGER PRIMARY KEY NOT NULL, b)")
    h.crdt.as_crr(c, "bar")
    h.write(c, "INSERT INTO bar VALUES (1, 1)")
    h.write(c, "UPDATE bar SET b = 2", "UPDATE foo SET b = 9 WHERE a = 0")
    assert [(r[5], r[8]) for r in h.changes(c) if r[5] == 7] == [(7, 0), (7, 1)]


def test_seq_pko_pk_change(pko: Any, h: Any) -> None:
    c = pko()
    h.write(c, "INSERT INTO foo VALUES (1)", "INSERT INTO foo VALUES (2)")
    h.write(c, "UPDATE foo SET a = a + 10")
    assert h.cols(c, "pk", "col_version", "seq") == [
        (h.pk(1), 2, 0),
        (h.pk(11), 1, 1),
        (h.pk(2), 2, 2),
        (h.pk(12), 1, 3),
    ]


def test_seq_reinsert(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 1)")
    h.write(c, "DELETE FROM foo")
    h.write(c, "INSERT INTO foo VALUES (1, 1)")
    assert h.cols(c, "cid", "seq", "db_version") == [("-1", 0, 3), ("b", 1, 3)]


def test_seq_update_after_reinsert(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 1)")
    h.write(c, "DELETE FROM foo")
    h.write(c, "INSERT INTO foo VALUES (1, 1)", "UPDATE foo SET b = 2")
    # b's clock was written twice (seq 1, then 2): only the last write is kept
    assert h.cols(c, "cid", "seq") == [("-1", 0), ("b", 2)]


def test_seq_preserved_on_merge(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    h.write(c1, "INSERT INTO foo VALUES (1, 1)")
    h.write(c1, "DELETE FROM foo")
    h.write(c1, "INSERT INTO foo VALUES (1, 1)")
    h.write(c2, "INSERT INTO foo VALUES (5, 5)")
    h.sync(c1, c2)
    # the re-insert delivered by merge keeps seq 0 and 1 (and the origin's db_version 3)
    assert [r for r in h.cols(c2, "pk", "cid", "seq", "db_version") if r[0] == h.pk(1)] == [
        (h.pk(1), "-1", 0, 3),
        (h.pk(1), "b", 1, 3),
    ]


def test_local_write_after_merge_starts_at_seq_zero(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    h.write(c1, *[f"INSERT INTO foo VALUES ({i}, {i})" for i in range(5)])
    with h.crdt.transaction(c2) as tx:
        h.crdt.merge(c2, h.raw_changes(c1))
        c2.execute("INSERT INTO foo VALUES (100, 1)")
    assert tx.version == 1
    assert [r[8] for r in h.changes(c2, site_id=h.site(c2))] == [0]
