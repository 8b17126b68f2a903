"""The UDP endpoint on real sockets on 127.0.0.1, and its fault injection."""

from __future__ import annotations

import random

import pytest
import trio

from corrosion_py.net.faults import FaultPlan, deliveries
from corrosion_py.net.udp import UdpEndpoint


class Inbox:
    """An endpoint's handler recording what arrived, and the ends of bursts."""

    def __init__(self, ep: UdpEndpoint) -> None:
        self.got: list[tuple[tuple[str, int], bytes]] = []
        self.bursts = 0
        ep.handler = lambda addr, data: self.got.append((addr, data))
        ep.on_burst_end = self._burst

    def _burst(self) -> None:
        self.bursts += 1

    async def drain(self, wait: float = 0.2) -> list[bytes]:
        """What arrived until ``wait`` seconds passed without a new datagram (then cleared)."""
        seen = -1
        while seen != len(self.got):
            seen = len(self.got)
            await trio.sleep(wait)
        out = [data for _, data in self.got]
        self.got.clear()
        return out


async def test_datagrams_between_two_endpoints() -> None:
    async with UdpEndpoint.open() as a, UdpEndpoint.open() as b:
        inbox = Inbox(b)
        for i in range(20):
            assert a.send(b.addr, b"ping %d" % i)
        got = await inbox.drain()
        assert sorted(got) == sorted(b"ping %d" % i for i in range(20))
        assert b.stats.received == 20 and a.stats.sent == 20
        assert a.addr[0] == "127.0.0.1" and a.addr[1] > 0
        assert 1 <= inbox.bursts <= 20  # handed over in bursts, each ended once


async def test_total_loss_and_one_way_block() -> None:
    async with UdpEndpoint.open() as a, UdpEndpoint.open() as b:
        in_a, in_b = Inbox(a), Inbox(b)
        a.faults = FaultPlan(blocked=frozenset({(a.addr, b.addr)}))
        a.send(b.addr, b"blocked")
        b.send(a.addr, b"other way works")
        assert await in_b.drain() == []
        assert await in_a.drain() == [b"other way works"]
        a.faults = FaultPlan(loss=1.0)
        for _ in range(10):
            a.send(b.addr, b"lost")
        assert await in_b.drain() == [] and a.stats.lost_by_fault == 11


async def test_duplication_and_delay() -> None:
    async with UdpEndpoint.open(seed=3) as a, UdpEndpoint.open() as b:
        inbox = Inbox(b)
        a.faults = FaultPlan(duplicate=1.0, delay=(0.05, 0.1))
        start = trio.current_time()
        a.send(b.addr, b"twice")
        with trio.fail_after(10):
            while not inbox.got:  # noqa: ASYNC110 (a list the handler fills)
                await trio.sleep(0.005)
        assert inbox.got[0][1] == b"twice" and trio.current_time() - start >= 0.05
        assert await inbox.drain() == [b"twice", b"twice"]
        assert a.stats.duplicated_by_fault == 1


async def test_a_handler_that_raises_is_counted_and_the_loop_goes_on() -> None:
    async with UdpEndpoint.open() as a, UdpEndpoint.open() as b:
        got: list[bytes] = []

        def handler(addr: tuple[str, int], data: bytes) -> None:
            if data == b"bad":
                raise ValueError("a bug in a handler")
            got.append(data)

        b.handler = handler
        for data in (b"one", b"bad", b"two"):
            a.send(b.addr, data)
        with trio.fail_after(10):
            while len(got) < 2:  # noqa: ASYNC110 (a list the handler fills)
                await trio.sleep(0.01)
        assert got == [b"one", b"two"] and b.stats.handler_errors == 1


async def test_datagrams_before_a_handler_is_set_are_counted() -> None:
    async with UdpEndpoint.open() as a, UdpEndpoint.open() as b:
        a.send(b.addr, b"early")
        with trio.fail_after(10):
            while not b.stats.unhandled:  # noqa: ASYNC110 (a counter)
                await trio.sleep(0.01)
        assert b.stats.received == 1


async def test_oversize_datagrams_are_refused_and_dropped() -> None:
    async with UdpEndpoint.open(max_datagram=100) as a, UdpEndpoint.open(max_datagram=100) as b:
        inbox = Inbox(b)
        assert not a.send(b.addr, b"x" * 101)
        assert a.stats.dropped_too_large == 1
        a.max_datagram = 1_000  # a sender with a larger limit: the receiver drops it
        a.send(b.addr, b"y" * 500)
        assert await inbox.drain() == [] and b.stats.dropped_too_large == 1


def test_fault_decisions_are_seeded_and_follow_the_plan() -> None:
    plan = FaultPlan(loss=0.1, duplicate=0.05, delay=(0.0, 0.2))
    src, dst = ("127.0.0.1", 1), ("127.0.0.1", 2)
    first, again = random.Random(9), random.Random(9)
    assert [deliveries(plan, first, src, dst) for _ in range(100)] == [
        deliveries(plan, again, src, dst) for _ in range(100)
    ]
    rng = random.Random(1)
    outcomes = [deliveries(plan, rng, src, dst) for _ in range(20_000)]
    lost = sum(1 for o in outcomes if not o) / len(outcomes)
    doubled = sum(1 for o in outcomes if len(o) == 2) / len(outcomes)
    assert 0.08 < lost < 0.12 and 0.03 < doubled < 0.06
    assert all(0.0 <= d <= 0.2 for o in outcomes for d in o)
    with pytest.raises(ValueError, match="loss"):
        FaultPlan(loss=1.5)
