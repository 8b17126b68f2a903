"""Subscriptions on disk, so they survive an agent restart: one SQLite file next to the store
holding each subscription's SQL, its rows (with their rowids) and its newest changes.

Written by the engine's worker thread only, one transaction per processing batch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import cbor2

from corrosion_py.subs.matcher import Key, Matcher, RowChange

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS subs (id TEXT PRIMARY KEY NOT NULL, sql TEXT NOT NULL, "
    "params BLOB NOT NULL, columns BLOB NOT NULL, next_rowid INTEGER NOT NULL, "
    "change_id INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sub_rows (sub TEXT NOT NULL, rowid INTEGER NOT NULL, "
    "key BLOB NOT NULL, cells BLOB NOT NULL, PRIMARY KEY (sub, rowid)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS sub_changes (sub TEXT NOT NULL, id INTEGER NOT NULL, "
    "kind TEXT NOT NULL, rowid INTEGER NOT NULL, cells BLOB NOT NULL, key BLOB NOT NULL, "
    "PRIMARY KEY (sub, id)) WITHOUT ROWID",
]


@attrs.frozen
class Saved:
    id: str
    sql: str
    params: Any
    columns: list[str]
    next_rowid: int
    change_id: int
    rows: list[tuple[Key, int, tuple[Any, ...]]]
    changes: list[RowChange]


def _enc(value: Any) -> bytes:
    return cbor2.dumps(value)


def _tuple(data: bytes) -> tuple[Any, ...]:
    return tuple(cbor2.loads(data))


class Storage:
    """The subscriptions file. Used from one thread at a time."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        with self.conn:  # sqlite3's context manager commits, or rolls back on an error
            self.conn.execute("BEGIN")
            for ddl in SCHEMA:
                self.conn.execute(ddl)

    def close(self) -> None:
        self.conn.close()

    def create(self, sub_id: str, sql: str, params: Any, matcher: Matcher) -> None:
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.execute(
                "INSERT INTO subs VALUES (?, ?, ?, ?, ?, ?)",
                (sub_id, sql, _enc(params), _enc(matcher.columns), matcher.next_rowid,
                 matcher.change_id),
            )  # fmt: skip
            self.conn.executemany(
                "INSERT INTO sub_rows VALUES (?, ?, ?, ?)",
                ((sub_id, rowid, _enc(key), _enc(cells))
                 for key, (rowid, cells) in matcher.rows.items()),
            )  # fmt: skip

    def record(self, batch: Iterable[tuple[str, Matcher, Sequence[RowChange]]]) -> None:
        """Persist the changes of a processing batch (rows, change log, counters)."""
        with self.conn:
            self.conn.execute("BEGIN")
            for sub_id, matcher, changes in batch:
                if not changes:
                    continue
                for ch in changes:
                    if ch.kind == "delete":
                        self.conn.execute(
                            "DELETE FROM sub_rows WHERE sub = ? AND rowid = ?", (sub_id, ch.rowid)
                        )
                    else:
                        self.conn.execute(
                            "INSERT OR REPLACE INTO sub_rows VALUES (?, ?, ?, ?)",
                            (sub_id, ch.rowid, _enc(ch.key), _enc(ch.cells)),
                        )
                self.conn.executemany(
                    "INSERT OR REPLACE INTO sub_changes VALUES (?, ?, ?, ?, ?, ?)",
                    ((sub_id, c.change_id, c.kind, c.rowid, _enc(c.cells), _enc(c.key))
                     for c in changes),
                )  # fmt: skip
                self.conn.execute(
                    "DELETE FROM sub_changes WHERE sub = ? AND id < ?",
                    (sub_id, matcher.oldest_kept),
                )
                self.conn.execute(
                    "UPDATE subs SET next_rowid = ?, change_id = ?, columns = ? WHERE id = ?",
                    (matcher.next_rowid, matcher.change_id, _enc(matcher.columns), sub_id),
                )

    def delete(self, sub_id: str) -> None:
        with self.conn:
            self.conn.execute("BEGIN")
            for table, column in (("subs", "id"), ("sub_rows", "sub"), ("sub_changes", "sub")):
                self.conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (sub_id,))

    def load(self) -> list[Saved]:
        saved = []
        subs = self.conn.execute(
            "SELECT id, sql, params, columns, next_rowid, change_id FROM subs"
        ).fetchall()
        for sub_id, sql, params, columns, next_rowid, change_id in subs:
            rows = [
                (_tuple(key), rowid, _tuple(cells))
                for rowid, key, cells in self.conn.execute(
                    "SELECT rowid, key, cells FROM sub_rows WHERE sub = ? ORDER BY rowid",
                    (sub_id,),
                )
            ]
            changes = [
                RowChange(kind, rowid, _tuple(cells), cid, _tuple(key))
                for cid, kind, rowid, cells, key in self.conn.execute(
                    "SELECT id, kind, rowid, cells, key FROM sub_changes WHERE sub = ? ORDER BY id",
                    (sub_id,),
                )
            ]
            saved.append(
                Saved(sub_id, sql, cbor2.loads(params), cbor2.loads(columns), next_rowid,
                      change_id, rows, changes)
            )  # fmt: skip
        return saved
