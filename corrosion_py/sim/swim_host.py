"""N SWIM cores on the simulator's clock and network: the one SWIM host of both simulators
(membership alone in cluster.py, under replication in replication.py).

Rules (each effect of events.py, carried out by ``swim.host.carry_out``):

- **Send.** A packet is encoded once (for its size and the trace) and the packet object itself
  is delivered to ``handle_datagram`` on arrival: the encoding is canonical, so decoding it
  again would rebuild an equal object and only cost time. ``Network.arrivals`` decides each
  copy's fate; a node that is down on arrival gets nothing.
- **SetTimer.** Scheduled at TIMER priority (after deliveries due at the same instant, the host
  rule of events.py), tagged with the node's generation: the timers of a node that crashed or
  restarted since are dropped when they fire, never cancelled.
- **Notify.** The event is written to the trace, ``views`` follow it (the members each node
  reports alive), and the owner's ``on_event`` gets it with the member's node index (None for
  an event about no member, such as ``LeaveComplete``).
- **PushPull.** A stream exchange: it reaches the peer one link delay later if both directions
  are connected and the peer runs (streams retransmit, so loss only delays them: modelled as
  lossless); the peer merges it and answers with its own list, which arrives one link delay
  later if the requester still runs the same generation. Otherwise it fails silently, like a
  refused connection.
- **Start and stop.** A start is a fresh core (a restart one incarnation above the old core's)
  joining through the given nodes; a stop keeps the highest incarnation used and marks the node
  crashed in the network. Every core's generator is seeded from ``rng_seed`` (the owner's run
  seed and label), the node and its generation, so a seed fixes every draw.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence

from corrosion_py.addr import Addr
from corrosion_py.sim.network import Network
from corrosion_py.sim.scheduler import DELIVERY, TIMER, Scheduler
from corrosion_py.sim.trace import NO_NODE, SWIM, Trace
from corrosion_py.swim import Effect, MembershipEvent, MemberState, Swim, SwimConfig, Timer
from corrosion_py.swim.host import carry_out
from corrosion_py.wire.swim import Feed, NodeId, Packet, Rumour, encode_packet

_ALIVE_EVENTS = frozenset({"MemberUp", "MemberRecovered", "MemberRejoined"})
_GONE_EVENTS = frozenset({"MemberSuspect", "MemberDown", "MemberLeft"})

OnEvent = Callable[[int, MembershipEvent, int | None], None]
"""(observer, event, member's node index or None)."""
OnSend = Callable[[int, int], None]
"""(sender, bytes) of every SWIM datagram sent."""


def addr_of(i: int) -> Addr:
    """The gossip address of node ``i``."""
    return (f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 7946)


class SwimHost:
    """The SWIM cores of nodes 0..n-1 (``actors[i]`` is node i's actor id)."""

    def __init__(
        self,
        scheduler: Scheduler,
        network: Network,
        trace: Trace,
        *,
        actors: Sequence[bytes],
        cluster_id: int,
        config: SwimConfig,
        rng_seed: str,
        on_event: OnEvent,
        on_send: OnSend,
    ) -> None:
        n = len(actors)
        self.scheduler = scheduler
        self.network = network
        self.trace = trace
        self.actors = list(actors)
        self.cluster_id = cluster_id
        self.config = config
        self.rng_seed = rng_seed
        self.on_event = on_event
        self.on_send = on_send
        self.addrs = [addr_of(i) for i in range(n)]
        self.index = {a: i for i, a in enumerate(self.addrs)}
        self.cores: list[Swim | None] = [None] * n
        self.generation = [0] * n
        """Starts of each node so far (its timers carry the one they were set in)."""
        self.incarnations = [0] * n
        """Highest incarnation each node has used; a restart starts above it."""
        self.views: list[set[int]] = [set() for _ in range(n)]
        """Members each node currently reports alive (from its events)."""
        self._hosts = [_NodeHost(self, i) for i in range(n)]

    def core(self, i: int) -> Swim:
        core = self.cores[i]
        if core is None:
            raise ValueError(f"node {i} is not running")
        return core

    def start(self, i: int, bootstrap: Sequence[int]) -> None:
        """Start node ``i`` (again, after a stop) and join through ``bootstrap``."""
        if self.cores[i] is not None:
            raise ValueError(f"node {i} is already running")
        self.generation[i] += 1
        generation = self.generation[i]
        if generation > 1:
            self.incarnations[i] += 1
        self.network.crashed.discard(i)
        self.views[i] = set()
        core = Swim(
            actor_id=self.actors[i],
            addr=self.addrs[i],
            cluster_id=self.cluster_id,
            rng=random.Random(f"{self.rng_seed}/{i}/{generation}"),
            config=self.config,
            incarnation=self.incarnations[i],
        )
        self.cores[i] = core
        now = self.scheduler.now
        self.trace.event(now, i, "Start", i, self.incarnations[i])
        self.run(i, core.join(now, [self.addrs[b] for b in bootstrap]))

    def introduce_all(self) -> None:
        """Hand every running core the full member list, as after a completed push-pull.

        Why: forming a large cluster one join at a time costs minutes of simulated time and is
        not what crash or loss scenarios measure. Each core gets one in-process Feed naming all
        nodes at incarnation 0; the resulting alive rumours still spread (the warm-up).
        """
        everyone = tuple(
            Rumour(MemberState.ALIVE, NodeId(actor, addr), 0, actor)
            for actor, addr in zip(self.actors, self.addrs, strict=True)
        )
        for i, core in enumerate(self.cores):
            if core is not None:
                j = 1 if i == 0 else 0
                feed = Packet(self.cluster_id, everyone[j].node, 0, Feed(everyone))
                self.run(i, core.handle_datagram(self.scheduler.now, self.addrs[j], feed))

    def stop(self, i: int) -> None:
        """Stop node ``i`` without a word (a crash, or the end of a leave)."""
        self.incarnations[i] = max(self.incarnations[i], self.core(i).incarnation)
        self.cores[i] = None
        self.network.crashed.add(i)
        self.views[i] = set()

    def leave(self, i: int) -> None:
        """Ask node ``i`` to leave gracefully (``LeaveComplete`` says when it may stop)."""
        self.run(i, self.core(i).leave(self.scheduler.now))

    def run(self, i: int, effects: Iterable[Effect]) -> None:
        """Carry out the effects node ``i``'s core returned."""
        carry_out(effects, self._hosts[i])

    # -- deliveries -----------------------------------------------------------------------------

    def _deliver(self, arg: tuple[int, Addr, Packet]) -> None:
        dst, src, packet = arg
        core = self.cores[dst]
        if core is not None:
            self.run(dst, core.handle_datagram(self.scheduler.now, src, packet))

    def _fire(self, arg: tuple[int, int, Timer]) -> None:
        i, generation, token = arg
        core = self.cores[i]
        if core is not None and generation == self.generation[i]:
            self.run(i, core.handle_timer(self.scheduler.now, token))

    def _notify(self, i: int, event: MembershipEvent) -> None:
        name = type(event).__name__
        info = getattr(event, "member", None)
        now = self.scheduler.now
        if info is None:
            self.trace.event(now, i, name, i, self.incarnations[i])
            self.on_event(i, event, None)
            return
        member = self.index.get(info.addr)
        if member is None:
            return
        self.trace.event(now, i, name, member, info.incarnation)
        if name in _ALIVE_EVENTS:
            self.views[i].add(member)
        elif name in _GONE_EVENTS:
            self.views[i].discard(member)
        self.on_event(i, event, member)

    def _push_pull(self, i: int, addr: Addr, members: tuple[Rumour, ...]) -> None:
        dst = self.index.get(addr)
        net = self.network
        self.trace.event(
            self.scheduler.now, i, "PushPull", NO_NODE if dst is None else dst, len(members)
        )
        if dst is None or not (net.connected(i, dst) and net.connected(dst, i)):
            return
        arg = (i, self.generation[i], dst, members)
        self.scheduler.at(self.scheduler.now + net.default.delay, DELIVERY, self._serve, arg)

    def _serve(self, arg: tuple[int, int, int, tuple[Rumour, ...]]) -> None:
        """At the peer: merge the requester's list, answer with ours."""
        i, generation, dst, members = arg
        core = self.cores[dst]
        if core is None:
            return
        now = self.scheduler.now
        self.run(dst, core.handle_push_pull(now, self.addrs[i], members))
        answer = (i, generation, dst, core.push_pull_state())
        self.scheduler.at(now + self.network.default.delay, DELIVERY, self._answer, answer)

    def _answer(self, arg: tuple[int, int, int, tuple[Rumour, ...]]) -> None:
        """At the requester: merge the peer's list."""
        i, generation, dst, members = arg
        core = self.cores[i]
        if core is not None and generation == self.generation[i]:
            self.run(i, core.handle_push_pull(self.scheduler.now, self.addrs[dst], members))


class _NodeHost:
    """Node ``i``'s side of ``swim.host.Host``."""

    __slots__ = ("host", "i")

    def __init__(self, host: SwimHost, i: int) -> None:
        self.host = host
        self.i = i

    def send(self, addr: Addr, packet: Packet) -> None:
        host, i = self.host, self.i
        now = host.scheduler.now
        data = encode_packet(packet, check=False)
        dst = host.index.get(addr)
        host.trace.datagram(now, i, dst, SWIM, data)
        host.on_send(i, len(data))
        if dst is None:
            return
        src = host.addrs[i]
        at = host.scheduler.at
        for delay in host.network.arrivals(i, dst):
            at(now + delay, DELIVERY, host._deliver, (dst, src, packet))

    def set_timer(self, delay: float, token: Timer) -> None:
        host, i = self.host, self.i
        arg = (i, host.generation[i], token)
        host.scheduler.at(host.scheduler.now + delay, TIMER, host._fire, arg)

    def notify(self, event: MembershipEvent) -> None:
        self.host._notify(self.i, event)

    def push_pull(self, addr: Addr, members: tuple[Rumour, ...]) -> None:
        self.host._push_pull(self.i, addr, members)
