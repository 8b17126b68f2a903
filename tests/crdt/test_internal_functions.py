"""The functions the CRR triggers call, on a connection of the user's own (``crdt.register``,
no authorizer of ours): a top-level call outside a transaction is refused and changes nothing;
inside one it can claim nothing a write of that transaction would not (no argument moves a
version); cr-sqlite's public functions stay callable."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from corrosion_py import crdt

TRIGGER_ONLY = [
    "SELECT crsql_internal_next_db_version()",
    "SELECT crsql_internal_next_seq()",
    "SELECT crsql_internal_reserve_seq(3)",
]


def open_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b TEXT, c TEXT)")
    crdt.register(conn)
    crdt.as_crr(conn, "foo")
    return conn


def seqs(conn: sqlite3.Connection, version: int) -> list[int]:
    return [c.seq for c in crdt.changes(conn, min_version=version, max_version=version)]


@pytest.mark.parametrize("sql", TRIGGER_ONLY)
def test_a_top_level_call_outside_a_transaction_is_refused(tmp_path: Path, sql: str) -> None:
    conn = open_db(tmp_path / "a.db")
    with crdt.transaction(conn) as tx:
        conn.execute("INSERT INTO foo VALUES (1, 'x', 'y')")
    assert tx.version == 1 and seqs(conn, 1) == [0, 1]
    for _ in range(3):
        with pytest.raises(sqlite3.OperationalError, match="user-defined function raised"):
            conn.execute(sql).fetchall()
    assert crdt.db_version(conn) == 1
    # the next transaction gets the next version, and its seqs start at 0 again
    with crdt.transaction(conn) as tx:
        conn.execute("INSERT INTO foo VALUES (2, 'x', 'y')")
    assert tx.version == 2 and seqs(conn, 2) == [0, 1]


def test_inside_a_transaction_no_call_can_move_the_version(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "a.db")
    with pytest.raises(sqlite3.OperationalError, match="wrong number of arguments"):
        conn.execute("SELECT crsql_internal_next_db_version(9223372036854775807)")
    with crdt.transaction(conn) as tx:
        for bad in ["SELECT crsql_internal_reserve_seq(9223372036854775807)",
                    "SELECT crsql_internal_reserve_seq(0)",
                    "SELECT crsql_internal_reserve_seq('x')"]:  # fmt: skip
            with pytest.raises(sqlite3.OperationalError):
                conn.execute(bad).fetchall()
        conn.execute("INSERT INTO foo VALUES (1, 'x', 'y')")
        claimed = conn.execute("SELECT crsql_internal_next_db_version()").fetchone()[0]
    assert claimed == tx.version == crdt.db_version(conn) == 1
    assert seqs(conn, 1) == [0, 1]


def test_the_public_functions_stay_callable(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "a.db")
    assert conn.execute("SELECT crsql_db_version()").fetchone() == (0,)
    assert conn.execute("SELECT crsql_next_db_version()").fetchone() == (1,)
    assert conn.execute("SELECT crsql_increment_and_get_seq()").fetchone() == (0,)
    assert len(conn.execute("SELECT crsql_site_id()").fetchone()[0]) == 16
    # outside a transaction they leave nothing behind for the next one
    with crdt.transaction(conn) as tx:
        conn.execute("INSERT INTO foo VALUES (1, 'x', 'y')")
    assert tx.version == 1 and seqs(conn, 1) == [0, 1]


def test_triggers_of_an_older_engine_are_replaced_by_ones_calling_the_guarded_functions(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    conn = open_db(path)
    old_itrig = conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'foo__crsql_itrig'"
    ).fetchone()[0]
    old_itrig = old_itrig.replace("crsql_internal_next_db_version()", "crsql_next_db_version()")
    conn.execute("DROP TRIGGER foo__crsql_itrig")
    conn.execute(old_itrig)
    conn.execute("UPDATE crsql_master SET value = 1 WHERE key = 'corrosion_py.triggers_version'")
    conn.close()
    conn = sqlite3.connect(path, isolation_level=None)
    crdt.register(conn)
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'foo__crsql_itrig'").fetchone()
    assert "crsql_internal_next_db_version()" in sql[0]
    assert "crsql_next_db_version()" not in sql[0].replace("internal_next_db_version", "")
    with crdt.transaction(conn) as tx:
        conn.execute("INSERT INTO foo VALUES (1, 'x', 'y')")
    assert tx.version == 1
