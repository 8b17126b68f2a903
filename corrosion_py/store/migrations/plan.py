"""Planning a schema against the live database (reads only): what to create, which columns to
add, which tables to adopt as CRRs, and every refusal, before anything is written.

An existing table must match its statement column for column (name, declared type, NOT NULL,
DEFAULT, primary key, the rest of the definition), with new columns only at the end (not in the
primary key, and with a DEFAULT when NOT NULL); its constraints and options cannot change. An
index cannot change, and no table or index recorded before, nor an index of a schema table, can
disappear.
"""

from __future__ import annotations

import sqlite3

import attrs

from corrosion_py import crdt
from corrosion_py.crdt.tables import q
from corrosion_py.sqltext import one_line
from corrosion_py.store.migrations import record
from corrosion_py.store.migrations.loading import Loaded
from corrosion_py.store.migrations.shapes import Column, index_shape, live_object, table_shape
from corrosion_py.store.migrations.statements import SchemaError, SchemaStatement, refusal


@attrs.define
class TablePlan:
    """What applying one table's statement (and its indexes) takes."""

    stmt: SchemaStatement
    exists: bool
    is_crr: bool
    adopt: bool
    added: list[Column] = attrs.Factory(list)
    indexes: list[SchemaStatement] = attrs.Factory(list)


@attrs.define
class Plan:
    """Every table's plan, and the rows ``__corro_schema`` must hold afterwards and holds now."""

    tables: list[TablePlan]
    records: dict[record.Key, record.Entry]
    recorded: dict[record.Key, record.Entry]


def plan(conn: sqlite3.Connection, loaded: Loaded) -> Plan:
    """The plan bringing the live database to the loaded schema; `SchemaError` if refused."""
    recorded = {(r.table, r.kind, r.name): (r.sql, r.source) for r in record.read(conn)}
    records: dict[record.Key, record.Entry] = {
        (s.table, s.kind, s.name): (s.sql, s.file) for s in loaded.statements
    }

    file_tables = {s.name for s in loaded.statements if s.kind == "table"}
    file_indexes = {s.name for s in loaded.statements if s.kind == "index"}
    for (tbl, typ, name), (sql, source) in recorded.items():
        missing = (typ == "table" and name not in file_tables) or (
            typ == "index" and name not in file_indexes
        )
        if missing:
            what = "the table" if typ == "table" else f"index {name!r}"
            raise SchemaError(
                f"{what} was applied before but is missing from the schema files "
                "(tables and indexes cannot be dropped)",
                file=source,
                table=tbl,
                statement=sql,
            )

    tables: dict[str, TablePlan] = {}
    for stmt in loaded.statements:
        if stmt.kind == "table":
            tables[stmt.name] = _plan_table(conn, loaded.scratch, stmt, recorded)
        else:
            table_plan = tables[stmt.table]
            if _plan_index(conn, loaded.scratch, stmt):
                table_plan.indexes.append(stmt)
    for table_plan in tables.values():
        if table_plan.exists:
            _check_live_indexes(conn, table_plan, file_indexes)
    return Plan(list(tables.values()), records, recorded)


def _plan_table(
    conn: sqlite3.Connection,
    scratch: sqlite3.Connection,
    stmt: SchemaStatement,
    recorded: dict[record.Key, record.Entry],
) -> TablePlan:
    live = live_object(conn, stmt.name)
    if live is None:
        return TablePlan(stmt, exists=False, is_crr=False, adopt=False)
    typ, live_name = live
    if typ != "table":
        raise refusal(stmt, f"the name is already used by a {typ} in the database")
    if live_name != stmt.name:
        raise refusal(stmt, f"the database has this table as {live_name!r} (names differ in case)")
    try:
        want = table_shape(scratch, stmt.name)
        have = table_shape(conn, stmt.name)
    except ValueError as e:
        raise refusal(stmt, str(e)) from None
    dropped = [n for n in have.names if n not in want.names]
    if dropped:
        raise refusal(
            stmt,
            f"column {dropped[0]!r} was dropped or renamed (columns can only be added at the end)",
        )
    if want.names[: len(have.names)] != have.names:
        raise refusal(stmt, "columns were reordered (new columns can only be added at the end)")
    pairs = list(zip(have.columns, want.columns, strict=False))
    for old, new in pairs:
        diffs = old.differences(new)
        if diffs:
            raise refusal(
                stmt, f"column {old.name!r} changed ({', '.join(diffs)}); columns cannot change"
            )
    added = list(want.columns[len(have.columns) :])
    for col in added:
        if col.pk:
            raise refusal(stmt, f"primary key column {col.name!r} cannot be added")
        if col.notnull and col.default is None:
            raise refusal(stmt, f"NOT NULL column {col.name!r} cannot be added without a DEFAULT")
    for old, new in pairs:
        if old.norm != new.norm:
            raise refusal(
                stmt,
                f"column {old.name!r} changed ({old.definition!r} -> {new.definition!r}); "
                "columns cannot change",
            )
    if have.constraints != want.constraints:
        raise refusal(stmt, "table constraints changed; they cannot change")
    if have.options != want.options:
        raise refusal(
            stmt,
            f"table options changed ({' '.join(have.options) or 'none'} -> "
            f"{' '.join(want.options) or 'none'}); they cannot change",
        )
    is_crr = crdt.is_crr(conn, stmt.name)
    adopt = not is_crr or (stmt.name, "table", stmt.name) not in recorded
    return TablePlan(stmt, exists=True, is_crr=is_crr, adopt=adopt, added=added)


def _plan_index(
    conn: sqlite3.Connection,
    scratch: sqlite3.Connection,
    stmt: SchemaStatement,
) -> bool:
    """Whether the index must be created; refuse an index whose definition changed."""
    live = live_object(conn, stmt.name)
    if live is None:
        return True
    typ, live_name = live
    if typ != "index":
        raise refusal(stmt, f"the name {stmt.name!r} is already used by a {typ} in the database")
    old, new = index_shape(conn, live_name), index_shape(scratch, stmt.name)
    if live_name != stmt.name or not old.same_as(new):
        sql = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (live_name,)
        ).fetchone()[0]
        raise refusal(
            stmt,
            f"index {stmt.name!r} changed (database has: {one_line(str(sql), 120)}); "
            "indexes cannot change",
        )
    return False


def _check_live_indexes(
    conn: sqlite3.Connection, table_plan: TablePlan, file_indexes: set[str]
) -> None:
    """An index of a schema table that is in the database but not in the files would have to be
    dropped: refused, as a dropped index is."""
    for row in conn.execute(f"PRAGMA index_list({q(table_plan.stmt.name)})").fetchall():
        name, origin = row[1], row[3]
        if origin == "c" and name not in file_indexes:
            raise refusal(
                table_plan.stmt,
                f"index {name!r} exists in the database but not in the schema files "
                "(indexes cannot be dropped)",
            )
