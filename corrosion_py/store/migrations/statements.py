"""What a schema statement is, and which ones a schema may hold.

A schema holds ``CREATE TABLE`` (with or without ``IF NOT EXISTS``) and non-unique
``CREATE INDEX`` statements, in the main schema, under names that are not reserved for
corrosion, the CRR engine or SQLite. Everything else is refused here, by its first words, before
SQLite runs it; what needs SQLite to tell (foreign keys, unique constraints) is refused while
loading.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import attrs

from corrosion_py.errors import CorrosionError
from corrosion_py.sqltext import dequote, one_line, tokens

Kind = Literal["table", "index"]


class SchemaError(CorrosionError):
    """A schema file cannot be read or applied; nothing was changed in the database.

    The message is one line naming the file (and line), the table and the statement, so that the
    CLI can print it as it is.
    """

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        line: int | None = None,
        table: str | None = None,
        statement: str | None = None,
    ) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        self.table = table
        self.statement = statement
        where = "" if file is None else (f"{file}:{line}: " if line is not None else f"{file}: ")
        what = "" if table is None else f"table {table!r}: "
        stmt = "" if statement is None else f" (statement: {one_line(statement)})"
        super().__init__(f"{where}{what}{reason}{stmt}")


@attrs.frozen
class SchemaStatement:
    """One statement of a schema file: where it is, what it creates and on which table."""

    file: str
    line: int
    sql: str
    kind: Kind
    table: str
    name: str


@attrs.frozen
class SchemaText:
    """Schema statements given as text instead of a file. ``name`` stands for the file: in
    messages and as the source recorded in ``__corro_schema``."""

    name: str
    text: str


Source = str | Path | SchemaText


def refusal(stmt: SchemaStatement, reason: str) -> SchemaError:
    """The error refusing ``stmt``, naming its file, line, table and text."""
    return SchemaError(reason, file=stmt.file, line=stmt.line, table=stmt.table, statement=stmt.sql)


RESERVED = re.compile(r"^(?:__corro_|crsql_|sqlite_)|__crsql_", re.IGNORECASE)
_ONLY = "schema files may only CREATE TABLE and CREATE INDEX"
_REFUSED_CREATE = {
    "TEMP": "temporary tables are not allowed",
    "TEMPORARY": "temporary tables are not allowed",
    "UNIQUE": "unique indexes are not allowed (a CRR may only be unique on its primary key)",
    "VIRTUAL": f"virtual tables are not allowed: {_ONLY}",
    "VIEW": f"views are not allowed: {_ONLY}",
    "TRIGGER": f"triggers are not allowed: {_ONLY}",
}


def classify(sql: str) -> tuple[Kind, str | None]:
    """The kind of a statement and the name it creates (None if it cannot be told: SQLite will
    then report the syntax error); raise the reason (a str in ValueError) when it is refused."""
    toks = tokens(sql)
    words = [t.norm for t in toks[:2]]
    if words[0] != "CREATE":
        head = " ".join(words) if words[0] in ("DROP", "ALTER") else words[0]
        raise ValueError(f"{head} statements are not allowed: {_ONLY}")
    second = words[1] if len(words) > 1 else ""
    refused = _REFUSED_CREATE.get(second)
    if refused is not None:
        raise ValueError(refused)
    if second not in ("TABLE", "INDEX"):
        raise ValueError(f"CREATE {second} is not allowed: {_ONLY}")
    kind: Kind = "table" if second == "TABLE" else "index"
    i = 2
    if [t.norm for t in toks[2:5]] == ["IF", "NOT", "EXISTS"]:
        i = 5
    if i >= len(toks) or toks[i].kind not in ("word", "ident", "string"):
        return kind, None
    name = dequote(toks[i].text)
    if i + 2 < len(toks) and toks[i + 1].text == ".":
        if name.lower() != "main":
            raise ValueError(f"only the main schema can be used, not {name!r}")
        i += 2
        name = dequote(toks[i].text)
    if kind == "table" and i + 1 < len(toks) and toks[i + 1].norm == "AS":
        raise ValueError("CREATE TABLE ... AS SELECT is not allowed: declare the columns")
    if RESERVED.search(name):
        raise ValueError(f"the name {name!r} is reserved for corrosion and the CRR engine")
    return kind, name


def key(sql: str) -> tuple[str, str] | None:
    """(kind, lower-cased name) of what a statement creates; None when that cannot be told or
    the statement is refused (loading it then says why, naming the statement)."""
    try:
        kind, name = classify(sql)
    except ValueError:
        return None
    return None if name is None else (kind, name.lower())
