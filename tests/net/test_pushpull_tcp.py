"""SWIM push-pull over real TCP on 127.0.0.1: the join fetches the full list, a member held
dead is healed by the reconnect push-pull, and garbage on the port is counted, not fatal."""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from corrosion_py.net.membership import Membership
from corrosion_py.net.port import GossipPort, Routes, open_gossip_port
from corrosion_py.swim import ReconnectTick, Swim
from corrosion_py.swim.host import carry_out
from corrosion_py.swim.presets import LOCAL
from corrosion_py.wire.framing import frame
from corrosion_py.wire.swim import Gossip, MemberState, NodeId, Packet, Rumour

CLUSTER = 7


@asynccontextmanager
async def node(seed: int) -> AsyncIterator[tuple[Membership, GossipPort]]:
    """A membership-only node: SWIM datagrams and push-pull connections on one gossip port."""
    async with open_gossip_port() as port, trio.open_nursery() as nursery:
        core = Swim(
            actor_id=os.urandom(16),
            addr=port.addr,
            cluster_id=CLUSTER,
            rng=random.Random(seed),
            config=LOCAL,
        )
        m = Membership(core, port.endpoint)
        await nursery.start(m.run)
        routes = Routes(swim=m.handle_datagram, push_pull=m.serve_push_pull)
        await nursery.start(port.serve, routes)
        yield m, port
        nursery.cancel_scope.cancel()


async def wait_for(cond: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll ``cond`` (the state lives in the cores, nothing to wait on) until a hang bound."""
    with trio.fail_after(seconds):
        while not cond():  # noqa: ASYNC110
            await trio.sleep(0.02)


def state_of(m: Membership, other: Membership) -> MemberState | None:
    info = m.core.member(other.core.actor_id)
    return info.state if info else None


async def test_join_is_followed_by_a_tcp_push_pull_of_the_full_list() -> None:
    async with node(1) as (a, _), node(2) as (b, _), node(3) as (c, _):
        await a.join([])
        await b.join([a.endpoint.addr])
        await wait_for(lambda: state_of(a, b) is MemberState.ALIVE)
        await c.join([a.endpoint.addr])
        await wait_for(lambda: c.push_pull_stats["ok"] >= 1)
        assert a.push_pull_stats["served"] >= 1
        await wait_for(lambda: state_of(c, b) is MemberState.ALIVE)


async def test_reconnect_push_pull_heals_a_member_held_dead() -> None:
    async with node(1) as (a, _), node(2) as (b, _):
        await a.join([])
        await b.join([a.endpoint.addr])
        await wait_for(lambda: state_of(a, b) is MemberState.ALIVE)
        await wait_for(lambda: state_of(b, a) is MemberState.ALIVE)
        # a third party tells `a` that `b` is dead (as a partition would)
        liar = NodeId(os.urandom(16), ("127.0.0.1", 9))
        verdict = Rumour(MemberState.DEAD, b.core.node, b.core.incarnation, liar.actor_id)
        packet = Packet(CLUSTER, liar, 0, Gossip(), (verdict,))
        carry_out(a.core.handle_datagram(trio.current_time(), liar.addr, packet), a)
        assert state_of(a, b) is MemberState.DEAD
        carry_out(a.core.handle_timer(trio.current_time(), ReconnectTick()), a)
        await wait_for(lambda: state_of(a, b) is MemberState.ALIVE)
        assert b.core.incarnation >= 1  # b learnt it was held dead and refuted


async def test_garbage_on_the_tcp_port_is_counted_and_service_goes_on() -> None:
    async with node(1) as (a, a_port), node(2) as (b, _):
        await a.join([])
        port = a.endpoint.addr
        for junk in (b"\xff" * 9, frame(b"not cbor"), b"\xff\xff\xff\xff", frame(b"")):
            stream = await trio.open_tcp_stream(*port)
            async with stream:
                with trio.fail_after(5):
                    try:  # the port closes (or resets) the connection
                        await stream.send_all(junk)
                        await stream.send_eof()
                        while await stream.receive_some(1024):
                            pass
                    except trio.BrokenResourceError:
                        pass
        # a first frame too large is refused from its header; an undecodable or empty one
        # names no route on a membership-only node
        stats = a_port.tcp_stats
        assert stats["bad_first_frame"] == 2 and stats["no_route"] == 2
        await b.join([port])
        await wait_for(lambda: b.push_pull_stats["ok"] >= 1)
