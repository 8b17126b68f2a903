"""The event scheduler: one heap of (time, priority, seq, callback, argument) on virtual time.

Why this shape: the heap order is total (``seq`` breaks every tie in insertion order), so a run
never depends on comparing callbacks or payloads, and one seed gives one order of events.
``priority`` puts datagram deliveries before timers due at the same instant: the SWIM host rule
(swim/events.py) says a due ack must be seen before the timer that would judge it missing.
Nothing is ever cancelled: a timer the core no longer wants is stale by its token, and a timer
of a crashed node is dropped by the simulator's generation check when it fires.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

DELIVERY = 0
"""Priority of datagram deliveries (run first at equal times)."""
TIMER = 1
"""Priority of timers and scenario actions."""

Callback = Callable[[Any], None]


class Scheduler:
    """Virtual clock plus the pending callbacks, run in (time, priority, insertion) order."""

    __slots__ = ("_heap", "_seq", "now")

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, int, Callback, Any]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, when: float, priority: int, fn: Callback, arg: Any) -> None:
        """Run ``fn(arg)`` at virtual time ``when`` (never earlier than now)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(float(when), self.now), priority, self._seq, fn, arg))

    def run_until(self, t: float) -> None:
        """Run everything due up to and including ``t``, then leave the clock at ``t``."""
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= t:
            when, _, _, fn, arg = pop(heap)
            self.now = when
            fn(arg)
        self.now = max(self.now, float(t))
