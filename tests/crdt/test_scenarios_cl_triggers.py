"""Local causal-length rules: a translation of upstream ``py/correctness/tests/test_cl_triggers.py``
(cr-sqlite's local write triggers), plus REPLACE/upsert and pk changes.

Differences from upstream, deliberate:
* a pk change moves every column clock to the new key with col_version + 1, the transaction's
  db_version, a fresh seq and the local site (upstream keeps their old clocks, a bug Corrosion's
  fork fixed);
* a transaction that changes no values claims no version (``tx.version is None``).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

PK1 = b"\x01\x09\x01"
PK2 = b"\x01\x09\x02"
TEXT_SCHEMA = "CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b TEXT) STRICT"


def test_upsert_non_existing(make_db: Any, h: Any) -> None:
    c = make_db(TEXT_SCHEMA, crr=["foo"])
    h.write(c, "INSERT OR REPLACE INTO foo VALUES (1, '2')")
    h.write(c, "INSERT INTO foo VALUES (2, '3') ON CONFLICT DO UPDATE SET b = '4'")
    assert h.cols(c, "pk", "cl") == [(PK1, 1), (PK2, 1)]
    assert h.sentinel_count(c) == 0
    assert h.rows(c) == [(1, "2"), (2, "3")]


def test_insert_delete_insert_delete(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 2)", "DELETE FROM foo")
    h.write(c, "INSERT INTO foo VALUES (1, 2)", "DELETE FROM foo")
    assert [(r[1], r[2], r[7]) for r in h.changes(c) if r[2] == "-1"] == [(PK1, "-1", 4)]
    # each delete drops the column clocks
    assert h.cols(c, "cid") == [("-1",)]


def test_upsert_previously_existing(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 2)")
    h.write(c, "DELETE FROM foo")
    # DO UPDATE on a deleted row runs as an INSERT: live (1) -> dead (2) -> live (3)
    h.write(c, "INSERT INTO foo VALUES (1, 4) ON CONFLICT DO UPDATE SET b = b")
    assert [(r[1], r[2], r[7]) for r in h.changes(c) if r[2] == "-1"] == [(PK1, "-1", 3)]
    assert h.rows(c) == [(1, 4)]

    h.write(
        c,
        "INSERT INTO foo VALUES (2, 2)",
        "DELETE FROM foo",
        "INSERT OR REPLACE INTO foo VALUES (2, 4)",
    )
    # pk 1 was deleted again (4); pk 2 went 1 -> 2 -> 3
    assert [(r[1], r[2], r[7]) for r in h.changes(c) if r[2] == "-1"] == [
        (PK1, "-1", 4),
        (PK2, "-1", 3),
    ]


def test_upsert_currently_existing(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 2)")
    # REPLACE runs as an insert: every column +1, no sentinel, cl stays 1
    assert h.write(c, "INSERT OR REPLACE INTO foo VALUES (1, 3)") == 2
    assert h.cols(c, "pk", "cid", "cl", "col_version", "val") == [(PK1, "b", 1, 2, 3)]
    assert h.sentinel_count(c) == 0

    # DO UPDATE runs as an update; b = b changes nothing, so no version is claimed (difference 4)
    assert h.write(c, "INSERT INTO foo VALUES (1, 4) ON CONFLICT DO UPDATE SET b = b") is None
    assert h.cols(c, "pk", "cid", "cl", "col_version", "val") == [(PK1, "b", 1, 2, 3)]
    assert h.dbv(c) == 2


def test_upsert_do_update_changes_only_changed_columns(make_db: Any, h: Any) -> None:
    c = make_db("CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b, c)", crr=["foo"])
    h.write(c, "INSERT INTO foo VALUES (1, 'x', 'y')")
    h.write(c, "INSERT INTO foo VALUES (1, 'q', 'q') ON CONFLICT DO UPDATE SET c = 'z'")
    assert h.cols(c, "cid", "col_version", "db_version", "val") == [
        ("b", 1, 1, "x"),
        ("c", 2, 2, "z"),
    ]


def test_replace_with_odd_sentinel_jumps_cl_by_two(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 2)", "DELETE FROM foo", "INSERT INTO foo VALUES (1, 2)")
    assert h.cols(c, "cid", "cl") == [("-1", 3), ("b", 3)]
    h.write(c, "INSERT OR REPLACE INTO foo VALUES (1, 5)")
    # REPLACE of a live row whose sentinel exists and is odd moves cl by 2 (as upstream)
    assert h.cols(c, "cid", "col_version", "cl") == [("-1", 5, 5), ("b", 2, 5)]


def test_update_existing(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 2)")
    with h.crdt.transaction(c) as tx:
        c.execute("UPDATE foo SET b = 3 WHERE a = 1")
        # visible inside the transaction already
        assert h.cols(c, "pk", "cid", "cl") == [(PK1, "b", 1)]
    assert tx.version == 2
    # an update that matches no rows records nothing
    assert h.write(c, "UPDATE foo SET b = 3 WHERE a = 3") is None
    assert h.cols(c, "pk", "cid", "cl", "col_version") == [(PK1, "b", 1, 2)]
    assert h.dbv(c) == 2


def test_update_to_same_value_records_nothing(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 2)")
    before = h.changes(c)
    assert h.write(c, "UPDATE foo SET b = 2 WHERE a = 1") is None
    assert h.changes(c) == before
    assert h.dbv(c) == 1


def test_insert_existing(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 2)")
    before = h.changes(c)
    with pytest.raises(sqlite3.IntegrityError):
        h.write(c, "INSERT INTO foo VALUES (1, 2)")
    assert h.changes(c) == before
    assert h.cols(c, "pk", "cid", "cl") == [(PK1, "b", 1)]
    assert h.dbv(c) == 1


def test_insert_or_ignore_existing(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 2)")
    assert h.write(c, "INSERT OR IGNORE INTO foo VALUES (1, 3)") is None
    assert h.cols(c, "pk", "cid", "cl", "col_version") == [(PK1, "b", 1, 1)]
    assert h.rows(c) == [(1, 2)]


def test_delete_existing(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 2)", "DELETE FROM foo")
    assert h.changes(c) == [("foo", PK1, "-1", None, 2, 1, h.site(c), 2, 1)]


def test_delete_previously_deleted(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 2)", "DELETE FROM foo")
    assert h.write(c, "DELETE FROM foo") is None
    assert [(r[1], r[2], r[7]) for r in h.changes(c) if r[2] == "-1"] == [(PK1, "-1", 2)]


def test_change_primary_key_to_something_new(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 2)", "UPDATE foo SET a = 2 WHERE a = 1")
    # upstream's order is [(pk2,'b',1), (pk1,'-1',2), (pk2,'-1',1)]; ours re-sequences the moved
    # clock (difference 3), so compare as a set and check the sentinel order separately
    assert sorted(h.cols(c, "pk", "cid", "cl")) == sorted(
        [(PK2, "b", 1), (PK1, "-1", 2), (PK2, "-1", 1)]
    )
    sentinels = [(r[1], r[7]) for r in h.changes(c) if r[2] == "-1"]
    assert sentinels == [(PK1, 2), (PK2, 1)]  # old-delete before new-create
    seqs = [r[8] for r in h.changes(c)]
    assert len(set(seqs)) == len(seqs)
    assert h.rows(c) == [(2, 2)]


def test_change_primary_key_to_previously_existing(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 2)", "INSERT INTO foo VALUES (2, 3)")
    h.write(c, "DELETE FROM foo WHERE a = 2", "UPDATE foo SET a = 2 WHERE a = 1")
    assert sorted(h.cols(c, "pk", "cid", "cl")) == sorted(
        [(PK2, "b", 3), (PK1, "-1", 2), (PK2, "-1", 3)]
    )
    assert h.rows(c) == [(2, 2)]


def test_change_primary_key_to_currently_existing(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 2)", "INSERT INTO foo VALUES (2, 3)")
    h.write(c, "UPDATE OR REPLACE foo SET a = 2 WHERE a = 1")
    assert sorted(h.cols(c, "pk", "cid", "cl")) == sorted(
        [(PK2, "b", 1), (PK1, "-1", 2), (PK2, "-1", 1)]
    )
    assert h.rows(c) == [(2, 2)]
    # difference 3: the moved clock (col_version 1) is re-versioned to 2 in transaction 2
    assert [(r[4], r[5], r[3]) for r in h.changes(c) if r[2] == "b"] == [(2, 2, 2)]


def test_change_primary_key_away_from_thing_with_large_length(simple: Any, h: Any) -> None:
    c = simple()
    h.write(
        c,
        "INSERT INTO foo VALUES (1, 2)",
        "DELETE FROM foo",
        "INSERT INTO foo VALUES (1, 2)",
        "DELETE FROM foo",
        "INSERT INTO foo VALUES (1, 2)",
    )
    h.write(c, "UPDATE foo SET a = 2 WHERE a = 1")
    assert sorted(h.cols(c, "pk", "cid", "cl")) == sorted(
        [(PK2, "b", 1), (PK1, "-1", 6), (PK2, "-1", 1)]
    )


def test_insert_previously_existing(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 2)", "DELETE FROM foo", "INSERT INTO foo VALUES (1, 2)")
    assert h.cols(c, "pk", "cid", "cl") == [(PK1, "-1", 3), (PK1, "b", 3)]
    assert h.cols(c, "cid", "col_version", "seq") == [("-1", 3, 2), ("b", 1, 3)]


def test_pk_change_reversions_moved_columns(simple: Any, h: Any) -> None:
    # difference 3 (upstream's pk-change bug fixed): a pk change in a later transaction moves b with
    # col_version + 1, the new db_version, a new seq and the local site.
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 7)")
    assert h.write(c, "UPDATE foo SET a = 2 WHERE a = 1") == 2
    s = h.site(c)
    ch = h.changes(c)
    b = [r for r in ch if r[2] == "b"]
    assert len(b) == 1
    assert b[0][:8] == ("foo", PK2, "b", 7, 2, 2, s, 1)
    assert all(r[5] == 2 and r[6] == s for r in ch)
    assert sorted(r[8] for r in ch) == [0, 1, 2]
    # clock table stores the local site as ordinal 0
    assert [r[4] for r in h.clock(c)] == [0, 0, 0]


def test_pk_change_delta_sync_carries_moved_values(simple: Any, h: Any) -> None:
    # the pk-change bug's scenario: a peer pulling only db_version > 1 must get b's value under pk 2
    c1, c2 = simple(), simple()
    h.write(c1, "INSERT INTO foo VALUES (1, 7)")
    h.sync(c1, c2, 0)
    h.write(c1, "UPDATE foo SET a = 2 WHERE a = 1")
    h.sync(c1, c2, 1)
    assert h.rows(c2) == [(2, 7)]


def test_pk_and_value_change_together(make_db: Any, h: Any) -> None:
    c = make_db("CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b, c)", crr=["foo"])
    h.write(c, "INSERT INTO foo VALUES (1, 'x', 'y')")
    h.write(c, "UPDATE foo SET a = 2, b = 'z' WHERE a = 1")
    assert h.rows(c) == [(2, "z", "y")]
    ch = {r[2]: r for r in h.changes(c) if r[1] == PK2}
    assert ch["c"][3:6] == ("y", 2, 2)
    # b was moved (+1) and changed: it must at least have moved past the moved c
    assert ch["b"][3] == "z" and ch["b"][4] >= 2 and ch["b"][5] == 2
    assert ch["-1"][7] == 1


def test_composite_pk_change(make_db: Any, h: Any) -> None:
    c = make_db(
        "CREATE TABLE foo (x INTEGER NOT NULL, y TEXT NOT NULL, b, PRIMARY KEY (x, y))",
        crr=["foo"],
    )
    h.write(c, "INSERT INTO foo VALUES (1, 'a', 'v')")
    h.write(c, "UPDATE foo SET y = 'b' WHERE x = 1")
    old, new = h.pk(1, "a"), h.pk(1, "b")
    assert sorted(h.cols(c, "pk", "cid", "cl")) == sorted(
        [(old, "-1", 2), (new, "-1", 1), (new, "b", 1)]
    )
    assert [r[3] for r in h.changes(c) if r[2] == "b"] == ["v"]


def test_pko_pk_change(pko: Any, h: Any) -> None:
    c = pko()
    h.write(c, "INSERT INTO foo VALUES (1)")
    h.write(c, "UPDATE foo SET a = 2 WHERE a = 1")
    assert h.cols(c, "pk", "cid", "col_version", "db_version", "seq") == [
        (PK1, "-1", 2, 2, 0),
        (PK2, "-1", 1, 2, 1),
    ]


@pytest.mark.parametrize(
    "stmt",
    [
        "INSERT INTO foo VALUES (5, 5)",
        "UPDATE foo SET b = 9 WHERE a = 1",
        "DELETE FROM foo WHERE a = 1",
        "INSERT OR REPLACE INTO foo VALUES (1, 9)",
    ],
)
def test_write_outside_transaction_is_refused(simple: Any, h: Any, stmt: str) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 1)")
    before_rows, before_changes = h.rows(c), h.changes(c)
    with pytest.raises(sqlite3.IntegrityError, match="outside"):
        c.execute(stmt)
    assert h.rows(c) == before_rows
    assert h.changes(c) == before_changes
    assert h.dbv(c) == 1


def test_exception_in_transaction_rolls_back(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 1)")
    with pytest.raises(RuntimeError, match="boom"), h.crdt.transaction(c):
        c.execute("INSERT INTO foo VALUES (2, 2)")
        c.execute("UPDATE foo SET b = 5 WHERE a = 1")
        raise RuntimeError("boom")
    assert h.rows(c) == [(1, 1)]
    assert h.cols(c, "pk", "cid", "col_version", "db_version") == [(PK1, "b", 1, 1)]
    assert h.dbv(c) == 1
    # the rolled-back transaction left no gap
    assert h.write(c, "INSERT INTO foo VALUES (3, 3)") == 2


def test_sql_error_in_transaction_rolls_back_everything(simple: Any, h: Any) -> None:
    c = simple()
    with pytest.raises(sqlite3.IntegrityError):
        h.write(c, "INSERT INTO foo VALUES (1, 1)", "INSERT INTO foo VALUES (1, 2)")
    assert h.rows(c) == []
    assert h.changes(c) == []
    assert h.dbv(c) == 0
