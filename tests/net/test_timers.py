"""The node's one timer heap (corrosion_py.net.timers): order, callbacks that set timers, a
callback that raises, and an earlier timer set while the task sleeps."""

from __future__ import annotations

import trio
import trio.testing

from corrosion_py.net.timers import Timers


async def test_timers_fire_in_deadline_order_and_may_set_more(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timers = Timers()
    fired: list[tuple[str, float]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(timers.run)
        now = trio.current_time()
        for name, delay in (("c", 3.0), ("a", 1.0), ("b", 2.0)):
            timers.call_later(delay, lambda n=name: fired.append((n, trio.current_time() - now)))
        timers.call_at(now + 1.5, lambda: timers.call_later(0.1, lambda: fired.append(("d", 0))))
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert [name for name, _ in fired] == ["a", "d", "b", "c"]
    assert fired[0][1] == 1.0 and fired[2][1] == 2.0 and len(timers) == 0


async def test_an_earlier_timer_wakes_the_sleeping_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timers = Timers()
    fired: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(timers.run)
        start = trio.current_time()
        timers.call_later(100.0, lambda: fired.append(trio.current_time() - start))
        await trio.sleep(1.0)  # the task now sleeps until +100
        timers.call_later(1.0, lambda: fired.append(trio.current_time() - start))
        await trio.sleep(200.0)
        nursery.cancel_scope.cancel()
    assert fired == [2.0, 100.0]


async def test_a_callback_that_raises_is_counted_and_the_others_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timers = Timers()
    fired: list[str] = []

    def bug() -> None:
        raise ValueError("a bug in a timer callback")

    async with trio.open_nursery() as nursery:
        await nursery.start(timers.run)
        timers.call_later(1.0, bug)
        timers.call_later(1.0, lambda: fired.append("after"))
        await trio.sleep(2.0)
        nursery.cancel_scope.cancel()
    assert fired == ["after"] and timers.errors == 1
