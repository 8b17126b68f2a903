"""The store's one write thread: every write a trio task asks for (local transactions, applies,
schema changes, member saves) runs on this long-lived thread, fed by a queue.

Why not ``trio.to_thread.run_sync`` per call: each of those goes through a thread cache and a
capacity limiter and costs tens of microseconds per hop, which a node pays once per replicated
write. Here a hand-off is a queue put, and the answer wakes the waiting task directly
(``trio.lowlevel.reschedule`` through the run's token). Writes are serialised by the thread
itself, so SQLite's one writer is never contended from trio.

A task waiting for its write cannot be cancelled half-way (the write runs to its end, like
``to_thread.run_sync`` without ``abandon_on_cancel``): the cancellation is delivered when the
write returns. ``close`` lets the queued writes finish, then ends the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import outcome
import trio

T = TypeVar("T")

_Job = tuple[Callable[[], Any], Callable[[outcome.Outcome[Any]], None]]


class WriteThread:
    """One thread running the writes handed to it, in order."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        self._closed = False
        self.pending = 0
        """Writes handed over and not finished yet (read on the event loop)."""

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, done = job
            done(outcome.capture(fn))

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the thread and return what it returned (or raise what it raised)."""
        if self._closed:
            raise RuntimeError("the store is closed")
        task = trio.lowlevel.current_task()
        token = trio.lowlevel.current_trio_token()

        def done(result: outcome.Outcome[Any]) -> None:
            token.run_sync_soon(trio.lowlevel.reschedule, task, result)

        self.pending += 1
        self._jobs.put((fn, done))
        try:
            result: T = await trio.lowlevel.wait_task_rescheduled(
                lambda _: trio.lowlevel.Abort.FAILED  # a write runs to its end
            )
        finally:
            self.pending -= 1
        return result

    def close(self) -> None:
        """Finish the queued writes, then end the thread (from any thread but this one)."""
        if not self._closed:
            self._closed = True
            self._jobs.put(None)
            self._thread.join()
