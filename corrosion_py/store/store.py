"""The node store: the one SQLite file of a node and the only path data takes in or out of it.

One writer connection, used by one thread at a time under `_write_lock` (held only around a
SQLite transaction, never across a network await); a small pool of read-only connections, one per
worker thread. Every blocking call has an async twin that runs it on a worker thread through a
trio CapacityLimiter, so trio code never blocks its event loop.
"""

from __future__ import annotations

import bisect
import itertools
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import attrs
import trio

from corrosion_py import crdt
from corrosion_py.aliases import Params, Statement
from corrosion_py.crdt import Change
from corrosion_py.crdt.state import ENGINE_DDL, conn_state, has_engine_tables
from corrosion_py.errors import (
    ClockLimitError,
    QueryError,
    StatementError,
    StorageFault,
    UnusableDatabase,
)
from corrosion_py.replication.booked import BookedVersions
from corrosion_py.replication.chunking import SYNC_BUDGET
from corrosion_py.replication.hlc import HLC, ClockDriftError
from corrosion_py.replication.needs import Need, Served, compute_needs, sync_state
from corrosion_py.store import bookkeeping, members
from corrosion_py.store.apply import SCHEMA as APPLY_SCHEMA
from corrosion_py.store.apply import Applier, ApplyResult, take_quarantined
from corrosion_py.store.faults import FaultState, classify
from corrosion_py.store.guard import Guard, bad_text_in_version, decode_problem, text_problem
from corrosion_py.store.integrity import check_file, quick_check, refusal
from corrosion_py.store.members import MemberRecord
from corrosion_py.store.migrations import SchemaResult, apply_schema, apply_schema_statements
from corrosion_py.store.serve import Server
from corrosion_py.wire.codec import MAX_CHANGESET_OVERHEAD
from corrosion_py.wire.codec import encoded_change_size as size_of_change
from corrosion_py.wire.messages import Changeset, EmptyChangeset, Item, SyncState

T = TypeVar("T")

STORE_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS __corro_state (key TEXT PRIMARY KEY NOT NULL, value ANY)",
    "CREATE TABLE IF NOT EXISTS __corro_members (actor_id BLOB PRIMARY KEY NOT NULL, "
    "address TEXT NOT NULL, state TEXT NOT NULL, incarnation INTEGER NOT NULL DEFAULT 0, "
    "updated_at INTEGER NOT NULL)",
    *bookkeeping.SCHEMA,
    *APPLY_SCHEMA,
]


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


_TX_TIMEOUT: ContextVar[float | None] = ContextVar("corro_tx_timeout", default=None)


@contextmanager
def transaction_timeout(seconds: float | None) -> Iterator[None]:
    """Local transactions submitted inside this block (by this task: `Store.transaction`, or
    ``Agent.transaction`` which calls it) are interrupted once ``seconds`` have passed since
    their submission, waiting for the writer included; the interrupted one fails with a
    `StatementError` and is rolled back (the others of its group commit are not touched).
    None (or 0) sets no bound of its own. The store's ``tx_timeout`` applies in any case: this
    can only shorten it. A context variable, so callers above the store (the HTTP API) can
    bound a transaction without every layer in between passing it along."""
    token = _TX_TIMEOUT.set(seconds or None)
    try:
        yield
    finally:
        _TX_TIMEOUT.reset(token)


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


# A local transaction only reads and writes rows. Transaction control would end the group
# commit's SQLite transaction under the engine (half a version committed, bookkeeping skipped),
# ATTACH would stay on the writer, and schema changes go through the schema rules
# (`apply_schema`). The statement kind is its first keyword (SQLite's grammar), so this check
# needs no parse; whatever passes is one of these seven kinds.
_ALLOWED_KINDS = frozenset({"INSERT", "REPLACE", "UPDATE", "DELETE", "SELECT", "VALUES", "WITH"})
_FIRST_WORD = re.compile(r"(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?(?:\*/|\Z))*(\w+)?", re.DOTALL)


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


def _refused_kind(sql: str) -> str | None:
    """Why a statement may not run in a local transaction (None when it may)."""
    match = _FIRST_WORD.match(sql)
    word = (match.group(1) or "") if match else ""
    if not word or word.upper() in _ALLOWED_KINDS:
        return None
    return (
        f"{word.upper()} statements are not allowed in a transaction (only INSERT, REPLACE, "
        "UPDATE, DELETE, SELECT, VALUES and WITH; schema changes go through the schema files "
        "or migrations)"
    )


def _split(stmt: Statement) -> tuple[str, Params]:
    if isinstance(stmt, str):
        return stmt, ()
    sql, params = stmt
    return sql, params


def _timed_out(timeout: float | None) -> str:
    return f"interrupted: the transaction timed out after {timeout:g} s and was rolled back"


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def _seed_site_id(conn: sqlite3.Connection, site_id: bytes) -> None:
    """Store ``site_id`` as the local site id of a database the engine has not set up yet:
    ``crdt.init`` then finds it and creates the rest around it (a set-up database keeps its
    own id)."""
    if has_engine_tables(conn):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for ddl in ENGINE_DDL:
            if "crsql_site_id (" in ddl:  # the site id table and its index
                conn.execute(ddl)
        conn.execute(
            "INSERT OR IGNORE INTO crsql_site_id (site_id, ordinal) VALUES (?, 0)", (site_id,)
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class ApplyInterrupted(StorageFault):
    """A storage fault stopped `Store.apply` part-way: the items before ``rest`` committed (their
    result is ``done``), ``rest`` was not applied (retry it later, or leave it to sync)."""

    def __init__(self, fault: StorageFault, done: ApplyResult, rest: list[Item]) -> None:
        super().__init__(fault.kind, fault.path, fault.detail)
        self.done = done
        self.rest = rest


class Store:
    """A node's database. Open with `Store.open`; close with `close` (or use as a context).

    Every write transaction runs in `_writing`: a storage fault (disk full, I/O error, corrupt
    file; `store.faults`) rolls it back and raises `StorageFault` instead of SQLite's error,
    the node's fault state records it for health, and a corrupt file refuses later writes."""

    def __init__(
        self,
        path: Path,
        writer: sqlite3.Connection,
        *,
        readers: int,
        max_drift_ns: int,
        clock: Callable[[], int] = time.time_ns,
        tx_timeout: float | None = None,
    ) -> None:
        self.path = path
        self.tx_timeout = tx_timeout or None
        """Seconds after which every local transaction is interrupted and rolled back, waiting
        for the writer included (None: no bound; `transaction_timeout` may shorten it)."""
        self.faults = FaultState(path)
        self.clock = clock
        """Physical time in ns since the epoch, for HLC timestamps (a simulator passes its
        virtual clock, so runs are reproducible)."""
        self._writer = writer
        self._guard = Guard()
        writer.set_authorizer(self._guard)
        self._write_lock = threading.Lock()
        self.actor_id = crdt.site_id(writer)
        self.hlc = HLC(max_drift_ns, lock=threading.Lock())
        self.bookie: dict[bytes, BookedVersions] = bookkeeping.load(writer)
        """Published bookkeeping per actor. Copy-on-write: an entry is never changed once
        published, only replaced under ``_bookie_lock``; readers take ``bookie_snapshot()``."""
        self._bookie_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self.write_limiter = trio.CapacityLimiter(1)
        self._tx_queue: list[_TxRequest] = []  # bounded by the number of waiting callers
        self._flush_lock = trio.Lock()
        self.read_limiter = trio.CapacityLimiter(readers)
        self.quarantined_total = 0
        self.quarantine_dropped = 0
        self.rejected: Counter[str] = Counter()
        """Claims of remote changesets refused or cut by the apply rules, by reason."""
        self.clock_drift_rejections = 0
        self.batch_cost = 2_000  # column changes per apply transaction, adapted per batch

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        schema_paths: Sequence[str | Path] = (),
        readers: int = 4,
        max_drift_ns: int = 300_000_000,
        clock: Callable[[], int] = time.time_ns,
        site_id: bytes | None = None,
        tx_timeout: float | None = None,
        integrity_check_timeout: float | None = None,
    ) -> Store:
        """Open (creating if needed) a store; apply the schema files when given.

        ``clock`` gives physical time in ns since the epoch (HLC timestamps of local
        transactions and of applies); ``site_id`` (16 bytes) is this node's actor id if the
        database is created now, and is ignored when it exists already (its id is persisted).
        Both exist so a simulator can make runs reproducible. ``tx_timeout`` bounds every local
        transaction (seconds; None for no bound).

        A file that cannot be this node's database (empty, not SQLite, truncated, corrupt) is
        refused with `UnusableDatabase` before anything is written (`store.integrity`);
        ``integrity_check_timeout`` (seconds) runs ``PRAGMA quick_check`` first, None skips it.
        """
        if site_id is not None and len(site_id) != 16:
            raise ValueError("a site id is 16 bytes")
        path = Path(path)
        check_file(path)
        try:
            writer = connect(path)
        except sqlite3.Error as exc:
            raise UnusableDatabase(path, refusal(exc)) from exc
        try:
            if integrity_check_timeout is not None:
                quick_check(writer, path, integrity_check_timeout)
            if site_id is not None:
                _seed_site_id(writer, site_id)
            crdt.init(writer)
            writer.execute("BEGIN IMMEDIATE")
            for ddl in STORE_SCHEMA:
                writer.execute(ddl)
            writer.execute("COMMIT")
        except sqlite3.Error as exc:
            writer.close()
            raise UnusableDatabase(path, refusal(exc)) from exc
        except BaseException:
            writer.close()
            raise
        store = cls(
            path,
            writer,
            readers=readers,
            max_drift_ns=max_drift_ns,
            clock=clock,
            tx_timeout=tx_timeout,
        )
        if schema_paths:
            try:
                store.apply_schema_sync(schema_paths)
            except BaseException:
                store.close()
                raise
        return store

    def close(self) -> None:
        # readers first: the last connection to close removes the WAL, and a read-only one
        # cannot (the -wal and -shm files would stay behind after a clean stop)
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _writing(self, *, clears: bool = True) -> Iterator[sqlite3.Connection]:
        """The writer connection, under the write lock, for one write transaction. Refused at
        once while the file is corrupt. On any error the transaction is rolled back (SQLite may
        have done it already); a storage fault is recorded and raised as `StorageFault`. A block
        that ends normally ends a transient fault (it committed), unless ``clears`` is False: a
        small routine write can fit in a nearly full disk (or in the log's old space) where
        the changes that failed still cannot."""
        with self._write_lock:
            self.faults.check_writable()
            conn = self._writer
            try:
                yield conn
            except BaseException as exc:
                try:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                except sqlite3.Error:
                    if classify(exc) is None:
                        raise
                finally:
                    crdt.refresh(conn)  # the engine may have cached rows that were rolled back
                fault = self.faults.failed(exc, self.clock() / 1e9)
                if fault is not None:
                    raise fault from exc
                raise
            if clears:
                self.faults.succeeded(self.clock() / 1e9)

    # -- reading ------------------------------------------------------------------------------
    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            crdt.register(conn, create=False)
            self._local.guard = Guard()
            conn.set_authorizer(self._local.guard)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return fn(self.reader())

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await trio.to_thread.run_sync(self.read_sync, fn, limiter=self.read_limiter)

    def query_sync(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement sent by a user (the guard's rules apply: no internal
        table written, none of the engine's writing functions; `QueryError` otherwise)."""
        problem = text_problem(sql, params)
        if problem is not None:
            raise QueryError(problem)
        conn = self.reader()
        guard: Guard = self._local.guard
        try:
            with guard.checking():
                return conn.execute(guard.mark(sql), params).fetchall()
        except (sqlite3.Error, ValueError, OverflowError) as exc:
            raise QueryError(guard.reason or decode_problem(exc) or str(exc)) from exc

    async def query(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        return await trio.to_thread.run_sync(
            self.query_sync, sql, params, limiter=self.read_limiter
        )

    # -- schema -------------------------------------------------------------------------------
    def apply_schema_sync(self, paths: Sequence[str | Path]) -> SchemaResult:
        with self._writing() as conn:
            result = apply_schema(conn, paths)
        if result.changed:
            self.retry_quarantined_sync()
        return result

    async def apply_schema(self, paths: Sequence[str | Path]) -> SchemaResult:
        return await trio.to_thread.run_sync(
            self.apply_schema_sync, paths, limiter=self.write_limiter
        )

    def apply_schema_statements_sync(
        self, statements: Sequence[str], source: str = "<api>"
    ) -> SchemaResult:
        """Apply schema statements given as text on top of the schema recorded in the database
        (`schema.apply_schema_statements`: same rules, one transaction)."""
        with self._writing() as conn:
            result = apply_schema_statements(conn, statements, source)
        if result.changed:
            self.retry_quarantined_sync()
        return result

    async def apply_schema_statements(
        self, statements: Sequence[str], source: str = "<api>"
    ) -> SchemaResult:
        return await trio.to_thread.run_sync(
            self.apply_schema_statements_sync, statements, source, limiter=self.write_limiter
        )

    # -- local writes -------------------------------------------------------------------------
    def transaction_sync(self, statements: Sequence[Statement]) -> TxResult:
        """Run statements atomically as one version of this actor."""
        request = self._request(statements)
        self._run_group([request])
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    async def transaction(self, statements: Sequence[Statement]) -> TxResult:
        """`transaction_sync` for trio code, with group commit: transactions submitted while
        another group is being written go together in the next SQLite transaction (each still
        its own version, in a savepoint of its own), so concurrent writers share one commit."""
        request = self._request(statements)
        self._tx_queue.append(request)
        async with self._flush_lock:  # FIFO: one group at a time
            if not request.done:
                group = self._tx_queue[:MAX_GROUP]
                del self._tx_queue[:MAX_GROUP]
                try:
                    await trio.to_thread.run_sync(
                        self._run_group, group, limiter=self.write_limiter
                    )
                finally:
                    # cancelled before the thread ran: give the group back to the next flusher
                    self._tx_queue[:0] = [r for r in group if not r.done]
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _request(self, statements: Sequence[Statement]) -> _TxRequest:
        return _TxRequest(statements, _shortest(_TX_TIMEOUT.get(), self.tx_timeout))

    def _run_group(self, group: Sequence[_TxRequest]) -> None:
        """One SQLite transaction for a group of local transactions (on a worker thread)."""
        try:
            with self._writing() as conn:
                conn.execute("BEGIN IMMEDIATE")
                for request in group:
                    try:
                        request.result = self._run_one(request)
                    except StatementError as exc:
                        if classify(exc) is not None:
                            raise  # the file failed, not the statement: the whole group fails
                        request.error = exc
                    except ClockLimitError as exc:  # its version would pass MAX_CLOCK
                        sql, _ = _split(request.statements[-1])
                        request.error = StatementError(len(request.statements) - 1, sql, str(exc))
                conn.execute("COMMIT")
                with self._bookie_lock:
                    old = self.bookie.get(self.actor_id)
                    booked = old.copy() if old is not None else BookedVersions()
                    for request in group:
                        request.done = True
                        if request.result is not None and request.result.version is not None:
                            booked.record(request.result.version, request.result.version)
                    self.bookie[self.actor_id] = booked
        except BaseException as exc:
            for request in group:
                request.result, request.error = None, exc
                request.done = True
            raise

    def _run_one(self, request: _TxRequest) -> TxResult:
        """One local transaction inside the group's SQLite transaction (a savepoint). User
        statements run under the guard (`store.guard`); the changeset is read before the
        savepoint is released, so a value that cannot be replicated fails this transaction
        alone."""
        started = time.perf_counter()
        conn = self._writer
        guard = self._guard
        ts = self.hlc.now(self.clock())
        affected: list[int] = []
        times: list[float] = []
        seqs: list[int] = []  # the engine's seq counter after each statement
        engine = conn_state(conn)
        with crdt.transaction(conn) as tx:
            with self._deadline(request):
                for index, stmt in enumerate(request.statements):
                    sql, params = _split(stmt)
                    refused = _refused_kind(sql) or text_problem(sql, params)
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
                self.actor_id, tx.version, tuple(changes), (0, last_seq), last_seq, ts
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
                conn, site_id=self.actor_id, min_version=version, max_version=version
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

    @contextmanager
    def _deadline(self, request: _TxRequest) -> Iterator[None]:
        """While the request's statements run, SQLite interrupts them once its deadline passed
        (a progress handler: the statement fails with "interrupted", its savepoint rolls back)."""
        deadline = request.deadline
        if deadline is None:
            yield
            return
        self._writer.set_progress_handler(lambda: time.monotonic() >= deadline, 1000)
        try:
            yield
        finally:
            self._writer.set_progress_handler(None, 0)

    # -- remote changes -----------------------------------------------------------------------
    def apply_sync(self, items: Sequence[Item]) -> ApplyResult:
        """Apply remote changesets, in transactions of about `batch_cost` column changes each;
        the size adapts to keep one transaction around 100 ms."""
        result = ApplyResult()
        now = self.clock()
        for item in items:
            if item.ts:
                try:
                    self.hlc.update(item.ts, now)
                except ClockDriftError:  # a peer's bad clock is counted, never stops an apply
                    self.clock_drift_rejections += 1
        batch: list[Item] = []
        cost = done = 0
        for item in items:
            batch.append(item)
            cost += len(item.changes) if isinstance(item, Changeset) else 1
            if cost >= self.batch_cost:
                self._apply_part(batch, result, items[done:])
                done, batch, cost = done + len(batch), [], 0
        if batch:
            self._apply_part(batch, result, items[done:])
        return result

    def _apply_part(self, batch: list[Item], result: ApplyResult, rest: Sequence[Item]) -> None:
        try:
            result.extend(self._apply_batch(batch))
        except StorageFault as fault:
            raise ApplyInterrupted(fault, result, list(rest)) from fault

    async def apply(self, items: Sequence[Item]) -> ApplyResult:
        """`apply_sync` on a worker thread (raises `ApplyInterrupted` on a storage fault)."""
        return await trio.to_thread.run_sync(self.apply_sync, items, limiter=self.write_limiter)

    def _apply_batch(self, batch: Sequence[Item]) -> ApplyResult:
        started = time.perf_counter()
        with self._writing() as conn:
            conn.execute("BEGIN IMMEDIATE")
            applier = Applier(conn, self.actor_id, self.bookie_snapshot())
            result = applier.apply(batch)
            conn.execute("COMMIT")
            with self._bookie_lock:  # published only once committed
                self.bookie.update(applier.work)
        self.quarantined_total += len(result.quarantined)
        self.quarantine_dropped += result.quarantine_dropped
        self.rejected.update(result.rejected)
        elapsed = time.perf_counter() - started
        if elapsed > 0.2:
            self.batch_cost = max(100, self.batch_cost // 2)
        elif elapsed < 0.05:
            self.batch_cost = min(16_000, self.batch_cost + 500)
        return result

    def retry_quarantined_sync(self) -> ApplyResult:
        """Re-apply every quarantined changeset (after a schema change)."""
        with self._writing() as conn:
            conn.execute("BEGIN IMMEDIATE")
            items = take_quarantined(conn)
            conn.execute("COMMIT")
        return self.apply_sync(items)

    def quarantine(self) -> list[tuple[bytes, int, str]]:
        return [
            (bytes(a), v, r)
            for a, v, r in self.reader().execute(
                "SELECT actor_id, version, reason FROM __corro_quarantine "
                "ORDER BY actor_id, version"
            )
        ]

    # -- membership ---------------------------------------------------------------------------
    def save_members_sync(self, records: Sequence[MemberRecord]) -> None:
        with self._writing(clears=False) as conn:
            conn.execute("BEGIN IMMEDIATE")
            members.save(conn, records)
            conn.execute("COMMIT")

    async def save_members(self, records: Sequence[MemberRecord]) -> None:
        await trio.to_thread.run_sync(self.save_members_sync, records, limiter=self.write_limiter)

    def load_members(self) -> list[MemberRecord]:
        return members.load(self.reader())

    # -- sync ---------------------------------------------------------------------------------
    def sync_state(self) -> SyncState:
        return sync_state(self.actor_id, self.bookie_snapshot())

    def bookie_snapshot(self) -> dict[bytes, BookedVersions]:
        """The published bookkeeping, safe to read from any thread (entries are immutable once
        published)."""
        with self._bookie_lock:
            return dict(self.bookie)

    def needs_from(self, theirs: SyncState) -> dict[bytes, list[Need]]:
        return compute_needs(self.sync_state(), theirs)

    def serve_sync(
        self,
        needs: Mapping[bytes, Sequence[Need]],
        conn: sqlite3.Connection | None = None,
        served: Served | None = None,
    ) -> Iterator[Changeset | EmptyChangeset]:
        """The changesets answering a peer's needs, newest versions first. No read transaction
        spans the iteration (the caller sends between items): each window of versions is read as
        its own snapshot, so memory and WAL retention stay bounded however much is served.
        ``served`` carries what the session got already (nothing is served twice in it)."""
        server = Server(
            conn or self.reader(),
            self.bookie_snapshot(),
            budget=SYNC_BUDGET,
            size_of=size_of_change,
            overhead=MAX_CHANGESET_OVERHEAD,
            served=served,
        )
        for actor, actor_needs in needs.items():
            for need in actor_needs:
                yield from server.serve(actor, need)

    async def stream_sync(
        self, needs: Mapping[bytes, Sequence[Need]], batch: int = 64, served: Served | None = None
    ) -> AsyncIterator[list[Changeset | EmptyChangeset]]:
        """`serve_sync` for trio code: batches read on a worker thread, on a connection of its
        own, so the event loop never blocks and nothing is held while the caller sends."""
        conn = connect(self.path, readonly=True)
        crdt.register(conn, create=False)
        try:
            items = self.serve_sync(needs, conn, served)

            def take() -> list[Changeset | EmptyChangeset]:
                return list(itertools.islice(items, batch))

            while chunk_ := await trio.to_thread.run_sync(take, limiter=self.read_limiter):
                yield chunk_
        finally:
            conn.close()

    def local_changes(self, version: int) -> list[Change]:
        return crdt.changes(
            self.reader(), site_id=self.actor_id, min_version=version, max_version=version
        )
