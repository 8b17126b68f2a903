"""The node's user schema: `.sql` files, checked and applied as an additive migration.

Rules (Corrosion's, reference/corrosion.md §1 rows 12-15; each has a test in
tests/store/test_schema.py):

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

Theory of operation: SQLite itself is the parser. Every statement runs in a scratch in-memory
database; the shapes of the resulting tables and indexes are read back with PRAGMAs from the
scratch database and from the live one and compared. Text is only cut where SQLite has no
PRAGMA for it (the column definitions, which ``ALTER TABLE ADD COLUMN`` needs verbatim), with a
small tokenizer, and every cut is cross-checked against ``PRAGMA table_xinfo``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import attrs

from corrosion_py import crdt
from corrosion_py.errors import CorrosionError

__all__ = [
    "SchemaError",
    "SchemaResult",
    "SchemaStatement",
    "SchemaText",
    "apply_schema",
    "apply_schema_statements",
    "load_schema",
]

SCHEMA_TABLE = "__corro_schema"
SCHEMA_TABLE_DDL = (
    f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (tbl_name TEXT NOT NULL, type TEXT NOT NULL, "
    "name TEXT NOT NULL, sql TEXT NOT NULL, source TEXT NOT NULL, "
    "PRIMARY KEY (tbl_name, type, name))"
)

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
        stmt = "" if statement is None else f" (statement: {_one_line(statement)})"
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


def load_schema(paths: Sequence[Source]) -> list[SchemaStatement]:
    """Read and check schema files (each path a file, or a directory of ``*.sql``); raise
    `SchemaError` naming the file and line of the first statement that is refused."""
    with _load(paths) as loaded:
        return list(loaded.statements)


def apply_schema(conn: sqlite3.Connection, paths: Sequence[Source]) -> SchemaResult:
    """Bring the live database to the schema of the files, additively and in one transaction.

    ``conn`` is a stdlib connection with ``isolation_level=None`` on which ``crdt.init`` ran. An
    open transaction is joined through a savepoint. Any refusal raises `SchemaError` and rolls
    everything back.
    """
    with _load(paths) as loaded, _write_transaction(conn):
        plan = _plan(conn, loaded)
        return _execute(conn, plan)


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
        (_key(sql), SchemaText(source, _terminated(sql)))
        for text in statements
        for _, sql in _split(_terminated(text), source)
    ]
    with _write_transaction(conn):
        sources: list[SchemaText] = []
        placed: set[int] = set()
        for kind, name, sql, recorded_source in _recorded(conn):
            key = (kind, name.lower())
            index = next((i for i, (k, _) in enumerate(new) if k == key and i not in placed), None)
            if index is None:
                sources.append(SchemaText(recorded_source, _terminated(sql)))
            else:
                sources.append(new[index][1])
                placed.add(index)
        sources += [text for i, (_, text) in enumerate(new) if i not in placed]
        with _load(sources) as loaded:
            plan = _plan(conn, loaded)
            return _execute(conn, plan)


def _key(sql: str) -> tuple[str, str] | None:
    """(kind, lower-cased name) of what a statement creates; None when that cannot be told or
    the statement is refused (loading it then says why, naming the statement)."""
    try:
        kind, name = _classify(sql)
    except ValueError:
        return None
    return None if name is None else (kind, name.lower())


def _terminated(sql: str) -> str:
    """One statement text ending with a ``;`` on a line of its own (after any trailing
    comment); an extra empty statement is skipped by `_split`."""
    return sql + "\n;\n"


def _recorded(conn: sqlite3.Connection) -> list[tuple[str, str, str, str]]:
    """(kind, name, sql, source) of every statement applied before, in the order applied."""
    if _live_object(conn, SCHEMA_TABLE) is None:
        return []
    rows = conn.execute(f"SELECT type, name, sql, source FROM {SCHEMA_TABLE} ORDER BY rowid")
    return [(str(t), str(n), str(q), str(s)) for t, n, q, s in rows]


# -- text: tokens and statements ---------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<string>[xX]'[^']*'|'(?:[^']|'')*')
  | (?P<ident>"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\])
  | (?P<word>[\w$]+)
  | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@attrs.frozen
class _Token:
    kind: str  # space, comment, string, ident, word, punct
    text: str
    start: int
    end: int

    @property
    def norm(self) -> str:
        """Case-insensitive and quote-insensitive form for comparing definitions."""
        if self.kind == "word":
            return self.text.upper()
        if self.kind == "ident":
            return _dequote(self.text).upper()
        return self.text


def _scan(text: str) -> Iterator[_Token]:
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup
        assert kind is not None
        yield _Token(kind, m.group(), m.start(), m.end())


def _tokens(text: str) -> list[_Token]:
    """The significant tokens (no whitespace, no comments)."""
    return [t for t in _scan(text) if t.kind not in ("space", "comment")]


def _dequote(name: str) -> str:
    if len(name) >= 2 and name[0] in '"`[':
        inner = name[1:-1]
        return inner if name[0] == "[" else inner.replace(name[0] * 2, name[0])
    return name


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _one_line(sql: str, limit: int = 200) -> str:
    """The statement on one line, without comments, shortened for a message."""
    flat = " ".join("".join(" " if t.kind == "comment" else t.text for t in _scan(sql)).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _split(text: str, file: str) -> list[tuple[int, str]]:
    """Cut a file into (1-based line, statement) pairs at the semicolons where
    `sqlite3.complete_statement` says a statement ends; comments around statements are dropped."""
    out: list[tuple[int, str]] = []
    first: _Token | None = None
    last_end = 0
    for tok in _scan(text):
        if tok.kind in ("space", "comment"):
            continue
        if tok.text == ";" and tok.kind == "punct":
            if first is not None and sqlite3.complete_statement(text[first.start : tok.end]):
                out.append((text.count("\n", 0, first.start) + 1, text[first.start : last_end]))
                first = None
                continue
            if first is None:
                continue  # an empty statement
        if first is None:
            first = tok
        last_end = tok.end
    if first is not None:
        line = text.count("\n", 0, first.start) + 1
        raise SchemaError(
            "incomplete statement at the end of the file (missing ';'?)",
            file=file,
            line=line,
            statement=text[first.start : last_end],
        )
    return out


# -- loading: files -> statements, executed in a scratch database ------------------------------

_RESERVED = re.compile(r"^(?:__corro_|crsql_|sqlite_)|__crsql_", re.IGNORECASE)


@attrs.frozen
class _Loaded:
    statements: tuple[SchemaStatement, ...]
    scratch: sqlite3.Connection


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


def _master(conn: sqlite3.Connection) -> set[tuple[str, str, str]]:
    rows = conn.execute(
        "SELECT type, name, tbl_name FROM sqlite_master WHERE sql IS NOT NULL "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    ).fetchall()
    return {(r[0], r[1], r[2]) for r in rows}


_ONLY = "schema files may only CREATE TABLE and CREATE INDEX"
_REFUSED_CREATE = {
    "TEMP": "temporary tables are not allowed",
    "TEMPORARY": "temporary tables are not allowed",
    "UNIQUE": "unique indexes are not allowed (a CRR may only be unique on its primary key)",
    "VIRTUAL": f"virtual tables are not allowed: {_ONLY}",
    "VIEW": f"views are not allowed: {_ONLY}",
    "TRIGGER": f"triggers are not allowed: {_ONLY}",
}


def _classify(sql: str) -> tuple[Kind, str | None]:
    """The kind of a statement and the name it creates (None if it cannot be told: SQLite will
    then report the syntax error); raise the reason (a str in ValueError) when it is refused."""
    toks = _tokens(sql)
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
    name = _dequote(toks[i].text)
    if i + 2 < len(toks) and toks[i + 1].text == ".":
        if name.lower() != "main":
            raise ValueError(f"only the main schema can be used, not {name!r}")
        i += 2
        name = _dequote(toks[i].text)
    if kind == "table" and i + 1 < len(toks) and toks[i + 1].norm == "AS":
        raise ValueError("CREATE TABLE ... AS SELECT is not allowed: declare the columns")
    if _RESERVED.search(name):
        raise ValueError(f"the name {name!r} is reserved for corrosion and the CRR engine")
    return kind, name


@contextmanager
def _load(paths: Sequence[Source]) -> Iterator[_Loaded]:
    """Run every statement of every file, in order, in a scratch in-memory database."""
    scratch = sqlite3.connect(":memory:", isolation_level=None)
    try:
        statements: list[SchemaStatement] = []
        seen: dict[str, SchemaStatement] = {}  # lower-cased name -> where it was defined
        for path in _files(paths):
            file = path.name if isinstance(path, SchemaText) else str(path)
            for line, sql in _split(_read(path), file):
                stmt = _load_statement(scratch, file, line, sql, seen)
                seen[stmt.name.lower()] = stmt
                statements.append(stmt)
        yield _Loaded(tuple(statements), scratch)
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
        kind, name = _classify(sql)
    except ValueError as e:
        raise refuse(str(e)) from None
    if name is not None and name.lower() in seen:
        first = seen[name.lower()]
        raise refuse(
            f"{kind} {name!r} is defined twice (first at {first.file}:{first.line})",
            first.table,
        )
    before = _master(scratch)
    try:
        scratch.execute(sql)
    except sqlite3.Error as e:
        raise refuse(f"SQLite cannot execute it: {e}", name if kind == "table" else None) from e
    new = [m for m in _master(scratch) - before if m[0] == kind]
    if len(new) != 1:
        raise refuse(f"the statement created no {kind} in the main schema")
    _, name, table = new[0]
    if kind == "table":
        if scratch.execute(f"PRAGMA foreign_key_list({_q(table)})").fetchall():
            raise refuse("foreign keys are not allowed", table)
        for row in scratch.execute(f"PRAGMA index_list({_q(table)})").fetchall():
            if row[2] and row[3] != "pk":
                raise refuse(
                    "UNIQUE constraints are not allowed (a CRR may only be unique on its "
                    "primary key)",
                    table,
                )
    return SchemaStatement(file=file, line=line, sql=sql, kind=kind, table=table, name=name)


# -- shapes: what PRAGMAs (and the column list of the CREATE TABLE) say about an object ---------


@attrs.frozen
class _Column:
    name: str
    type: str
    notnull: bool
    default: tuple[str, ...] | None  # normalized tokens of the DEFAULT expression
    pk: int
    hidden: int
    definition: str  # verbatim column definition, as ADD COLUMN needs it
    norm: tuple[str, ...]

    def differences(self, other: _Column) -> list[str]:
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
class _TableShape:
    name: str
    columns: tuple[_Column, ...]
    constraints: tuple[tuple[str, ...], ...]
    options: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


_CONSTRAINT_WORDS = frozenset({"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"})


def _table_shape(conn: sqlite3.Connection, table: str) -> _TableShape:
    """Columns from ``PRAGMA table_xinfo``, each with its definition text cut from the stored
    CREATE TABLE (the cut is checked against the PRAGMA's names)."""
    sql = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()[0]
    toks = _tokens(sql)
    open_at = next(i for i, t in enumerate(toks) if t.text == "(" and t.kind == "punct")
    items: list[list[_Token]] = [[]]
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
    defs: list[list[_Token]] = []
    constraints: list[tuple[str, ...]] = []
    for it in items:
        if it and it[0].kind == "word" and it[0].norm in _CONSTRAINT_WORDS:
            constraints.append(tuple(t.norm for t in it))
        elif it:
            defs.append(it)
    rows = conn.execute(f"PRAGMA table_xinfo({_q(table)})").fetchall()
    if len(defs) != len(rows) or any(
        _dequote(d[0].text) != r[1] for d, r in zip(defs, rows, strict=False)
    ):
        raise ValueError("cannot match its column definitions to SQLite's table_xinfo")
    columns = tuple(
        _Column(
            name=r[1],
            type=" ".join(str(r[2]).upper().split()),
            notnull=bool(r[3]),
            default=None if r[4] is None else tuple(t.norm for t in _tokens(str(r[4]))),
            pk=int(r[5]),
            hidden=int(r[6]),
            definition=sql[d[0].start : d[-1].end],
            norm=tuple(t.norm for t in d),
        )
        for d, r in zip(defs, rows, strict=True)
    )
    options = tuple(t.norm for t in toks[close_at + 1 :])
    return _TableShape(table, columns, tuple(constraints), options)


@attrs.frozen
class _IndexShape:
    name: str
    table: str
    partial: bool
    columns: tuple[tuple[object, ...], ...]  # (cid, name, desc, collation) of the key columns
    text: tuple[str, ...]  # normalized tokens from ON to the end (expressions, WHERE)

    def same_as(self, other: _IndexShape) -> bool:
        if (self.table.lower(), self.partial, self.columns) != (
            other.table.lower(),
            other.partial,
            other.columns,
        ):
            return False
        uses_text = self.partial or any(c[0] == -2 for c in self.columns)
        return not uses_text or self.text == other.text


def _index_shape(conn: sqlite3.Connection, name: str) -> _IndexShape:
    table, sql = conn.execute(
        "SELECT tbl_name, sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
    ).fetchone()
    partial = any(
        r[1] == name and r[4] for r in conn.execute(f"PRAGMA index_list({_q(table)})").fetchall()
    )
    cols = tuple(
        (r[1], r[2], r[3], str(r[4]).upper())
        for r in conn.execute(f"PRAGMA index_xinfo({_q(name)})").fetchall()
        if r[5]
    )
    toks = _tokens(sql)
    on = next((i for i, t in enumerate(toks) if t.norm == "ON" and t.kind == "word"), 0)
    return _IndexShape(name, table, partial, cols, tuple(t.norm for t in toks[on:]))


# -- planning against the live database (reads only) -------------------------------------------


@attrs.define
class _TablePlan:
    stmt: SchemaStatement
    exists: bool
    is_crr: bool
    adopt: bool
    added: list[_Column] = attrs.Factory(list)
    indexes: list[SchemaStatement] = attrs.Factory(list)


@attrs.define
class _Plan:
    tables: list[_TablePlan]
    records: dict[tuple[str, str, str], tuple[str, str]]  # rows __corro_schema must hold
    recorded: dict[tuple[str, str, str], tuple[str, str]]  # rows it holds now
    schema_table_exists: bool


def _live_object(conn: sqlite3.Connection, name: str) -> tuple[str, str] | None:
    row = conn.execute(
        "SELECT type, name FROM sqlite_master WHERE name = ? COLLATE NOCASE", (name,)
    ).fetchone()
    return None if row is None else (row[0], row[1])


def _refuse(stmt: SchemaStatement, reason: str) -> SchemaError:
    return SchemaError(reason, file=stmt.file, line=stmt.line, table=stmt.table, statement=stmt.sql)


def _plan(conn: sqlite3.Connection, loaded: _Loaded) -> _Plan:
    schema_table_exists = _live_object(conn, SCHEMA_TABLE) is not None
    recorded: dict[tuple[str, str, str], tuple[str, str]] = {}
    if schema_table_exists:
        for tbl, typ, name, sql, source in conn.execute(
            f"SELECT tbl_name, type, name, sql, source FROM {SCHEMA_TABLE} ORDER BY rowid"
        ):
            recorded[(tbl, typ, name)] = (sql, source)
    records: dict[tuple[str, str, str], tuple[str, str]] = {
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

    tables: dict[str, _TablePlan] = {}
    for stmt in loaded.statements:
        if stmt.kind == "table":
            tables[stmt.name] = _plan_table(conn, loaded.scratch, stmt, recorded)
        else:
            plan = tables[stmt.table]
            if _plan_index(conn, loaded.scratch, stmt, plan):
                plan.indexes.append(stmt)
    for plan in tables.values():
        if plan.exists:
            _check_live_indexes(conn, plan, file_indexes)
    return _Plan(list(tables.values()), records, recorded, schema_table_exists)


def _plan_table(
    conn: sqlite3.Connection,
    scratch: sqlite3.Connection,
    stmt: SchemaStatement,
    recorded: dict[tuple[str, str, str], tuple[str, str]],
) -> _TablePlan:
    live = _live_object(conn, stmt.name)
    if live is None:
        return _TablePlan(stmt, exists=False, is_crr=False, adopt=False)
    typ, live_name = live
    if typ != "table":
        raise _refuse(stmt, f"the name is already used by a {typ} in the database")
    if live_name != stmt.name:
        raise _refuse(stmt, f"the database has this table as {live_name!r} (names differ in case)")
    try:
        want = _table_shape(scratch, stmt.name)
        have = _table_shape(conn, stmt.name)
    except ValueError as e:
        raise _refuse(stmt, str(e)) from None
    dropped = [n for n in have.names if n not in want.names]
    if dropped:
        raise _refuse(
            stmt,
            f"column {dropped[0]!r} was dropped or renamed (columns can only be added at the end)",
        )
    if want.names[: len(have.names)] != have.names:
        raise _refuse(stmt, "columns were reordered (new columns can only be added at the end)")
    pairs = list(zip(have.columns, want.columns, strict=False))
    for old, new in pairs:
        diffs = old.differences(new)
        if diffs:
            raise _refuse(
                stmt, f"column {old.name!r} changed ({', '.join(diffs)}); columns cannot change"
            )
    added = list(want.columns[len(have.columns) :])
    for col in added:
        if col.pk:
            raise _refuse(stmt, f"primary key column {col.name!r} cannot be added")
        if col.notnull and col.default is None:
            raise _refuse(stmt, f"NOT NULL column {col.name!r} cannot be added without a DEFAULT")
    for old, new in pairs:
        if old.norm != new.norm:
            raise _refuse(
                stmt,
                f"column {old.name!r} changed ({old.definition!r} -> {new.definition!r}); "
                "columns cannot change",
            )
    if have.constraints != want.constraints:
        raise _refuse(stmt, "table constraints changed; they cannot change")
    if have.options != want.options:
        raise _refuse(
            stmt,
            f"table options changed ({' '.join(have.options) or 'none'} -> "
            f"{' '.join(want.options) or 'none'}); they cannot change",
        )
    is_crr = crdt.is_crr(conn, stmt.name)
    adopt = not is_crr or (stmt.name, "table", stmt.name) not in recorded
    return _TablePlan(stmt, exists=True, is_crr=is_crr, adopt=adopt, added=added)


def _plan_index(
    conn: sqlite3.Connection,
    scratch: sqlite3.Connection,
    stmt: SchemaStatement,
    table: _TablePlan,
) -> bool:
    """Whether the index must be created; refuse an index whose definition changed."""
    live = _live_object(conn, stmt.name)
    if live is None:
        return True
    typ, live_name = live
    if typ != "index":
        raise _refuse(stmt, f"the name {stmt.name!r} is already used by a {typ} in the database")
    old, new = _index_shape(conn, live_name), _index_shape(scratch, stmt.name)
    if live_name != stmt.name or not old.same_as(new):
        sql = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (live_name,)
        ).fetchone()[0]
        raise _refuse(
            stmt,
            f"index {stmt.name!r} changed (database has: {_one_line(str(sql), 120)}); "
            "indexes cannot change",
        )
    return False


def _check_live_indexes(conn: sqlite3.Connection, plan: _TablePlan, file_indexes: set[str]) -> None:
    """An index of a schema table that is in the database but not in the files would have to be
    dropped: refused, as a dropped index is."""
    for row in conn.execute(f"PRAGMA index_list({_q(plan.stmt.name)})").fetchall():
        name, origin = row[1], row[3]
        if origin == "c" and name not in file_indexes:
            raise _refuse(
                plan.stmt,
                f"index {name!r} exists in the database but not in the schema files "
                "(indexes cannot be dropped)",
            )


# -- execution (one transaction) ----------------------------------------------------------------


@contextmanager
def _write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
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
        shown = "" if sql == stmt.sql else f" {_one_line(sql, 120)!r}"
        raise _refuse(stmt, f"SQLite refused{shown}: {e}") from e


def _execute(conn: sqlite3.Connection, plan: _Plan) -> SchemaResult:
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
                with crdt.alter(conn, table) if tp.is_crr else _nothing():
                    for col in tp.added:
                        _run(conn, tp.stmt, f"ALTER TABLE {_q(table)} ADD COLUMN {col.definition}")
                    for ix in tp.indexes:
                        _run(conn, ix, ix.sql)
            if tp.exists and not tp.is_crr:
                crdt.as_crr(conn, table)
        except SchemaError:
            raise
        except (CorrosionError, sqlite3.Error) as e:
            raise _refuse(tp.stmt, f"cannot be a CRR: {e}") from e
        added.extend((table, c.name) for c in tp.added)
        indexes.extend(ix.name for ix in tp.indexes)
        if tp.exists and tp.adopt:
            adopted.append(table)
    recorded = _record(conn, plan)
    return SchemaResult(tuple(created), tuple(added), tuple(indexes), tuple(adopted), recorded)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _record(conn: sqlite3.Connection, plan: _Plan) -> bool:
    """Make ``__corro_schema`` hold exactly the applied statements; write nothing if it does."""
    if plan.records == plan.recorded:
        return False
    if not plan.schema_table_exists:
        conn.execute(SCHEMA_TABLE_DDL)
    stale = [key for key in plan.recorded if key not in plan.records]
    conn.executemany(
        f"DELETE FROM {SCHEMA_TABLE} WHERE tbl_name = ? AND type = ? AND name = ?", stale
    )
    rows = [key + value for key, value in plan.records.items() if plan.recorded.get(key) != value]
    conn.executemany(
        f"INSERT INTO {SCHEMA_TABLE} (tbl_name, type, name, sql, source) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (tbl_name, type, name) DO UPDATE SET sql = excluded.sql, "
        "source = excluded.source",
        rows,
    )
    return True
