"""``crdt.merge``: rows impacted (upstream ``rows-impacted.test.c``), input validation and the
``Change`` record.

Difference from upstream, deliberate: equal values at equal clocks are tie-broken by
(site_id, db_version, seq) and such a metadata-only win counts 1 (difference 2).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import attrs
import pytest

from corrosion_py.errors import (
    CrdtError,
    MalformedChangeError,
    MalformedPkError,
    UnknownColumnError,
    UnknownTableError,
)

PK1 = b"\x01\x09\x01"
LOW = bytes.fromhex("00000000000040008000000000000000")
HIGH = bytes.fromhex("ffffffffffff4fffbfffffffffffffff")
FIELDS = ["table", "pk", "cid", "val", "col_version", "db_version", "site_id", "cl", "seq"]


def test_change_record_shape(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 1)")
    (ch,) = h.raw_changes(c)
    assert isinstance(ch, h.crdt.Change)
    assert [f.name for f in attrs.fields(h.crdt.Change)] == FIELDS
    assert attrs.astuple(ch) == ("foo", PK1, "b", 1, 1, 1, h.site(c), 1, 0)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ch.val = 2


def test_rows_impacted_one_per_merged_insert(simple: Any, h: Any) -> None:
    c = simple()
    assert h.merge(c, [("foo", PK1, "b", 1, 1, 1, HIGH, 1, 0)]) == 1
    assert h.merge(c, [("foo", h.pk(i), "b", i, 1, 2, HIGH, 1, i) for i in (2, 3, 4)]) == 3


def test_rows_impacted_accepts_change_objects_and_tuples(simple: Any, h: Any) -> None:
    src, a, b = simple(), simple(), simple()
    h.write(src, "INSERT INTO foo VALUES (1, 1)", "INSERT INTO foo VALUES (2, 2)")
    objs = h.raw_changes(src)
    assert h.merge(a, objs) == 2
    assert h.merge(b, [attrs.astuple(o) for o in objs]) == 2
    assert h.changes(a) == h.changes(b) == h.changes(src)


def test_rows_impacted_zero_for_no_ops(simple: Any, h: Any) -> None:
    c = simple()
    update = ("foo", PK1, "b", 5, 2, 1, HIGH, 1, 0)
    assert h.merge(c, [update]) == 1
    assert h.merge(c, [update]) == 0  # no-op update
    delete = ("foo", PK1, "-1", None, 2, 2, HIGH, 2, 0)
    assert h.merge(c, [delete]) == 1
    assert h.merge(c, [delete]) == 0  # no-op delete
    create = ("foo", PK1, "-1", None, 3, 3, HIGH, 3, 0)
    assert h.merge(c, [create]) == 1
    assert h.merge(c, [create]) == 0  # no-op create
    # the stale column change (cl 1 < 3) is ignored too
    assert h.merge(c, [update]) == 0


def test_rows_impacted_delete_value_win_clock_win(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 5)")
    # value win: same clock, larger value
    assert h.merge(c, [("foo", PK1, "b", 6, 1, 1, LOW, 1, 0)]) == 1
    # clock win: larger col_version, smaller value
    assert h.merge(c, [("foo", PK1, "b", 0, 2, 1, LOW, 1, 1)]) == 1
    # losing changes count 0
    assert h.merge(c, [("foo", PK1, "b", 9, 1, 9, HIGH, 1, 9)]) == 0
    assert h.rows(c) == [(1, 0)]
    # delete
    assert h.merge(c, [("foo", PK1, "-1", None, 2, 1, LOW, 2, 2)]) == 1
    assert h.rows(c) == []


def test_rows_impacted_metadata_only_win(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 5)")
    s = h.site(c)
    # equal value and clocks: a smaller site loses, a larger site wins on metadata only
    assert h.merge(c, [("foo", PK1, "b", 5, 1, 1, LOW, 1, 0)]) == 0
    assert h.changes(c) == [("foo", PK1, "b", 5, 1, 1, s, 1, 0)]
    assert h.merge(c, [("foo", PK1, "b", 5, 1, 1, HIGH, 1, 0)]) == 1
    assert h.changes(c) == [("foo", PK1, "b", 5, 1, 1, HIGH, 1, 0)]
    # same site: (db_version, seq) decide
    assert h.merge(c, [("foo", PK1, "b", 5, 1, 1, HIGH, 1, 0)]) == 0
    assert h.merge(c, [("foo", PK1, "b", 5, 1, 0, HIGH, 1, 7)]) == 0
    assert h.merge(c, [("foo", PK1, "b", 5, 1, 1, HIGH, 1, 3)]) == 1
    assert h.merge(c, [("foo", PK1, "b", 5, 1, 2, HIGH, 1, 0)]) == 1
    assert h.changes(c) == [("foo", PK1, "b", 5, 1, 2, HIGH, 1, 0)]
    assert h.rows(c) == [(1, 5)]
    assert h.dbv(c) == 1


def test_rows_impacted_resurrect_plus_column_counts_two(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 5)", "DELETE FROM foo")
    assert h.merge(c, [("foo", PK1, "b", 7, 1, 4, HIGH, 3, 1)]) == 2
    assert h.rows(c) == [(1, 7)]


def test_rows_impacted_counts_per_call(simple: Any, h: Any) -> None:
    c = simple()
    batch = [
        ("foo", PK1, "b", 1, 1, 1, HIGH, 1, 0),
        ("foo", h.pk(2), "b", 1, 1, 1, HIGH, 1, 1),
        ("foo", PK1, "b", 1, 1, 1, HIGH, 1, 0),  # duplicate within the call: no-op
    ]
    assert h.merge(c, batch) == 2
    assert h.merge(c, batch) == 0


def test_rows_impacted_zero_for_empty_batch(simple: Any, h: Any) -> None:
    c = simple()
    assert h.merge(c, []) == 0


def test_local_writes_are_not_counted(simple: Any, h: Any) -> None:
    c = simple()
    with h.crdt.transaction(c):
        c.execute("INSERT INTO foo VALUES (9, 9)")
        assert h.merge(c, [("foo", PK1, "b", 1, 1, 1, HIGH, 1, 0)]) == 1


BAD_CHANGES = [
    pytest.param(("nope", PK1, "b", 1, 1, 1, HIGH, 1, 0), UnknownTableError, id="table"),
    pytest.param(("foo", PK1, "zz", 1, 1, 1, HIGH, 1, 0), UnknownColumnError, id="column"),
    pytest.param(("foo", b"\x01\x06", "b", 1, 1, 1, HIGH, 1, 0), MalformedPkError, id="pk"),
    pytest.param(
        ("foo", b"\x02\x09\x01\x09\x02", "b", 1, 1, 1, HIGH, 1, 0),
        MalformedPkError,
        id="pk-arity",
    ),
    pytest.param(("foo", PK1, "b", 1, 1, 1, HIGH[:15], 1, 0), MalformedChangeError, id="site15"),
    pytest.param(
        ("foo", PK1, "b", 1, 1, 1, HIGH + b"\x00", 1, 0), MalformedChangeError, id="site17"
    ),
    pytest.param(("foo", PK1, "b", 1, 1, 1, None, 1, 0), MalformedChangeError, id="site-null"),
    pytest.param(("foo", PK1, "b", 1, 1, 1, b"", 1, 0), MalformedChangeError, id="site-empty"),
]


@pytest.mark.parametrize(("bad", "error"), BAD_CHANGES)
def test_invalid_change_rejected_atomically(simple: Any, h: Any, bad: Any, error: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (5, 5)")
    before = (h.changes(c), h.rows(c), h.lookaside(c), h.dbv(c))
    good = ("foo", PK1, "b", 1, 1, 1, HIGH, 1, 0)
    with pytest.raises(error):
        h.merge(c, [good, bad])
    assert (h.changes(c), h.rows(c), h.lookaside(c), h.dbv(c)) == before
    sites = c.execute("SELECT count(*) FROM crsql_site_id").fetchone()[0]
    assert sites == 1
    # the connection is still usable
    assert h.merge(c, [good]) == 1


def test_merge_inside_open_transaction_rolls_back_with_it(simple: Any, h: Any) -> None:
    c = simple()
    with pytest.raises(RuntimeError), h.crdt.transaction(c):
        assert h.merge(c, [("foo", PK1, "b", 1, 1, 1, HIGH, 1, 0)]) == 1
        raise RuntimeError
    assert h.rows(c) == []
    assert h.changes(c) == []


def test_merge_error_inside_transaction_rolls_back_transaction(simple: Any, h: Any) -> None:
    c = simple()
    with pytest.raises(UnknownTableError), h.crdt.transaction(c):
        c.execute("INSERT INTO foo VALUES (5, 5)")
        h.merge(c, [("nope", PK1, "b", 1, 1, 1, HIGH, 1, 0)])
    assert h.rows(c) == []
    assert h.dbv(c) == 0


def test_merge_with_plain_sqlite_error_is_atomic(make_db: Any, h: Any) -> None:
    c = make_db(
        "CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b INTEGER CHECK (b < 100))",
        crr=["foo"],
    )
    with pytest.raises((sqlite3.IntegrityError, CrdtError)):
        h.merge(
            c,
            [
                ("foo", PK1, "b", 1, 1, 1, HIGH, 1, 0),
                ("foo", h.pk(2), "b", 500, 1, 1, HIGH, 1, 1),
            ],
        )
    assert h.rows(c) == []
    assert h.changes(c) == []
