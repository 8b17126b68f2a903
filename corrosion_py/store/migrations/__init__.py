"""The node's user schema: `.sql` files, checked and applied as an additive migration.

Rules (Corrosion's: a schema only grows; each rule has a test in tests/store/migrations/):

- Schema files may only ``CREATE TABLE`` (with or without ``IF NOT EXISTS``) and ``CREATE INDEX``
  (non-unique). Everything else, ``CREATE TABLE ... AS``, temporary tables, foreign keys and
  unique constraints are refused, as is a table or index defined twice.
- A new table is created from the file's statement and made a CRR (the engine refuses tables
  that break cr-sqlite's rules). An existing table must match the file column for column (name,
  declared type, NOT NULL, DEFAULT, primary key, the rest of the definition); columns may only
  be added at the end, and a NOT NULL column needs a DEFAULT. An existing table is adopted (and
  made a CRR if it is not one).
- New indexes are created; an index cannot change or disappear, and neither can a table that
  was applied before (recorded in ``__corro_schema``).
- Everything happens in one transaction, recorded in ``__corro_schema`` in the same one; any
  refusal raises `SchemaError` and changes nothing. Applying the same files twice writes nothing.
- Statements can also come as text (`SchemaText`, named like a file, e.g. ``<api>``), and
  `apply_schema_statements` applies some on top of the schema recorded in the database (the
  HTTP API's migrations): a table or index they define replaces its recorded definition, the
  rest stays as recorded, and the same rules judge the whole.

Theory of operation, one module per step: `statements` says which statements a schema may hold;
`loading` runs them in a scratch in-memory database, so SQLite itself is the parser; `shapes`
reads tables and indexes back with PRAGMAs, from the scratch database and from the live one;
`plan` compares them and decides (reads only); `execute` writes, in one transaction, and
`record` keeps ``__corro_schema``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from corrosion_py.store.migrations import record
from corrosion_py.store.migrations.execute import SchemaResult, execute, write_transaction
from corrosion_py.store.migrations.loading import load, split
from corrosion_py.store.migrations.plan import plan
from corrosion_py.store.migrations.statements import (
    SchemaError,
    SchemaStatement,
    SchemaText,
    Source,
    key,
)

__all__ = [
    "SchemaError",
    "SchemaResult",
    "SchemaStatement",
    "SchemaText",
    "apply_schema",
    "apply_schema_statements",
    "load_schema",
]


def load_schema(paths: Sequence[Source]) -> list[SchemaStatement]:
    """Read and check schema files (each path a file, or a directory of ``*.sql``); raise
    `SchemaError` naming the file and line of the first statement that is refused."""
    with load(paths) as loaded:
        return list(loaded.statements)


def apply_schema(conn: sqlite3.Connection, paths: Sequence[Source]) -> SchemaResult:
    """Bring the live database to the schema of the files, additively and in one transaction.

    ``conn`` is a stdlib connection with ``isolation_level=None`` on which ``crdt.init`` ran. An
    open transaction is joined through a savepoint. Any refusal raises `SchemaError` and rolls
    everything back.
    """
    with load(paths) as loaded, write_transaction(conn):
        return execute(conn, plan(conn, loaded))


def apply_schema_statements(
    conn: sqlite3.Connection, statements: Sequence[str], source: str = "<api>"
) -> SchemaResult:
    """Apply ``statements`` (each a string of one or more statements, a final ``;`` optional) on
    top of the schema recorded in ``__corro_schema``, by `apply_schema`'s rules.

    A table or index they define replaces the recorded statement of that name, in its place (so
    a table can gain columns and keep its indexes after it); new ones go at the end; everything
    else is kept as recorded. The new statements are recorded with ``source`` as their file, so
    they must also reach the schema files before the node restarts with those files (a table
    missing from them is refused as dropped).
    """
    new = [
        (key(sql), SchemaText(source, _terminated(sql)))
        for text in statements
        for _, sql in split(_terminated(text), source)
    ]
    with write_transaction(conn):
        sources: list[SchemaText] = []
        placed: set[int] = set()
        for recorded in record.read(conn):
            wanted = (recorded.kind, recorded.name.lower())
            index = next(
                (i for i, (k, _) in enumerate(new) if k == wanted and i not in placed), None
            )
            if index is None:
                sources.append(SchemaText(recorded.source, _terminated(recorded.sql)))
            else:
                sources.append(new[index][1])
                placed.add(index)
        sources += [text for i, (_, text) in enumerate(new) if i not in placed]
        with load(sources) as loaded:
            return execute(conn, plan(conn, loaded))


def _terminated(sql: str) -> str:
    """One statement text ending with a ``;`` on a line of its own (after any trailing
    comment); an extra empty statement is skipped when it is split."""
    return sql + "\n;\n"
