"""Schema files and their additive migration (corrosion_py.store.migrations).

Every refusal is checked twice: the error names the file, the table and the statement, and the
live database (sqlite_master and every row of every table) is exactly as it was before.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corrosion_py import crdt
from corrosion_py.store.migrations import (
    SchemaError,
    SchemaResult,
    SchemaStatement,
    apply_schema,
    load_schema,
)

MACHINES = """\
-- machines, one row per VM
CREATE TABLE machines (
  id TEXT PRIMARY KEY NOT NULL, -- the machine id
  app TEXT,
  region TEXT DEFAULT 'ams'
);
CREATE INDEX machines_app ON machines (app);
"""


def open_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    crdt.init(conn)
    return conn


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = open_db(tmp_path / "node.db")
    yield c
    c.close()


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def snapshot(conn: sqlite3.Connection) -> tuple[list[Any], dict[str, list[Any]]]:
    """sqlite_master and the sorted rows of every table: what a refusal must leave untouched."""
    master = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"
    ).fetchall()
    data = {
        name: sorted(conn.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr)
        for (typ, name, _, _) in master
        if typ == "table"
    }
    return master, data


def tx(conn: sqlite3.Connection, *stmts: str) -> None:
    with crdt.transaction(conn):
        for s in stmts:
            conn.execute(s)


def changes(conn: sqlite3.Connection) -> list[crdt.Change]:
    return list(crdt.changes(conn))


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f'PRAGMA table_xinfo("{table}")')]


# -- applying ----------------------------------------------------------------------------------


def test_new_tables_become_crrs_and_are_recorded(conn: sqlite3.Connection, tmp_path: Path) -> None:
    path = write(tmp_path, "schema.sql", MACHINES)
    result = apply_schema(conn, [str(path)])
    assert result == SchemaResult(
        created_tables=("machines",), created_indexes=("machines_app",), recorded=True
    )
    assert result.changed
    assert crdt.is_crr(conn, "machines")
    rows = conn.execute(
        "SELECT tbl_name, type, name, source FROM __corro_schema ORDER BY type DESC"
    ).fetchall()
    assert rows == [
        ("machines", "table", "machines", str(path)),
        ("machines", "index", "machines_app", str(path)),
    ]
    sql = conn.execute("SELECT sql FROM __corro_schema WHERE type = 'index'").fetchone()[0]
    assert sql == "CREATE INDEX machines_app ON machines (app)"
    tx(conn, "INSERT INTO machines (id, app) VALUES ('m1', 'web')")
    assert {(c.cid, c.val) for c in changes(conn)} == {("app", "web"), ("region", "ams")}


def test_reapply_writes_nothing(conn: sqlite3.Connection, tmp_path: Path) -> None:
    path = write(tmp_path, "schema.sql", MACHINES)
    apply_schema(conn, [path])
    tx(conn, "INSERT INTO machines (id) VALUES ('m1')")
    db_file = tmp_path / "node.db"
    before_bytes, before_total = db_file.read_bytes(), conn.total_changes
    before_version = conn.execute("PRAGMA schema_version").fetchone()[0]
    result = apply_schema(conn, [path])
    assert result == SchemaResult()
    assert not result.changed
    assert conn.total_changes == before_total
    assert conn.execute("PRAGMA schema_version").fetchone()[0] == before_version
    assert db_file.read_bytes() == before_bytes
    assert not conn.in_transaction


def test_reapply_on_a_new_connection_is_a_noop(tmp_path: Path) -> None:
    path = write(tmp_path, "schema.sql", MACHINES)
    first = open_db(tmp_path / "node.db")
    apply_schema(first, [path])
    first.close()
    second = open_db(tmp_path / "node.db")
    assert not apply_schema(second, [path]).changed
    second.close()


def test_directory_sorted_by_name_not_recursive(conn: sqlite3.Connection, tmp_path: Path) -> None:
    d = tmp_path / "schema"
    # b.sql indexes the table of a.sql: applying it first would fail, so order is checked.
    write(d, "b.sql", "CREATE INDEX t_v ON t (v);")
    write(d, "a.sql", "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT);")
    write(d, "notes.txt", "DROP TABLE t;")
    write(d, "sub/c.sql", "CREATE TABLE nested (id INTEGER PRIMARY KEY NOT NULL);")
    stmts = load_schema([d])
    assert [(Path(s.file).name, s.name) for s in stmts] == [("a.sql", "t"), ("b.sql", "t_v")]
    result = apply_schema(conn, [d])
    assert result.created_tables == ("t",)
    assert result.created_indexes == ("t_v",)
    sources = dict(conn.execute("SELECT name, source FROM __corro_schema").fetchall())
    assert sources == {"t": str(d / "a.sql"), "t_v": str(d / "b.sql")}


def test_files_and_directories_mixed(conn: sqlite3.Connection, tmp_path: Path) -> None:
    d = tmp_path / "more"
    write(d, "x.sql", "CREATE TABLE x (id INTEGER PRIMARY KEY NOT NULL);")
    f = write(tmp_path, "main.sql", MACHINES)
    assert apply_schema(conn, [f, d]).created_tables == ("machines", "x")


def test_comments_and_several_statements_per_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "schema.sql",
        "/* header; with a semicolon */\n"
        "CREATE TABLE a (id INTEGER PRIMARY KEY NOT NULL, s TEXT DEFAULT 'x;y'); "
        "CREATE TABLE b (id INTEGER PRIMARY KEY NOT NULL);\n"
        "\n"
        "-- a comment; with a semicolon\n"
        ";;\n"
        "CREATE INDEX\n"
        "  a_s ON a (s) -- trailing comment\n"
        ";\n"
        "-- the end\n",
    )
    stmts = load_schema([path])
    assert [(s.line, s.kind, s.table, s.name) for s in stmts] == [
        (2, "table", "a", "a"),
        (2, "table", "b", "b"),
        (6, "index", "a", "a_s"),
    ]
    assert stmts[0].sql == "CREATE TABLE a (id INTEGER PRIMARY KEY NOT NULL, s TEXT DEFAULT 'x;y')"
    assert stmts[2].sql == "CREATE INDEX\n  a_s ON a (s)"
    assert all(isinstance(s, SchemaStatement) and s.file == str(path) for s in stmts)


def test_empty_schema(conn: sqlite3.Connection, tmp_path: Path) -> None:
    path = write(tmp_path, "empty.sql", "-- nothing yet\n")
    assert load_schema([path]) == []
    before = snapshot(conn)
    assert not apply_schema(conn, [path]).changed
    assert snapshot(conn) == before


def test_if_not_exists_forms(conn: sqlite3.Connection, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "schema.sql",
        "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY NOT NULL, v TEXT);\n"
        "CREATE INDEX IF NOT EXISTS t_v ON t (v);\n",
    )
    assert [(s.kind, s.name) for s in load_schema([path])] == [("table", "t"), ("index", "t_v")]
    result = apply_schema(conn, [path])
    assert result.created_tables == ("t",)
    assert result.created_indexes == ("t_v",)
    assert not apply_schema(conn, [path]).changed
    # The same table written without IF NOT EXISTS is the same schema; only the record moves.
    plain = write(
        tmp_path,
        "schema.sql",
        "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT);\nCREATE INDEX t_v ON t (v);\n",
    )
    result = apply_schema(conn, [plain])
    assert result == SchemaResult(recorded=True)
    assert result.changed


def test_adopt_existing_identical_table(conn: sqlite3.Connection, tmp_path: Path) -> None:
    # Created outside corrosion, written differently (quoting, case, spacing), with data.
    conn.execute(
        'create table "machines" ("id" text primary key not null,app  TEXT, region text '
        "default 'ams')"
    )
    conn.execute("CREATE INDEX machines_app ON machines(app)")
    conn.execute("INSERT INTO machines VALUES ('m1', 'web', 'ams'), ('m2', 'db', 'fra')")
    path = write(tmp_path, "schema.sql", MACHINES)
    result = apply_schema(conn, [path])
    assert result == SchemaResult(adopted_tables=("machines",), recorded=True)
    assert crdt.is_crr(conn, "machines")
    assert sorted(conn.execute("SELECT * FROM machines")) == [
        ("m1", "web", "ams"),
        ("m2", "db", "fra"),
    ]
    # The engine backfilled the rows written before it knew the table.
    assert {(c.cid, c.val) for c in changes(conn) if c.pk == crdt.pack_pk(["m2"])} == {
        ("app", "db"),
        ("region", "fra"),
    }
    assert not apply_schema(conn, [path]).changed


def test_adopt_existing_crr_without_rewriting_it(conn: sqlite3.Connection, tmp_path: Path) -> None:
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT)")
    crdt.as_crr(conn, "t")
    tx(conn, "INSERT INTO t VALUES (1, 'one')")
    master = conn.execute("SELECT * FROM sqlite_master ORDER BY name").fetchall()
    path = write(tmp_path, "t.sql", "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT);")
    assert apply_schema(conn, [path]) == SchemaResult(adopted_tables=("t",), recorded=True)
    after = conn.execute("SELECT * FROM sqlite_master ORDER BY name").fetchall()
    assert [m for m in after if m[2] != "__corro_schema"] == master


def test_recorded_table_that_lost_its_crr_is_made_one_again(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    path = write(tmp_path, "t.sql", "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT);")
    apply_schema(conn, [path])
    crdt.as_table(conn, "t")
    assert apply_schema(conn, [path]) == SchemaResult(adopted_tables=("t",))
    assert crdt.is_crr(conn, "t")


def test_add_columns_to_a_populated_crr(tmp_path: Path) -> None:
    a, b = open_db(tmp_path / "a.db"), open_db(tmp_path / "b.db")
    v1 = write(tmp_path, "v1/schema.sql", MACHINES)
    for c in (a, b):
        apply_schema(c, [v1])
    tx(a, *(f"INSERT INTO machines (id, app) VALUES ('m{i}', 'web')" for i in range(50)))
    crdt.merge(b, changes(a))
    before = changes(a)
    v2 = write(
        tmp_path,
        "v2/schema.sql",
        MACHINES.replace(
            "region TEXT DEFAULT 'ams'\n",
            "region TEXT DEFAULT 'ams',\n"
            "  state TEXT NOT NULL DEFAULT 'created', -- new\n"
            "  size INTEGER /* no default */\n",
        )
        + "CREATE INDEX machines_state ON machines (state);\n",
    )
    traced: list[str] = []
    a.set_trace_callback(traced.append)
    result = apply_schema(a, [v2])
    a.set_trace_callback(None)
    assert result == SchemaResult(
        added_columns=(("machines", "state"), ("machines", "size")),
        created_indexes=("machines_state",),
        recorded=True,
    )
    # No change rows, no version, and no statement read the table's rows.
    assert changes(a) == before
    assert not [s for s in traced if "FROM machines" in s or 'FROM "machines"' in s]
    assert columns(a, "machines") == ["id", "app", "region", "state", "size"]
    assert a.execute("SELECT count(*), min(state), max(state) FROM machines").fetchone() == (
        50,
        "created",
        "created",
    )
    assert a.execute("SELECT app, size FROM machines WHERE id = 'm7'").fetchone() == ("web", None)
    # Writes after the migration replicate the new column to a node that migrated too.
    apply_schema(b, [v2])
    tx(a, "UPDATE machines SET state = 'started', size = 2 WHERE id = 'm7'")
    new = [c for c in changes(a) if c.db_version > max(x.db_version for x in before)]
    assert {(c.cid, c.val) for c in new} == {("state", "started"), ("size", 2)}
    crdt.merge(b, new)
    assert b.execute("SELECT state, size FROM machines WHERE id = 'm7'").fetchone() == (
        "started",
        2,
    )
    assert not apply_schema(a, [v2]).changed
    a.close()
    b.close()


def test_add_column_to_an_adopted_plain_table(conn: sqlite3.Connection, tmp_path: Path) -> None:
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL)")
    conn.execute("INSERT INTO t VALUES (1)")
    path = write(tmp_path, "t.sql", "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT);")
    result = apply_schema(conn, [path])
    assert result == SchemaResult(added_columns=(("t", "v"),), adopted_tables=("t",), recorded=True)
    assert crdt.is_crr(conn, "t")
    assert conn.execute("SELECT * FROM t").fetchall() == [(1, None)]


def test_apply_inside_an_open_transaction(conn: sqlite3.Connection, tmp_path: Path) -> None:
    path = write(tmp_path, "schema.sql", MACHINES)
    conn.execute("BEGIN")
    apply_schema(conn, [path])
    assert conn.in_transaction
    conn.execute("ROLLBACK")
    assert conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE name = 'machines'"
    ).fetchone() == (0,)


# -- refusals: the error names file, table and statement, and nothing changes -----------------

BASE = (
    "CREATE TABLE t (\n"
    "  id INTEGER PRIMARY KEY NOT NULL,\n"
    "  a TEXT,\n"
    "  b INTEGER NOT NULL DEFAULT 0\n"
    ");\n"
    "CREATE INDEX t_a ON t (a);\n"
)

# (id, new schema text, regex of the reason, table named by the error)
MIGRATION_REFUSALS = [
    (
        "drop-column",
        BASE.replace(",\n  b INTEGER NOT NULL DEFAULT 0\n", "\n"),
        r"column 'b' was dropped or renamed",
        "t",
    ),
    (
        "rename-column",
        BASE.replace("a TEXT", "c TEXT").replace("(a)", "(c)"),
        r"'a' was dropped or renamed",
        "t",
    ),
    (
        "change-type",
        BASE.replace("a TEXT", "a BLOB"),
        r"column 'a' changed \(type TEXT -> BLOB\)",
        "t",
    ),
    (
        "add-notnull",
        BASE.replace("a TEXT", "a TEXT NOT NULL DEFAULT ''"),
        r"column 'a' changed \(NOT NULL added",
        "t",
    ),
    (
        "change-default",
        BASE.replace("DEFAULT 0", "DEFAULT 1"),
        r"column 'b' changed \(default 0 -> 1\)",
        "t",
    ),
    (
        "change-pk",
        BASE.replace("  id INTEGER PRIMARY KEY NOT NULL,\n", "  id INTEGER NOT NULL,\n").replace(
            "DEFAULT 0\n", "DEFAULT 0, PRIMARY KEY (id, a)\n"
        ),
        r"column 'a' changed \(primary key no -> column 2\)",
        "t",
    ),
    (
        "reorder",
        BASE.replace(
            "  a TEXT,\n  b INTEGER NOT NULL DEFAULT 0\n",
            "  b INTEGER NOT NULL DEFAULT 0,\n  a TEXT\n",
        ),
        r"columns were reordered",
        "t",
    ),
    (
        "collation",
        BASE.replace("a TEXT", "a TEXT COLLATE NOCASE"),
        r"column 'a' changed \('a TEXT' -> 'a TEXT COLLATE NOCASE'\)",
        "t",
    ),
    (
        "check",
        BASE.replace("DEFAULT 0\n", "DEFAULT 0, CHECK (b >= 0)\n"),
        r"table constraints changed",
        "t",
    ),
    (
        "strict",
        BASE.replace(");\n", ") STRICT;\n", 1),
        r"table options changed \(none -> STRICT\)",
        "t",
    ),
    (
        "add-notnull-no-default",
        BASE.replace("DEFAULT 0\n", "DEFAULT 0,\n  c TEXT NOT NULL\n"),
        r"NOT NULL column 'c' cannot be added without a DEFAULT",
        "t",
    ),
    (
        "add-pk-column",
        BASE.replace("  id INTEGER PRIMARY KEY NOT NULL,\n", "  id INTEGER NOT NULL,\n").replace(
            "DEFAULT 0\n", "DEFAULT 0, k INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (id, k)\n"
        ),
        r"primary key column 'k' cannot be added",
        "t",
    ),
    (
        "drop-table",
        "CREATE TABLE other (id INTEGER PRIMARY KEY NOT NULL);\n",
        r"the table was applied before but is missing from the schema files",
        "t",
    ),
    (
        "drop-index",
        BASE.replace("CREATE INDEX t_a ON t (a);\n", ""),
        r"index 't_a' was applied before but is missing",
        "t",
    ),
    (
        "change-index",
        BASE.replace("ON t (a)", "ON t (a, b)"),
        r"index 't_a' changed \(database has: CREATE INDEX t_a ON t \(a\)\); indexes cannot change",
        "t",
    ),
    (
        "change-index-where",
        BASE.replace("ON t (a)", "ON t (a) WHERE a IS NOT NULL"),
        r"index 't_a' changed",
        "t",
    ),
    ("index-desc", BASE.replace("ON t (a)", "ON t (a DESC)"), r"index 't_a' changed", "t"),
    (
        "non-constant-default",
        BASE.replace("DEFAULT 0\n", "DEFAULT 0,\n  at TEXT DEFAULT CURRENT_TIMESTAMP\n"),
        r"SQLite refused 'ALTER TABLE \"t\" ADD COLUMN at TEXT DEFAULT CURRENT_TIMESTAMP'"
        r".*non-constant default",
        "t",
    ),
]


@pytest.mark.parametrize(
    ("new", "reason", "table"),
    [m[1:] for m in MIGRATION_REFUSALS],
    ids=[m[0] for m in MIGRATION_REFUSALS],
)
def test_migration_refusals_change_nothing(
    conn: sqlite3.Connection, tmp_path: Path, new: str, reason: str, table: str
) -> None:
    apply_schema(conn, [write(tmp_path, "v1.sql", BASE)])
    tx(conn, "INSERT INTO t (id, a) VALUES (1, 'x'), (2, NULL)")
    before = snapshot(conn)
    before_changes = changes(conn)
    path = write(tmp_path, "v2.sql", new)
    with pytest.raises(SchemaError, match=reason) as info:
        apply_schema(conn, [path])
    err = info.value
    assert err.table == table
    assert err.file in (str(path), str(tmp_path / "v1.sql"))
    assert err.statement is not None
    msg = str(err)
    assert "\n" not in msg
    assert msg.startswith(f"{err.file}:") and f"table {table!r}" in msg
    assert " ".join(err.statement.split())[:60] in msg
    assert snapshot(conn) == before
    assert changes(conn) == before_changes
    assert not conn.in_transaction
    # The database still works: the old schema re-applies as a no-op and writes replicate.
    assert not apply_schema(conn, [tmp_path / "v1.sql"]).changed
    tx(conn, "UPDATE t SET a = 'y' WHERE id = 2")


def test_refusal_after_other_changes_rolls_everything_back(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    apply_schema(conn, [write(tmp_path, "v1.sql", BASE)])
    tx(conn, "INSERT INTO t (id, a) VALUES (1, 'x')")
    before = snapshot(conn)
    # A new table and a new column are fine; the last table breaks cr-sqlite's rules, which
    # only the engine sees (at as_crr, after the other changes were made).
    path = write(
        tmp_path,
        "v2.sql",
        BASE.replace("DEFAULT 0\n", "DEFAULT 0,\n  c TEXT\n")
        + "CREATE TABLE fine (id INTEGER PRIMARY KEY NOT NULL);\n"
        + "CREATE INDEX t_b ON t (b);\n"
        + "CREATE TABLE nopk (a TEXT, b TEXT);\n",
    )
    with pytest.raises(SchemaError, match="a primary key is required") as info:
        apply_schema(conn, [path])
    assert info.value.table == "nopk"
    assert info.value.line == 10
    assert info.value.statement == "CREATE TABLE nopk (a TEXT, b TEXT)"
    assert str(info.value).startswith(f"{path}:10: table 'nopk': cannot be a CRR:")
    assert snapshot(conn) == before
    # The engine's view of the CRRs is not stale after the rollback.
    tx(conn, "INSERT INTO t (id, a) VALUES (2, 'y')")
    assert {c.cid for c in changes(conn) if c.pk == crdt.pack_pk([2])} == {"a", "b"}


@pytest.mark.parametrize(
    ("ddl", "reason"),
    [
        ("CREATE TABLE n (a TEXT, b TEXT)", "a primary key is required"),
        ("CREATE TABLE n (a TEXT PRIMARY KEY, b TEXT)", "must be declared NOT NULL"),
        ("CREATE TABLE n (a INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL)", "AUTOINCREMENT"),
        (
            "CREATE TABLE n (a INTEGER PRIMARY KEY NOT NULL, b TEXT NOT NULL)",
            "NOT NULL column 'b' needs a DEFAULT",
        ),
    ],
)
def test_new_table_the_engine_refuses(
    conn: sqlite3.Connection, tmp_path: Path, ddl: str, reason: str
) -> None:
    before = snapshot(conn)
    path = write(tmp_path, "n.sql", ddl + ";\n")
    with pytest.raises(SchemaError, match=reason) as info:
        apply_schema(conn, [path])
    assert (info.value.file, info.value.table, info.value.statement) == (str(path), "n", ddl)
    assert snapshot(conn) == before


# (id, statement, regex of the reason, table named by the error or None)
STATEMENT_REFUSALS = [
    (
        "drop-table",
        "DROP TABLE t",
        r"DROP TABLE statements are not allowed: schema files may only CREATE TABLE and "
        r"CREATE INDEX",
        None,
    ),
    (
        "alter-table",
        "ALTER TABLE t ADD COLUMN c TEXT",
        r"ALTER TABLE statements are not allowed",
        None,
    ),
    ("insert", "INSERT INTO t (id) VALUES (9)", r"INSERT statements are not allowed", None),
    ("pragma", "PRAGMA foreign_keys = ON", r"PRAGMA statements are not allowed", None),
    ("drop-index", "DROP INDEX IF EXISTS t_a", r"DROP INDEX statements are not allowed", None),
    ("unique-index", "CREATE UNIQUE INDEX t_u ON t (a)", r"unique indexes are not allowed", None),
    ("view", "CREATE VIEW v AS SELECT * FROM t", r"views are not allowed", None),
    (
        "trigger",
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END",
        r"triggers are not allowed",
        None,
    ),
    ("virtual", "CREATE VIRTUAL TABLE f USING fts5(x)", r"virtual tables are not allowed", None),
    (
        "temp",
        "CREATE TEMP TABLE x (id INTEGER PRIMARY KEY NOT NULL)",
        r"temporary tables are not allowed",
        None,
    ),
    (
        "temp-schema",
        "CREATE TABLE temp.x (id INTEGER PRIMARY KEY NOT NULL)",
        r"only the main schema",
        None,
    ),
    (
        "ctas",
        "CREATE TABLE x AS SELECT * FROM t",
        r"CREATE TABLE \.\.\. AS SELECT is not allowed",
        None,
    ),
    (
        "foreign-key",
        "CREATE TABLE x (id INTEGER PRIMARY KEY NOT NULL, t_id INTEGER REFERENCES t (id))",
        r"foreign keys are not allowed",
        "x",
    ),
    (
        "foreign-key-table",
        "CREATE TABLE x (id INTEGER PRIMARY KEY NOT NULL, t_id INTEGER, "
        "FOREIGN KEY (t_id) REFERENCES t (id))",
        r"foreign keys are not allowed",
        "x",
    ),
    (
        "unique-column",
        "CREATE TABLE x (id INTEGER PRIMARY KEY NOT NULL, u TEXT UNIQUE)",
        r"UNIQUE constraints are not allowed",
        "x",
    ),
    (
        "unique-constraint",
        "CREATE TABLE x (id INTEGER PRIMARY KEY NOT NULL, u TEXT, v TEXT, UNIQUE (u, v))",
        r"UNIQUE constraints are not allowed",
        "x",
    ),
    (
        "twice",
        "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY NOT NULL)",
        r"table 't' is defined twice \(first at .*base.sql:1\)",
        "t",
    ),
    ("index-twice", "CREATE INDEX t_a ON t (b)", r"index 't_a' is defined twice", "t"),
    (
        "reserved-corro",
        "CREATE TABLE __corro_x (id INTEGER PRIMARY KEY NOT NULL)",
        r"reserved",
        None,
    ),
    (
        "reserved-crsql",
        "CREATE TABLE t__crsql_clock (id INTEGER PRIMARY KEY NOT NULL)",
        r"reserved",
        None,
    ),
    (
        "no-such-table",
        "CREATE INDEX x_a ON nope (a)",
        r"SQLite cannot execute it: no such table: main.nope",
        None,
    ),
    (
        "syntax",
        "CREATE TABLE x (id INTEGER PRIMARY KEY NOT NULL,)",
        r"SQLite cannot execute it: near \"\)\": syntax error",
        "x",
    ),
]


@pytest.mark.parametrize(
    ("stmt", "reason", "table"),
    [s[1:] for s in STATEMENT_REFUSALS],
    ids=[s[0] for s in STATEMENT_REFUSALS],
)
def test_statement_refusals(
    conn: sqlite3.Connection, tmp_path: Path, stmt: str, reason: str, table: str | None
) -> None:
    base = write(tmp_path, "base.sql", BASE)
    apply_schema(conn, [base])
    before = snapshot(conn)
    path = write(tmp_path, "extra.sql", f"-- line 1\n\n  {stmt};\n")
    with pytest.raises(SchemaError, match=reason) as info:
        load_schema([base, path])
    err = info.value
    assert (err.file, err.line, err.table, err.statement) == (str(path), 3, table, stmt)
    assert str(err).startswith(f"{path}:3: ")
    assert " ".join(stmt.split())[:60] in str(err)
    with pytest.raises(SchemaError, match=reason):
        apply_schema(conn, [base, path])
    assert snapshot(conn) == before


def test_index_in_database_but_not_in_files(conn: sqlite3.Connection, tmp_path: Path) -> None:
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT)")
    conn.execute("CREATE INDEX t_v ON t (v)")
    before = snapshot(conn)
    path = write(tmp_path, "t.sql", "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT);")
    with pytest.raises(SchemaError, match="index 't_v' exists in the database but not in the"):
        apply_schema(conn, [path])
    assert snapshot(conn) == before


def test_existing_object_of_another_kind(conn: sqlite3.Connection, tmp_path: Path) -> None:
    conn.execute("CREATE TABLE base (id INTEGER PRIMARY KEY NOT NULL)")
    conn.execute("CREATE VIEW t AS SELECT * FROM base")
    before = snapshot(conn)
    path = write(tmp_path, "t.sql", "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL);")
    with pytest.raises(SchemaError, match="already used by a view"):
        apply_schema(conn, [path])
    assert snapshot(conn) == before


def test_table_name_differing_in_case(conn: sqlite3.Connection, tmp_path: Path) -> None:
    conn.execute("CREATE TABLE T (id INTEGER PRIMARY KEY NOT NULL)")
    path = write(tmp_path, "t.sql", "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL);")
    with pytest.raises(SchemaError, match="names differ in case"):
        apply_schema(conn, [path])


# -- files that cannot be read or parsed -------------------------------------------------------


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="no such file or directory") as info:
        load_schema([tmp_path / "nope.sql"])
    assert info.value.file == str(tmp_path / "nope.sql")
    assert str(info.value) == f"{tmp_path / 'nope.sql'}: no such file or directory"
    with pytest.raises(SchemaError, match="no such file or directory"):
        load_schema([tmp_path / "nodir"])


def test_invalid_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.sql", b"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL); \xff\xfe")
    with pytest.raises(SchemaError, match="not valid UTF-8") as info:
        load_schema([path])
    assert info.value.file == str(path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs file permissions")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "secret.sql", "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL);")
    path.chmod(0)
    try:
        with pytest.raises(SchemaError, match="cannot read file") as info:
            load_schema([path])
        assert info.value.file == str(path)
    finally:
        path.chmod(0o644)


def test_syntax_error_names_file_and_line(conn: sqlite3.Connection, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "schema.sql",
        "CREATE TABLE ok (id INTEGER PRIMARY KEY NOT NULL);\n\n"
        "CREATE TABLE bad (\n  id INTEGER PRIMARY KEY NOT NULL\n  v TEXT\n);\n",
    )
    before = snapshot(conn)
    with pytest.raises(SchemaError, match=r"syntax error") as info:
        apply_schema(conn, [path])
    assert (info.value.file, info.value.line, info.value.table) == (str(path), 3, "bad")
    assert str(info.value).startswith(f"{path}:3: table 'bad': SQLite cannot execute it")
    assert snapshot(conn) == before


def test_incomplete_statement_at_end(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "schema.sql",
        "CREATE TABLE a (id INTEGER PRIMARY KEY NOT NULL);\nCREATE TABLE b (id INTEGER\n",
    )
    with pytest.raises(SchemaError, match=r"incomplete statement .*missing ';'") as info:
        load_schema([path])
    assert (info.value.file, info.value.line) == (str(path), 2)


def test_unterminated_string_is_incomplete(tmp_path: Path) -> None:
    path = write(tmp_path, "schema.sql", "CREATE TABLE a (id TEXT DEFAULT 'x);\n")
    with pytest.raises(SchemaError, match="incomplete statement"):
        load_schema([path])
