"""The trio driver of the apply queue: the one path between the network and the store.
Broadcast and sync put changesets in, one task hands the batches the sans-IO policy
(``replication.apply_queue``: bounds, overflow, linger, retries) releases to ``Store.apply``
and reports how each ended.

It sits in ``agent/`` because it is wiring (it joins the store's worker threads and the
replication policy, and sends no byte): net/ hands it what arrives through plain callables
(``put_nowait`` for broadcast, ``put`` for sync), and so never imports the agent.

- Broadcast puts never wait (the policy drops the oldest on overflow); sync puts wait for room,
  woken when a batch is taken.
- The store's `ApplyInterrupted` is a storage fault: TRANSIENT or CORRUPT as the store says.
  Any other error in an apply is a bug: ERROR, logged with its traceback (at most once a
  minute); the loop goes on.
- ``lags``: (wall time, seconds from a changeset's HLC timestamp to its apply here) of the last
  ``LAGS_KEPT`` applied changesets, for the health endpoint's p99 lag. A timestamp is the
  sender's claim: one more than ``MAX_LAG_AHEAD`` seconds in the future or ``MAX_LAG`` seconds
  in the past is not a lag sample (counted in ``lag_ignored``), so forged or corrupted
  timestamps cannot make health report a lag of decades.
- After each apply that committed something, ``on_applied`` (if set) gets the store's result
  (subscriptions use its impactful changes).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence

import trio

from corrosion_py.replication.apply_queue import CORRUPT, ERROR, TRANSIENT, ApplyQueue
from corrosion_py.replication.hlc import ns_from_ntp64
from corrosion_py.store.apply import ApplyResult
from corrosion_py.store.store import ApplyInterrupted, Store
from corrosion_py.wire.messages import Changeset, Item

log = logging.getLogger(__name__)

LAGS_KEPT = 10_000
ERROR_LOG_INTERVAL = 60.0  # seconds between two tracebacks of unexpected apply errors
MAX_LAG = 3_600.0  # seconds: an older timestamp is not believed as a lag sample
MAX_LAG_AHEAD = 1.0  # seconds: a timestamp further in the future is not either


class ApplyLoop:
    """Drives one ``ApplyQueue`` into one store. Start ``run`` in the agent's nursery."""

    def __init__(
        self,
        store: Store,
        queue: ApplyQueue,
        *,
        on_applied: Callable[[ApplyResult], None] | None = None,
    ) -> None:
        self.store = store
        self.queue = queue
        self.on_applied = on_applied
        self.stats: Counter[str] = queue.stats
        """The policy's counters, and lag_ignored."""
        self.lags: deque[tuple[float, float]] = deque(maxlen=LAGS_KEPT)
        self._last_error_log = -ERROR_LOG_INTERVAL
        self._changed = trio.lowlevel.ParkingLot()  # the queue's deadline may have moved
        self._room = trio.lowlevel.ParkingLot()  # a batch was taken: sync puts may fit
        self._settled = trio.lowlevel.ParkingLot()  # an apply ended

    @property
    def depth(self) -> int:
        """Changesets waiting to be applied."""
        return self.queue.depth

    @property
    def dropped(self) -> int:
        """Changesets dropped because the queue was full."""
        return self.stats["dropped_overflow"]

    def put_nowait(self, items: Sequence[Item]) -> None:
        """Queue changesets from broadcast; on overflow the oldest queued ones are dropped."""
        before = self.queue.next_deadline()
        self.queue.offer(trio.current_time(), items)
        if self.queue.next_deadline() != before:
            self._changed.unpark_all()

    async def put(self, items: Sequence[Item]) -> None:
        """Queue changesets from sync, waiting for room (backpressure)."""
        for item in items:
            while not self.queue.has_room(item):
                await self._room.park()
            before = self.queue.next_deadline()
            self.queue.push(trio.current_time(), item)
            if self.queue.next_deadline() != before:
                self._changed.unpark_all()
        await trio.lowlevel.checkpoint()

    async def drained(self) -> None:
        """Wait until everything queued so far has been applied (or dropped)."""
        while not self.queue.idle:
            await self._settled.park()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hand batches to the store until cancelled."""
        task_status.started()
        while True:
            batch = self.queue.tick(trio.current_time())
            if batch is None:
                deadline = self.queue.next_deadline()
                if deadline is None:
                    await self._changed.park()  # no cancel scope per wait: this is per write
                else:
                    with trio.move_on_at(deadline):
                        await self._changed.park()
                continue
            self._room.unpark_all()
            try:
                await self._apply(batch)
            finally:
                self._room.unpark_all()
                self._settled.unpark_all()

    async def _apply(self, batch: list[Item]) -> None:
        try:
            result = await self.store.apply(batch)
        except ApplyInterrupted as fault:
            self._committed(batch[: len(batch) - len(fault.rest)], fault.done)
            kind = TRANSIENT if fault.transient else CORRUPT
            self.queue.failed(trio.current_time(), kind, fault.rest)
        except Exception:
            self.queue.failed(trio.current_time(), ERROR, batch)
            self._log_error(len(batch))
        else:
            self.queue.applied(trio.current_time())
            self._committed(batch, result)

    def _committed(self, batch: Sequence[Item], result: ApplyResult) -> None:
        if not batch:
            return
        self._record_lags(batch)
        if self.on_applied is not None:
            self.on_applied(result)

    def _log_error(self, size: int) -> None:
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
