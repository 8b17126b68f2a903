"""One task for all of a node's timers: a heap of deadlines and the callbacks they run.

Why: a trio task per timer, or a cancel scope around every wait, costs a task spawn or a scope
per event, which a node would pay per datagram (SWIM probes, broadcast rounds, grafts). Here a
timer is a heap entry, and the one task sleeps until the earliest deadline (one cancel scope
per wake-up, however many timers are due then). Callbacks run on the event loop, must not
block, and may set more timers. A callback that raises is a bug: it is logged (at most once a
minute) and the other timers go on.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable

import trio

log = logging.getLogger(__name__)

ERROR_LOG_INTERVAL = 60.0


class Timers:
    """Deadlines on trio's clock (``trio.current_time``). Start ``run`` in a nursery."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._serial = itertools.count()
        self._wake = trio.Event()
        self._sleeping_until = math.inf
        self.errors = 0
        self._last_error_log = -ERROR_LOG_INTERVAL

    def call_at(self, deadline: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` once trio's clock reaches ``deadline``."""
        heapq.heappush(self._heap, (deadline, next(self._serial), fn))
        if deadline < self._sleeping_until:
            self._wake.set()

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        self.call_at(trio.current_time() + delay, fn)

    def __len__(self) -> int:
        return len(self._heap)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the callbacks as they come due, until cancelled."""
        task_status.started()
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, fn = heapq.heappop(heap)
                try:
                    fn()
                except Exception:
                    self._log_error()
            self._sleeping_until = heap[0][0] if heap else math.inf
            self._wake = trio.Event()
            with trio.move_on_at(self._sleeping_until):
                await self._wake.wait()

    def _log_error(self) -> None:
        self.errors += 1
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.exception("a timer callback failed (%d so far)", self.errors)
