"""Sync scenarios: a translation of upstream ``py/correctness/tests/test_sync.py``.

Differences from upstream, deliberate:
* merges never move the receiver's own db_version (per-origin versions, difference 1);
* equal values at equal clocks are tie-broken by (site_id, db_version, seq) instead of always
  losing (difference 2), so ``merge_same`` depends on which peer has the larger site id.
"""

from __future__ import annotations

from typing import Any

PK1 = b"\x01\x09\x01"

SCHEMA = (
    'CREATE TABLE "user" (id PRIMARY KEY NOT NULL, name)',
    "CREATE TABLE deck (id PRIMARY KEY NOT NULL, owner_id, title)",
    'CREATE TABLE slide (id PRIMARY KEY NOT NULL, deck_id, "order")',
    "CREATE TABLE component (id PRIMARY KEY NOT NULL, type, slide_id, content)",
)
TABLES = ("user", "deck", "slide", "component")


def insert_data(h: Any, c: Any) -> Any:
    return h.write(
        c,
        "INSERT INTO \"user\" VALUES (1, 'Javi')",
        "INSERT INTO deck VALUES (1, 1, 'Preso')",
        "INSERT INTO slide VALUES (1, 1, 0)",
        "INSERT INTO component VALUES (1, 'text', 1, 'wootwoot')",
        "INSERT INTO component VALUES (2, 'text', 1, 'toottoot')",
        "INSERT INTO component VALUES (3, 'text', 1, 'footfoot')",
        "INSERT INTO slide VALUES (2, 1, 1)",
        "INSERT INTO slide VALUES (3, 1, 2)",
    )


def test_changes_since(make_db: Any, h: Any) -> None:
    c = make_db(*SCHEMA, crr=TABLES)
    assert insert_data(h, c) == 1
    s = h.site(c)
    p = h.pk
    expected = [
        ("user", p(1), "name", "Javi"),
        ("deck", p(1), "owner_id", 1),
        ("deck", p(1), "title", "Preso"),
        ("slide", p(1), "deck_id", 1),
        ("slide", p(1), "order", 0),
        ("component", p(1), "type", "text"),
        ("component", p(1), "slide_id", 1),
        ("component", p(1), "content", "wootwoot"),
        ("component", p(2), "type", "text"),
        ("component", p(2), "slide_id", 1),
        ("component", p(2), "content", "toottoot"),
        ("component", p(3), "type", "text"),
        ("component", p(3), "slide_id", 1),
        ("component", p(3), "content", "footfoot"),
        ("slide", p(2), "deck_id", 1),
        ("slide", p(2), "order", 1),
        ("slide", p(3), "deck_id", 1),
        ("slide", p(3), "order", 2),
    ]
    assert h.changes(c) == [(*e, 1, 1, s, 1, seq) for seq, e in enumerate(expected)]

    assert (
        h.write(
            c,
            "UPDATE \"user\" SET name = 'Maestro' WHERE id = 1",
            "UPDATE deck SET title = 'Presto' WHERE id = 1",
        )
        == 2
    )
    assert [r for r in h.changes(c) if r[5] > 1] == [
        ("user", p(1), "name", "Maestro", 2, 2, s, 1, 0),
        ("deck", p(1), "title", "Presto", 2, 2, s, 1, 1),
    ]


def test_changes_filters(make_db: Any, h: Any) -> None:
    c = make_db(*SCHEMA, crr=TABLES)
    insert_data(h, c)
    h.write(c, "UPDATE \"user\" SET name = 'Maestro' WHERE id = 1")
    h.write(c, "UPDATE deck SET title = 'Presto' WHERE id = 1")
    # a peer with the same schema provides changes of a foreign origin
    peer = make_db(*SCHEMA, crr=TABLES)
    h.write(peer, "INSERT INTO deck VALUES (9, 9, 'x')")
    h.sync(peer, c)
    allc = h.changes(c)
    s, sp = h.site(c), h.site(peer)
    assert {r[6] for r in allc} == {s, sp}
    assert h.changes(c, site_id=s) == [r for r in allc if r[6] == s]
    assert h.changes(c, site_id=sp) == [r for r in allc if r[6] == sp]
    # min_version/max_version are inclusive bounds on db_version
    assert h.changes(c, min_version=2) == [r for r in allc if r[5] >= 2]
    assert h.changes(c, max_version=2) == [r for r in allc if r[5] <= 2]
    assert h.changes(c, min_version=2, max_version=2) == [r for r in allc if r[5] == 2]
    assert h.changes(c, site_id=s, min_version=2) == [r for r in allc if r[6] == s and r[5] >= 2]
    assert h.changes(c, site_id=s, min_version=4) == []


def test_delete(make_db: Any, h: Any) -> None:
    c = make_db(*SCHEMA, crr=TABLES)
    insert_data(h, c)
    s = h.site(c)
    assert h.write(c, "DELETE FROM component WHERE id = 1") == 2
    assert [r for r in h.changes(c) if r[5] > 1] == [
        ("component", h.pk(1), "-1", None, 2, 2, s, 2, 0)
    ]

    assert h.write(c, "DELETE FROM component", "DELETE FROM deck", "DELETE FROM slide") == 3
    assert [r for r in h.changes(c) if r[5] > 2] == [
        ("component", h.pk(2), "-1", None, 2, 3, s, 2, 0),
        ("component", h.pk(3), "-1", None, 2, 3, s, 2, 1),
        ("deck", h.pk(1), "-1", None, 2, 3, s, 2, 2),
        ("slide", h.pk(1), "-1", None, 2, 3, s, 2, 3),
        ("slide", h.pk(2), "-1", None, 2, 3, s, 2, 4),
        ("slide", h.pk(3), "-1", None, 2, 3, s, 2, 5),
    ]
    # only the user row keeps column metadata
    assert [r for r in h.changes(c) if r[2] != "-1"] == [
        ("user", h.pk(1), "name", "Javi", 1, 1, s, 1, 0)
    ]


def _defaults_db(make_db: Any, col: str, insert: str) -> Any:
    # the row is written before as_crr (a plain table then), so as_crr backfills it
    return make_db(f"CREATE TABLE foo (a PRIMARY KEY NOT NULL, {col})", insert, crr=["foo"])


def test_merging_on_defaults(make_db: Any, h: Any) -> None:
    # db1's b = 0 comes from the DEFAULT and is backfilled by as_crr (col_version 1)
    db1 = _defaults_db(make_db, "b DEFAULT 0", "INSERT INTO foo (a) VALUES (1)")
    db2 = _defaults_db(make_db, "b", "INSERT INTO foo VALUES (1, 2)")
    assert h.cols(db1, "cid", "val", "col_version", "db_version") == [("b", 0, 1, 1)]
    assert h.cols(db2, "cid", "val", "col_version", "db_version") == [("b", 2, 1, 1)]

    assert h.sync(db1, db2) == 0  # 0 < 2 at equal clocks
    assert h.rows(db2) == [(1, 2)]
    assert h.sync(db2, db1) == 1
    assert h.rows(db1) == [(1, 2)]
    # upstream moves db1's db_version; ours keeps it (difference 1)
    assert h.dbv(db1) == 1
    assert h.dbv(db2) == 1
    assert h.changes(db1) == h.changes(db2)


def test_merging_larger_backfilled_default(make_db: Any, h: Any) -> None:
    db1 = _defaults_db(make_db, "b DEFAULT 4", "INSERT INTO foo (a) VALUES (1)")
    db2 = _defaults_db(make_db, "b", "INSERT INTO foo VALUES (1, 2)")
    assert h.sync(db1, db2) == 1
    assert h.sync(db2, db1) == 0
    assert h.rows(db1) == h.rows(db2) == [(1, 4)]


def test_db_version_moves_as_expected_post_alter(make_db: Any, h: Any) -> None:
    c = make_db("CREATE TABLE foo (a PRIMARY KEY NOT NULL, b)", crr=["foo"])
    assert h.write(c, "INSERT INTO foo VALUES (1, 2)") == 1
    with h.crdt.alter(c, "foo"):
        c.execute("ALTER TABLE foo ADD COLUMN c")
    assert h.dbv(c) == 1
    assert [h.write(c, f"INSERT INTO foo VALUES ({i}, 1, 1)") for i in (2, 3, 4)] == [2, 3, 4]
    assert h.dbv(c) == 4


def _defaults2_db(make_db: Any, h: Any, populate_before_alter: bool) -> Any:
    c = make_db("CREATE TABLE foo (a PRIMARY KEY NOT NULL, b DEFAULT 0)", crr=["foo"])
    if populate_before_alter:
        h.write(c, "INSERT INTO foo (a) VALUES (1)")
    with h.crdt.alter(c, "foo"):
        c.execute("ALTER TABLE foo ADD COLUMN c DEFAULT 0")
    if not populate_before_alter:
        h.write(c, "INSERT INTO foo (a, b, c) VALUES (1, 2, 3)")
    return c


def test_merging_on_defaults2(make_db: Any, h: Any) -> None:
    db1 = _defaults2_db(make_db, h, True)
    db2 = _defaults2_db(make_db, h, False)
    s1, s2 = h.site(db1), h.site(db2)
    # the added column c has no clock on db1
    assert h.changes(db1) == [("foo", PK1, "b", 0, 1, 1, s1, 1, 0)]
    assert h.changes(db2) == [
        ("foo", PK1, "b", 2, 1, 1, s2, 1, 0),
        ("foo", PK1, "c", 3, 1, 1, s2, 1, 1),
    ]
    db1_changes = h.changes(db1)

    # db2 -> db1: b wins on value, c wins because db1 has no clock for it
    assert h.sync(db2, db1) == 2
    assert h.rows(db1) == [(1, 2, 3)]
    assert h.changes(db1) == h.changes(db2)

    # db1 -> db2 (db1's original changes): 0 < 2 loses; nothing changes
    before = h.changes(db2)
    assert h.merge(db2, db1_changes) == 0
    assert h.changes(db2) == before
    assert h.rows(db2) == [(1, 2, 3)]


def test_merge_same(simple: Any, h: Any) -> None:
    # upstream: identical values and clocks never merge; the receiver keeps its own site.
    # Ours (difference 2): the larger (site_id, db_version, seq) wins on metadata.
    lo, hi = h.lo_hi(simple(), simple())
    h.write(lo, "INSERT INTO foo VALUES (1, 1)")
    h.write(hi, "INSERT INTO foo VALUES (1, 1)")
    hi_changes = h.changes(hi)
    assert h.sync(lo, hi) == 0
    assert h.changes(hi) == hi_changes  # hi keeps its own site id
    assert h.sync(hi, lo) == 1  # a metadata-only win counts 1
    assert h.changes(lo) == hi_changes
    assert h.rows(lo) == h.rows(hi) == [(1, 1)]
    assert h.dbv(lo) == h.dbv(hi) == 1
    assert h.sync(lo, hi) == 0
    assert h.sync(hi, lo) == 0


def test_merge_same_three_way_is_stable(simple: Any, h: Any) -> None:
    dbs = [simple() for _ in range(3)]
    for i, c in enumerate(dbs):
        h.write(c, "INSERT INTO foo VALUES (1, 1)", f"INSERT INTO foo VALUES ({10 + i}, {i})")
    for _ in range(2):
        for src in dbs:
            for dst in dbs:
                if src is not dst:
                    h.sync(src, dst)
    reference = h.changes(dbs[0])
    for c in dbs:
        assert h.changes(c) == reference
        assert h.rows(c) == [(1, 1), (10, 0), (11, 1), (12, 2)]
    top = max(h.site(c) for c in dbs)
    assert [r[6] for r in reference if r[1] == PK1] == [top]
    # no loops: another full round changes nothing anywhere
    for src in dbs:
        for dst in dbs:
            if src is not dst:
                assert h.sync(src, dst) == 0


def test_merge_matching_clocks_lesser_value(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    h.write(c1, "INSERT INTO foo VALUES (1, 1)")
    h.write(c2, "INSERT INTO foo VALUES (1, 2)")
    c2_changes = h.changes(c2)
    assert h.sync(c1, c2) == 0
    assert h.changes(c2) == c2_changes
    assert h.sync(c2, c1) == 1
    assert h.changes(c1) == c2_changes
    assert h.rows(c1) == [(1, 2)]


def test_merge_larger_clock_larger_value(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    h.write(c1, "INSERT INTO foo VALUES (1, 1)", "UPDATE foo SET b = 5 WHERE a = 1")
    h.write(c2, "INSERT INTO foo VALUES (1, 1)")
    assert h.sync(c2, c1) == 0
    assert h.sync(c1, c2) == 1
    assert h.changes(c2) == [("foo", PK1, "b", 5, 2, 1, h.site(c1), 1, 1)]


def test_merge_larger_clock_smaller_value(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    h.write(c1, "INSERT INTO foo VALUES (1, 3)", "UPDATE foo SET b = 0 WHERE a = 1")
    h.write(c2, "INSERT INTO foo VALUES (1, 1)")
    assert h.sync(c2, c1) == 0
    assert h.rows(c1) == [(1, 0)]
    assert h.sync(c1, c2) == 1
    assert h.changes(c2) == [("foo", PK1, "b", 0, 2, 1, h.site(c1), 1, 1)]


def test_merge_larger_clock_same_value(simple: Any, h: Any) -> None:
    c1, c2 = simple(), simple()
    h.write(
        c1,
        "INSERT INTO foo VALUES (1, 1)",
        "UPDATE foo SET b = 2 WHERE a = 1",
        "UPDATE foo SET b = 1 WHERE a = 1",
    )
    h.write(c2, "INSERT INTO foo VALUES (1, 1)")
    assert h.sync(c2, c1) == 0
    # same value, larger col_version: the clock still wins (counts 1)
    assert h.sync(c1, c2) == 1
    assert h.changes(c2) == [("foo", PK1, "b", 1, 3, 1, h.site(c1), 1, 2)]


def test_bidirectional_convergence_smoke(make_db: Any, h: Any) -> None:
    a = make_db(*SCHEMA, crr=TABLES)
    b = make_db(*SCHEMA, crr=TABLES)
    insert_data(h, a)
    insert_data(h, b)
    h.write(a, "UPDATE deck SET title = 'a' WHERE id = 1", "DELETE FROM slide WHERE id = 2")
    h.write(b, "UPDATE deck SET title = 'b' WHERE id = 1", "INSERT INTO slide VALUES (4, 1, 3)")
    h.write(b, "UPDATE component SET content = 'zz' WHERE id = 3")
    h.sync(a, b, exclude_receiver=True)
    h.sync(b, a, exclude_receiver=True)
    for t in TABLES:
        assert h.rows(a, t) == h.rows(b, t)
    assert h.changes(a) == h.changes(b)
    assert h.sync(a, b) == h.sync(b, a) == 0
