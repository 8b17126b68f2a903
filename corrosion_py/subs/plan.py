"""How a subscription's SQL is evaluated: incrementally by primary key when that is provably
exact, else by a full re-evaluation and a diff.

Rules (docs/api.md "How subscriptions are computed"; each has a test in tests/subs/):

- Only one ``SELECT`` is accepted. SQLite itself says which tables the statement reads (an
  authorizer during ``EXPLAIN``, so subqueries, ``EXISTS``, CTEs and views are all seen) and
  refuses anything that is not a plain read; every table read must be a replicated table, and
  the node's rules for user SQL apply (`corrosion_py.store.guard`: none of the engine's
  functions that change state, no ``fts3_tokenizer``; text must be UTF-8).
- Parameters are inlined as literals (via sqlglot), so the subscription's identity is its SQL
  with its values: identical queries share one subscription, whatever the whitespace. A
  statement sqlglot cannot parse still works, evaluated in full with its parameters bound.
- **Keyed rows.** When the query is a plain projection over base tables (no aggregate,
  ``DISTINCT``, ``GROUP BY``, window, compound, CTE), the primary key columns of every table in
  ``FROM``/``JOIN`` are appended to the projection (``__corro_pk_<n>``): a result row is
  identified by them, so a changed row is an ``update``. Otherwise a row is identified by its
  cells (an ``update`` shows as ``delete`` + ``insert``).
- **Incremental** (Corrosion's approach, made exact): keyed, no subquery, no ``LIMIT``/
  ``OFFSET``, no function whose value changes without a write (``random()``, ``'now'``...),
  joins only ``INNER``/``CROSS``/``LEFT`` over base tables, and when there is a ``LEFT JOIN``
  no inner join after it and a ``WHERE`` that only names (qualified) columns of the tables
  before it. Then every result row belongs to exactly one row of the first table (its
  *partition*), every row a changed row took part in before the change is in the stored result,
  and every row it takes part in after is found by re-running the query restricted to it (with
  its ``LEFT JOIN`` made inner). So a change re-evaluates exactly the partitions it touched:
  those of stored rows holding a changed key, and those the restricted query finds. Corrosion
  misses changes to tables in subqueries (#537) and LEFT JOIN null-side transitions (#539);
  here those queries are either proven incremental or evaluated in full.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs
import sqlglot
from sqlglot import exp

from corrosion_py.aliases import Params
from corrosion_py.crdt.tables import crr_names, introspect
from corrosion_py.store.guard import refusal, text_problem
from corrosion_py.subs.errors import SubscriptionError

KEYS = "__corro_keys__"
"""Marker replaced by a ``(pk) IN (VALUES ...)`` condition in the restricted queries."""

# Functions whose value can change without any write: a query using them is never incremental
# (and a full re-evaluation still only runs when a table it reads changes: documented).
VOLATILE = frozenset(
    {
        "random", "randomblob", "changes", "total_changes", "last_insert_rowid", "date",
        "time", "datetime", "julianday", "unixepoch", "strftime", "current_date",
        "current_time", "current_timestamp", "timediff",
    }
)  # fmt: skip

_READ_ACTIONS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    getattr(sqlite3, "SQLITE_RECURSIVE", 33),
}


class SubscriptionSqlError(SubscriptionError):
    """The statement cannot be a subscription (not one SELECT, unknown table, bad SQL...)."""


@attrs.frozen
class TableRef:
    """One table of the FROM clause: its alias, name and primary key columns."""

    alias: str
    table: str
    pks: tuple[str, ...]


@attrs.frozen
class Restricted:
    """A query restricted to given primary keys of one table: ``sql(n)`` for ``n`` keys."""

    text: str
    columns: tuple[str, ...]

    def sql(self, n: int) -> str:
        return self.text.replace(KEYS, keys_condition(self.columns, n))


@attrs.frozen
class Plan:
    """How to evaluate one subscription (built by `plan`)."""

    sql: str
    """The statement run for a full evaluation (pk columns appended when ``keyed``)."""
    params: Params
    identity: str
    """What identical subscriptions share: the SQL with its parameters inlined."""
    tables: frozenset[str]
    mode: Literal["incremental", "full"]
    reason: str
    """Why the mode (for logs and docs)."""
    refs: tuple[TableRef, ...] = ()
    """Keyed plans: the tables whose pk columns are appended, in order."""
    partition: Restricted | None = None
    """Incremental: the keyed query restricted to partitions (the first table's pk)."""
    variants: tuple[Restricted, ...] = ()
    """Incremental: per ref, the first table's pk of rows holding given keys of that ref."""

    @property
    def keyed(self) -> bool:
        return bool(self.refs)

    @property
    def key_width(self) -> int:
        return sum(len(r.pks) for r in self.refs)

    def key_slice(self, index: int) -> slice:
        """Where ref ``index``'s pk columns sit in a row key."""
        start = sum(len(r.pks) for r in self.refs[:index])
        return slice(start, start + len(self.refs[index].pks))

    @property
    def hash(self) -> str:
        """Corrosion's ``corro-query-hash``: 16 hex digits of a 64-bit hash of the identity."""
        return hashlib.blake2b(self.identity.encode(), digest_size=8).hexdigest()


def keys_condition(columns: Sequence[str], n: int) -> str:
    """``cols IN (...)`` for ``n`` keys bound as parameters (row values for composite keys)."""
    if len(columns) == 1:
        return f"{columns[0]} IN ({', '.join('?' * n)})"
    row = "(" + ", ".join("?" * len(columns)) + ")"
    return f"({', '.join(columns)}) IN (VALUES {', '.join([row] * n)})"


def plan(conn: sqlite3.Connection, sql: str, params: Params = ()) -> Plan:
    """Check ``sql`` on ``conn`` (a connection to the store) and decide how to evaluate it.

    Raises `SubscriptionSqlError` with a message fit for an HTTP 400.
    """
    result = _plan(conn, sql, params)
    _check_rewritten(conn, result)
    return result


def _plan(conn: sqlite3.Connection, sql: str, params: Params) -> Plan:
    sql = sql.strip().rstrip(";").strip()
    if not sql:
        raise SubscriptionSqlError("empty statement")
    problem = text_problem(sql, params)
    if problem is not None:
        raise SubscriptionSqlError(problem)
    crrs = set(crr_names(conn))
    tables = _tables_read(conn, sql, params, crrs)
    tree = _parse(sql)
    if tree is None or not isinstance(tree, exp.Query):
        if tree is not None:
            raise SubscriptionSqlError("unsupported statement: only a SELECT can be subscribed")
        return Plan(sql, params, _identity(sql, params), tables, "full", "not parsed")
    if params:
        inlined = _inline(tree, params)
        if inlined is None:
            return Plan(sql, params, _identity(sql, params), tables, "full", "params kept")
        tree = inlined
    text = tree.sql(dialect="sqlite")
    refs, why_not_keyed = _refs(conn, tree, crrs)
    if refs is None:
        return Plan(text, (), text, tables, "full", why_not_keyed)
    assert isinstance(tree, exp.Select)
    keyed = _append_keys(tree, refs)
    why_not = _why_not_incremental(tree, refs)
    if why_not:
        return Plan(keyed.sql(dialect="sqlite"), (), text, tables, "full", why_not, refs)
    return Plan(
        keyed.sql(dialect="sqlite"),
        (),
        text,
        tables,
        "incremental",
        "incremental by primary key",
        refs,
        _restricted(keyed, refs, None),
        tuple(_restricted(tree, refs, i) for i in range(len(refs))),
    )


def _check_rewritten(conn: sqlite3.Connection, plan: Plan) -> None:
    """The node's rules for user SQL, applied again to the statements that will run: they are
    rewritten (parameters inlined, keys appended), and the rewrite must not turn a statement
    that was checked into one that was not."""
    statements = [(plan.sql, plan.params)]
    for restricted in (plan.partition, *plan.variants):
        if restricted is not None:
            statements.append((restricted.sql(1), [None] * len(restricted.columns)))
    reasons: list[str] = []

    def authorize(
        action: int, arg1: str | None, arg2: str | None, _db: str | None, source: str | None
    ) -> int:
        reason = refusal(action, arg1, arg2, source)
        if reason is None:
            return sqlite3.SQLITE_OK
        reasons.append(reason)
        return sqlite3.SQLITE_DENY

    conn.set_authorizer(authorize)
    try:
        for sql, params in statements:
            try:
                conn.execute("EXPLAIN " + sql, params).close()
            except sqlite3.Error as exc:
                if reasons:
                    raise SubscriptionSqlError(reasons[0]) from exc
                # any other failure is the evaluation's to report
    finally:
        conn.set_authorizer(None)


def _identity(sql: str, params: Params) -> str:
    if not params:
        return sql
    return sql + "\n-- params: " + json.dumps(params, default=repr, sort_keys=True)


def _tables_read(
    conn: sqlite3.Connection, sql: str, params: Params, crrs: set[str]
) -> frozenset[str]:
    """Every table the statement reads, as SQLite's own compiler reports it."""
    read: set[str] = set()
    refused: list[str] = []
    guarded: list[str] = []

    def authorize(
        action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None
    ) -> int:
        reason = refusal(action, arg1, arg2, source)
        if reason is not None:
            guarded.append(reason)
            return sqlite3.SQLITE_DENY
        if action not in _READ_ACTIONS:
            refused.append(str(action))
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_READ and arg1 is not None:
            if db not in ("main", None):
                refused.append(f"read of {db}.{arg1}")
                return sqlite3.SQLITE_DENY
            read.add(arg1)
        return sqlite3.SQLITE_OK

    conn.set_authorizer(authorize)
    try:
        # the authorizer runs while the statement is prepared; its rows are not needed (and
        # may hold the query's TEXT constants, which need not be UTF-8)
        conn.execute("EXPLAIN " + sql, params).close()
    except sqlite3.ProgrammingError as exc:  # several statements, wrong number of params
        raise SubscriptionSqlError(str(exc)) from exc
    except sqlite3.Error as exc:
        if guarded:
            raise SubscriptionSqlError(guarded[0]) from exc
        if refused:
            raise SubscriptionSqlError(
                "unsupported statement: only a read-only SELECT can be subscribed"
            ) from exc
        raise SubscriptionSqlError(str(exc)) from exc
    finally:
        conn.set_authorizer(None)
    if not read:
        raise SubscriptionSqlError("a subscription must read at least one table")
    internal = sorted(t for t in read if t not in crrs)
    if internal:
        raise SubscriptionSqlError(f"table {internal[0]!r} is not a replicated table of the schema")
    return frozenset(read)


def _parse(sql: str) -> exp.Expr | None:
    try:
        trees = sqlglot.parse(sql, read="sqlite")
    except sqlglot.errors.SqlglotError:
        return None
    if len(trees) != 1:
        return None
    tree: exp.Expr | None = trees[0]
    return tree


def _literal(value: Any) -> exp.Expr | None:
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Literal.number(int(value))
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return exp.Literal.number(repr(value) if isinstance(value, float) else value)
    if isinstance(value, str):
        return exp.Literal.string(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return exp.HexString(this=bytes(value).hex())
    return None


def _inline(tree: exp.Expr, params: Params) -> exp.Expr | None:
    """The tree with each parameter replaced by its value; None when that is not possible
    (an unknown placeholder style, a missing or unused value)."""
    tree = tree.copy()
    positional = list(params) if not isinstance(params, Mapping) else None
    named = params if isinstance(params, Mapping) else None
    used = 0
    for node in list(tree.find_all(exp.Placeholder, exp.Parameter)):
        if isinstance(node, exp.Placeholder) and node.this is None:
            if positional is None or used >= len(positional):
                return None
            value = positional[used]
            used += 1
        else:
            name = node.this.name if isinstance(node, exp.Parameter) else str(node.this)
            sigil = "@" if isinstance(node, exp.Parameter) else ":"
            if named is None:
                return None
            for key in (sigil + name, name):
                if key in named:
                    value = named[key]
                    break
            else:
                return None
        literal = _literal(value)
        if literal is None:
            return None
        node.replace(literal)
    if positional is not None and used != len(positional):
        return None
    return tree


def _refs(
    conn: sqlite3.Connection, tree: exp.Expr, crrs: set[str]
) -> tuple[tuple[TableRef, ...] | None, str]:
    """The FROM/JOIN tables when result rows can be keyed by their primary keys."""
    if not isinstance(tree, exp.Select):
        return None, "compound select"
    if tree.args.get("with") is not None:
        return None, "common table expression"
    if tree.args.get("distinct") is not None:
        return None, "DISTINCT"
    if tree.args.get("group") is not None or tree.args.get("having") is not None:
        return None, "GROUP BY"
    for projection in tree.expressions:
        if projection.find(exp.AggFunc) or projection.find(exp.Window):
            return None, "aggregate or window function"
    source = tree.args.get("from_") or tree.args.get("from")
    if source is None:
        return None, "no FROM"
    items = [source.this, *(j.this for j in tree.args.get("joins") or [])]
    refs = []
    for item in items:
        if not isinstance(item, exp.Table) or item.args.get("db") or item.name not in crrs:
            return None, "FROM item is not a replicated table"
        info = introspect(conn, item.name)
        refs.append(TableRef(item.alias_or_name, item.name, info.pks))
    if len({r.alias for r in refs}) != len(refs):
        return None, "a table appears twice without distinct aliases"
    return tuple(refs), ""


def _column(alias: str, name: str) -> exp.Column:
    return exp.column(name, table=alias, quoted=True)


def _append_keys(tree: exp.Select, refs: Sequence[TableRef]) -> exp.Select:
    keyed = tree.copy()
    n = 0
    for ref in refs:
        for pk in ref.pks:
            keyed.select(_column(ref.alias, pk).as_(f"__corro_pk_{n}"), append=True, copy=False)
            n += 1
    return keyed


def _why_not_incremental(tree: exp.Select, refs: Sequence[TableRef]) -> str:
    if tree.args.get("limit") is not None or tree.args.get("offset") is not None:
        return "LIMIT/OFFSET"
    if any(isinstance(node, exp.Select) for node in tree.walk() if node is not tree):
        return "subquery"
    for func in tree.find_all(exp.Func):
        name = (func.sql_name() if not isinstance(func, exp.Anonymous) else func.name).lower()
        if name in VOLATILE or isinstance(func, exp.Rand | exp.CurrentDate | exp.CurrentTime):
            return f"volatile function {name}()"
    for column in tree.find_all(exp.Column):
        if column.text("this").lower() in ("current_timestamp", "current_date", "current_time"):
            return "volatile value"
    joins = tree.args.get("joins") or []
    first_left = None
    for index, join in enumerate(joins, start=1):
        side, kind = join.args.get("side"), join.args.get("kind")
        method = join.args.get("method")
        if method or join.args.get("using"):
            return "NATURAL or USING join"
        if side == "LEFT":
            first_left = first_left or index
        elif side or kind not in (None, "INNER", "CROSS", "OUTER"):
            return f"{side or kind} JOIN"
        elif first_left is not None:
            return "an inner join after a LEFT JOIN"
    if first_left is not None:
        prefix = {r.alias for r in refs[:first_left]}
        where = tree.args.get("where")
        for column in where.find_all(exp.Column) if where is not None else []:
            if column.table not in prefix:
                return "WHERE names a column of a LEFT JOINed table (or an unqualified one)"
    return ""


def _restricted(tree: exp.Select, refs: Sequence[TableRef], index: int | None) -> Restricted:
    """The query restricted by ``KEYS``: for ``index`` None the keyed query restricted to
    partitions; else the first table's pk of rows holding keys of ref ``index`` (its LEFT JOIN
    made inner)."""
    restricted = tree.copy()
    for table in restricted.find_all(exp.Table):
        table.set("indexed", None)  # a hint that may not fit the added condition
    target = refs[0] if index is None else refs[index]
    if index is not None:
        if index > 0:
            join = (restricted.args.get("joins") or [])[index - 1]
            join.set("side", None)
            join.set("kind", None)
        restricted.set("order", None)
        restricted.set("expressions", [_column(refs[0].alias, pk) for pk in refs[0].pks])
    restricted.where(exp.column(KEYS), append=True, copy=False)
    cols = tuple(_column(target.alias, pk).sql(dialect="sqlite") for pk in target.pks)
    return Restricted(restricted.sql(dialect="sqlite"), cols)
