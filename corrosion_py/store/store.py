"""The node store: the one SQLite file of a node and the only path data takes in or out of it.

`Store` is the facade; each seam is a module of its own: `connections` (opening, the readers
of each worker thread), `writer` (the one writing connection and the fault bracket every write
runs in), `local` (local transactions: statement policy, group commit, deadlines), `remote`
(remote changesets in transactions of adaptive size), `bookkeeping` (persisted and published),
`members`, `serve` (answering a peer's needs) and `migrations` (the schema).

Every blocking call has an async twin that runs it on a worker thread through a trio
CapacityLimiter (one for the writer, one for readers), so trio code never blocks its event
loop, and the writer's lock is held only around a SQLite transaction, never across a network
await.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import trio

from corrosion_py import crdt
from corrosion_py.aliases import Params, Statement
from corrosion_py.crdt import Change
from corrosion_py.errors import QueryError, UnusableDatabase
from corrosion_py.replication.booked import BookedVersions
from corrosion_py.replication.chunking import SYNC_BUDGET
from corrosion_py.replication.hlc import HLC
from corrosion_py.replication.needs import Need, Served, compute_needs, sync_state
from corrosion_py.store import apply, bookkeeping, members
from corrosion_py.store.apply import ApplyResult
from corrosion_py.store.connections import Readers, connect, open_reader
from corrosion_py.store.faults import FaultState
from corrosion_py.store.guard import decode_problem, text_problem
from corrosion_py.store.integrity import check_file, quick_check, refusal
from corrosion_py.store.local import LocalTransactions, TxResult
from corrosion_py.store.members import MemberRecord
from corrosion_py.store.migrations import SchemaResult, apply_schema, apply_schema_statements
from corrosion_py.store.remote import ApplyInterrupted, RemoteChanges
from corrosion_py.store.serve import Server
from corrosion_py.store.worker import WriteThread
from corrosion_py.store.writer import Writer
from corrosion_py.wire.codec import MAX_CHANGESET_OVERHEAD, encoded_change_size
from corrosion_py.wire.messages import Changeset, EmptyChangeset, Item, SyncState

__all__ = [
    "STORE_SCHEMA",
    "ApplyInterrupted",
    "Store",
    "TxResult",
    "connect",
]

T = TypeVar("T")

INLINE_APPLY = 256
"""Column changes a batch of remote changesets may carry and still be applied on the event
loop (when no other write is under way); larger batches go to the write thread."""

STORE_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS __corro_state (key TEXT PRIMARY KEY NOT NULL, value ANY)",
    "CREATE TABLE IF NOT EXISTS __corro_members (actor_id BLOB PRIMARY KEY NOT NULL, "
    "address TEXT NOT NULL, state TEXT NOT NULL, incarnation INTEGER NOT NULL DEFAULT 0, "
    "updated_at INTEGER NOT NULL)",
    *bookkeeping.SCHEMA,
    *apply.SCHEMA,
]


class Store:
    """A node's database. Open with `Store.open`; close with `close` (or use as a context)."""

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        *,
        readers: int,
        max_drift_ns: int,
        clock: Callable[[], int] = time.time_ns,
        tx_timeout: float | None = None,
    ) -> None:
        self.path = path
        self.clock = clock
        """Physical time in ns since the epoch, for HLC timestamps (a simulator passes its
        virtual clock, so runs are reproducible)."""
        self._writer = Writer(path, conn, clock)
        self.actor_id = crdt.site_id(conn)
        self.hlc = HLC(max_drift_ns, lock=threading.Lock())
        self._published = bookkeeping.Published(bookkeeping.load(conn))
        self._readers = Readers(path)
        self.read_limiter = trio.CapacityLimiter(readers)
        self._thread: WriteThread | None = None
        self._local = LocalTransactions(
            self._writer,
            self._published,
            actor_id=self.actor_id,
            hlc=self.hlc,
            clock=clock,
            tx_timeout=tx_timeout,
            run_write=self.run_write,
        )
        self._remote = RemoteChanges(
            self._writer, self._published, actor_id=self.actor_id, hlc=self.hlc, clock=clock
        )

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
            conn = connect(path)
        except sqlite3.Error as exc:
            raise UnusableDatabase(path, refusal(exc)) from exc
        try:
            if integrity_check_timeout is not None:
                quick_check(conn, path, integrity_check_timeout)
            crdt.init(conn, site_id=site_id)
            conn.execute("BEGIN IMMEDIATE")
            for ddl in STORE_SCHEMA:
                conn.execute(ddl)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.close()
            raise UnusableDatabase(path, refusal(exc)) from exc
        except BaseException:
            conn.close()
            raise
        store = cls(
            path,
            conn,
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

    async def run_write(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (a write) on the store's write thread (`store.worker`), started on first
        use: trio code never blocks on SQLite, and writes never contend for the writer."""
        if self._thread is None:
            self._thread = WriteThread(f"corrosion-writer-{self.path.name}")
        return await self._thread.run(fn)

    def close(self) -> None:
        if self._thread is not None:
            self._thread.close()  # the queued writes finish first
        self._readers.close()  # first: the writer, closing last, removes the WAL
        self._writer.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def faults(self) -> FaultState:
        """The node's storage faults (`store.faults`), for health."""
        return self._writer.faults

    @property
    def tx_timeout(self) -> float | None:
        """Seconds after which every local transaction is interrupted and rolled back (None: no
        bound; a transaction's own ``timeout`` may shorten it)."""
        return self._local.tx_timeout

    # -- reading ------------------------------------------------------------------------------
    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection."""
        return self._readers.get()[0]

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
        conn, guard = self._readers.get()
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
        with self._writer.writing() as conn:
            result = apply_schema(conn, paths)
        if result.changed:
            self.retry_quarantined_sync()
        return result

    async def apply_schema(self, paths: Sequence[str | Path]) -> SchemaResult:
        return await self.run_write(partial(self.apply_schema_sync, paths))

    def apply_schema_statements_sync(
        self, statements: Sequence[str], source: str = "<api>"
    ) -> SchemaResult:
        """Apply schema statements given as text on top of the schema recorded in the database
        (`migrations.apply_schema_statements`: same rules, one transaction)."""
        with self._writer.writing() as conn:
            result = apply_schema_statements(conn, statements, source)
        if result.changed:
            self.retry_quarantined_sync()
        return result

    async def apply_schema_statements(
        self, statements: Sequence[str], source: str = "<api>"
    ) -> SchemaResult:
        return await self.run_write(partial(self.apply_schema_statements_sync, statements, source))

    # -- local writes -------------------------------------------------------------------------
    def transaction_sync(
        self, statements: Sequence[Statement], *, timeout: float | None = None
    ) -> TxResult:
        """Run statements atomically as one version of this actor (`store.local`).

        The transaction is interrupted and rolled back (`StatementError`) once ``timeout`` (or
        the store's ``tx_timeout``, whichever is shorter) has passed since its submission,
        waiting for the writer included; None or 0 sets no bound of its own."""
        return self._local.run_sync(statements, timeout)

    async def transaction(
        self,
        statements: Sequence[Statement],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (a bound SQLite enforces: no cancel)
    ) -> TxResult:
        """`transaction_sync` for trio code, with group commit: transactions submitted while
        another group is being written go together in the next SQLite transaction (each still
        its own version, in a savepoint of its own), so concurrent writers share one commit.
        An interrupted transaction (``timeout``) does not touch the others of its group."""
        return await self._local.run(statements, timeout)

    # -- remote changes -----------------------------------------------------------------------
    def apply_sync(self, items: Sequence[Item]) -> ApplyResult:
        """Apply remote changesets, in transactions of an adaptive number of column changes
        (`store.remote`; raises `ApplyInterrupted` on a storage fault)."""
        return self._remote.apply(items)

    async def apply(self, items: Sequence[Item]) -> ApplyResult:
        """`apply_sync` for trio code (raises `ApplyInterrupted` on a storage fault): on the
        write thread, except a small batch (at most ``INLINE_APPLY`` column changes) while the
        write thread is idle, which runs right here: a thread hop costs more CPU than such an
        apply (about 55 µs against 40-150 µs), and its work is bounded (a few ms at worst)."""
        if (self._thread is None or self._thread.pending == 0) and sum(
            len(i.changes) if isinstance(i, Changeset) else 1 for i in items
        ) <= INLINE_APPLY:
            result = self.apply_sync(items)
            await trio.lowlevel.checkpoint()
            return result
        return await self.run_write(partial(self.apply_sync, items))

    def retry_quarantined_sync(self) -> ApplyResult:
        """Re-apply every quarantined changeset (after a schema change)."""
        return self._remote.retry_quarantined()

    def quarantine(self) -> list[tuple[bytes, int, str]]:
        return [
            (bytes(a), v, r)
            for a, v, r in self.reader().execute(
                "SELECT actor_id, version, reason FROM __corro_quarantine "
                "ORDER BY actor_id, version"
            )
        ]

    @property
    def rejected(self) -> Counter[str]:
        """Claims of remote changesets refused or cut by the apply rules, by reason."""
        return self._remote.rejected

    @property
    def quarantined_total(self) -> int:
        return self._remote.quarantined_total

    @property
    def quarantine_dropped(self) -> int:
        return self._remote.quarantine_dropped

    @property
    def clock_drift_rejections(self) -> int:
        return self._remote.clock_drift_rejections

    # -- membership ---------------------------------------------------------------------------
    def save_members_sync(self, records: Sequence[MemberRecord]) -> None:
        with self._writer.writing(clears=False) as conn:
            conn.execute("BEGIN IMMEDIATE")
            members.save(conn, records)
            conn.execute("COMMIT")

    async def save_members(self, records: Sequence[MemberRecord]) -> None:
        await self.run_write(partial(self.save_members_sync, records))

    def load_members(self) -> list[MemberRecord]:
        return members.load(self.reader())

    # -- sync ---------------------------------------------------------------------------------
    def sync_state(self) -> SyncState:
        return sync_state(self.actor_id, self.bookie_snapshot())

    def booked(self, actor: bytes) -> BookedVersions | None:
        """One actor's published bookkeeping (None: nothing known of it), from any thread:
        what the broadcast path reads per piece, without copying the whole bookkeeping."""
        return self._published.get(actor)

    def bookie_snapshot(self) -> dict[bytes, BookedVersions]:
        """The published bookkeeping, safe to read from any thread (entries are immutable once
        published)."""
        return self._published.snapshot()

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
            size_of=encoded_change_size,
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
        conn = open_reader(self.path)
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
