"""Causal-length merge scenarios: a translation of upstream
``py/correctness/tests/test_cl_merging.py`` (the merge rules: `corrosion_py.crdt.merge_rules`).

Differences from upstream, all deliberate (our engine follows Corrosion's fork):
* merged clock rows keep the ORIGIN's db_version and seq (no Lamport bump), so the db_version in
  the expected tuples of a receiver is the sender's, not ``max(local + 1, incoming)``;
* resurrect zeroing keeps the zeroed clock's db_version/site/seq;
* equal-cl deletes are tie-broken by (site_id, db_version, seq).
"""

from __future__ import annotations

from typing import Any

import attrs

PK1 = b"\x01\x09\x01"


def test_larger_cl_wins_all(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    h.write(c1, "INSERT INTO foo VALUES (1, 1)", "DELETE FROM foo", "INSERT INTO foo VALUES (1, 1)")
    h.write(
        c2,
        "INSERT INTO foo VALUES (1, 1)",
        "UPDATE foo SET b = 3 WHERE a = 1",
        "UPDATE foo SET b = 4 WHERE a = 1",
    )
    # c1: delete + resurrect -> cl 3, b's clock restarted at 1; c2: cl 1, b at col_version 3
    assert h.cols(c1, "cid", "col_version", "cl") == [("-1", 3, 3), ("b", 1, 3)]
    assert h.cols(c2, "cid", "col_version", "cl") == [("b", 3, 1)]

    # the sentinel resurrects (1), then b wins over the zeroed clock (1)
    assert h.sync(c1, c2) == 2

    assert h.cols(c2, "cid", "col_version", "cl") == [("-1", 3, 3), ("b", 1, 3)]
    assert h.rows(c2) == [(1, 1)]
    s1 = h.site(c1)
    # differs from upstream: c2 keeps c1's db_version (1) rather than a bumped one
    assert h.changes(c2) == [
        ("foo", PK1, "-1", None, 3, 1, s1, 3, 2),
        ("foo", PK1, "b", 1, 1, 1, s1, 3, 3),
    ]
    assert h.changes(c2) == h.changes(c1)


def test_larger_cl_delete_deletes_all(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    h.write(c1, "INSERT INTO foo VALUES (1, 1)", "DELETE FROM foo")
    h.write(
        c2,
        "INSERT INTO foo VALUES (1, 1)",
        "UPDATE foo SET b = 3 WHERE a = 1",
        "UPDATE foo SET b = 4 WHERE a = 1",
    )
    assert h.sync(c1, c2) == 1
    assert h.rows(c2) == []
    s1 = h.site(c1)
    assert h.changes(c1) == [("foo", PK1, "-1", None, 2, 1, s1, 2, 1)]
    # upstream: db_version 2 on c2 (Lamport bump); ours keeps the origin's 1
    assert h.changes(c2) == [("foo", PK1, "-1", None, 2, 1, s1, 2, 1)]
    # the delete dropped c2's column metadata
    assert [r[1] for r in h.clock(c2)] == ["-1"]
    # per-origin versions: merging does not move the receiver's own db_version
    assert h.dbv(c2) == 1


def test_smaller_delete_does_not_delete_larger_cl(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    h.write(c1, "INSERT INTO foo VALUES (1, 1)", "DELETE FROM foo")
    h.write(c2, "INSERT INTO foo VALUES (1, 1)", "DELETE FROM foo", "INSERT INTO foo VALUES (1, 1)")
    assert h.changes(c1) == [("foo", PK1, "-1", None, 2, 1, h.site(c1), 2, 1)]
    pre = h.changes(c2)
    assert h.sync(c1, c2) == 0
    assert h.changes(c2) == pre
    assert h.rows(c2) == [(1, 1)]


def test_equivalent_delete_cls_converge_on_metadata(simple: Any, h: Any) -> None:
    # Upstream: equal-cl deletes are a no-op (no tie-break). Ours (deliberate difference 2): the
    # incoming tombstone wins iff (site_id, db_version, seq) is larger, so both ends converge to
    # the larger metadata, and a metadata-only win counts 1.
    lo, hi = h.lo_hi(simple(), simple())
    h.write(lo, "INSERT INTO foo VALUES (1, 1)", "DELETE FROM foo")
    h.write(hi, "INSERT INTO foo VALUES (1, 1)", "DELETE FROM foo")
    lo_changes, hi_changes = h.changes(lo), h.changes(hi)
    s_hi = h.site(hi)
    assert h.merge(hi, lo_changes) == 0
    assert h.changes(hi) == hi_changes
    assert h.merge(lo, hi_changes) == 1
    expected = [("foo", PK1, "-1", None, 2, 1, s_hi, 2, 1)]
    assert h.changes(lo) == expected
    assert h.changes(hi) == expected
    assert h.rows(lo) == h.rows(hi) == []
    # and it is stable: re-syncing in either direction does nothing
    assert h.sync(lo, hi) == 0
    assert h.sync(hi, lo) == 0


def test_equal_cl_delete_tie_break_uses_db_version_then_seq(simple: Any, h: Any) -> None:
    # same site ordering cannot decide between two tombstones of the same origin: a change with
    # the same site and cl but a larger (db_version, seq) is adopted; a smaller one is ignored.
    c1, c2 = simple(), simple()
    h.write(c2, "INSERT INTO foo VALUES (1, 1)", "DELETE FROM foo")
    s = h.site(c2)
    tomb = h.changes(c2)[0]
    assert tomb == ("foo", PK1, "-1", None, 2, 1, s, 2, 1)
    assert h.merge(c1, [tomb]) == 1
    # a hand-made older tombstone from the same origin loses...
    assert h.merge(c1, [("foo", PK1, "-1", None, 2, 1, s, 2, 0)]) == 0
    assert h.changes(c1) == [tomb]
    # ...and a newer one (larger db_version) wins on metadata only
    newer = ("foo", PK1, "-1", None, 2, 5, s, 2, 0)
    assert h.merge(c1, [newer]) == 1
    assert h.changes(c1) == [newer]


def test_smaller_cl_loses_all(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    h.write(c1, "INSERT INTO foo VALUES (1, 1)", "UPDATE foo SET b = 123 WHERE a = 1")
    h.write(c2, "INSERT INTO foo VALUES (1, 1)", "DELETE FROM foo", "INSERT INTO foo VALUES (1, 1)")
    pre = h.changes(c2)
    assert h.sync(c1, c2) == 0
    assert h.changes(c2) == pre
    assert h.rows(c2) == [(1, 1)]


def test_pr_299_scenario(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    assert h.write(c1, "INSERT INTO foo VALUES (1, 1)") == 1
    h.write(
        c2,
        "INSERT INTO foo VALUES (1, 1)",
        "UPDATE foo SET b = 2 WHERE a = 1",
        "UPDATE foo SET b = 3 WHERE a = 1",
        "UPDATE foo SET b = 4 WHERE a = 1",
    )
    assert h.write(c1, "DELETE FROM foo") == 2
    assert h.write(c1, "INSERT INTO foo VALUES (1, 1)") == 3

    # send only the resurrection (versions > 2), skipping the create and the delete
    assert h.sync(c1, c2, 2) == 2
    s1 = h.site(c1)
    changes = h.changes(c2)
    assert changes == [
        ("foo", PK1, "-1", None, 3, 3, s1, 3, 0),
        ("foo", PK1, "b", 1, 1, 3, s1, 3, 1),
    ]
    assert h.rows(c1) == h.rows(c2) == [(1, 1)]
    # syncing the rest is a no-op
    assert h.sync(c1, c2, 0) == 0
    assert h.changes(c2) == changes


def test_sync_with_siteid(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    s1 = h.site(c1)

    h.write(c1, "INSERT INTO foo VALUES (1, 1)")
    h.sync(c1, c2, 0)
    assert h.changes(c2) == [("foo", PK1, "b", 1, 1, 1, s1, 1, 0)]

    h.write(c1, "UPDATE foo SET b = 2 WHERE a = 1")
    h.sync(c1, c2, 1)
    assert h.changes(c2) == [("foo", PK1, "b", 2, 2, 2, s1, 1, 0)]

    h.write(c1, "DELETE FROM foo WHERE a = 1")
    h.sync(c1, c2, 2)
    assert h.changes(c2) == [("foo", PK1, "-1", None, 2, 3, s1, 2, 0)]

    h.write(c1, "INSERT INTO foo VALUES (1, 5)")
    h.sync(c1, c2, 3)
    assert h.changes(c2) == [
        ("foo", PK1, "-1", None, 3, 4, s1, 3, 0),
        ("foo", PK1, "b", 5, 1, 4, s1, 3, 1),
    ]
    assert h.rows(c2) == [(1, 5)]
    # difference from upstream: c2 made no local transaction, so its own db_version is still 0
    assert h.dbv(c2) == 0


def test_resurrection_of_live_thing_via_sentinel(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    h.write(c1, "INSERT INTO foo VALUES (1, 1)", "DELETE FROM foo", "INSERT INTO foo VALUES (1, 1)")
    h.write(c2, "INSERT INTO foo VALUES (1, 1)")
    s1, s2 = h.site(c1), h.site(c2)

    sentinel = next(c for c in h.raw_changes(c1) if c.cid == "-1")
    assert h.merge(c2, [sentinel]) == 1
    # b is zeroed. Upstream also gives it a new db_version (2); ours keeps its db_version (1),
    # site (c2) and seq (0) — deliberate difference 1.
    assert h.changes(c2) == [
        ("foo", PK1, "b", 1, 0, 1, s2, 3, 0),
        ("foo", PK1, "-1", None, 3, 1, s1, 3, 2),
    ]
    assert h.rows(c2) == [(1, 1)]

    col = next(c for c in h.raw_changes(c1) if c.cid != "-1")
    assert h.merge(c2, [col]) == 1
    # b wins on col_version (1 > 0) and takes c1's metadata as is
    assert h.changes(c2) == [
        ("foo", PK1, "-1", None, 3, 1, s1, 3, 2),
        ("foo", PK1, "b", 1, 1, 1, s1, 3, 3),
    ]
    assert h.changes(c2) == h.changes(c1)


def test_resurrection_of_live_thing_via_non_sentinel(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    h.write(c1, "INSERT INTO foo VALUES (1, 1)", "DELETE FROM foo", "INSERT INTO foo VALUES (1, 1)")
    h.write(c2, "INSERT INTO foo VALUES (1, 1)")
    s1 = h.site(c1)

    col = next(c for c in h.raw_changes(c1) if c.cid != "-1")
    # resurrect + the column win. Upstream writes the sentinel with the column change's
    # metadata; ours is provisional (local site, db_version 0, seq -1) and is not a change row,
    # so the sentinel a node ends with does not depend on delivery order (docs/crdt.md).
    assert h.merge(c2, [col]) == 2
    assert h.changes(c2) == [("foo", PK1, "b", 1, 1, 1, s1, 3, 3)]
    assert (1, "-1", 3, 0, 0, -1) in h.clock(c2)
    # the real sentinel replaces the provisional one (1 row impacted); then all is equal
    assert h.sync(c1, c2, 0) == 1
    assert h.changes(c2) == h.changes(c1)
    assert h.sync(c1, c2, 0) == 0


def test_resurrection_of_dead_thing_via_sentinel(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    h.write(c1, "INSERT INTO foo VALUES (1, 1)", "DELETE FROM foo", "INSERT INTO foo VALUES (1, 1)")
    h.write(c2, "INSERT INTO foo VALUES (1, 1)", "DELETE FROM foo")
    s1 = h.site(c1)

    sentinel = next(c for c in h.raw_changes(c1) if c.cid == "-1")
    assert h.merge(c2, [sentinel]) == 1
    assert h.changes(c2) == [("foo", PK1, "-1", None, 3, 1, s1, 3, 2)]
    # the row comes back with its pk only; other columns take their defaults
    assert h.rows(c2) == [(1, None)]

    assert h.sync(c1, c2) == 1
    assert h.rows(c2) == [(1, 1)]
    assert h.changes(c2) == h.changes(c1)


def test_resurrection_of_dead_thing_via_non_sentinel(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    h.write(c1, "INSERT INTO foo VALUES (1, 1)", "DELETE FROM foo", "INSERT INTO foo VALUES (1, 1)")
    h.write(c2, "INSERT INTO foo VALUES (1, 1)", "DELETE FROM foo")
    s1 = h.site(c1)

    col = next(c for c in h.raw_changes(c1) if c.cid != "-1")
    assert h.merge(c2, [col]) == 2
    # the sentinel at cl 3 is provisional (not a change row): see the live-row case above
    assert h.changes(c2) == [("foo", PK1, "b", 1, 1, 1, s1, 3, 3)]
    assert (1, "-1", 3, 0, 0, -1) in h.clock(c2)
    assert h.rows(c2) == [(1, 1)]


def test_delete_via_sentinel(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    h.write(c1, "INSERT INTO foo VALUES (1, 1)")
    h.write(c1, "DELETE FROM foo")
    h.write(c2, "INSERT INTO foo VALUES (1, 1)")

    sentinel = next(c for c in h.raw_changes(c1) if c.cid == "-1")
    assert h.merge(c2, [sentinel]) == 1
    assert h.changes(c2) == [("foo", PK1, "-1", None, 2, 2, h.site(c1), 2, 0)]
    assert h.rows(c2) == []


def test_larger_col_version_same_cl(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    h.write(c1, "INSERT INTO foo VALUES (1, 1)")
    h.write(c2, "INSERT INTO foo VALUES (1, 1)")
    h.write(c1, "UPDATE foo SET b = 0 WHERE a = 1")
    # col_version 2 beats 1 although 0 < 1
    assert h.sync(c1, c2) == 1
    assert h.rows(c1) == h.rows(c2) == [(1, 0)]


def test_larger_col_value_same_cl_and_col_version(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    h.write(c1, "INSERT INTO foo VALUES (1, 4)")
    h.write(c2, "INSERT INTO foo VALUES (1, 1)")
    assert h.sync(c1, c2) == 1
    assert h.rows(c1) == h.rows(c2) == [(1, 4)]
    assert h.sync(c2, c1) == 0
    assert h.rows(c1) == [(1, 4)]


def test_pko_create(pko: Any, h: Any) -> None:
    c1, c2 = pko(), pko()
    h.write(c1, "INSERT INTO foo VALUES (1)")
    assert h.changes(c1) == [("foo", PK1, "-1", None, 1, 1, h.site(c1), 1, 0)]
    assert h.sync(c1, c2) == 1
    assert h.rows(c2) == [(1,)]
    assert h.changes(c2) == h.changes(c1)


def test_pko_delete(pko: Any, h: Any) -> None:
    c1, c2 = pko(), pko()
    h.write(c1, "INSERT INTO foo VALUES (1)")
    h.write(c2, "INSERT INTO foo VALUES (1)")
    h.write(c1, "DELETE FROM foo")
    h.sync(c1, c2)
    assert h.rows(c1) == h.rows(c2) == []
    assert h.changes(c2) == [("foo", PK1, "-1", None, 2, 2, h.site(c1), 2, 0)]


def test_pko_resurrect(pko: Any, h: Any) -> None:
    c1, c2 = pko(), pko()
    h.write(c1, "INSERT INTO foo VALUES (1)")
    h.write(c2, "INSERT INTO foo VALUES (1)")
    h.write(c1, "DELETE FROM foo")
    h.write(c1, "INSERT INTO foo VALUES (1)")
    h.write(c2, "DELETE FROM foo")
    assert h.sync(c1, c2) == 1
    assert h.rows(c1) == h.rows(c2) == [(1,)]
    assert h.changes(c2) == [("foo", PK1, "-1", None, 3, 3, h.site(c1), 3, 0)]


def test_pko_equal_cl_sentinel_tie_break(pko: Any, h: Any) -> None:
    # deliberate difference 2: two independent creates (cl 1) converge on the larger metadata
    lo, hi = h.lo_hi(pko(), pko())
    h.write(lo, "INSERT INTO foo VALUES (1)")
    h.write(hi, "INSERT INTO foo VALUES (1)")
    hi_changes = h.changes(hi)
    assert h.sync(lo, hi) == 0
    assert h.sync(hi, lo) == 1
    assert h.changes(lo) == h.changes(hi) == hi_changes


def test_implicit_cl1_row_adopts_incoming_cl1_sentinel(make_db: Any, h: Any) -> None:
    # deliberate difference 2: a live row without a sentinel (implicit cl 1) takes an incoming
    # cl-1 sentinel (here produced by a pk change on the peer), counting 1.
    schema = "CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b INTEGER) STRICT"
    c1, c2 = make_db(schema, crr=["foo"]), make_db(schema, crr=["foo"])
    h.write(c1, "INSERT INTO foo VALUES (1, 7)")
    h.write(c1, "UPDATE foo SET a = 2 WHERE a = 1")
    h.write(c2, "INSERT INTO foo VALUES (2, 7)")
    sentinel = next(c for c in h.raw_changes(c1) if c.cid == "-1" and c.pk == h.PK2)
    assert sentinel.cl == 1
    assert h.merge(c2, [sentinel]) == 1
    assert [r for r in h.changes(c2) if r[2] == "-1"] == [attrs.astuple(sentinel)]
    assert sentinel.site_id == h.site(c1)
    assert h.rows(c2) == [(2, 7)]


def test_discord_report_corrosion(make_db: Any, h: Any) -> None:
    schema = "CREATE TABLE foo (a PRIMARY KEY NOT NULL, b, c, d, e)"
    a, b, c = (make_db(schema, crr=["foo"]) for _ in range(3))

    assert h.write(c, "INSERT INTO foo VALUES (1, 'b', 'c', 'd', 'e')") == 1
    h.sync(c, a, exact=1)
    h.sync(c, b, exact=1)

    assert h.write(c, "DELETE FROM foo WHERE a = 1") == 2
    h.sync(c, a, exact=2)
    h.sync(c, b, exact=2)

    assert h.write(c, "INSERT INTO foo VALUES (1, 'b1', 'c1', 'd1', 'e1')") == 3
    h.sync(c, b, exact=3)  # only b sees the re-insert

    assert h.write(c, "UPDATE foo SET b = 'b2', c = 'c2' WHERE a = 1") == 4
    h.sync(c, a, exact=4)
    h.sync(c, b, exact=4)

    assert [(r[2], r[4], r[7]) for r in h.changes(c) if r[5] == 4] == [("b", 2, 3), ("c", 2, 3)]
    # a got the delete, then the updates of b and c: the first resurrects the row at cl 3
    # (with a provisional sentinel, which is not a change row)
    assert h.cols(a, "cid", "col_version", "cl") == [("b", 2, 3), ("c", 2, 3)]

    h.sync(c, a, exact=3)  # now the old re-insert reaches a

    assert h.rows(a) == h.rows(b) == h.rows(c) == [(1, "b2", "c2", "d1", "e1")]
    # all three received all of c's changes: identical change rows, metadata included
    assert h.changes(a) == h.changes(b) == h.changes(c)
