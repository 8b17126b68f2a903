"""Executing a plan, in one transaction: create tables (made CRRs) and their indexes, add
columns (through the engine's ``alter``, so clocks follow), adopt existing tables as CRRs, and
record the applied statements. Any error rolls everything back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import attrs

from corrosion_py import crdt
from corrosion_py.crdt.tables import q
from corrosion_py.errors import CorrosionError
from corrosion_py.sqltext import one_line
from corrosion_py.store.migrations import record
from corrosion_py.store.migrations.plan import Plan
from corrosion_py.store.migrations.statements import SchemaError, SchemaStatement, refusal


@attrs.frozen
class SchemaResult:
    """What `apply_schema` wrote. Empty (``changed`` False) when the database already matched."""

    created_tables: tuple[str, ...] = ()
    added_columns: tuple[tuple[str, str], ...] = ()
    created_indexes: tuple[str, ...] = ()
    adopted_tables: tuple[str, ...] = ()
    recorded: bool = False  # __corro_schema was written (also when only a statement's text moved)

    @property
    def changed(self) -> bool:
        return bool(
            self.created_tables
            or self.added_columns
            or self.created_indexes
            or self.adopted_tables
            or self.recorded
        )


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE (or a savepoint inside the caller's transaction); roll back on any error.

    After a rollback the engine's cache of CRR shapes is dropped: it is keyed by
    ``PRAGMA schema_version``, which a rollback moves back, so a later schema change could
    reach the same number with a different shape.
    """
    own = not conn.in_transaction
    conn.execute("BEGIN IMMEDIATE" if own else "SAVEPOINT corro_schema")
    try:
        yield
    except BaseException:
        if own:
            conn.execute("ROLLBACK")
        else:
            conn.execute("ROLLBACK TO corro_schema")
            conn.execute("RELEASE corro_schema")
        crdt.refresh(conn)
        raise
    conn.execute("COMMIT" if own else "RELEASE corro_schema")


def _run(conn: sqlite3.Connection, stmt: SchemaStatement, sql: str) -> None:
    try:
        conn.execute(sql)
    except sqlite3.Error as e:
        shown = "" if sql == stmt.sql else f" {one_line(sql, 120)!r}"
        raise refusal(stmt, f"SQLite refused{shown}: {e}") from e


def execute(conn: sqlite3.Connection, plan: Plan) -> SchemaResult:
    created: list[str] = []
    added: list[tuple[str, str]] = []
    indexes: list[str] = []
    adopted: list[str] = []
    for tp in plan.tables:
        table = tp.stmt.name
        try:
            if not tp.exists:
                _run(conn, tp.stmt, tp.stmt.sql)
                for ix in tp.indexes:
                    _run(conn, ix, ix.sql)
                crdt.as_crr(conn, table)
                created.append(table)
            elif tp.added or tp.indexes:
                with crdt.alter(conn, table) if tp.is_crr else nullcontext():
                    for col in tp.added:
                        _run(conn, tp.stmt, f"ALTER TABLE {q(table)} ADD COLUMN {col.definition}")
                    for ix in tp.indexes:
                        _run(conn, ix, ix.sql)
            if tp.exists and not tp.is_crr:
                crdt.as_crr(conn, table)
        except SchemaError:
            raise
        except (CorrosionError, sqlite3.Error) as e:
            raise refusal(tp.stmt, f"cannot be a CRR: {e}") from e
        added.extend((table, c.name) for c in tp.added)
        indexes.extend(ix.name for ix in tp.indexes)
        if tp.exists and tp.adopt:
            adopted.append(table)
    recorded = record.write(conn, plan.records, plan.recorded)
    return SchemaResult(tuple(created), tuple(added), tuple(indexes), tuple(adopted), recorded)
