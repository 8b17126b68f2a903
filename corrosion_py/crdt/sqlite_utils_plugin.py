"""sqlite-utils plugin: every `sqlite_utils.Database` (and the `sqlite-utils` CLI) gets the
engine's SQL functions and, on databases that use the engine, the ``crsql_changes`` view.

Databases that do not use the engine are not modified. Writes to CRR tables still have to go
through `crdt.transaction`, so the CLI's write commands refuse them with a clear message.
"""

from __future__ import annotations

import sqlite3

from sqlite_utils import hookimpl

from corrosion_py.crdt.sql import register


@hookimpl
def prepare_connection(conn: sqlite3.Connection) -> None:
    register(conn, create=False)
