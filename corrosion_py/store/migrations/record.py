"""The applied schema, recorded in ``__corro_schema``: one row per table and index (its table,
kind, name, statement and source file), in the order applied.

The record is what makes a dropped table or index detectable (it is in the record but no longer
in the files) and what the HTTP API's migrations apply new statements on top of. It is written
in the transaction that applies the schema, and not at all when nothing changed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

import attrs

SCHEMA_TABLE = "__corro_schema"
SCHEMA_TABLE_DDL = (
    f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (tbl_name TEXT NOT NULL, type TEXT NOT NULL, "
    "name TEXT NOT NULL, sql TEXT NOT NULL, source TEXT NOT NULL, "
    "PRIMARY KEY (tbl_name, type, name))"
)

Key = tuple[str, str, str]
"""(table, kind, name) of a recorded statement."""
Entry = tuple[str, str]
"""(sql, source) of a recorded statement."""


@attrs.frozen
class Recorded:
    """One recorded statement."""

    table: str
    kind: str
    name: str
    sql: str
    source: str


def exists(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE name = ? COLLATE NOCASE", (SCHEMA_TABLE,)
    ).fetchone()
    return row is not None


def read(conn: sqlite3.Connection) -> list[Recorded]:
    """Every statement applied before, in the order applied (none before the first schema)."""
    if not exists(conn):
        return []
    rows = conn.execute(
        f"SELECT tbl_name, type, name, sql, source FROM {SCHEMA_TABLE} ORDER BY rowid"
    )
    return [Recorded(str(t), str(k), str(n), str(q), str(s)) for t, k, n, q, s in rows]


def write(
    conn: sqlite3.Connection, records: Mapping[Key, Entry], before: Mapping[Key, Entry]
) -> bool:
    """Make ``__corro_schema`` hold exactly ``records`` (``before`` is what it holds now), in
    the caller's transaction; write nothing (and return False) when it does already."""
    if records == before:
        return False
    conn.execute(SCHEMA_TABLE_DDL)
    stale = [key for key in before if key not in records]
    conn.executemany(
        f"DELETE FROM {SCHEMA_TABLE} WHERE tbl_name = ? AND type = ? AND name = ?", stale
    )
    rows = [key + value for key, value in records.items() if before.get(key) != value]
    conn.executemany(
        f"INSERT INTO {SCHEMA_TABLE} (tbl_name, type, name, sql, source) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (tbl_name, type, name) DO UPDATE SET sql = excluded.sql, "
        "source = excluded.source",
        rows,
    )
    return True
