"""The one queue between the network and the store: broadcast and sync feed it, one task drains
it into the store's batched apply (as Corrosion's changes queue feeds its batched applies).

Rules:

- Bounded by ``max_items`` changesets and ``max_changes`` column changes (sync pieces carry up
  to 8 KiB each, so a count alone would let memory grow with the piece size). Broadcast puts
  never wait: when the queue is full the *oldest* queued changeset is dropped and counted
  (broadcast repeats and sync repairs it, and a node that falls this far behind should catch
  up by sync, newest first). Sync puts wait for
  room, which slows the sync server down through TCP instead of growing a buffer.
- One drain task: once something is queued it lingers ``linger`` seconds (10 ms, Corrosion's
  figure) for more to arrive, then takes everything queued up to ``max_batch`` changesets and
  hands it to ``Store.apply`` (which cuts it into transactions of an adaptive size), so a
  trickle of datagrams becomes a few transactions instead of one per datagram.
- ``depth``, ``dropped`` and the counters in ``stats`` are what health and metrics report, with
  ``lags``: (wall time, seconds from a changeset's HLC timestamp to its apply here) of the last
  ``LAGS_KEPT`` applied changesets, for the health endpoint's p99 lag. A timestamp is the
  sender's claim: one more than ``MAX_LAG_AHEAD`` seconds in the future or ``MAX_LAG`` seconds
  in the past is not a lag sample (counted in ``lag_ignored``), so forged or corrupted
  timestamps cannot make health report a lag of decades.
- After each apply, ``on_applied`` (if set) gets the store's result (subscriptions use its
  impactful changes later).

Faults degrade, never kill (the store's `StorageFault`, `ApplyInterrupted`):

    applying ──disk full / I/O error / read-only──▶ retrying ──a batch commits──▶ applying
        │                                             (what did not commit goes back to the
        │                                              front; retries 0.1 s, doubling to 5 s)
        └──corrupt database──▶ dropping (every batch dropped and counted; the store refuses
                                writes until a restart on a restored file)

  While retrying, the queue keeps its bounds and policy (broadcast puts drop the oldest, sync
  puts wait), so held changesets cost bounded memory and the rest is left to sync. Any other
  error in an apply is a bug: the batch is dropped (sync brings it again), counted in
  ``apply_errors`` and logged with its traceback (at most once a minute), and the queue goes on.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence

import trio

from corrosion_py.replication.hlc import ns_from_ntp64
from corrosion_py.store.apply import ApplyResult
from corrosion_py.store.store import ApplyInterrupted, Store
from corrosion_py.wire import Changeset
from corrosion_py.wire.messages import Item

log = logging.getLogger(__name__)

LAGS_KEPT = 10_000
RETRY_FIRST = 0.1  # seconds before the first retry after a transient storage fault
RETRY_MAX = 5.0
ERROR_LOG_INTERVAL = 60.0  # seconds between two tracebacks of unexpected apply errors
MAX_LAG = 3_600.0  # seconds: an older timestamp is not believed as a lag sample
MAX_LAG_AHEAD = 1.0  # seconds: a timestamp further in the future is not either


class ApplyQueue:
    """Bounded inbound changesets for one store. Start ``run`` in the agent's nursery."""

    def __init__(
        self,
        store: Store,
        *,
        max_items: int = 20_000,
        max_changes: int = 100_000,
        max_batch: int = 2_000,
        linger: float = 0.01,
        on_applied: Callable[[ApplyResult], None] | None = None,
    ) -> None:
        if max_items < 1 or max_batch < 1:
            raise ValueError("max_items and max_batch must be at least 1")
        self.store = store
        self.max_items = max_items
        self.max_changes = max_changes
        self._changes = 0
        self.max_batch = max_batch
        self.linger = linger
        self.on_applied = on_applied
        self.stats: Counter[str] = Counter()
        """queued, dropped_overflow, applied_changesets, batches, apply_retries (transient
        storage faults), dropped_corrupt, apply_errors (bugs), dropped_error, lag_ignored."""
        self._last_error_log = -ERROR_LOG_INTERVAL
        self._items: deque[Item] = deque()
        self._not_empty = trio.lowlevel.ParkingLot()
        self._not_full = trio.lowlevel.ParkingLot()
        self._idle = trio.Event()
        self._idle.set()
        self.lags: deque[tuple[float, float]] = deque(maxlen=LAGS_KEPT)

    @property
    def depth(self) -> int:
        """Changesets waiting to be applied."""
        return len(self._items)

    @property
    def dropped(self) -> int:
        """Changesets dropped because the queue was full."""
        return self.stats["dropped_overflow"]

    def put_nowait(self, items: Sequence[Item]) -> None:
        """Queue changesets from broadcast; on overflow the oldest queued ones are dropped."""
        for item in items:
            while self._items and self._full(item):
                self._changes -= _cost(self._items.popleft())
                self.stats["dropped_overflow"] += 1
            self._append(item)
        self._queued(len(items))

    async def put(self, items: Sequence[Item]) -> None:
        """Queue changesets from sync, waiting for room (backpressure)."""
        for item in items:
            while self._items and self._full(item):
                await self._not_full.park()
            self._append(item)
            self._queued(1)
        await trio.lowlevel.checkpoint()

    def _full(self, item: Item) -> bool:
        return len(self._items) >= self.max_items or self._changes + _cost(item) > self.max_changes

    def _append(self, item: Item) -> None:
        self._items.append(item)
        self._changes += _cost(item)

    async def drained(self) -> None:
        """Wait until everything queued so far has been applied."""
        while self._items or not self._idle.is_set():
            await self._idle.wait()
            await trio.lowlevel.checkpoint()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Drain the queue into the store until cancelled (see the fault rules above)."""
        task_status.started()
        retry = RETRY_FIRST
        while True:
            while not self._items:
                await self._not_empty.park()
            if len(self._items) < self.max_batch:
                await trio.sleep(self.linger)
            batch = [self._items.popleft() for _ in range(min(self.max_batch, len(self._items)))]
            self._changes -= sum(_cost(item) for item in batch)
            self._not_full.unpark_all()
            self._idle = trio.Event()
            try:
                try:
                    result = await self.store.apply(batch)
                except ApplyInterrupted as fault:
                    self._applied(batch[: len(batch) - len(fault.rest)], fault.done)
                    if not fault.transient:
                        self.stats["dropped_corrupt"] += len(fault.rest)
                        continue
                    self._requeue(fault.rest)
                    self.stats["apply_retries"] += 1
                    await trio.sleep(retry)
                    retry = min(RETRY_MAX, retry * 2)
                    continue
                except Exception:
                    self._apply_error(len(batch))
                    continue
            finally:
                self._idle.set()
            retry = RETRY_FIRST
            self._applied(batch, result)

    def _applied(self, batch: Sequence[Item], result: ApplyResult) -> None:
        if not batch:
            return
        self.stats["batches"] += 1
        self.stats["applied_changesets"] += len(batch)
        self._record_lags(batch)
        if self.on_applied is not None:
            self.on_applied(result)

    def _requeue(self, items: Sequence[Item]) -> None:
        """Put back what a fault kept from committing, oldest first; the bounds still hold (the
        oldest go over them first, counted, as for broadcast overflow)."""
        self._items.extendleft(reversed(items))
        self._changes += sum(_cost(item) for item in items)
        while len(self._items) > 1 and (
            len(self._items) > self.max_items or self._changes > self.max_changes
        ):
            self._changes -= _cost(self._items.popleft())
            self.stats["dropped_overflow"] += 1

    def _apply_error(self, size: int) -> None:
        """An apply failed for no storage reason (a bug): drop the batch, count, log."""
        self.stats["apply_errors"] += 1
        self.stats["dropped_error"] += size
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.exception(
                "applying %d changesets failed (dropped, sync brings them again; %d errors so "
                "far)", size, self.stats["apply_errors"],
            )  # fmt: skip

    def _record_lags(self, batch: Sequence[Item]) -> None:
        now_ns = time.time_ns()
        now = now_ns / 1e9
        for item in batch:
            if isinstance(item, Changeset) and item.ts:
                lag = (now_ns - ns_from_ntp64(item.ts)) / 1e9
                if -MAX_LAG_AHEAD <= lag <= MAX_LAG:
                    self.lags.append((now, max(0.0, lag)))
                else:
                    self.stats["lag_ignored"] += 1

    def p99_lag(self, window: float = 120.0) -> float | None:
        """The 99th percentile of apply lags over the last ``window`` seconds; None without
        samples."""
        since = time.time() - window
        recent = sorted(lag for at, lag in self.lags if at >= since)
        if not recent:
            return None
        return recent[min(len(recent) - 1, int(len(recent) * 0.99))]

    def _queued(self, n: int) -> None:
        self.stats["queued"] += n
        if n:
            self._not_empty.unpark_all()


def _cost(item: Item) -> int:
    """Column changes an item carries (an empty range counts one)."""
    return len(item.changes) if isinstance(item, Changeset) else 1
