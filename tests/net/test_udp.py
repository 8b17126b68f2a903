"""The UDP endpoint on real sockets on 127.0.0.1, and its fault injection."""

from __future__ import annotations

import random

import pytest
import trio

from corrosion_py.net.faults import FaultPlan, deliveries
from corrosion_py.net.udp import UdpEndpoint


async def drain(ep: UdpEndpoint, wait: float = 0.2) -> list[bytes]:
    out = []
    while True:
        with trio.move_on_after(wait) as scope:
            _, data = await ep.receive()
            out.append(data)
        if scope.cancelled_caught:
            return out


async def test_datagrams_between_two_endpoints() -> None:
    async with UdpEndpoint.open() as a, UdpEndpoint.open() as b:
        for i in range(20):
            assert await a.send(b.addr, b"ping %d" % i)
        got = await drain(b)
        assert sorted(got) == sorted(b"ping %d" % i for i in range(20))
        assert b.stats.received == 20 and a.stats.sent == 20
        assert a.addr[0] == "127.0.0.1" and a.addr[1] > 0


async def test_total_loss_and_one_way_block() -> None:
    async with UdpEndpoint.open() as a, UdpEndpoint.open() as b:
        a.faults = FaultPlan(blocked=frozenset({(a.addr, b.addr)}))
        await a.send(b.addr, b"blocked")
        await b.send(a.addr, b"other way works")
        assert await drain(b) == []
        assert await drain(a) == [b"other way works"]
        a.faults = FaultPlan(loss=1.0)
        for _ in range(10):
            await a.send(b.addr, b"lost")
        assert await drain(b) == [] and a.stats.lost_by_fault == 11


async def test_duplication_and_delay() -> None:
    async with UdpEndpoint.open(seed=3) as a, UdpEndpoint.open() as b:
        a.faults = FaultPlan(duplicate=1.0, delay=(0.05, 0.1))
        start = trio.current_time()
        await a.send(b.addr, b"twice")
        _, first = await b.receive()
        assert first == b"twice" and trio.current_time() - start >= 0.05
        assert await drain(b) == [b"twice"]
        assert a.stats.duplicated_by_fault == 1


async def test_bounded_inbox_drops_and_counts() -> None:
    async with UdpEndpoint.open() as a, UdpEndpoint.open(queue_size=5) as b:
        for i in range(30):
            await a.send(b.addr, b"%d" % i)
        await trio.sleep(0.2)  # nobody reads b: its queue fills up
        assert b.stats.received == 5 and b.stats.dropped_queue_full == 25
        assert len(await drain(b)) == 5


async def test_oversize_datagrams_are_refused_and_dropped() -> None:
    async with UdpEndpoint.open(max_datagram=100) as a, UdpEndpoint.open(max_datagram=100) as b:
        assert not await a.send(b.addr, b"x" * 101)
        assert a.stats.dropped_too_large == 1
        a.max_datagram = 1_000  # a sender with a larger limit: the receiver drops it
        await a.send(b.addr, b"y" * 500)
        assert await drain(b) == [] and b.stats.dropped_too_large == 1


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
