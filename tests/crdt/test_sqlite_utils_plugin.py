"""The sqlite-utils plugin: registered through the `sqlite_utils` entry point of the installed
package, it gives every `sqlite_utils.Database` the engine's SQL functions."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import sqlite_utils

from corrosion_py import crdt


def test_plugin_is_loaded_from_the_entry_point() -> None:
    from sqlite_utils.plugins import get_plugins

    ours = [p for p in get_plugins() if p["name"] == "corrosion_py"]
    assert ours and ours[0]["hooks"] == ["prepare_connection"]


def test_plain_database_is_left_untouched(tmp_path: Path) -> None:
    db = sqlite_utils.Database(tmp_path / "plain.db")
    db["x"].insert({"id": 1})
    assert db.execute("SELECT crsql_pack_columns(1, 'a')").fetchone()[0] == bytes.fromhex(
        "0209010b0161"
    )
    assert db.table_names() == ["x"]


def test_crsql_as_crr_through_sqlite_utils(tmp_path: Path) -> None:
    db = sqlite_utils.Database(tmp_path / "crr.db")
    db.execute("CREATE TABLE foo (id INTEGER PRIMARY KEY NOT NULL, b TEXT)")
    assert db.execute("SELECT crsql_as_crr('foo')").fetchone()[0] == "OK"
    assert crdt.is_crr(db.conn, "foo")
    with crdt.transaction(db.conn):
        db.conn.execute("INSERT INTO foo VALUES (1, 'x')")
    rows = db.execute('SELECT "table", cid, val, cl FROM crsql_changes').fetchall()
    assert rows == [("foo", "b", "x", 1)]
    assert len(db.execute("SELECT crsql_site_id()").fetchone()[0]) == 16


def test_sqlite_utils_writes_outside_a_transaction_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "crr.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE foo (id INTEGER PRIMARY KEY NOT NULL, b TEXT)")
    crdt.as_crr(conn, "foo")
    conn.close()
    db = sqlite_utils.Database(path)
    try:
        db["foo"].insert({"id": 3, "b": "y"})
    except sqlite3.IntegrityError as exc:
        assert "outside crdt.transaction()" in str(exc)
    else:
        raise AssertionError("an untracked write to a CRR went through")
    assert db.execute("SELECT count(*) FROM foo").fetchone()[0] == 0


def test_sqlite_utils_cli_sees_the_functions(tmp_path: Path) -> None:
    path = tmp_path / "cli.db"
    sqlite_utils.Database(path)["x"].insert({"id": 1})
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sqlite_utils",
            "query",
            str(path),
            "select hex(crsql_pack_columns(42)) as p",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "01092A" in out


def test_crsql_rows_impacted_counts_per_transaction(tmp_path: Path) -> None:
    src = sqlite3.connect(tmp_path / "src.db", isolation_level=None)
    dst = sqlite3.connect(tmp_path / "dst.db", isolation_level=None)
    for conn in (src, dst):
        conn.execute("CREATE TABLE foo (id INTEGER PRIMARY KEY NOT NULL, b)")
        crdt.register(conn)
        conn.execute("SELECT crsql_as_crr('foo')")
    with crdt.transaction(src):
        src.execute("INSERT INTO foo VALUES (1, 1), (2, 2)")
    rows = src.execute("SELECT * FROM crsql_changes").fetchall()
    dst.execute("BEGIN")
    dst.executemany("INSERT INTO crsql_changes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    assert dst.execute("SELECT crsql_rows_impacted()").fetchone()[0] == 2
    dst.execute("COMMIT")
    # an autocommit insert is a transaction of its own: the count restarts
    dst.execute("INSERT INTO crsql_changes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows[0])
    assert dst.execute("SELECT crsql_rows_impacted()").fetchone()[0] == 0
    assert dst.execute("SELECT * FROM foo").fetchall() == [(1, 1), (2, 2)]


def test_old_triggers_are_replaced_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE foo (id INTEGER PRIMARY KEY NOT NULL, b)")
    crdt.as_crr(conn, "foo")
    # Simulate a database written by an engine whose triggers were different.
    conn.execute("DROP TRIGGER foo__crsql_itrig")
    conn.execute("CREATE TRIGGER foo__crsql_itrig AFTER INSERT ON foo BEGIN SELECT 1; END")
    conn.execute("UPDATE crsql_master SET value = 0 WHERE key = 'corrosion_py.triggers_version'")
    conn.close()
    conn = sqlite3.connect(path, isolation_level=None)
    with crdt.transaction(conn) as tx:
        conn.execute("INSERT INTO foo VALUES (1, 'x')")
    assert tx.version == 1
    assert [(c.cid, c.val) for c in crdt.changes(conn)] == [("b", "x")]
