"""What SQLite says about a table or an index, in a form two databases can be compared in.

SQLite itself is the parser: shapes are read back with PRAGMAs (``table_xinfo``,
``index_list``, ``index_xinfo``). Text is only cut where SQLite has no PRAGMA for it: the column
definitions, which ``ALTER TABLE ADD COLUMN`` needs verbatim, the table constraints and options,
and an index's expressions and WHERE; every cut of a column list is cross-checked against
``PRAGMA table_xinfo``.
"""

from __future__ import annotations

import sqlite3

import attrs

from corrosion_py.crdt.tables import q
from corrosion_py.sqltext import Token, dequote, tokens


def live_object(conn: sqlite3.Connection, name: str) -> tuple[str, str] | None:
    """(type, name) of the schema object called ``name`` in any case, None if there is none."""
    row = conn.execute(
        "SELECT type, name FROM sqlite_master WHERE name = ? COLLATE NOCASE", (name,)
    ).fetchone()
    return None if row is None else (row[0], row[1])


def objects(conn: sqlite3.Connection) -> set[tuple[str, str, str]]:
    """(type, name, table) of every object with a definition, SQLite's own excluded."""
    rows = conn.execute(
        "SELECT type, name, tbl_name FROM sqlite_master WHERE sql IS NOT NULL "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    ).fetchall()
    return {(r[0], r[1], r[2]) for r in rows}


@attrs.frozen
class Column:
    """One column: what ``PRAGMA table_xinfo`` says, and its definition's text and tokens."""

    name: str
    type: str
    notnull: bool
    default: tuple[str, ...] | None  # normalized tokens of the DEFAULT expression
    pk: int
    hidden: int
    definition: str  # verbatim column definition, as ADD COLUMN needs it
    norm: tuple[str, ...]

    def differences(self, other: Column) -> list[str]:
        out = []
        if self.type != other.type:
            out.append(f"type {self.type or '(none)'} -> {other.type or '(none)'}")
        if self.notnull != other.notnull:
            out.append("NOT NULL added" if other.notnull else "NOT NULL removed")
        if self.default != other.default:
            out.append(f"default {_show(self.default)} -> {_show(other.default)}")
        if self.pk != other.pk:
            out.append(f"primary key {_pk(self.pk)} -> {_pk(other.pk)}")
        if self.hidden != other.hidden:
            out.append("generated column changed")
        return out


def _pk(position: int) -> str:
    return f"column {position}" if position else "no"


def _show(default: tuple[str, ...] | None) -> str:
    return "none" if default is None else " ".join(default)


@attrs.frozen
class TableShape:
    """A table's columns, table constraints and options (``WITHOUT ROWID``, ``STRICT``)."""

    name: str
    columns: tuple[Column, ...]
    constraints: tuple[tuple[str, ...], ...]
    options: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


_CONSTRAINT_WORDS = frozenset({"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"})


def table_shape(conn: sqlite3.Connection, table: str) -> TableShape:
    """Columns from ``PRAGMA table_xinfo``, each with its definition text cut from the stored
    CREATE TABLE (the cut is checked against the PRAGMA's names)."""
    sql = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()[0]
    toks = tokens(sql)
    open_at = next(i for i, t in enumerate(toks) if t.text == "(" and t.kind == "punct")
    items: list[list[Token]] = [[]]
    depth = 0
    close_at = len(toks)
    for i in range(open_at + 1, len(toks)):
        t = toks[i]
        if t.kind == "punct" and t.text == "(":
            depth += 1
        elif t.kind == "punct" and t.text == ")":
            if depth == 0:
                close_at = i
                break
            depth -= 1
        elif t.kind == "punct" and t.text == "," and depth == 0:
            items.append([])
            continue
        items[-1].append(t)
    defs: list[list[Token]] = []
    constraints: list[tuple[str, ...]] = []
    for it in items:
        if it and it[0].kind == "word" and it[0].norm in _CONSTRAINT_WORDS:
            constraints.append(tuple(t.norm for t in it))
        elif it:
            defs.append(it)
    rows = conn.execute(f"PRAGMA table_xinfo({q(table)})").fetchall()
    if len(defs) != len(rows) or any(
        dequote(d[0].text) != r[1] for d, r in zip(defs, rows, strict=False)
    ):
        raise ValueError("cannot match its column definitions to SQLite's table_xinfo")
    columns = tuple(
        Column(
            name=r[1],
            type=" ".join(str(r[2]).upper().split()),
            notnull=bool(r[3]),
            default=None if r[4] is None else tuple(t.norm for t in tokens(str(r[4]))),
            pk=int(r[5]),
            hidden=int(r[6]),
            definition=sql[d[0].start : d[-1].end],
            norm=tuple(t.norm for t in d),
        )
        for d, r in zip(defs, rows, strict=True)
    )
    options = tuple(t.norm for t in toks[close_at + 1 :])
    return TableShape(table, columns, tuple(constraints), options)


@attrs.frozen
class IndexShape:
    """An index's table, key columns, partial flag and normalized text from ``ON`` onwards."""

    name: str
    table: str
    partial: bool
    columns: tuple[tuple[object, ...], ...]  # (cid, name, desc, collation) of the key columns
    text: tuple[str, ...]  # normalized tokens from ON to the end (expressions, WHERE)

    def same_as(self, other: IndexShape) -> bool:
        if (self.table.lower(), self.partial, self.columns) != (
            other.table.lower(),
            other.partial,
            other.columns,
        ):
            return False
        uses_text = self.partial or any(c[0] == -2 for c in self.columns)
        return not uses_text or self.text == other.text


def index_shape(conn: sqlite3.Connection, name: str) -> IndexShape:
    table, sql = conn.execute(
        "SELECT tbl_name, sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
    ).fetchone()
    partial = any(
        r[1] == name and r[4] for r in conn.execute(f"PRAGMA index_list({q(table)})").fetchall()
    )
    cols = tuple(
        (r[1], r[2], r[3], str(r[4]).upper())
        for r in conn.execute(f"PRAGMA index_xinfo({q(name)})").fetchall()
        if r[5]
    )
    toks = tokens(sql)
    on = next((i for i, t in enumerate(toks) if t.norm == "ON" and t.kind == "word"), 0)
    return IndexShape(name, table, partial, cols, tuple(t.norm for t in toks[on:]))
