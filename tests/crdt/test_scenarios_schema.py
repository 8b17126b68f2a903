"""Schema rules: ``as_crr`` refusal, idempotence and backfill, and ``crdt.alter`` (cr-sqlite's
``crsql_begin_alter`` / ``crsql_commit_alter``); a translation of upstream
``test_schema_modification.py``."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

import pytest

from corrosion_py.errors import IncompatibleTableError, UnknownTableError

PK1 = b"\x01\x09\x01"

# (table, create statements, regex the error message must match to name the rule)
REFUSED = [
    pytest.param(
        "t_unique_col",
        ["CREATE TABLE t_unique_col (id INTEGER PRIMARY KEY NOT NULL, u TEXT UNIQUE)"],
        r"unique",
        id="unique-column",
    ),
    pytest.param(
        "t_unique_idx",
        [
            "CREATE TABLE t_unique_idx (id INTEGER PRIMARY KEY NOT NULL, u TEXT)",
            "CREATE UNIQUE INDEX t_unique_idx_u ON t_unique_idx (u)",
        ],
        r"unique",
        id="unique-index",
    ),
    pytest.param(
        "t_unique_constraint",
        ["CREATE TABLE t_unique_constraint (id INTEGER PRIMARY KEY NOT NULL, u, v, UNIQUE (u, v))"],
        r"unique",
        id="unique-table-constraint",
    ),
    pytest.param("t_no_pk", ["CREATE TABLE t_no_pk (a, b)"], r"primary key", id="no-pk"),
    pytest.param(
        "t_nullable_pk",
        ["CREATE TABLE t_nullable_pk (a PRIMARY KEY, b)"],
        r"not null|nullable|null",
        id="nullable-pk",
    ),
    pytest.param(
        "t_nullable_int_pk",
        ["CREATE TABLE t_nullable_int_pk (a INTEGER PRIMARY KEY, b)"],
        r"not null|nullable|null",
        id="nullable-integer-pk",
    ),
    pytest.param(
        "t_nullable_part",
        ["CREATE TABLE t_nullable_part (a NOT NULL, b, c, PRIMARY KEY (a, b))"],
        r"not null|nullable|null",
        id="nullable-composite-pk-part",
    ),
    pytest.param(
        "t_autoinc",
        ["CREATE TABLE t_autoinc (id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, b)"],
        r"autoincrement",
        id="autoincrement",
    ),
    pytest.param(
        "t_fk",
        [
            "CREATE TABLE parent (id INTEGER PRIMARY KEY NOT NULL)",
            "CREATE TABLE t_fk (id INTEGER PRIMARY KEY NOT NULL, p INTEGER REFERENCES parent(id))",
        ],
        r"foreign key",
        id="foreign-key",
    ),
    pytest.param(
        "t_fk_table",
        [
            "CREATE TABLE parent (id INTEGER PRIMARY KEY NOT NULL)",
            "CREATE TABLE t_fk_table (id INTEGER PRIMARY KEY NOT NULL, p INTEGER,"
            " FOREIGN KEY (p) REFERENCES parent(id))",
        ],
        r"foreign key",
        id="foreign-key-constraint",
    ),
    pytest.param(
        "t_notnull_nodefault",
        ["CREATE TABLE t_notnull_nodefault (id INTEGER PRIMARY KEY NOT NULL, b TEXT NOT NULL)"],
        r"default",
        id="not-null-without-default",
    ),
]


@pytest.mark.parametrize(("table", "stmts", "rule"), REFUSED)
def test_as_crr_refuses_incompatible_tables(
    make_db: Any, h: Any, table: str, stmts: list[str], rule: str
) -> None:
    c = make_db(*stmts)
    with pytest.raises(IncompatibleTableError) as info:
        h.crdt.as_crr(c, table)
    msg = str(info.value)
    assert table in msg
    assert re.search(rule, msg, re.IGNORECASE), msg
    # nothing was created
    names = {r[0] for r in c.execute("SELECT name FROM sqlite_master")}
    assert f"{table}__crsql_clock" not in names
    assert f"{table}__crsql_pks" not in names


def test_as_crr_unknown_table(make_db: Any, h: Any) -> None:
    c = make_db()
    with pytest.raises((IncompatibleTableError, UnknownTableError), match="nope"):
        h.crdt.as_crr(c, "nope")


ACCEPTED = [
    pytest.param(
        "CREATE TABLE t (a INTEGER PRIMARY KEY NOT NULL, b NOT NULL DEFAULT 1)", id="nn-default"
    ),
    pytest.param("CREATE TABLE t (a integer primary key not null, b)", id="lowercase-int-pk"),
    # upstream accepts "id" TEXT PRIMARY KEY in a STRICT table (SQLite reports it NOT NULL)
    pytest.param('CREATE TABLE t ("id" TEXT PRIMARY KEY, b TEXT) STRICT', id="strict-text-pk"),
    pytest.param(
        "CREATE TABLE t (a NOT NULL, b NOT NULL, c CHECK (c > 0), PRIMARY KEY (a, b))",
        id="composite-check",
    ),
    pytest.param("CREATE TABLE t (b INTEGER PRIMARY KEY NOT NULL)", id="pk-only"),
]


@pytest.mark.parametrize("stmt", ACCEPTED)
def test_as_crr_accepts_compatible_tables(make_db: Any, h: Any, stmt: str) -> None:
    c = make_db(stmt, "CREATE INDEX t_idx ON t (b)")  # non-unique indexes are fine
    h.crdt.as_crr(c, "t")
    names = {r[0] for r in c.execute("SELECT name FROM sqlite_master")}
    assert {"t__crsql_clock", "t__crsql_pks"} <= names


def test_as_crr_twice_is_a_no_op(make_db: Any, h: Any) -> None:
    c = make_db(
        "CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b)", "INSERT INTO foo VALUES (1, 2)"
    )
    h.crdt.as_crr(c, "foo")
    before = (h.changes(c), h.clock(c), h.lookaside(c), h.dbv(c))
    assert before[3] == 1
    h.crdt.as_crr(c, "foo")
    assert (h.changes(c), h.clock(c), h.lookaside(c), h.dbv(c)) == before
    h.write(c, "INSERT INTO foo VALUES (2, 3)")
    h.crdt.as_crr(c, "foo")
    assert h.dbv(c) == 2
    assert len(h.changes(c)) == 2


def test_clock_and_lookaside_schema_compound_pk(make_db: Any, h: Any) -> None:
    c = make_db("CREATE TABLE foo (a NOT NULL, b NOT NULL, c, d, PRIMARY KEY (a, b))", crr=["foo"])
    clock_cols = [r[1] for r in c.execute("PRAGMA table_info(foo__crsql_clock)")]
    assert clock_cols == ["key", "col_name", "col_version", "db_version", "site_id", "seq"]
    pks_cols = [r[1] for r in c.execute("PRAGMA table_info(foo__crsql_pks)")]
    assert pks_cols == ["__crsql_key", "a", "b"]
    site_cols = {r[1] for r in c.execute("PRAGMA table_info(crsql_site_id)")}
    assert site_cols == {"site_id", "ordinal"}
    assert c.execute("SELECT site_id FROM crsql_site_id WHERE ordinal = 0").fetchone()[0] == (
        h.site(c)
    )


def test_clock_and_lookaside_schema_single_pk(make_db: Any, h: Any) -> None:
    c = make_db("CREATE TABLE foo (id INTEGER PRIMARY KEY NOT NULL, x)", crr=["foo"])
    pks_cols = [r[1] for r in c.execute("PRAGMA table_info(foo__crsql_pks)")]
    assert pks_cols == ["__crsql_key", "id"]


@pytest.mark.parametrize(
    "name",
    ["my table", "select", 'we"ird', "it's", "ünï"],
    ids=["space", "keyword", "dquote", "squote", "unicode"],
)
def test_quoted_identifiers(make_db: Any, h: Any, name: str) -> None:
    qn = h.q(name)
    schema = f'CREATE TABLE {qn} ("the id" INTEGER PRIMARY KEY NOT NULL, "a b", "c""d")'
    c1, c2 = make_db(schema, crr=[name]), make_db(schema, crr=[name])
    h.write(c1, f"INSERT INTO {qn} VALUES (1, 'x', 'y')")
    h.write(c1, f"UPDATE {qn} SET \"a b\" = 'z'")
    h.write(c1, f"INSERT INTO {qn} VALUES (2, 'x', 'y')", f'DELETE FROM {qn} WHERE "the id" = 2')
    assert {r[0] for r in h.changes(c1)} == {name}
    assert {r[2] for r in h.changes(c1)} == {"a b", 'c"d', "-1"}
    h.sync(c1, c2)
    assert h.rows(c2, name) == h.rows(c1, name) == [(1, "z", "y")]


def test_backfill_existing_data(make_db: Any, h: Any) -> None:
    c = make_db(
        "CREATE TABLE foo (id INTEGER PRIMARY KEY NOT NULL, a, b DEFAULT 7, c)",
        "INSERT INTO foo (id, a) VALUES (1, 'x')",
        "INSERT INTO foo VALUES (2, NULL, NULL, NULL)",
    )
    h.crdt.as_crr(c, "foo")
    s = h.site(c)
    # every non-pk column is backfilled, including NULLs and defaults
    assert h.changes(c) == [
        ("foo", PK1, "a", "x", 1, 1, s, 1, 0),
        ("foo", PK1, "b", 7, 1, 1, s, 1, 1),
        ("foo", PK1, "c", None, 1, 1, s, 1, 2),
        ("foo", b"\x01\x09\x02", "a", None, 1, 1, s, 1, 3),
        ("foo", b"\x01\x09\x02", "b", None, 1, 1, s, 1, 4),
        ("foo", b"\x01\x09\x02", "c", None, 1, 1, s, 1, 5),
    ]
    assert h.sentinel_count(c) == 0
    assert h.dbv(c) == 1
    # backfilled rows replicate like any other
    other = make_db(
        "CREATE TABLE foo (id INTEGER PRIMARY KEY NOT NULL, a, b DEFAULT 7, c)", crr=["foo"]
    )
    assert h.sync(c, other) == 6
    assert h.rows(other) == [(1, "x", 7, None), (2, None, None, None)]


def test_backfill_moves_dbversion(make_db: Any, h: Any) -> None:
    c = make_db(
        "CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b)",
        "CREATE TABLE bar (a INTEGER PRIMARY KEY NOT NULL, b)",
        "INSERT INTO foo VALUES (1, 2)",
        "INSERT INTO bar VALUES (1, 2)",
    )
    h.crdt.as_crr(c, "foo")
    assert h.dbv(c) == 1
    h.crdt.as_crr(c, "bar")
    assert h.dbv(c) == 2
    assert h.cols(c, "table", "db_version") == [("foo", 1), ("bar", 2)]


def test_backfill_empty_table_claims_no_version(make_db: Any, h: Any) -> None:
    c = make_db("CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b)", crr=["foo"])
    assert h.dbv(c) == 0
    assert h.changes(c) == []


def test_pk_only_table_backfill(make_db: Any, h: Any) -> None:
    c = make_db(
        "CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL)",
        "INSERT INTO foo VALUES (1)",
        "INSERT INTO foo VALUES (2)",
    )
    h.crdt.as_crr(c, "foo")
    s = h.site(c)
    assert h.changes(c) == [
        ("foo", PK1, "-1", None, 1, 1, s, 1, 0),
        ("foo", b"\x01\x09\x02", "-1", None, 1, 1, s, 1, 1),
    ]


def test_backfill_composite_pk(make_db: Any, h: Any) -> None:
    c = make_db(
        "CREATE TABLE foo (a NOT NULL, b NOT NULL, c, PRIMARY KEY (a, b))",
        "INSERT INTO foo VALUES (1, 'x', 3)",
    )
    h.crdt.as_crr(c, "foo")
    assert h.cols(c, "pk", "cid", "val") == [(h.pk(1, "x"), "c", 3)]
    assert h.lookaside(c) == [(1, 1, "x")]


@pytest.mark.parametrize(
    "add",
    [
        "ADD COLUMN c DEFAULT 0",
        "ADD COLUMN c TEXT",
        "ADD COLUMN c",
        "ADD COLUMN c INTEGER NOT NULL DEFAULT 5",
    ],
)
def test_add_column_creates_no_changes(make_db: Any, h: Any, add: str) -> None:
    c = make_db("CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b)", crr=["foo"])
    h.write(c, "INSERT INTO foo VALUES (1, 2)", "INSERT INTO foo VALUES (2, 3)")
    before = h.changes(c)
    with h.crdt.alter(c, "foo"):
        c.execute(f"ALTER TABLE foo {add}")
    assert h.changes(c) == before
    assert h.dbv(c) == 1
    # a later insert records every column, including the default
    assert h.write(c, "INSERT INTO foo (a, b) VALUES (3, 4)") == 2
    assert [r[2] for r in h.changes(c) if r[5] == 2] == ["b", "c"]
    # and the new column replicates through updates
    h.write(c, "UPDATE foo SET c = 'z' WHERE a = 1")
    assert [(r[1], r[2], r[3], r[4]) for r in h.changes(c) if r[5] == 3] == [(PK1, "c", "z", 1)]


def test_drop_column_removes_its_metadata(make_db: Any, h: Any) -> None:
    c = make_db("CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b, c)", crr=["foo"])
    h.write(c, "INSERT INTO foo VALUES (1, 2, 3)")
    with h.crdt.alter(c, "foo"):
        c.execute("ALTER TABLE foo DROP COLUMN c")
    assert h.cols(c, "cid") == [("b",)]
    assert [r[1] for r in h.clock(c)] == ["b"]
    assert h.dbv(c) == 1
    assert h.write(c, "INSERT INTO foo VALUES (2, 5)") == 2


def test_rename_column_backfills_new_name(make_db: Any, h: Any) -> None:
    c = make_db("CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b, c)", crr=["foo"])
    h.write(c, "INSERT INTO foo VALUES (1, 2, 3)")
    h.write(c, "UPDATE foo SET b = 4")
    with h.crdt.alter(c, "foo"):
        c.execute("ALTER TABLE foo RENAME COLUMN c TO d")
    # the new name shows up at col_version 1 with the current db_version; the old name is gone
    assert sorted(h.cols(c, "cid", "val", "col_version", "db_version")) == [
        ("b", 4, 2, 2),
        ("d", 3, 1, 2),
    ]
    assert "c" not in {r[1] for r in h.clock(c)}
    assert h.dbv(c) == 2


def test_delete_sentinels_not_lost_on_rename(make_db: Any, h: Any) -> None:
    c = make_db("CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b, c)", crr=["foo"])
    h.write(c, "INSERT INTO foo VALUES (1, 2, 3)", "INSERT INTO foo VALUES (2, 2, 3)")
    h.write(c, "DELETE FROM foo WHERE a = 1")
    tomb = [r for r in h.changes(c) if r[2] == "-1"]
    assert len(tomb) == 1
    with h.crdt.alter(c, "foo"):
        c.execute("ALTER TABLE foo RENAME COLUMN b TO bb")
    assert [r for r in h.changes(c) if r[2] == "-1"] == tomb


def test_pk_only_sentinels_survive_add_column(make_db: Any, h: Any) -> None:
    c = make_db("CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL)", crr=["foo"])
    h.write(c, "INSERT INTO foo VALUES (1)", "INSERT INTO foo VALUES (2)")
    before = h.changes(c)
    assert len(before) == 2
    with h.crdt.alter(c, "foo"):
        c.execute("ALTER TABLE foo ADD COLUMN b")
    assert h.changes(c) == before


def test_alter_changing_pk_is_refused(make_db: Any, h: Any) -> None:
    c = make_db(
        "CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b NOT NULL DEFAULT 0)", crr=["foo"]
    )
    h.write(c, "INSERT INTO foo VALUES (1, 2)")
    with pytest.raises(IncompatibleTableError), h.crdt.alter(c, "foo"):
        c.execute(
            "CREATE TABLE new_foo (a INTEGER NOT NULL, b NOT NULL DEFAULT 0, PRIMARY KEY (a, b))"
        )
        c.execute("INSERT INTO new_foo SELECT a, b FROM foo")
        c.execute("DROP TABLE foo")
        c.execute("ALTER TABLE new_foo RENAME TO foo")


def test_alter_refuses_breaking_rules(make_db: Any, h: Any) -> None:
    c = make_db("CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b)", crr=["foo"])
    with pytest.raises(IncompatibleTableError, match="foo"), h.crdt.alter(c, "foo"):
        c.execute("CREATE UNIQUE INDEX foo_b ON foo (b)")


def test_schema_change_does_not_break_replication(make_db: Any, h: Any) -> None:
    # every peer runs the same migration; changes made after it replicate
    schema = "CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b)"
    peers = [make_db(schema, crr=["foo"]) for _ in range(2)]
    h.write(peers[0], "INSERT INTO foo VALUES (1, 1)")
    h.sync(peers[0], peers[1])
    for p in peers:
        with h.crdt.alter(p, "foo"):
            p.execute("ALTER TABLE foo ADD COLUMN c DEFAULT 'd'")
    h.write(peers[0], "UPDATE foo SET c = 'x' WHERE a = 1")
    h.sync(peers[0], peers[1], 1)
    assert h.rows(peers[1]) == [(1, 1, "x")]


def test_writes_after_refused_as_crr_are_plain(make_db: Any, h: Any) -> None:
    c = make_db("CREATE TABLE t (a PRIMARY KEY, b)")
    with pytest.raises(IncompatibleTableError):
        h.crdt.as_crr(c, "t")
    c.execute("INSERT INTO t VALUES (1, 2)")  # not a CRR: allowed outside a transaction
    assert c.execute("SELECT * FROM t").fetchall() == [(1, 2)]
    with pytest.raises(sqlite3.Error):
        c.execute("SELECT * FROM t__crsql_clock")
