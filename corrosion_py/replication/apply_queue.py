"""The apply queue's policy: what waits for the store, what is dropped, and when a batch goes.

Everything that decides the queue's contents and timing lives in this file; the agent's trio
driver (agent/apply_loop.py) and the simulator move the batches to the store and report back.

Rules:

- **Bounds.** At most ``max_items`` changesets and ``max_changes`` column changes (an empty
  range counts one): sync pieces carry up to 8 KiB each, so a count alone would let memory grow
  with the piece size. An item always fits an empty queue.
- **Broadcast puts never wait** (``offer``): while an item does not fit, the *oldest* queued
  item is dropped and counted in ``dropped_overflow`` (broadcast repeats and sync repairs it,
  and a node that falls this far behind should catch up by sync, newest first).
- **Sync puts wait** (``has_room``, then ``push``): the host puts an item only when there is
  room, and otherwise waits until a batch is taken, so a slow store slows the sync server down
  through TCP instead of growing a buffer.
- **Batch as they come.** One batch is in flight at a time. Once items wait and none is in
  flight, the queue lingers ``linger`` seconds for more to arrive, counted from the put into an
  empty queue or from the end of the previous apply; then ``tick`` returns up to ``max_batch``
  items, oldest first. A full batch waiting goes at once. The default linger is 0: the apply in
  flight is the batching window (what arrives meanwhile is the next batch), so a busy node
  writes many changesets per transaction and an idle one adds no delay and no timer per
  changeset (Corrosion lingers 10 ms; a host may ask for that).
- **After an apply** the host reports once: ``applied`` (the batch committed) or ``failed``
  with the items that did not commit (those before them did, and count as applied):

      applying ──TRANSIENT (disk full, I/O error, read-only)──▶ retrying: the rest goes back
         │        to the front (the bounds still hold: the oldest go over them first,
         │        counted); the next batch waits 0.1 s, doubling to 5 s; a batch that
         │        commits whole resets the wait
         ├──CORRUPT (the file is damaged)──▶ the rest is dropped (``dropped_corrupt``); the
         │        store refuses writes until a restart on a restored file
         └──ERROR (anything else: a bug)──▶ the rest is dropped (``apply_errors``,
                  ``dropped_error``); sync brings it again

Sans-IO: ``now`` is passed in (any monotonic origin); nothing here sleeps or reads a clock.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Sequence
from typing import Literal

from corrosion_py.wire.messages import Changeset, Item

TRANSIENT: Literal["transient"] = "transient"
CORRUPT: Literal["corrupt"] = "corrupt"
ERROR: Literal["error"] = "error"
Failure = Literal["transient", "corrupt", "error"]

RETRY_FIRST = 0.1  # seconds before the first retry after a transient storage fault
RETRY_MAX = 5.0


def cost(item: Item) -> int:
    """Column changes an item carries (an empty range counts one)."""
    return len(item.changes) if isinstance(item, Changeset) else 1


class ApplyQueue:
    """Bounded inbound changesets of one node, and when to hand them to the store."""

    def __init__(
        self,
        *,
        max_items: int = 20_000,
        max_changes: int = 100_000,
        max_batch: int = 2_000,
        linger: float = 0.0,
        retry_first: float = RETRY_FIRST,
        retry_max: float = RETRY_MAX,
    ) -> None:
        if max_items < 1 or max_batch < 1:
            raise ValueError("max_items and max_batch must be at least 1")
        if linger < 0 or retry_first < 0 or retry_max < retry_first:
            raise ValueError("linger and retry delays cannot be negative")
        self.max_items = max_items
        self.max_changes = max_changes
        self.max_batch = max_batch
        self.linger = linger
        self.retry_first = retry_first
        self.retry_max = retry_max
        self.stats: Counter[str] = Counter()
        """queued, dropped_overflow, applied_changesets, batches, apply_retries (transient
        storage faults), dropped_corrupt, apply_errors (bugs), dropped_error."""
        self._items: deque[Item] = deque()
        self._changes = 0
        self._in_flight: list[Item] | None = None
        self._linger_from = 0.0  # set by the put into an empty queue, or the end of an apply
        self._not_before = -math.inf  # no batch before this (backoff after a transient fault)
        self._retry = retry_first

    @property
    def depth(self) -> int:
        """Changesets waiting (the batch in flight excluded)."""
        return len(self._items)

    @property
    def idle(self) -> bool:
        """Nothing waits and nothing is in flight."""
        return not self._items and self._in_flight is None

    def has_room(self, item: Item) -> bool:
        """Whether ``item`` fits now (a sync put waits until it does)."""
        return not self._items or not self._full(item)

    def offer(self, now: float, items: Sequence[Item]) -> int:
        """Broadcast puts: queue ``items``, dropping the oldest on overflow; how many dropped."""
        dropped = 0
        for item in items:
            while self._items and self._full(item):
                self._changes -= cost(self._items.popleft())
                dropped += 1
            self._append(now, item)
        self.stats["dropped_overflow"] += dropped
        self.stats["queued"] += len(items)
        return dropped

    def push(self, now: float, item: Item) -> None:
        """A sync put, once ``has_room(item)`` (else `ValueError`: the caller must wait)."""
        if not self.has_room(item):
            raise ValueError("the apply queue is full: wait until has_room()")
        self._append(now, item)
        self.stats["queued"] += 1

    def next_deadline(self) -> float | None:
        """When ``tick`` returns the next batch (None: nothing waits, or a batch is in flight)."""
        if self._in_flight is not None or not self._items:
            return None
        if len(self._items) >= self.max_batch:
            return max(self._linger_from, self._not_before)
        return max(self._linger_from + self.linger, self._not_before)

    def tick(self, now: float) -> list[Item] | None:
        """The batch to apply now (it is in flight until ``applied`` or ``failed``), or None."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return None
        batch = [self._items.popleft() for _ in range(min(self.max_batch, len(self._items)))]
        self._changes -= sum(cost(item) for item in batch)
        self._in_flight = batch
        return batch

    def applied(self, now: float) -> None:
        """The batch in flight committed whole."""
        self._count_applied(len(self._land(now)))
        self._retry = self.retry_first

    def failed(self, now: float, kind: Failure, rest: Sequence[Item]) -> int:
        """The batch in flight stopped before ``rest`` (the items that did not commit; the
        whole batch for an ERROR). Returns how many items were dropped (see the rules)."""
        batch = self._land(now)
        if len(rest) > len(batch):
            raise ValueError("more items failed than were in flight")
        self._count_applied(len(batch) - len(rest))
        if kind == TRANSIENT:
            self.stats["apply_retries"] += 1
            self._not_before = self._linger_from = now + self._retry
            self._retry = min(self.retry_max, self._retry * 2)
            return self._requeue(rest)
        if kind == CORRUPT:
            self.stats["dropped_corrupt"] += len(rest)
        else:
            self.stats["apply_errors"] += 1
            self.stats["dropped_error"] += len(rest)
        return len(rest)

    def _full(self, item: Item) -> bool:
        return len(self._items) >= self.max_items or self._changes + cost(item) > self.max_changes

    def _append(self, now: float, item: Item) -> None:
        if self.idle:
            self._linger_from = now
        self._items.append(item)
        self._changes += cost(item)

    def _land(self, now: float) -> list[Item]:
        batch = self._in_flight
        if batch is None:
            raise ValueError("no batch is in flight")
        self._in_flight = None
        self._linger_from = now
        return batch

    def _count_applied(self, n: int) -> None:
        if n:
            self.stats["batches"] += 1
            self.stats["applied_changesets"] += n

    def _requeue(self, items: Sequence[Item]) -> int:
        """Put back what a fault kept from committing, oldest first, within the bounds."""
        self._items.extendleft(reversed(items))
        self._changes += sum(cost(item) for item in items)
        dropped = 0
        while len(self._items) > 1 and (
            len(self._items) > self.max_items or self._changes > self.max_changes
        ):
            self._changes -= cost(self._items.popleft())
            dropped += 1
        self.stats["dropped_overflow"] += dropped
        return dropped
