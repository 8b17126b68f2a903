"""The store's write thread (corrosion_py.store.worker): results and exceptions come back to
the task that asked, writes run in order on one thread, and close finishes what is queued."""

from __future__ import annotations

import threading

import pytest
import trio

from corrosion_py.store.worker import WriteThread


async def test_results_and_errors_come_back_in_order_from_one_thread() -> None:
    thread = WriteThread("test-writer")
    seen: list[tuple[int, str]] = []

    def job(i: int) -> int:
        seen.append((i, threading.current_thread().name))
        if i == 3:
            raise ValueError("job 3 failed")
        return i * i

    try:
        results: dict[int, object] = {}

        async def run(i: int) -> None:
            try:
                results[i] = await thread.run(lambda: job(i))
            except ValueError as exc:
                results[i] = str(exc)

        async with trio.open_nursery() as nursery:
            for i in range(6):
                nursery.start_soon(run, i)
                await trio.lowlevel.checkpoint()
        assert results == {0: 0, 1: 1, 2: 4, 3: "job 3 failed", 4: 16, 5: 25}
        assert [i for i, _ in seen] == list(range(6))
        assert {name for _, name in seen} == {"test-writer"}
        assert thread.pending == 0
    finally:
        thread.close()


async def test_a_cancelled_caller_waits_for_its_write_to_finish() -> None:
    thread = WriteThread("test-writer")
    release = threading.Event()
    finished: list[bool] = []

    def slow() -> None:
        release.wait(10)
        finished.append(True)

    try:
        threading.Timer(0.2, release.set).start()
        with trio.move_on_after(0.05) as scope:
            await thread.run(slow)
        assert finished == [True]  # the write ran to its end before the cancellation landed
        assert scope.cancel_called
    finally:
        thread.close()


async def test_close_finishes_queued_writes_then_refuses_more() -> None:
    thread = WriteThread("test-writer")
    assert await thread.run(lambda: "ok") == "ok"
    thread.close()
    with pytest.raises(RuntimeError, match="closed"):
        await thread.run(lambda: None)
