"""cr-sqlite's SQL surface, so its users' habits carry over: SQL functions and ``crsql_changes``.

``crsql_changes`` is a TEMP view (a union over every CRR) with an INSTEAD OF INSERT trigger that
merges each inserted row; it is rebuilt on this connection whenever a CRR is created or altered
through the engine (call `register` again after another connection changed the schema).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from corrosion_py.crdt.change_rows import changes_sql
from corrosion_py.crdt.crr import after_schema_change, as_crr
from corrosion_py.crdt.merger import merge_in_statement
from corrosion_py.crdt.pk import pack_columns
from corrosion_py.crdt.state import conn_state, has_engine_tables, local_version

_COLUMNS = ("table", "pk", "cid", "val", "col_version", "db_version", "site_id", "cl", "seq")


def _rebuild_view(conn: sqlite3.Connection) -> None:
    st = conn_state(conn)
    if not st.has_view:
        return
    conn.execute("DROP VIEW IF EXISTS temp.crsql_changes")
    body = changes_sql(list(st.crrs(conn).values()))
    conn.execute(f"CREATE TEMP VIEW crsql_changes AS {body}")
    args = ", ".join(f'NEW."{c}"' for c in _COLUMNS)
    conn.execute(
        "CREATE TEMP TRIGGER crsql_changes_insert INSTEAD OF INSERT ON crsql_changes "
        f"BEGIN SELECT crsql_internal_merge({args}); END"
    )


def _enable_view(conn: sqlite3.Connection) -> None:
    st = conn_state(conn)
    if not st.has_view:
        st.has_view = True
        _rebuild_view(conn)


def register(conn: sqlite3.Connection, *, create: bool = True) -> None:
    """Install the SQL functions and the ``crsql_changes`` view on this connection.

    With ``create=False`` (how the sqlite-utils plugin calls it) a database that does not use the
    engine is left untouched until ``crsql_as_crr`` or ``crsql_site_id`` is first called.
    """

    def crsql_as_crr(table: str) -> str:
        _enable_view(conn)
        as_crr(conn, table)
        return "OK"

    def crsql_merge(*row: Any) -> int:
        return merge_in_statement(conn, row)

    conn.create_function("crsql_as_crr", 1, crsql_as_crr)
    conn.create_function("crsql_site_id", 0, lambda: conn_state(conn).site_id)
    conn.create_function(
        "crsql_db_version", 0, lambda: local_version(conn, conn_state(conn).site_id)
    )
    conn.create_function("crsql_pack_columns", -1, pack_columns, deterministic=True)
    conn.create_function("crsql_rows_impacted", 0, lambda: conn_state(conn).rows_impacted)
    conn.create_function("crsql_internal_merge", 9, crsql_merge)
    conn.create_function("crsql_finalize", 0, lambda: "finalized")
    if create or has_engine_tables(conn):
        conn_state(conn).has_view = False
        _enable_view(conn)


after_schema_change.append(_rebuild_view)
