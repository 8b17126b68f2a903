"""One user query streamed from a read-only connection of its own (what ``/v1/queries`` reads).

Rules:

- **Read-only, refused before the first row.** The connection is opened ``mode=ro`` with an
  authorizer that first applies the node's rules for user SQL (`corrosion_py.store.guard`: no
  internal table written, no engine function that changes state, no ``fts3_tokenizer``; the
  refusal names the table or function), then allows only reads (SELECT, reads of columns,
  functions, recursive CTEs, a few read-only PRAGMAs); anything else (INSERT/UPDATE/DELETE,
  DDL, temp tables, ATTACH, transaction control, PRAGMA writes) is denied while SQLite
  prepares the statement: `NOT_READONLY`. Other prepare or bind errors, several statements, an
  empty one, SQL text or a parameter that is not UTF-8: `QueryError` from ``open``.
- **Read in steps, interruptible.** Rows are fetched a few at a time (``fetch``), so the
  caller decides how much it holds; a value that is not UTF-8 text fails the fetch with a
  `QueryError` naming the column. A progress handler checks a stop flag (``stop``, from any
  thread) and the deadline (``timeout`` from construction), so a running step gives up at
  once; the connection's read snapshot is then released by ``close``.

Every method but ``stop`` blocks: call them on a worker thread, one at a time (a lock makes
``close`` wait for a running step).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from corrosion_py import crdt
from corrosion_py.aliases import Params
from corrosion_py.errors import QueryError
from corrosion_py.store.guard import Guard, decode_problem, text_problem
from corrosion_py.store.store import connect

__all__ = ["NOT_READONLY", "ReadCursor", "timed_out"]

NOT_READONLY = "statement is not readonly"

_READ_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE, sqlite3.SQLITE_FUNCTION}
)
# PRAGMAs that only report; those in _PRAGMA_ARG_OK may name a table or index, the others are
# allowed only without a value (``PRAGMA user_version``, not ``PRAGMA user_version = 3``)
_PRAGMA_ARG_OK = frozenset(
    {
        "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
        "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check",
    }
)  # fmt: skip
_PRAGMA_QUERY_OK = _PRAGMA_ARG_OK | {
    "application_id", "cache_size", "collation_list", "compile_options", "data_version",
    "database_list", "encoding", "foreign_keys", "freelist_count", "function_list",
    "journal_mode", "module_list", "page_count", "page_size", "pragma_list", "schema_version",
    "user_version",
}  # fmt: skip


def timed_out(timeout: float | None) -> str:
    return f"query timed out after {timeout:g} s"


class ReadCursor:
    """One read-only statement on its own connection: `open` once, then `fetch` until it
    returns fewer rows than asked (or None once stopped), `close` at the end."""

    def __init__(self, path: Path, sql: str, params: Params, *, timeout: float | None) -> None:
        self.path = path
        self.sql = sql
        self.params = params
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.refused = False
        self.guard = Guard(active=True)  # the node's rules for user SQL, checked first
        self._stopped = threading.Event()
        self._lock = threading.Lock()  # one thread at a time; `close` waits for a running step
        self._conn: sqlite3.Connection | None = None
        self._cursor: sqlite3.Cursor | None = None
        self._started = 0.0

    @property
    def timeout_message(self) -> str:
        """The error a stream cut by the deadline ends with."""
        return timed_out(self.timeout)

    @property
    def elapsed(self) -> float:
        """Seconds since the statement started (0 before ``open``)."""
        return time.perf_counter() - self._started if self._started else 0.0

    # -- callbacks SQLite calls ------------------------------------------------------------------
    def _authorize(
        self, action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None
    ) -> int:
        if self.guard(action, arg1, arg2, db, source) == sqlite3.SQLITE_DENY:
            return sqlite3.SQLITE_DENY
        if action in _READ_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA:
            name = (arg1 or "").lower()
            if name in _PRAGMA_ARG_OK or (name in _PRAGMA_QUERY_OK and arg2 is None):
                return sqlite3.SQLITE_OK
        # the pragma_* table-valued functions read the schema table through an UPDATE check
        # of sqlite_master; the connection is read-only, so this cannot write
        if action == sqlite3.SQLITE_UPDATE and arg1 == "sqlite_master" and db == "main":
            return sqlite3.SQLITE_OK
        self.refused = True
        return sqlite3.SQLITE_DENY

    def _progress(self) -> int:
        if self._stopped.is_set():
            return 1
        return int(self._expired())

    def _expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    # -- the statement -------------------------------------------------------------------------
    def open(self) -> list[str]:
        """Connect, prepare and take the first step; the column names. `QueryError` when the
        statement is refused or fails before its first row."""
        problem = text_problem(self.sql, self.params)
        if problem is not None:
            raise QueryError(problem)
        with self._lock:
            conn = self._conn = connect(self.path, readonly=True)
            crdt.register(conn, create=False)
            conn.set_authorizer(self._authorize)
            conn.set_progress_handler(self._progress, 1000)
            self._started = time.perf_counter()
            try:
                cursor = conn.execute(self.sql, self.params)
            except sqlite3.ProgrammingError as exc:  # several statements, wrong bindings
                raise QueryError(str(exc)) from None
            except (sqlite3.Error, ValueError, OverflowError) as exc:
                if self.guard.reason is not None:
                    raise QueryError(self.guard.reason) from None
                if self.refused:
                    raise QueryError(NOT_READONLY) from None
                if self._expired():
                    raise QueryError(timed_out(self.timeout)) from None
                raise QueryError(decode_problem(exc) or str(exc)) from None
            if cursor.description is None:
                raise QueryError("the statement is empty: one SELECT is expected")
            self._cursor = cursor
            return [str(d[0]) for d in cursor.description]

    def fetch(self, n: int) -> list[tuple[Any, ...]] | None:
        """Up to ``n`` more rows (fewer: the last ones); None once stopped or closed.
        `QueryError` when a step fails (the deadline, a value that is not UTF-8)."""
        with self._lock:
            if self._stopped.is_set() or self._cursor is None:
                return None
            try:
                return self._cursor.fetchmany(n)
            except (sqlite3.Error, ValueError, OverflowError) as exc:
                if self._expired():
                    raise QueryError(timed_out(self.timeout)) from None
                raise QueryError(decode_problem(exc) or str(exc)) from None

    def stop(self) -> None:
        """Make a running step fail at once and every later call end (any thread)."""
        self._stopped.set()

    def close(self) -> None:
        self._stopped.set()
        with self._lock:
            self._cursor = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None
