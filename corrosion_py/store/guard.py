"""What SQL sent by users may touch, and how bad text in it is reported: one policy for every
door user SQL enters by (``Store.transaction`` and ``Store.query``, hence ``Agent`` and the
CLI; ``/v1/transactions``, ``/v1/queries``, subscriptions).

Rules (docs/sql-guard.md says why):

- **Internal tables are written only by the engine and the agent.** A user statement that
  inserts into, updates or deletes from a ``crsql_*``, ``*__crsql_*`` or ``__corro_*`` table
  (or the ``crsql_changes`` view) is refused. Deleting a clock table's rows would stop this
  node's writes from ever reaching peers; a forged ``crsql_db_versions`` row would burn every
  future version.
- **Reads of replication metadata are allowed** (clocks, versions, site ids, members, schema,
  ``crsql_changes``: what peers see anyway, and what operators debug with); the agent's own
  state table ``__corro_state`` is not replication data and is refused.
- **Engine functions that change state are the triggers' alone.** A top-level call of any
  ``crsql_*`` function outside `USER_CALLABLE` is refused (``crsql_next_db_version(2^63-1)``
  would claim the last possible version and replicate it). Calls made by the engine's own
  triggers and by the ``crsql_changes`` view are allowed: SQLite tells the authorizer which
  trigger or view is responsible (its fifth argument; None for top-level SQL), and users cannot
  create triggers or views (schema files hold only tables and indexes).
- ``fts3_tokenizer`` (returns a process address, or installs one) and ``load_extension`` are
  refused wherever they appear.

The refusal is an SQLite authorizer (`refusal` decides, `Guard` records the first reason so the
caller can name the table or function instead of SQLite's "not authorized"). Nothing runs, so
nothing changes.

Bad text: Python cannot hand SQLite a string holding a lone surrogate (JSON allows the escape
``"\\udc80"``, and command-line arguments that are not UTF-8 arrive as such), and SQLite can
make TEXT that is not UTF-8 (``CAST(x'fffe80' AS TEXT)``), which Python cannot read back.
`text_problem` finds the first before anything runs; `decode_problem` turns the second's
error into a message that names the column and says what to do.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from corrosion_py.aliases import Params
from corrosion_py.crdt.state import conn_state
from corrosion_py.crdt.tables import q

__all__ = [
    "USER_CALLABLE",
    "Guard",
    "bad_text_in_version",
    "decode_problem",
    "is_internal_table",
    "refusal",
    "text_problem",
]


_INTERNAL = re.compile(r"^(?:crsql_|__corro_)|__crsql_", re.IGNORECASE)
_ENGINE_SOURCE = re.compile(r"^crsql_changes|__crsql_[a-z]+$", re.IGNORECASE)
_WRITES = frozenset({sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE})

UNREADABLE = frozenset({"__corro_state"})
"""Internal tables users may not even read."""

USER_CALLABLE = frozenset(
    {
        "crsql_db_version",
        "crsql_site_id",
        "crsql_pack_columns",
        "crsql_rows_impacted",
        # read-only: a connection's engine-state number, which `crsql_site_id()` and
        # `crsql_db_version()` may query to recognise their connection
        "crsql_internal_state_id",
    }
)
"""The engine's functions top-level user SQL may call: they only read."""

_NEVER = {
    "fts3_tokenizer": "calling fts3_tokenizer is not allowed (it exposes memory addresses)",
    "load_extension": "calling load_extension is not allowed",
}


def is_internal_table(name: str) -> bool:
    """Whether ``name`` is one of the engine's or the agent's tables (or ``crsql_changes``)."""
    return _INTERNAL.search(name) is not None


def _from_engine(source: str | None) -> bool:
    """Whether the trigger or view responsible for an access is the engine's own."""
    return source is not None and _ENGINE_SOURCE.search(source) is not None


def refusal(action: int, arg1: str | None, arg2: str | None, source: str | None) -> str | None:
    """Why user SQL may not do this (an authorizer call's arguments), or None when it may."""
    if action == sqlite3.SQLITE_FUNCTION:
        name = (arg2 or "").lower()
        never = _NEVER.get(name)
        if never is not None:
            return never
        if name.startswith("crsql_") and name not in USER_CALLABLE and not _from_engine(source):
            return f"calling the engine function {name} is not allowed"
        return None
    if _from_engine(source) or arg1 is None:
        return None
    if action in _WRITES and is_internal_table(arg1):
        return f"writing the internal table {arg1} is not allowed"
    if action == sqlite3.SQLITE_READ and arg1.lower() in UNREADABLE:
        return f"reading the internal table {arg1} is not allowed"
    return None


USER_MARK = "/* user statement */ "
"""Put in front of a user statement's text, so it never shares a prepared statement with the
engine's (`Guard`)."""


class Guard:
    """The authorizer of a connection that runs user statements besides the engine's own.

    Installed once (setting an authorizer expires every prepared statement, so toggling it per
    statement would re-prepare the engine's statements too); it applies only inside
    `checking`, or always when made ``active`` on a connection that runs nothing else.
    Statements checked there must carry `USER_MARK` in front of their text: a statement is
    authorized when it is prepared, and Python caches prepared statements by their text, so an
    unmarked user statement could reuse one the engine prepared unchecked. ``reason`` is why
    the statement being checked was refused (SQLite stops at the first refusal).
    """

    def __init__(self, *, active: bool = False) -> None:
        self.active = active
        self.reason: str | None = None

    def __call__(
        self, action: int, arg1: str | None, arg2: str | None, _db: str | None, source: str | None
    ) -> int:
        if not self.active:
            return sqlite3.SQLITE_OK
        reason = refusal(action, arg1, arg2, source)
        if reason is None:
            return sqlite3.SQLITE_OK
        self.reason = self.reason or reason
        return sqlite3.SQLITE_DENY

    @contextmanager
    def checking(self) -> Iterator[None]:
        """User statements prepared inside this block are checked."""
        self.active, self.reason = True, None
        try:
            yield
        finally:
            self.active = False

    @staticmethod
    def mark(sql: str) -> str:
        """The text to run for the user statement ``sql`` (see the class docstring)."""
        return USER_MARK + sql


# -- bad text ---------------------------------------------------------------------------------


def _utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def text_problem(sql: str, params: Params = ()) -> str | None:
    """Why the statement cannot be handed to SQLite as UTF-8 (None when it can)."""
    if not _utf8(sql):
        return "the SQL text is not valid UTF-8 (it holds a lone surrogate)"
    if isinstance(params, Mapping):
        named = [(repr(key), value) for key, value in params.items()]
    else:
        named = [(str(n), value) for n, value in enumerate(params, start=1)]
    for name, value in named:
        if isinstance(value, str) and not _utf8(value):
            return f"parameter {name} is not valid UTF-8 text (lone surrogate)"
    return None


_DECODE = re.compile(r"^Could not decode to UTF-8 column '(.*?)' with text ", re.DOTALL)


def decode_problem(exc: BaseException) -> str | None:
    """A clear message for SQLite TEXT that is not UTF-8 (None for any other error)."""
    found = _DECODE.match(str(exc))
    if found is None:
        return None
    return f"column {found.group(1)}: the value is not valid UTF-8 text; cast it to BLOB"


def _utf8_bytes(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


def bad_text_in_version(conn: sqlite3.Connection, version: int) -> tuple[str, int] | None:
    """Where a local version holds TEXT that is not UTF-8: ``("table.column", seq)`` of the
    first such change, or None. A search by column, run only after reading the version failed;
    values are read as BLOBs, which needs no decoding."""
    for info in conn_state(conn).crrs(conn).values():
        rows = f"{info.clock} c JOIN {info.lookaside} k ON k.__crsql_key = c.key"
        local = "c.site_id = 0 AND c.db_version = ?"
        match = " AND ".join(f"b.{q(p)} IS k.{q(p)}" for p in info.pks)
        for col in info.cols:
            found = conn.execute(
                f"SELECT c.seq, CAST(b.{q(col)} AS BLOB) FROM {rows} JOIN {q(info.name)} b "
                f"ON {match} WHERE {local} AND c.col_name = ? AND typeof(b.{q(col)}) = 'text'",
                (version, col),
            )
            for seq, raw in found:
                if not _utf8_bytes(raw):
                    return f"{info.name}.{col}", int(seq)
        for pk in info.pks:
            found = conn.execute(
                f"SELECT c.seq, CAST(k.{q(pk)} AS BLOB) FROM {rows} "
                f"WHERE {local} AND typeof(k.{q(pk)}) = 'text'",
                (version,),
            )
            for seq, raw in found:
                if not _utf8_bytes(raw):
                    return f"{info.name}.{pk}", int(seq)
    return None
