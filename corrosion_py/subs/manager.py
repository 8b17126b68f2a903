"""The subscription engine of one agent: live SQL results pushed as rows change.

Rules:

- **Matching.** Every committed change, local (after its transaction) or remote (after the
  apply queue's batch), is handed to ``notify``; changes to tables some subscription reads are
  collected as primary keys per table. One worker thread (its own read-only connection to the
  store) then refreshes each subscription reading a changed table (`Matcher.refresh`: by
  primary key when the plan is incremental, else in full) after a short linger, so a burst
  becomes one batch. The pending keys are bounded (``max_pending_keys``); past it a table is
  marked for a full refresh instead, so memory stays flat under a flood (`subs.pending`).
- **Sharing.** Identical SQL (parameters inlined) is one subscription with one id; it lives
  while it has listeners and ``idle_ttl`` seconds after the last one left.
- **Listeners.** Each has a bounded buffer (``listener_buffer`` changes); one that falls
  further behind is disconnected (its stream ends with `SubscriberLagged`) rather than
  buffered without bound, and resumes with ``from=<last change id>``. The newest
  ``retention`` changes are kept for such resumes; older ones give `ChangesTooOld`.
- **Durability.** Each subscription's rows, rowids, change ids and newest changes are in a
  SQLite file of their own (`Storage`), written in the same batch that computes them. After a
  restart every subscription is restored and refreshed in full, so what changed while the
  agent was down arrives as ordinary changes with the next ids.
- **Consistency.** A new subscription is registered for matching before its first evaluation,
  and evaluations are serialised with processing, so no change falls between the snapshot and
  the first change event. A listener's snapshot (or resume point) and its registration happen
  together on the event loop; changes it already includes are skipped.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from corrosion_py import crdt
from corrosion_py.aliases import Params
from corrosion_py.api_types import Change, Columns, EndOfQuery, ErrorCode, Event, Notify, Row
from corrosion_py.crdt import unpack_pk
from corrosion_py.crdt.tables import crr_names
from corrosion_py.store.connections import open_reader
from corrosion_py.store.guard import decode_problem
from corrosion_py.store.store import Store
from corrosion_py.subs.errors import (
    ChangesTooOld,
    NoSuchSubscription,
    SubscriberLagged,
    SubscriptionClosed,
    SubscriptionError,
)
from corrosion_py.subs.matcher import Key, Matcher, RowChange
from corrosion_py.subs.pending import PendingChanges
from corrosion_py.subs.plan import Plan, plan
from corrosion_py.subs.storage import Storage

log = logging.getLogger(__name__)
BATCH = 1_000
"""Events per batch handed to a listener at most."""


@attrs.frozen
class SubsConfig:
    retention: int = 1_000
    """Newest changes kept per subscription for resumes (Corrosion keeps 500)."""
    idle_ttl: float = 600.0
    """Seconds a subscription without listeners lives on (Corrosion: 10 minutes)."""
    listener_buffer: int = 10_240
    """Changes buffered per listener before it is disconnected (Corrosion's figure)."""
    max_pending_keys: int = 100_000
    linger: float = 0.002
    """Seconds to wait for more changes before processing a batch."""


@attrs.define(eq=False)
class _Listener:
    send: trio.MemorySendChannel[RowChange]
    after: int
    lagged: bool = False
    closed_reason: str | None = None
    closed_code: ErrorCode = ErrorCode.SUBSCRIPTION_FAILED


class Subscription:
    """One live query. Get one from `SubscriptionManager.subscribe` or ``get``."""

    def __init__(self, sub_id: str, plan: Plan, matcher: Matcher, manager: SubscriptionManager):
        self.id = sub_id
        self.plan = plan
        self.matcher = matcher
        self._manager = manager
        self.listeners: set[_Listener] = set()
        self.idle_since: float | None = time.monotonic()
        self.closed: str | None = None
        self.closed_code = ErrorCode.SUBSCRIPTION_FAILED

    @property
    def hash(self) -> str:
        return self.plan.hash

    @property
    def sql(self) -> str:
        return self.plan.identity

    @property
    def change_id(self) -> int:
        return self.matcher.change_id

    @asynccontextmanager
    async def attach(
        self, *, from_change: int | None = None, skip_rows: bool = False
    ) -> AsyncIterator[AsyncIterator[Event]]:
        """Listen: yields an iterator of events. Without ``from_change``: the current rows
        (unless ``skip_rows``) then every change; with it, the changes after that id only.

        Raises `ChangesTooOld` when those are no longer kept, `SubscriptionError` when
        ``from_change`` is ahead of the subscription. The iterator raises `SubscriberLagged`
        when this listener fell behind, `SubscriptionClosed` when the subscription ended.
        """
        async with self.attach_batches(from_change=from_change, skip_rows=skip_rows) as batches:
            events = _flatten(batches)
            try:
                yield events
            finally:
                with trio.CancelScope(shield=True):
                    await events.aclose()

    @asynccontextmanager
    async def attach_batches(
        self, *, from_change: int | None = None, skip_rows: bool = False
    ) -> AsyncIterator[AsyncIterator[list[Event]]]:
        """`attach`, yielding lists of events: the initial ones, then every change already
        queued for this listener at once (what a network writer sends in one go)."""
        if self.closed is not None:
            raise SubscriptionClosed(self.closed, self.closed_code)
        send, receive = trio.open_memory_channel[RowChange](self._manager.config.listener_buffer)
        started = time.perf_counter()
        initial: list[Event] = []
        if from_change is not None:
            if from_change > self.matcher.change_id:
                raise SubscriptionError(
                    f"from={from_change} is ahead of the subscription's last change id "
                    f"{self.matcher.change_id}"
                )
            backlog = self.matcher.changes_after(from_change)
            if backlog is None:
                raise ChangesTooOld(self.matcher.oldest_kept)
            after = backlog[-1].change_id if backlog else from_change
            initial = [_public(c) for c in backlog]
        else:
            columns, rows, after = self.matcher.snapshot()
            if not skip_rows:
                initial = [Columns(tuple(columns))]
                initial += [Row(rowid, cells) for rowid, cells in rows]
                initial.append(EndOfQuery(time.perf_counter() - started, after))
        listener = _Listener(send, after)
        self.listeners.add(listener)
        self.idle_since = None
        batches = self._batches(initial, receive, listener)
        try:
            yield batches
        finally:
            self.listeners.discard(listener)
            send.close()
            receive.close()
            if not self.listeners:
                self.idle_since = time.monotonic()
            with trio.CancelScope(shield=True):
                await batches.aclose()

    async def _batches(
        self,
        initial: list[Event],
        receive: trio.MemoryReceiveChannel[RowChange],
        listener: _Listener,
    ) -> AsyncGenerator[list[Event], None]:
        last = listener.after
        for start in range(0, len(initial), BATCH):
            yield initial[start : start + BATCH]
        while True:
            try:
                batch = [await receive.receive()]
            except (trio.EndOfChannel, trio.ClosedResourceError):
                break
            while len(batch) < BATCH:
                try:
                    batch.append(receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
            last = batch[-1].change_id
            yield [_public(c) for c in batch]
        if listener.lagged:
            raise SubscriberLagged(last)
        raise SubscriptionClosed(
            listener.closed_reason or "subscription closed", listener.closed_code
        )

    def _publish(self, changes: Sequence[RowChange]) -> None:
        for listener in list(self.listeners):
            for change in changes:
                if change.change_id <= listener.after:
                    continue
                try:
                    listener.send.send_nowait(change)
                except trio.WouldBlock:
                    listener.lagged = True
                    listener.send.close()
                    self.listeners.discard(listener)
                    break
                except trio.ClosedResourceError:
                    break
                listener.after = change.change_id

    def _close(self, reason: str, code: ErrorCode = ErrorCode.SUBSCRIPTION_FAILED) -> None:
        self.closed, self.closed_code = reason, code
        for listener in list(self.listeners):
            listener.closed_reason, listener.closed_code = reason, code
            listener.send.close()
        self.listeners.clear()


async def _flatten(batches: AsyncIterator[list[Event]]) -> AsyncGenerator[Event, None]:
    async for batch in batches:
        for event in batch:
            yield event


def _public(change: RowChange) -> Change:
    return Change(change.kind, change.rowid, change.cells, change.change_id)


class SubscriptionManager:
    """All subscriptions of one store. Start ``run`` in the agent's nursery."""

    def __init__(self, store: Store, path: Path, config: SubsConfig | None = None) -> None:
        self.store = store
        self.path = path
        self.config = config or SubsConfig()
        self._subs: dict[str, Subscription] = {}
        self._by_identity: dict[str, Subscription] = {}
        self._pending = PendingChanges(self.config.max_pending_keys)
        self._wake = trio.Event()
        self._lock = trio.Lock()  # one evaluation or processing batch at a time
        self._limiter = trio.CapacityLimiter(1)  # the worker thread owning the connections
        self._conn: sqlite3.Connection | None = None
        self._storage: Storage | None = None
        self._updates: dict[str, set[_UpdateListener]] = {}
        self._crrs: set[str] = set()
        self.stats: Counter[str] = Counter()
        """batches, refreshed, changes, lagged, overflows, failed."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the connections, restore saved subscriptions, then process until cancelled."""
        await self._thread(self._open)
        try:
            await self._restore()
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._gc_loop)
                await self._process_loop()
        finally:
            for sub in list(self._subs.values()):
                sub._close("the agent is stopping", ErrorCode.SHUTTING_DOWN)
            with trio.CancelScope(shield=True):
                await self._thread(self._close_connections)

    def _open(self) -> None:
        self._conn = open_reader(self.store.path)
        self._storage = Storage(self.path)
        self._crrs = set(crr_names(self._conn))

    def _close_connections(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._storage is not None:
            self._storage.close()

    async def _thread(self, fn: Any, *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def _restore(self) -> None:
        assert self._storage is not None
        saved = await self._thread(self._storage.load)
        for record in saved:
            try:
                sub_plan = await self._thread(plan, self._conn, record.sql, record.params)
            except SubscriptionError as exc:
                log.warning("dropping saved subscription %s: %s", record.id, exc)
                await self._thread(self._storage.delete, record.id)
                continue
            matcher = Matcher(sub_plan, retention=self.config.retention)
            matcher.restore(record.columns, record.rows, record.next_rowid, record.changes)
            matcher.set_change_id(record.change_id)
            sub = Subscription(record.id, sub_plan, matcher, self)
            self._register(sub)
        if self._subs:
            async with self._lock:
                results = await self._thread(self._process, {}, self._pending.watched)
            self._publish(results)

    # -- subscribing -------------------------------------------------------------------------

    def get(self, sub_id: str) -> Subscription | None:
        return self._subs.get(sub_id)

    def __len__(self) -> int:
        return len(self._subs)

    def all(self) -> list[Subscription]:
        """Every live subscription."""
        return list(self._subs.values())

    async def subscribe(
        self, sql: str, params: Params = (), *, existing_only: bool = False
    ) -> tuple[Subscription, bool]:
        """The subscription for ``sql`` (created and evaluated if new, unless
        ``existing_only``): returns it and whether it was created.

        Raises `SubscriptionSqlError` for a statement that cannot be subscribed and
        `NoSuchSubscription` when ``existing_only`` finds none.
        """
        params = _normalise(params)
        sub_plan: Plan = await self._thread(plan, self._conn, sql, params)
        async with self._lock:
            existing = self._by_identity.get(sub_plan.identity)
            if existing is not None:
                return existing, False
            if existing_only:
                raise NoSuchSubscription(
                    "a `from` query param was supplied, but no existing subscription found"
                )
            matcher = Matcher(sub_plan, retention=self.config.retention)
            sub = Subscription(uuid.uuid4().hex, sub_plan, matcher, self)
            self._pending.watch(sub_plan.tables, +1)
            try:
                await self._thread(self._initialize, sub, sql, params)
            except BaseException:
                self._pending.watch(sub_plan.tables, -1)
                raise
            self._subs[sub.id] = sub
            self._by_identity[sub_plan.identity] = sub
        return sub, True

    def _initialize(self, sub: Subscription, sql: str, params: Params) -> None:
        assert self._conn is not None and self._storage is not None
        try:
            sub.matcher.initialize(self._conn)
        except sqlite3.Error as exc:
            raise SubscriptionError(decode_problem(exc) or str(exc)) from exc
        self._storage.create(sub.id, sql, params, sub.matcher)

    def _register(self, sub: Subscription) -> None:
        self._subs[sub.id] = sub
        self._by_identity[sub.plan.identity] = sub
        self._pending.watch(sub.plan.tables, +1)

    async def _drop(self, sub: Subscription, reason: str) -> None:
        if self._subs.pop(sub.id, None) is None:
            return
        self._by_identity.pop(sub.plan.identity, None)
        self._pending.watch(sub.plan.tables, -1)
        sub._close(reason)
        assert self._storage is not None
        try:
            await self._thread(self._storage.delete, sub.id)
        except sqlite3.Error as exc:  # (a full disk): a restart restores it, to be dropped again
            log.warning("subscription %s not removed from its file: %s", sub.id, exc)

    # -- changes -----------------------------------------------------------------------------

    def notify(self, changes: Iterable[crdt.Change]) -> None:
        """Committed changes (never blocks: the work happens in the processing task)."""
        touched: dict[tuple[str, bytes], crdt.Change] = {}
        for change in changes:
            if self._pending.watches(change.table) or change.table in self._updates:
                touched[(change.table, change.pk)] = change
        if not touched:
            return
        for (table, packed), change in touched.items():
            if table in self._updates:
                self._notify_updates(table, change)
            if self._pending.add(table, packed):
                self.stats["overflows"] += 1
        self._wake.set()

    def schema_changed(self) -> None:
        """The schema changed: every subscription is refreshed in full (one whose query no
        longer runs ends with an error)."""
        self._crrs = set()
        self._pending.refresh_all()
        self._wake.set()

    async def _process_loop(self) -> None:
        while True:
            await self._wake.wait()
            await trio.sleep(self.config.linger)
            self._wake = trio.Event()
            async with self._lock:
                batch = self._pending.take()
                results = await self._thread(self._process, batch.keys, batch.full)
            self._publish(results)

    def _process(
        self, pending: dict[str, set[Key]], overflow: set[str]
    ) -> list[tuple[Subscription, list[RowChange] | str]]:
        """Refresh every subscription reading a changed table (worker thread)."""
        assert self._conn is not None and self._storage is not None
        results: list[tuple[Subscription, list[RowChange] | str]] = []
        changed = set(pending) | overflow
        for sub in list(self._subs.values()):
            if sub.closed is not None or not (sub.plan.tables & changed):
                continue
            try:
                if sub.plan.tables & overflow:
                    changes = sub.matcher.refresh_all(self._conn)
                else:
                    changes = sub.matcher.refresh(self._conn, pending)
            except sqlite3.Error as exc:  # e.g. its table changed shape
                results.append((sub, f"subscription query failed: {decode_problem(exc) or exc}"))
                continue
            results.append((sub, changes))
        try:
            self._storage.record(
                (sub.id, sub.matcher, r) for sub, r in results if not isinstance(r, str)
            )
        except sqlite3.Error as exc:
            # a full disk, an I/O error: the file would lag what listeners see, so the
            # subscriptions that changed end (clients subscribe again) and the agent goes on
            reason = f"subscription storage failed: {exc}"
            results = [(sub, r if isinstance(r, str) or not r else reason) for sub, r in results]
        return results

    def _publish(self, results: Sequence[tuple[Subscription, list[RowChange] | str]]) -> None:
        self.stats["batches"] += 1
        for sub, result in results:
            if isinstance(result, str):
                self.stats["failed"] += 1
                log.warning("subscription %s ended: %s", sub.id, result)
                sub._close(result)
                self._subs.pop(sub.id, None)
                self._by_identity.pop(sub.plan.identity, None)
                self._pending.watch(sub.plan.tables, -1)
                continue
            self.stats["refreshed"] += 1
            self.stats["changes"] += len(result)
            if result:
                before = len(sub.listeners)
                sub._publish(result)
                self.stats["lagged"] += before - len(sub.listeners)

    async def _gc_loop(self) -> None:
        interval = max(0.05, min(60.0, self.config.idle_ttl / 2))
        while True:
            await trio.sleep(interval)
            now = time.monotonic()
            for sub in list(self._subs.values()):
                if sub.idle_since is not None and now - sub.idle_since >= self.config.idle_ttl:
                    async with self._lock:
                        if sub.idle_since is not None and not sub.listeners:
                            await self._drop(sub, "no listener")

    # -- table updates (/v1/updates/{table}) -------------------------------------------------

    async def is_table(self, table: str) -> bool:
        """Whether ``table`` is a replicated table (the list is re-read when unknown)."""
        if table not in self._crrs:
            self._crrs = set(await self._thread(crr_names, self._conn))
        return table in self._crrs

    @asynccontextmanager
    async def updates(self, table: str) -> AsyncIterator[AsyncIterator[Notify]]:
        """Listen to writes of ``table``: an iterator of `Notify` (primary key values).

        Raises `SubscriptionError` for a table that is not replicated.
        """
        if not await self.is_table(table):
            raise SubscriptionError(f"table {table!r} is not a replicated table")
        send, receive = trio.open_memory_channel[Notify](self.config.listener_buffer)
        listener = _UpdateListener(send)
        self._updates.setdefault(table, set()).add(listener)
        notes = _notifications(receive, listener)
        try:
            yield notes
        finally:
            listeners = self._updates.get(table, set())
            listeners.discard(listener)
            if not listeners:
                self._updates.pop(table, None)
            send.close()
            receive.close()
            with trio.CancelScope(shield=True):
                await notes.aclose()

    def _notify_updates(self, table: str, change: crdt.Change) -> None:
        deleted = change.cid == "-1" and change.cl % 2 == 0
        notify = Notify("delete" if deleted else "update", unpack_pk(change.pk))
        for listener in list(self._updates.get(table, ())):
            try:
                listener.send.send_nowait(notify)
            except trio.WouldBlock:
                listener.lagged = True
                listener.send.close()
                self._updates[table].discard(listener)


@attrs.define(eq=False)
class _UpdateListener:
    send: trio.MemorySendChannel[Notify]
    lagged: bool = False


async def _notifications(
    receive: trio.MemoryReceiveChannel[Notify], listener: _UpdateListener
) -> AsyncGenerator[Notify, None]:
    async for notify in receive:
        yield notify
    if listener.lagged:
        raise SubscriptionClosed(
            "listener fell too far behind and was disconnected", ErrorCode.SUBSCRIBER_LAGGED
        )


def _normalise(params: Params) -> Params:
    """Named parameters may carry their sigil (Corrosion passes ``:id`` through)."""
    if isinstance(params, dict):
        return {str(k).lstrip(":@$"): v for k, v in params.items()}
    return list(params)
