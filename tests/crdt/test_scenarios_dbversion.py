"""db_version: a translation of upstream ``test_dbversion.py`` and the db_version cases of
``crsqlite.test.c``.

Differences from upstream, deliberate:
* per-origin versions (difference 1): the local db_version moves only with local transactions,
  so upstream's testLamportCondition is inverted here;
* a transaction that changes nothing claims no version (difference 4).
"""

from __future__ import annotations

from typing import Any

import pytest


def test_min_on_init(make_db: Any, h: Any) -> None:
    c = make_db()
    assert h.dbv(c) == 0
    c.execute("CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b)")
    h.crdt.as_crr(c, "foo")
    assert h.dbv(c) == 0


def test_increments_per_transaction(simple: Any, h: Any) -> None:
    c = simple()
    for i in range(1, 6):
        assert h.write(c, f"INSERT INTO foo VALUES ({i}, {i})") == i
        assert h.dbv(c) == i


def test_one_version_per_transaction(make_db: Any, h: Any) -> None:
    c = make_db(
        "CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b)",
        "CREATE TABLE bar (a INTEGER PRIMARY KEY NOT NULL, b)",
        crr=["foo", "bar"],
    )
    v = h.write(
        c,
        "INSERT INTO foo VALUES (1, 1)",
        "INSERT INTO bar VALUES (1, 1)",
        "UPDATE foo SET b = 2",
        "DELETE FROM bar",
        "INSERT INTO foo VALUES (2, 2)",
    )
    assert v == 1
    assert {r[5] for r in h.changes(c)} == {1}
    assert h.dbv(c) == 1


def test_version_inside_transaction_is_pending(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 1)")
    with h.crdt.transaction(c) as tx:
        c.execute("INSERT INTO foo VALUES (2, 2)")
        # db_version reports the committed value, never the pending one
        assert h.dbv(c) == 1
    assert tx.version == 2
    assert h.dbv(c) == 2


def test_persisted_across_reopen(make_db: Any, h: Any, tmp_path: Any) -> None:
    path = tmp_path / "v.sqlite"
    c = make_db(h.SIMPLE_SCHEMA, path=path, crr=["foo"])
    h.write(c, "INSERT INTO foo VALUES (1, 1)")
    h.write(c, "INSERT INTO foo VALUES (2, 2)")
    h.write(c, "DELETE FROM foo")
    c.close()
    c2 = make_db(path=path)
    assert h.dbv(c2) == 3
    assert h.write(c2, "INSERT INTO foo VALUES (3, 3)") == 4


def test_persisted_with_empty_clock_table(make_db: Any, h: Any, tmp_path: Any) -> None:
    path = tmp_path / "e.sqlite"
    c = make_db(h.SIMPLE_SCHEMA, path=path, crr=["foo"])
    c.close()
    assert h.dbv(make_db(path=path)) == 0


def test_rollback_does_not_move_db_version(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 1)")
    with pytest.raises(ValueError), h.crdt.transaction(c):
        c.execute("INSERT INTO foo VALUES (2, 2)")
        raise ValueError
    assert h.dbv(c) == 1
    assert h.write(c, "INSERT INTO foo VALUES (2, 2)") == 2


def test_no_op_transactions_claim_no_version(simple: Any, h: Any) -> None:
    # difference 4: upstream advances the in-memory version on no-op updates
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 1)")
    assert h.write(c, "UPDATE foo SET b = 1") is None
    assert h.write(c, "UPDATE foo SET b = 5 WHERE a = 99") is None
    assert h.write(c, "DELETE FROM foo WHERE a = 99") is None
    assert h.write(c) is None
    assert h.dbv(c) == 1
    assert h.write(c, "UPDATE foo SET b = 2") == 2


def test_receiver_version_does_not_follow_sender(simple: Any, h: Any) -> None:
    # inverse of upstream's testLamportCondition (difference 1)
    c1, c2 = simple(), simple()
    for i in range(1, 5):
        h.write(c1, f"INSERT INTO foo VALUES ({i}, {i})")
    assert h.dbv(c1) == 4
    h.sync(c1, c2)
    assert h.dbv(c2) == 0
    assert {r[5] for r in h.changes(c2)} == {1, 2, 3, 4}
    # the receiver's next local transaction is its version 1
    assert h.write(c2, "INSERT INTO foo VALUES (10, 10)") == 1
    assert h.changes(c2, site_id=h.site(c2)) == [("foo", h.pk(10), "b", 10, 1, 1, h.site(c2), 1, 0)]


def test_noops_do_not_move_clocks(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    for c in (c1, c2):
        h.write(c, "INSERT INTO foo VALUES (1, 1)")
        h.write(c, "UPDATE foo SET b = 2")
    lo, hi = h.lo_hi(c1, c2)
    hi_changes = h.changes(hi)
    h.sync(lo, hi)
    assert h.changes(hi) == hi_changes
    assert h.dbv(hi) == h.dbv(lo) == 2
    h.sync(hi, lo)
    assert h.dbv(lo) == 2


def test_pulling_only_local_changes(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    h.write(c1, "INSERT INTO foo VALUES (1, 1)", "INSERT INTO foo VALUES (2, 2)")
    assert len(h.changes(c1, site_id=h.site(c1))) == 2
    assert h.changes(c1, site_id=h.site(c2)) == []
    h.sync(c1, c2)
    assert h.changes(c2, site_id=h.site(c2)) == []
    assert len(h.changes(c2, site_id=h.site(c1))) == 2


def test_second_connection_sees_committed_versions(make_db: Any, h: Any, tmp_path: Any) -> None:
    # each connection must re-derive the committed version after another one committed
    # (upstream caches it per connection and reuses versions)
    path = tmp_path / "shared.sqlite"
    c1 = make_db(h.SIMPLE_SCHEMA, path=path, crr=["foo"])
    c2 = make_db(path=path)
    assert h.site(c2) == h.site(c1)
    assert h.write(c1, "INSERT INTO foo VALUES (1, 1)") == 1
    assert h.dbv(c2) == 1
    assert h.write(c2, "INSERT INTO foo VALUES (2, 2)") == 2
    assert h.dbv(c1) == 2
    assert h.write(c1, "UPDATE foo SET b = 3") == 3
