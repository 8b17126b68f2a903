"""A membership-only node as its own OS process, for multi-process tests and trying SWIM out:

    python -m corrosion_py.testing.swim_node [--join HOST:PORT ...] [--seed N]
        [--preset local|lan|wan]
                                    [--loss P]

The gossip port is UDP (SWIM datagrams) and TCP on the same number (push-pull of member lists).
It prints one JSON line per event on stdout: first `{"event": "listening", "addr": ..., "actor":
...}`, then `up`, `suspect`, `recovered`, `down`, `left`, `rejoined` with the member's actor id
(hex) and the monotonic time in seconds. It stops on SIGINT/SIGTERM after a graceful leave.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys

import trio

from corrosion_py.addr import parse_addr
from corrosion_py.net.faults import FaultPlan
from corrosion_py.net.membership import Membership
from corrosion_py.net.port import Routes, open_gossip_port
from corrosion_py.net.timers import Timers
from corrosion_py.swim import Swim
from corrosion_py.swim.events import (
    MemberDown,
    MemberLeft,
    MemberRecovered,
    MemberRejoined,
    MemberSuspect,
    MemberUp,
)
from corrosion_py.swim.presets import PRESETS
from corrosion_py.testing.child import emit

NAMES = {
    MemberUp: "up",
    MemberSuspect: "suspect",
    MemberRecovered: "recovered",
    MemberDown: "down",
    MemberLeft: "left",
    MemberRejoined: "rejoined",
}


async def main(args: argparse.Namespace) -> None:
    faults = FaultPlan(loss=args.loss)
    async with open_gossip_port(args.host, args.port, faults=faults, seed=args.seed) as port:
        ep = port.endpoint
        core = Swim(
            actor_id=os.urandom(16),
            addr=ep.addr,
            cluster_id=args.cluster_id,
            rng=random.Random(args.seed),
            config=PRESETS[args.preset],
        )
        timers = Timers()
        membership = Membership(core, ep, timers)
        async with trio.open_nursery() as nursery:
            await nursery.start(timers.run)
            await nursery.start(membership.run)
            routes = Routes(swim=membership.handle_datagram, push_pull=membership.serve_push_pull)
            await nursery.start(port.serve, routes)
            emit(event="listening", addr=f"{ep.addr[0]}:{ep.addr[1]}", actor=core.actor_id.hex())
            await membership.join(args.join)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                nursery.start_soon(_report, membership)
                async for _ in signals:
                    await membership.leave()
                    await trio.sleep(core.config.leave_timeout)
                    nursery.cancel_scope.cancel()
                    return


async def _report(membership: Membership) -> None:
    async for event in membership.events:
        name = NAMES.get(type(event))
        member = getattr(event, "member", None)
        if name and member is not None:
            emit(event=name, actor=member.actor_id.hex(), t=round(trio.current_time(), 4))


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--join", type=parse_addr, nargs="*", default=[], metavar="HOST:PORT")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--cluster-id", type=int, default=0)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="local")
    parser.add_argument("--loss", type=float, default=0.0, help="share of datagrams dropped")
    trio.run(main, parser.parse_args())


if __name__ == "__main__":
    try:
        run()
    except KeyboardInterrupt:
        sys.exit(130)
