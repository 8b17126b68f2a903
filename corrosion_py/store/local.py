"""Local transactions: user statements run as one new version of this node's actor.

Rules:

- **Statement policy.** A local transaction only reads and writes rows: its statements are
  INSERT, REPLACE, UPDATE, DELETE, SELECT, VALUES or WITH, told by their first keyword
  (SQLite's grammar, so no parse is needed). Transaction control would end the group commit's
  SQLite transaction under the engine (half a version committed, bookkeeping skipped), ATTACH
  would stay on the writer, and schema changes go through the schema rules. Statements also run
  under the guard (`store.guard`: no internal table written, no engine function called).
- **Group commit.** Transactions submitted from trio while another group is being written go
  together in the next SQLite transaction (at most `MAX_GROUP`; the waiting callers are the
  queue, so it is bounded by them), each still its own version in a savepoint of its own: one
  that fails rolls back alone. Bookkeeping is published once the group committed.
- **Deadlines.** Each transaction is interrupted once its timeout has passed since it was
  submitted, waiting for the writer included (a transaction's own ``timeout`` can shorten the
  store's bound, never lengthen it); it fails with `StatementError` and rolls back alone.
- **What cannot replicate fails its statement.** The changeset is read before the savepoint
  is released: TEXT that is not UTF-8 fails the statement that wrote it, naming the column.
"""

from __future__ import annotations

import bisect
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import attrs
import trio

from corrosion_py import crdt
from corrosion_py.aliases import Params, Statement
from corrosion_py.crdt import Change
from corrosion_py.crdt.state import conn_state
from corrosion_py.errors import ClockLimitError, StatementError
from corrosion_py.replication.hlc import HLC
from corrosion_py.sqltext import first_word
from corrosion_py.store.bookkeeping import Published
from corrosion_py.store.faults import classify
from corrosion_py.store.guard import bad_text_in_version, decode_problem, text_problem
from corrosion_py.store.writer import Writer
from corrosion_py.wire.messages import Changeset

MAX_GROUP = 256  # local transactions per group commit


@attrs.frozen
class TxResult:
    """A committed local transaction: rows affected per statement, its version (None when it
    changed nothing replicated), its changeset (None likewise), its duration and the duration of
    each statement (seconds)."""

    rows_affected: list[int]
    version: int | None
    changeset: Changeset | None
    elapsed: float
    times: list[float] = attrs.Factory(list)


_ALLOWED_KINDS = frozenset({"INSERT", "REPLACE", "UPDATE", "DELETE", "SELECT", "VALUES", "WITH"})


def refused_kind(sql: str) -> str | None:
    """Why a statement may not run in a local transaction (None when it may). A statement that
    does not start with a keyword is left to SQLite, which refuses it."""
    word = first_word(sql)
    if not word or word in _ALLOWED_KINDS:
        return None
    return (
        f"{word} statements are not allowed in a transaction (only INSERT, REPLACE, "
        "UPDATE, DELETE, SELECT, VALUES and WITH; schema changes go through the schema files "
        "or migrations)"
    )


def _rows_affected(conn: sqlite3.Connection, sql: str, params: Params) -> int:
    """Rows the statement changed (triggers excluded). Python's ``rowcount`` only counts
    statements that begin with INSERT, UPDATE, DELETE or REPLACE, so a ``WITH ... INSERT`` asks
    SQLite's ``changes()``, when the statement changed anything at all."""
    before = conn.total_changes
    rowcount = conn.execute(sql, params).rowcount
    if rowcount >= 0:
        return rowcount
    if conn.total_changes == before:
        return 0
    return int(conn.execute("SELECT changes()").fetchone()[0])


def _split(stmt: Statement) -> tuple[str, Params]:
    if isinstance(stmt, str):
        return stmt, ()
    sql, params = stmt
    return sql, params


def _timed_out(timeout: float | None) -> str:
    return f"interrupted: the transaction timed out after {timeout:g} s and was rolled back"


def _shortest(*timeouts: float | None) -> float | None:
    bounds = [t for t in timeouts if t]
    return min(bounds) if bounds else None


@attrs.define
class _TxRequest:
    statements: Sequence[Statement]
    timeout: float | None
    result: TxResult | None = None
    error: BaseException | None = None
    done: bool = False
    deadline: float | None = None  # time.monotonic() after which the transaction is interrupted

    def __attrs_post_init__(self) -> None:
        if self.timeout is not None:
            self.deadline = time.monotonic() + self.timeout


class LocalTransactions:
    """The node's local transactions, on the writer, one group commit at a time."""

    def __init__(
        self,
        writer: Writer,
        published: Published,
        *,
        actor_id: bytes,
        hlc: HLC,
        clock: Callable[[], int],
        tx_timeout: float | None,
        run_write: Callable[[Callable[[], None]], Awaitable[None]],
    ) -> None:
        self.tx_timeout = tx_timeout or None
        """Seconds after which every local transaction is interrupted and rolled back, waiting
        for the writer included (None: no bound; a transaction's own ``timeout`` may shorten
        it)."""
        self._writer = writer
        self._published = published
        self._actor_id = actor_id
        self._hlc = hlc
        self._clock = clock
        self._run_write = run_write
        self._queue: list[_TxRequest] = []  # bounded by the number of waiting callers
        self._flush_lock = trio.Lock()

    def run_sync(self, statements: Sequence[Statement], timeout: float | None = None) -> TxResult:
        """Run statements atomically as one version of this actor (on this thread), bounded by
        ``timeout`` or the store's bound, whichever is shorter."""
        request = self._request(statements, timeout)
        self._run_group([request])
        return _outcome(request)

    async def run(
        self,
        statements: Sequence[Statement],
        timeout: float | None = None,  # noqa: ASYNC109 (a bound SQLite enforces: no cancel)
    ) -> TxResult:
        """`run_sync` for trio code, with group commit. An interrupted transaction does not
        touch the others of its group."""
        request = self._request(statements, timeout)
        self._queue.append(request)
        async with self._flush_lock:  # FIFO: one group at a time
            if not request.done:
                group = self._queue[:MAX_GROUP]
                del self._queue[:MAX_GROUP]
                try:
                    await self._run_write(partial(self._run_group, group))
                finally:
                    # cancelled before the thread ran: give the group back to the next flusher
                    self._queue[:0] = [r for r in group if not r.done]
        return _outcome(request)

    def _request(self, statements: Sequence[Statement], timeout: float | None) -> _TxRequest:
        return _TxRequest(statements, _shortest(timeout, self.tx_timeout))

    def _run_group(self, group: Sequence[_TxRequest]) -> None:
        """One SQLite transaction for a group of local transactions (on a worker thread)."""
        try:
            with self._writer.writing() as conn:
                conn.execute("BEGIN IMMEDIATE")
                for request in group:
                    try:
                        request.result = self._run_one(conn, request)
                    except StatementError as exc:
                        if classify(exc) is not None:
                            raise  # the file failed, not the statement: the whole group fails
                        request.error = exc
                    except ClockLimitError as exc:  # its version would pass MAX_CLOCK
                        sql, _ = _split(request.statements[-1])
                        request.error = StatementError(len(request.statements) - 1, sql, str(exc))
                conn.execute("COMMIT")
                for request in group:
                    request.done = True
                self._published.record(
                    self._actor_id,
                    [r.result.version for r in group if r.result and r.result.version is not None],
                )
        except BaseException as exc:
            for request in group:
                request.result, request.error = None, exc
                request.done = True
            raise

    def _run_one(self, conn: sqlite3.Connection, request: _TxRequest) -> TxResult:
        """One local transaction inside the group's SQLite transaction (a savepoint)."""
        started = time.perf_counter()
        guard = self._writer.guard
        ts = self._hlc.now(self._clock())
        affected: list[int] = []
        times: list[float] = []
        seqs: list[int] = []  # the engine's seq counter after each statement
        engine = conn_state(conn)
        with crdt.transaction(conn) as tx:
            with self._deadline(conn, request):
                for index, stmt in enumerate(request.statements):
                    sql, params = _split(stmt)
                    refused = refused_kind(sql) or text_problem(sql, params)
                    if refused is not None:
                        raise StatementError(index, sql, refused)
                    if request.deadline is not None and time.monotonic() >= request.deadline:
                        raise StatementError(index, sql, _timed_out(request.timeout))
                    begun = time.perf_counter()
                    try:
                        with guard.checking():
                            affected.append(_rows_affected(conn, guard.mark(sql), params))
                    except (sqlite3.Error, ValueError, OverflowError) as exc:
                        message = guard.reason or decode_problem(exc) or str(exc)
                        if request.deadline is not None and time.monotonic() >= request.deadline:
                            message = _timed_out(request.timeout)
                        raise StatementError(index, sql, message) from exc
                    times.append(time.perf_counter() - begun)
                    seqs.append(engine.seq)
            changes = self._own_changes(conn, engine.pending, request, seqs)
        changeset = None
        if tx.version is not None:
            last_seq = max((c.seq for c in changes), default=0)
            changeset = Changeset(
                self._actor_id, tx.version, tuple(changes), (0, last_seq), last_seq, ts
            )
        return TxResult(affected, tx.version, changeset, time.perf_counter() - started, times)

    def _own_changes(
        self, conn: sqlite3.Connection, version: int | None, request: _TxRequest, seqs: list[int]
    ) -> list[Change]:
        """The change rows of the version a local transaction claimed (none: no version).
        TEXT that is not UTF-8 (``CAST(x'ff' AS TEXT)``) cannot be replicated: the statement
        that wrote it fails, naming the column."""
        if version is None:
            return []
        try:
            return crdt.changes(
                conn, site_id=self._actor_id, min_version=version, max_version=version
            )
        except sqlite3.OperationalError as exc:
            if decode_problem(exc) is None:
                raise
            column, seq = bad_text_in_version(conn, version) or ("?", seqs[-1])
            # statement i took the seqs from seqs[i - 1] up to (not including) seqs[i]
            index = min(bisect.bisect_right(seqs, seq), len(seqs) - 1)
            sql, _ = _split(request.statements[index])
            message = f"column {column}: the value is not valid UTF-8 text; cast it to BLOB"
            raise StatementError(index, sql, message) from exc

    @staticmethod
    @contextmanager
    def _deadline(conn: sqlite3.Connection, request: _TxRequest) -> Iterator[None]:
        """While the request's statements run, SQLite interrupts them once its deadline passed
        (a progress handler: the statement fails with "interrupted", its savepoint rolls back)."""
        deadline = request.deadline
        if deadline is None:
            yield
            return
        conn.set_progress_handler(lambda: time.monotonic() >= deadline, 1000)
        try:
            yield
        finally:
            conn.set_progress_handler(None, 0)


def _outcome(request: _TxRequest) -> TxResult:
    if request.error is not None:
        raise request.error
    assert request.result is not None
    return request.result
