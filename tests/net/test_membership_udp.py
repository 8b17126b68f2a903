"""SWIM over real UDP sockets on 127.0.0.1, LOCAL timing: nodes form a cluster from one
bootstrap address, and a node that stops answering is declared down by every other node."""

from __future__ import annotations

import os
import random

import trio

from corrosion_py.net.membership import Membership
from corrosion_py.net.port import Routes, open_gossip_port
from corrosion_py.swim import Swim
from corrosion_py.swim.events import MemberDown
from corrosion_py.swim.presets import LOCAL
from corrosion_py.wire.swim import MemberState


async def start_node(nursery: trio.Nursery, seed: int) -> tuple[Membership, trio.CancelScope]:
    scope = trio.CancelScope()
    started = trio.Event()
    holder: list[Membership] = []

    async def node() -> None:
        with scope:
            async with open_gossip_port() as port:
                core = Swim(
                    actor_id=os.urandom(16),
                    addr=port.addr,
                    cluster_id=7,
                    rng=random.Random(seed),
                    config=LOCAL,
                )
                m = Membership(core, port.endpoint)
                holder.append(m)
                async with trio.open_nursery() as inner:
                    await inner.start(m.run)
                    await inner.start(port.serve, Routes(swim=m.handle_datagram))
                    started.set()

    nursery.start_soon(node)
    await started.wait()
    return holder[0], scope


def alive_view(m: Membership) -> set[bytes]:
    return {i.actor_id for i in m.members() if i.state == MemberState.ALIVE}


async def test_cluster_forms_and_detects_a_stopped_node() -> None:
    async with trio.open_nursery() as nursery:
        nodes = [await start_node(nursery, seed) for seed in range(8)]
        first = nodes[0][0]
        await first.join([])
        for m, _ in nodes[1:]:
            await m.join([first.endpoint.addr])
        everyone = {m.core.actor_id for m, _ in nodes}
        for _ in range(400):  # up to 20 s
            if all(alive_view(m) | {m.core.actor_id} == everyone for m, _ in nodes):
                break
            await trio.sleep(0.05)
        else:
            raise AssertionError("the cluster did not form within 20 s")
        victim, victim_scope = nodes[-1]
        victim_scope.cancel()  # its socket closes: it stops answering, like a crash
        survivors = [m for m, _ in nodes[:-1]]
        with trio.fail_after(30):
            for m in survivors:
                while True:
                    event = await m.events.receive()
                    if (
                        isinstance(event, MemberDown)
                        and event.member.actor_id == victim.core.actor_id
                    ):
                        break
        for m in survivors:
            assert victim.core.actor_id not in alive_view(m)
            assert alive_view(m) | {m.core.actor_id} == everyone - {victim.core.actor_id}
        nursery.cancel_scope.cancel()
