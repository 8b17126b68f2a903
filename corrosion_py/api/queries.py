"""``POST /v1/queries[?timeout=secs]``: one read-only statement, streamed as NDJSON.

    {"columns":["pk","sandwich"]}
    {"row":[1,[1,"burger"]]}
    {"row":[2,[2,"ham"]]}
    {"eoq":{"time":0.0012}}

``row`` is ``[n, cells]`` with n a 1-based counter of this response; a failure after the
columns is an ``{"error": message}`` line that ends the stream. ``eoq.time`` is the seconds
from the statement's start to its last row (Corrosion reports only the start, ~0).

Rules:

- **Read-only, refused before streaming.** Each query gets a read-only connection of its own
  (``mode=ro``) with an authorizer that first applies the node's rules for user SQL
  (`corrosion_py.store.guard`: no internal table written, no engine function that changes
  state, no ``fts3_tokenizer``; 400 naming the table or function), then allows only reads
  (SELECT, reads of columns, functions, recursive CTEs, a few read-only PRAGMAs); anything else
  (INSERT/UPDATE/DELETE, DDL, temp tables, ATTACH, transaction control, PRAGMA writes) is denied
  while SQLite prepares the statement, answered 400 ``{"error":"statement is not readonly"}``.
  Other prepare or bind errors, several statements, an empty one, SQL text or a parameter that
  is not UTF-8 (a lone surrogate): 400 ``{"error": ...}``. A value that is not UTF-8 text
  (``CAST(x'ff' AS TEXT)``) ends the stream with an ``error`` line naming the column.
- **Streamed, bounded.** The statement is stepped on a worker thread in batches of about
  ``query_batch_bytes`` of encoded lines; the next batch is read only once the previous one was
  handed to the server, so a slow client slows the reader and memory holds one batch. (One
  thread call per batch rather than a reader thread feeding a channel: the same bound, and
  nothing left blocked in ``from_thread`` when the client goes away.)
- **Ends cleanly.** Client gone, server shutting down, or the timeout (default
  ``query_timeout`` = 60 s for the whole stream, ``?timeout=0`` none): the running step is
  interrupted (a progress handler checks a stop flag and the deadline) and the connection
  closed. Its read snapshot is the one SQLite lock a request holds across network sends; the
  timeout bounds it.
- **Bounded concurrency.** At most ``query_pool`` (20) queries run at once; another waits up to
  ``query_wait`` seconds for a slot, then gets 503.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from corrosion_py import crdt
from corrosion_py.api.errors import BadRequest, Unavailable
from corrosion_py.api.inputs import read_json, timeout_param
from corrosion_py.api.limits import ApiConfig
from corrosion_py.api.responses import NdjsonResponse, ndjson_line
from corrosion_py.api.statements import Params, parse_statement, row_line
from corrosion_py.store.guard import Guard, decode_problem, text_problem
from corrosion_py.store.store import connect

if TYPE_CHECKING:
    from corrosion_py.agent import Agent

NOT_READONLY = "statement is not readonly"
FETCH = 64  # rows per fetchmany
MAX_BATCH_ROWS = 1024

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


class QueryCursor:
    """One ``/v1/queries`` statement on its own read-only connection. Its methods block: call
    them on a worker thread (`open` once, then `next_chunk` until done; `close` at the end);
    `stop` may be called from any thread and makes a running step give up at once."""

    def __init__(
        self, path: Path, sql: str, params: Params, *, timeout: float | None, batch_bytes: int
    ) -> None:
        self.path = path
        self.sql = sql
        self.params = params
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.batch_bytes = batch_bytes
        self.refused = False
        self.guard = Guard(active=True)  # the node's rules for user SQL, checked first
        self.rows = 0
        self.done = False
        self._stopped = threading.Event()
        self._lock = threading.Lock()  # one thread at a time; `close` waits for a running step
        self._conn: sqlite3.Connection | None = None
        self._cursor: sqlite3.Cursor | None = None
        self._started = 0.0

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
        return int(self.deadline is not None and time.monotonic() >= self.deadline)

    def _expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    # -- the statement -------------------------------------------------------------------------
    def open(self) -> list[str]:
        """Connect, prepare and take the first step; the column names. `BadRequest` when the
        statement is refused or fails before its first row."""
        problem = text_problem(self.sql, self.params)
        if problem is not None:
            raise BadRequest(problem)
        with self._lock:
            conn = self._conn = connect(self.path, readonly=True)
            crdt.register(conn, create=False)
            conn.set_authorizer(self._authorize)
            conn.set_progress_handler(self._progress, 1000)
            self._started = time.perf_counter()
            try:
                cursor = conn.execute(self.sql, self.params)
            except sqlite3.ProgrammingError as exc:  # several statements, wrong bindings
                raise BadRequest(str(exc)) from None
            except (sqlite3.Error, ValueError, OverflowError) as exc:
                if self.guard.reason is not None:
                    raise BadRequest(self.guard.reason) from None
                if self.refused:
                    raise BadRequest(NOT_READONLY) from None
                if self._expired():
                    raise BadRequest(timed_out(self.timeout)) from None
                raise BadRequest(decode_problem(exc) or str(exc)) from None
            if cursor.description is None:
                raise BadRequest("the statement is empty: one SELECT is expected")
            self._cursor = cursor
            return [str(d[0]) for d in cursor.description]

    def next_chunk(self) -> tuple[bytes, bool]:
        """The next encoded lines (rows, then ``eoq``, or an ``error`` line) and whether the
        stream is complete."""
        with self._lock:
            if self.done or self._stopped.is_set() or self._cursor is None:
                return b"", True
            parts: list[bytes] = []
            size = count = 0
            try:
                while size < self.batch_bytes and count < MAX_BATCH_ROWS:
                    batch = self._cursor.fetchmany(FETCH)
                    for row in batch:
                        self.rows += 1
                        line = row_line(self.rows, row)
                        parts.append(line)
                        size += len(line)
                    count += len(batch)
                    if len(batch) < FETCH:
                        elapsed = time.perf_counter() - self._started
                        parts.append(ndjson_line({"eoq": {"time": elapsed}}))
                        self.done = True
                        break
            except (sqlite3.Error, ValueError, OverflowError) as exc:
                message = decode_problem(exc) or str(exc)
                if self._expired():
                    message = timed_out(self.timeout)
                parts.append(ndjson_line({"error": message}))
                self.done = True
            return b"".join(parts), self.done

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


def routes(agent: Agent, config: ApiConfig) -> list[BaseRoute]:
    pool = trio.Semaphore(config.query_pool)
    threads = trio.CapacityLimiter(config.query_pool)

    async def queries(request: Request) -> Response:
        timeout = timeout_param(request, config.query_timeout)
        sql, params = parse_statement(await read_json(request, config.max_body_bytes))
        acquired = False
        with trio.move_on_after(config.query_wait):
            await pool.acquire()
            acquired = True
        if not acquired:
            raise Unavailable(f"too many queries running ({config.query_pool}): retry")
        cursor = QueryCursor(
            agent.store.path, sql, params, timeout=timeout, batch_bytes=config.query_batch_bytes
        )

        async def close() -> None:
            try:
                cursor.stop()
                await trio.to_thread.run_sync(cursor.close)
            finally:
                pool.release()

        try:
            columns = await trio.to_thread.run_sync(cursor.open, limiter=threads)
        except BaseException:
            with trio.CancelScope(shield=True):
                await close()
            raise
        return NdjsonResponse(
            _lines(cursor, columns, threads),
            deadline=None if timeout is None else trio.current_time() + timeout,
            timeout_message=timed_out(timeout),
            on_close=close,
        )

    return [Route("/v1/queries", queries, methods=["POST"])]


async def _lines(
    cursor: QueryCursor, columns: list[str], threads: trio.CapacityLimiter
) -> AsyncIterator[bytes]:
    yield ndjson_line({"columns": columns})
    done = False
    while not done:
        # abandoned on cancel: the response's close then stops the step and waits for it
        chunk, done = await trio.to_thread.run_sync(
            cursor.next_chunk, limiter=threads, abandon_on_cancel=True
        )
        yield chunk
