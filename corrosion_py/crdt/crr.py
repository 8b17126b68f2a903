"""Making a table a CRR (`as_crr`), demoting it (`as_table`) and altering it (`alter`).

Adding a column must cost nothing per row: a new column holds its default everywhere, and a row
with no clock for a column merges correctly (cr-sqlite's merge rule: with no local clock for the
column, the incoming change wins). So an alter that only adds columns or indexes writes no clock
rows and scans nothing; only a rebuild, a dropped or a renamed column pays for a pass over the
table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from corrosion_py.crdt.state import ConnState, conn_state
from corrosion_py.crdt.tables import (
    SENTINEL,
    TableInfo,
    check_compatible,
    drop_triggers_ddl,
    is_crr,
    lit,
    metadata_ddl,
    q,
    triggers_ddl,
)
from corrosion_py.crdt.tx import write_scope
from corrosion_py.errors import IncompatibleTableError, UnknownTableError

# Called after a schema change on a connection (`register` refreshes its crsql_changes view).
after_schema_change: list[Callable[[sqlite3.Connection], None]] = []


def _defaults(conn: sqlite3.Connection, table: str) -> dict[str, str]:
    rows = conn.execute(f"PRAGMA table_xinfo({q(table)})").fetchall()
    return {r[1]: (r[4] if r[4] is not None else "NULL") for r in rows}


def _backfill(
    conn: sqlite3.Connection, st: ConnState, info: TableInfo, version: int | None
) -> None:
    """Give every row missing from the lookaside table a key and clocks (cr-sqlite's backfill:
    every column, NULL and defaults included), then clock every column whose value differs from
    its default and has no clock (cr-sqlite's "fill missing columns").

    ``version`` None claims the transaction's next version; an int is used as is (alter).
    """
    t = q(info.name)
    pk_cols = ", ".join(q(p) for p in info.pks)
    match = " AND ".join(f"k.{q(p)} IS b.{q(p)}" for p in info.pks)
    new_rows = conn.execute(
        f"SELECT {pk_cols} FROM {t} b WHERE NOT EXISTS "
        f"(SELECT 1 FROM {info.lookaside} k WHERE {match})"
    ).fetchall()

    def dbv() -> int:
        return st.next_db_version() if version is None else version

    if new_rows:
        marks = ", ".join("?" for _ in info.pks)
        conn.executemany(f"INSERT INTO {info.lookaside} ({pk_cols}) VALUES ({marks})", new_rows)
        key_sql = f"SELECT __crsql_key FROM {info.lookaside} WHERE " + " AND ".join(
            f"{q(p)} IS ?" for p in info.pks
        )
        names = info.cols or (SENTINEL,)
        clocks = []
        for pk in new_rows:
            key = conn.execute(key_sql, pk).fetchone()[0]
            for name in names:
                clocks.append((key, name, dbv(), st.increment_and_get_seq()))
        conn.executemany(
            f"INSERT INTO {info.clock} (key, col_name, col_version, db_version, site_id, seq) "
            "VALUES (?, ?, 1, ?, 0, ?)",
            clocks,
        )
    defaults = _defaults(conn, info.name)
    for col in info.cols:
        if _has_unclocked(conn, info, col, defaults[col], match):
            conn.execute(
                f"INSERT OR IGNORE INTO {info.clock} "
                "(key, col_name, col_version, db_version, site_id, seq) "
                f"SELECT k.__crsql_key, {lit(col)}, 1, ?, 0, crsql_internal_next_seq() "
                f"FROM {t} b JOIN {info.lookaside} k ON {match} "
                f"WHERE b.{q(col)} IS NOT ({defaults[col]}) AND NOT EXISTS (SELECT 1 FROM "
                f"{info.clock} c WHERE c.key = k.__crsql_key AND c.col_name = {lit(col)})",
                (dbv(),),
            )


def _has_unclocked(
    conn: sqlite3.Connection, info: TableInfo, col: str, default: str, match: str
) -> bool:
    """Whether some row holds a non-default value of ``col`` without a clock (so a version is
    only claimed when something is actually written)."""
    row = conn.execute(
        f"SELECT 1 FROM {q(info.name)} b JOIN {info.lookaside} k ON {match} "
        f"WHERE b.{q(col)} IS NOT ({default}) AND NOT EXISTS (SELECT 1 FROM {info.clock} c "
        f"WHERE c.key = k.__crsql_key AND c.col_name = {lit(col)}) LIMIT 1"
    ).fetchone()
    return row is not None


def _install(conn: sqlite3.Connection, info: TableInfo) -> None:
    for ddl in metadata_ddl(info) + drop_triggers_ddl(info.name) + triggers_ddl(info):
        conn.execute(ddl)


def _schema_changed(conn: sqlite3.Connection) -> None:
    for hook in after_schema_change:
        hook(conn)


def as_crr(conn: sqlite3.Connection, table: str) -> None:
    """Turn an existing table into a CRR, backfilling its rows as cr-sqlite's ``crsql_as_crr``
    does.

    Idempotent: on a CRR it re-checks the rules and clocks any rows written around the engine.
    """
    st = conn_state(conn)
    info = check_compatible(conn, table)
    with write_scope(conn, st, sync=False):
        _install(conn, info)
        _backfill(conn, st, info, None)
    _schema_changed(conn)


def as_table(conn: sqlite3.Connection, table: str) -> None:
    """Demote a CRR to a plain table, dropping its clocks, lookaside table and triggers."""
    st = conn_state(conn)
    info = st.crrs(conn).get(table)
    if info is None:
        raise UnknownTableError(f"table {table!r} is not a CRR")
    with write_scope(conn, st, sync=False):
        for ddl in drop_triggers_ddl(table):
            conn.execute(ddl)
        conn.execute(f"DROP TABLE IF EXISTS {info.clock}")
        conn.execute(f"DROP TABLE IF EXISTS {info.lookaside}")
    _schema_changed(conn)


def _rootpage(conn: sqlite3.Connection, table: str) -> int | None:
    row = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return None if row is None else int(row[0])


@contextmanager
def alter(conn: sqlite3.Connection, table: str) -> Iterator[None]:
    """Change a CRR's schema inside the block (ALTER TABLE, CREATE INDEX, a 12-step rebuild).

    On exit the rules are re-checked and the triggers recreated, all in one transaction with the
    block. Adding columns or indexes writes no clock rows and costs the same whatever the row
    count. Dropped or renamed columns lose their metadata (renamed ones are clocked again at the
    current version, as upstream); a rebuilt table is reconciled row by row. Changing the primary
    key is refused. Data written inside the block is not replicated: write data after it.
    """
    st = conn_state(conn)
    before = st.crrs(conn).get(table)
    if before is None or not is_crr(conn, table):
        raise UnknownTableError(f"table {table!r} is not a CRR")
    root = _rootpage(conn, table)
    with write_scope(conn, st, sync=False):
        for ddl in drop_triggers_ddl(table):
            conn.execute(ddl)
        yield
        after = check_compatible(conn, table)
        if after.pks != before.pks:
            raise IncompatibleTableError(
                f"table {table!r}: changing the primary key of a CRR is not supported "
                f"({', '.join(before.pks)} -> {', '.join(after.pks)})"
            )
        removed = [c for c in before.cols if c not in after.cols]
        if removed:
            marks = ", ".join("?" for _ in removed)
            conn.execute(f"DELETE FROM {after.clock} WHERE col_name IN ({marks})", removed)
        _install(conn, after)
        if removed or _rootpage(conn, table) != root:
            _backfill(conn, st, after, st.committed)
    _schema_changed(conn)
