"""Loading a schema: files (or texts) -> checked statements, each run in a scratch database.

Every statement runs, in order, in a scratch in-memory database, so SQLite itself judges its
syntax and reports what it creates; the scratch database then holds the wanted schema, whose
shapes planning compares with the live database's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import attrs

from corrosion_py.crdt.tables import q
from corrosion_py.sqltext import statements
from corrosion_py.store.migrations.shapes import objects
from corrosion_py.store.migrations.statements import (
    SchemaError,
    SchemaStatement,
    SchemaText,
    Source,
    classify,
)


@attrs.frozen
class Loaded:
    """The statements of a schema, and the scratch database holding what they create."""

    statements: tuple[SchemaStatement, ...]
    scratch: sqlite3.Connection


def split(text: str, file: str) -> list[tuple[int, str]]:
    """Cut a file into (1-based line, statement) pairs (comments around statements dropped);
    refuse a last statement without its semicolon."""
    out = []
    for stmt in statements(text):
        if not stmt.terminated:
            raise SchemaError(
                "incomplete statement at the end of the file (missing ';'?)",
                file=file,
                line=stmt.line,
                statement=stmt.text,
            )
        out.append((stmt.line, stmt.text))
    return out


def _files(paths: Sequence[Source]) -> list[Path | SchemaText]:
    out: list[Path | SchemaText] = []
    for given in paths:
        if isinstance(given, SchemaText):
            out.append(given)
            continue
        path = Path(given)
        if path.is_dir():
            try:
                children = sorted(p for p in path.iterdir() if p.suffix == ".sql" and p.is_file())
            except OSError as e:
                raise SchemaError(
                    f"cannot read directory: {e.strerror or e}", file=str(path)
                ) from e
            out.extend(children)
        elif path.exists():
            out.append(path)
        else:
            raise SchemaError("no such file or directory", file=str(path))
    return out


def _read(path: Path | SchemaText) -> str:
    if isinstance(path, SchemaText):
        return path.text
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SchemaError(f"not valid UTF-8 (byte {e.start})", file=str(path)) from e
    except OSError as e:
        raise SchemaError(f"cannot read file: {e.strerror or e}", file=str(path)) from e


@contextmanager
def load(paths: Sequence[Source]) -> Iterator[Loaded]:
    """Run every statement of every file, in order, in a scratch in-memory database."""
    scratch = sqlite3.connect(":memory:", isolation_level=None)
    try:
        statements: list[SchemaStatement] = []
        seen: dict[str, SchemaStatement] = {}  # lower-cased name -> where it was defined
        for path in _files(paths):
            file = path.name if isinstance(path, SchemaText) else str(path)
            for line, sql in split(_read(path), file):
                stmt = _load_statement(scratch, file, line, sql, seen)
                seen[stmt.name.lower()] = stmt
                statements.append(stmt)
        yield Loaded(tuple(statements), scratch)
    finally:
        scratch.close()


def _load_statement(
    scratch: sqlite3.Connection,
    file: str,
    line: int,
    sql: str,
    seen: dict[str, SchemaStatement],
) -> SchemaStatement:
    def refuse(reason: str, table: str | None = None) -> SchemaError:
        return SchemaError(reason, file=file, line=line, table=table, statement=sql)

    try:
        kind, name = classify(sql)
    except ValueError as e:
        raise refuse(str(e)) from None
    if name is not None and name.lower() in seen:
        first = seen[name.lower()]
        raise refuse(
            f"{kind} {name!r} is defined twice (first at {first.file}:{first.line})",
            first.table,
        )
    before = objects(scratch)
    try:
        scratch.execute(sql)
    except sqlite3.Error as e:
        raise refuse(f"SQLite cannot execute it: {e}", name if kind == "table" else None) from e
    new = [m for m in objects(scratch) - before if m[0] == kind]
    if len(new) != 1:
        raise refuse(f"the statement created no {kind} in the main schema")
    _, name, table = new[0]
    if kind == "table":
        if scratch.execute(f"PRAGMA foreign_key_list({q(table)})").fetchall():
            raise refuse("foreign keys are not allowed", table)
        for row in scratch.execute(f"PRAGMA index_list({q(table)})").fetchall():
            if row[2] and row[3] != "pk":
                raise refuse(
                    "UNIQUE constraints are not allowed (a CRR may only be unique on its "
                    "primary key)",
                    table,
                )
    return SchemaStatement(file=file, line=line, sql=sql, kind=kind, table=table, name=name)
