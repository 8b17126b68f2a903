"""Lookaside keys and site ids: translations of upstream ``test_lookaside_key_creation.py``,
``test_site_id_lookaside.py`` and ``test_siteid.py``."""

from __future__ import annotations

from typing import Any

import pytest

PK1 = b"\x01\x09\x01"
SITE_A = bytes.fromhex("00000000000040008000000000000001")
SITE_B = bytes.fromhex("00000000000040008000000000000002")


@pytest.mark.parametrize(
    "stmt",
    [
        "INSERT OR REPLACE INTO foo VALUES (1, {i})",
        "INSERT OR IGNORE INTO foo VALUES (1, {i})",
        "INSERT INTO foo VALUES (1, {i}) ON CONFLICT DO UPDATE SET b = excluded.b",
    ],
    ids=["replace", "ignore", "upsert"],
)
def test_repeated_inserts_keep_one_key(simple: Any, h: Any, stmt: str) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 0)")
    for i in range(1, 4):
        h.write(c, stmt.format(i=i))
    assert h.lookaside(c) == [(1, 1)]


def test_pk_update_keeps_old_key_and_adds_new(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 0)")
    h.write(c, "UPDATE foo SET a = 2 WHERE a = 1")
    assert h.lookaside(c) == [(1, 1), (2, 2)]


def test_composite_pk_updated_three_times(make_db: Any, h: Any) -> None:
    c = make_db(
        "CREATE TABLE foo (a INTEGER NOT NULL, b INTEGER NOT NULL, c, PRIMARY KEY (a, b))",
        crr=["foo"],
    )
    h.write(c, "INSERT INTO foo VALUES (1, 1, 0)")
    h.write(c, "UPDATE foo SET a = 2")
    h.write(c, "UPDATE foo SET b = 2")
    h.write(c, "UPDATE foo SET a = 3, b = 3")
    assert h.lookaside(c) == [(1, 1, 1), (2, 2, 1), (3, 2, 2), (4, 3, 3)]


def test_delete_keeps_key(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 0)")
    h.write(c, "DELETE FROM foo")
    assert h.lookaside(c) == [(1, 1)]
    h.write(c, "INSERT INTO foo VALUES (1, 0)")
    assert h.lookaside(c) == [(1, 1)]


def test_merges_create_one_key_each(simple: Any, h: Any) -> None:
    src, dst = simple(), simple()
    h.write(src, "INSERT INTO foo VALUES (1, 1)", "INSERT INTO foo VALUES (2, 2)")
    h.write(dst, "INSERT INTO foo VALUES (2, 0)")
    h.sync(src, dst)  # a new row (1) and an existing row (2)
    assert sorted(r[1] for r in h.lookaside(dst)) == [1, 2]
    # delete of an unseen row and of an existing row
    h.merge(dst, [("foo", h.pk(3), "-1", None, 2, 5, SITE_A, 2, 0)])
    h.merge(dst, [("foo", h.pk(2), "-1", None, 2, 5, SITE_A, 2, 1)])
    assert sorted(r[1] for r in h.lookaside(dst)) == [1, 2, 3]
    assert len(h.lookaside(dst)) == 3
    # a merged pk update adds a key for the new pk
    h.write(src, "UPDATE foo SET a = 4 WHERE a = 1")
    h.sync(src, dst, 1)
    assert sorted(r[1] for r in h.lookaside(dst)) == [1, 2, 3, 4]
    assert h.rows(dst) == [(4, 1)]


def test_losing_merge_does_not_duplicate_key(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 5)", "UPDATE foo SET b = 6")
    for _ in range(3):
        h.merge(c, [("foo", PK1, "b", 1, 1, 1, SITE_A, 1, 0)])
    assert h.lookaside(c) == [(1, 1)]


def test_site_id_shape_and_persistence(make_db: Any, h: Any, tmp_path: Any) -> None:
    path = tmp_path / "persist.sqlite"
    c = make_db(path=path)
    site = h.site(c)
    assert isinstance(site, bytes) and len(site) == 16
    assert site[6] >> 4 == 4
    assert site[8] >> 6 == 0b10
    assert h.crdt.init(c) == site  # init again on the same connection: same id
    assert c.execute("SELECT site_id FROM crsql_site_id WHERE ordinal = 0").fetchone()[0] == site
    c.close()
    for _ in range(2):
        again = make_db(path=path)
        assert h.site(again) == site
        assert h.crdt.init(again) == site
    other = make_db()
    assert h.site(other) != site


def test_local_writes_carry_local_site(simple: Any, h: Any) -> None:
    c = simple()
    h.write(c, "INSERT INTO foo VALUES (1, 1)", "INSERT INTO foo VALUES (2, 2)")
    h.write(c, "UPDATE foo SET b = 3 WHERE a = 1", "DELETE FROM foo WHERE a = 2")
    assert {r[6] for r in h.changes(c)} == {h.site(c)}
    assert {r[4] for r in h.clock(c)} == {0}


def test_remote_site_stored_as_ordinal(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    h.write(c1, "INSERT INTO foo VALUES (1, 1)")
    h.sync(c1, c2)
    assert c2.execute("SELECT site_id, ordinal FROM crsql_site_id ORDER BY ordinal").fetchall() == [
        (h.site(c2), 0),
        (h.site(c1), 1),
    ]
    assert [r[4] for r in h.clock(c2)] == [1]
    assert h.changes(c2, site_id=h.site(c1)) == h.changes(c2)
    assert h.changes(c2, site_id=h.site(c2)) == []


def test_site_ordinals_do_not_move(simple: Any, h: Any) -> None:
    c = simple()
    h.merge(c, [("foo", h.pk(1), "b", 1, 1, 1, SITE_A, 1, 0)])
    h.merge(c, [("foo", h.pk(2), "b", 1, 1, 1, SITE_B, 1, 0)])
    h.merge(c, [("foo", h.pk(3), "b", 1, 1, 2, SITE_A, 1, 0)])
    h.merge(c, [("foo", h.pk(1), "b", 9, 2, 3, SITE_B, 1, 0)])
    rows = c.execute("SELECT site_id, ordinal FROM crsql_site_id ORDER BY ordinal").fetchall()
    assert rows == [(h.site(c), 0), (SITE_A, 1), (SITE_B, 2)]
    assert {r[6] for r in h.changes(c)} == {SITE_A, SITE_B}
    assert [r[6] for r in h.changes(c) if r[1] == PK1] == [SITE_B]


def test_site_ids_preserved_through_relay(make_db: Any, h: Any) -> None:
    schema = "CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b, c)"
    a, b, c = (make_db(schema, crr=["foo"]) for _ in range(3))
    h.write(a, "INSERT INTO foo VALUES (1, 1.25, x'00ff')")
    h.write(b, "INSERT INTO foo VALUES (2, -2.5e-10, x'')")
    h.sync(a, b)
    h.sync(b, c)
    by_pk = {(r[1], r[2]): r for r in h.changes(c)}
    assert by_pk[(PK1, "b")][6] == h.site(a)
    assert by_pk[(h.pk(2), "b")][6] == h.site(b)
    assert h.changes(c) == h.changes(b)
    assert h.typed_rows(c, "foo") == h.typed_rows(a, "foo")[:1] + h.typed_rows(b, "foo")[1:]
    # relaying back to the origin changes nothing
    assert h.sync(c, a) == 2  # only b's row (columns b and c) is new to a
    assert h.sync(b, a) == 0
    assert h.changes(a) == h.changes(c)
