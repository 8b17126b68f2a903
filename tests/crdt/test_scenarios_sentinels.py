"""Sentinel economy and merge bookkeeping: translations of upstream ``test_sentinel_omission.py``
and ``test_sync_bit.py``.

Difference from upstream: merged rows keep the origin's db_version (difference 1), so the
receiver's own db_version does not follow the sender's after a merge.
"""

from __future__ import annotations

from typing import Any

PK1 = b"\x01\x09\x01"
OTHER_SITE = bytes.fromhex("0f0e0d0c0b0a49088706050403020100")

TWO_TABLES = (
    "CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b, c)",
    "CREATE TABLE bar (a INTEGER PRIMARY KEY NOT NULL, b)",
)


def _populate(h: Any, c: Any, n: int = 200) -> None:
    stmts = []
    for i in range(n):
        stmts += [
            f"INSERT INTO foo VALUES ({2 * i}, {i}, 'x')",
            f"INSERT INTO foo VALUES ({2 * i + 1}, {i}, 'y')",
            f"INSERT INTO bar VALUES ({2 * i}, {i})",
            f"INSERT INTO bar VALUES ({2 * i + 1}, {i})",
        ]
    h.write(c, *stmts)


def _sentinels(h: Any, c: Any) -> int:
    return int(h.sentinel_count(c, "foo") + h.sentinel_count(c, "bar"))


def test_sentinel_omission(make_db: Any, h: Any) -> None:
    c1 = make_db(*TWO_TABLES, crr=["foo", "bar"])
    c2 = make_db(*TWO_TABLES, crr=["foo", "bar"])
    _populate(h, c1)
    # 800 inserts into tables with non-pk columns: no sentinels
    assert _sentinels(h, c1) == 0

    h.write(c1, *[f"INSERT OR REPLACE INTO foo VALUES ({i}, -1, 'r')" for i in range(0, 400, 7)])
    assert _sentinels(h, c1) == 0

    h.sync(c1, c2)
    assert _sentinels(h, c2) == 0

    # a no-op re-merge writes nothing
    before = h.changes(c2)
    assert h.sync(c1, c2) == 0
    assert _sentinels(h, c2) == 0
    assert h.changes(c2) == before
    # difference from upstream: c2 made no local transaction, so its version stays 0
    assert h.dbv(c2) == 0

    h.write(c1, "UPDATE foo SET c = 'u' WHERE a % 3 = 0")
    h.sync(c1, c2, 2)
    assert _sentinels(h, c2) == 0
    assert h.rows(c1) == h.rows(c2)

    h.write(c1, "DELETE FROM foo", "DELETE FROM bar")
    assert _sentinels(h, c1) == 800
    h.sync(c1, c2, 3)
    assert _sentinels(h, c2) == 800
    assert h.rows(c2) == [] and h.rows(c2, "bar") == []
    # only tombstones remain
    assert {r[2] for r in h.changes(c2)} == {"-1"}


def test_merged_column_change_with_cl3_on_unknown_row(simple: Any, h: Any) -> None:
    c = simple()
    change = ("foo", PK1, "b", 42, 5, 4, OTHER_SITE, 3, 6)
    # the row is created with the right cl (1) and the column written (1); the sentinel that
    # records cl 3 is provisional (ours: local site, db_version 0, seq -1; not a change row)
    assert h.merge(c, [change]) == 2
    assert h.changes(c) == [("foo", PK1, "b", 42, 5, 4, OTHER_SITE, 3, 6)]
    assert (1, "-1", 3, 0, 0, -1) in h.clock(c)
    assert h.rows(c) == [(1, 42)]
    # merges are not local writes
    assert h.dbv(c) == 0


def test_merged_column_change_with_cl3_on_live_local_row(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 1)")
    change = ("foo", PK1, "b", 42, 5, 4, OTHER_SITE, 3, 6)
    assert h.merge(c, [change]) == 2
    assert h.changes(c) == [("foo", PK1, "b", 42, 5, 4, OTHER_SITE, 3, 6)]
    assert (1, "-1", 3, 0, 0, -1) in h.clock(c)
    assert h.dbv(c) == 1


def test_merged_delete_with_cl4_leaves_only_tombstone(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 1)")
    assert h.merge(c, [("foo", PK1, "-1", None, 4, 4, OTHER_SITE, 4, 6)]) == 1
    assert h.changes(c) == [("foo", PK1, "-1", None, 4, 4, OTHER_SITE, 4, 6)]
    assert h.rows(c) == []


def test_merged_cl1_change_on_unknown_row_writes_no_sentinel(simple: Any, h: Any) -> None:
    c = simple()
    assert h.merge(c, [("foo", PK1, "b", 7, 1, 9, OTHER_SITE, 1, 0)]) == 1
    assert h.sentinel_count(c) == 0
    assert h.changes(c) == [("foo", PK1, "b", 7, 1, 9, OTHER_SITE, 1, 0)]


def test_merge_does_not_fire_local_tracking(simple: Any, h: Any) -> None:
    # the engine's own tracking is off during merges: merged writes produce no local clock rows
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (2, 2)")
    h.merge(c, [("foo", PK1, "b", 7, 1, 9, OTHER_SITE, 1, 0)])
    h.merge(c, [("foo", PK1, "-1", None, 2, 10, OTHER_SITE, 2, 0)])
    h.merge(c, [("foo", PK1, "-1", None, 3, 11, OTHER_SITE, 3, 0)])
    assert h.changes(c, site_id=h.site(c)) == [("foo", h.pk(2), "b", 2, 1, 1, h.site(c), 1, 0)]
    assert h.dbv(c) == 1
    assert h.rows(c) == [(1, None), (2, 2)]


def test_delete_of_unknown_row_records_tombstone(simple: Any, h: Any) -> None:
    c = simple()
    assert h.merge(c, [("foo", PK1, "-1", None, 2, 1, OTHER_SITE, 2, 0)]) == 1
    assert h.changes(c) == [("foo", PK1, "-1", None, 2, 1, OTHER_SITE, 2, 0)]
    # a later cl-1 insert from anyone loses against the tombstone
    assert h.merge(c, [("foo", PK1, "b", 7, 1, 1, OTHER_SITE, 1, 1)]) == 0
    assert h.rows(c) == []
    # a local insert resurrects at cl 3
    h.write(c, "INSERT INTO foo VALUES (1, 3)")
    assert h.cols(c, "cid", "cl", "site_id") == [("-1", 3, h.site(c)), ("b", 3, h.site(c))]
