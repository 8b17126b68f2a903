"""A tiny deterministic cluster for tests: N SWIM cores, a fake network and virtual time.

One heap holds datagrams in flight and timers, ordered by (time, kind, arrival order) with
datagrams before timers at equal times (the host rule of events.py). Every packet is encoded and
decoded, so sizes and the codec are exercised; loss and delay come from the cluster's own seeded
``random.Random``, and each node gets its own seeded generator, so one seed gives one trace.
A crash drops the node's pending timers (by generation); a restart is a new core with the same
actor id and address.
"""

from __future__ import annotations

import heapq
import random

from corrosion_py.swim import (
    LAN,
    Addr,
    Effect,
    MembershipEvent,
    MemberState,
    Notify,
    Send,
    SetTimer,
    Swim,
    SwimConfig,
    Timer,
)
from corrosion_py.wire.swim import encode_packet

CLUSTER_ID = 7
_DATAGRAM, _TIMER = 0, 1


def actor(i: int) -> bytes:
    """The actor id of node ``i``."""
    return i.to_bytes(16, "big")


def addr(i: int) -> Addr:
    """The gossip address of node ``i``."""
    return (f"10.0.{i // 256}.{i % 256}", 7946)


class Cluster:
    """Nodes 0..n-1 (started on demand), a lossy network and a virtual clock."""

    def __init__(self, n: int, seed: int, config: SwimConfig = LAN, loss: float = 0.0) -> None:
        self.n = n
        self.seed = seed
        self.config = config
        self.loss = loss
        self.now = 0.0
        self.nodes: dict[int, Swim] = {}
        self.trace: list[tuple[float, int, str, int, int]] = []
        """(time, observer, event name, member index, incarnation): the membership story."""
        self.sent = 0
        self._net = random.Random(seed)
        self._heap: list[tuple[float, int, int, int, int, tuple[Addr, bytes] | Timer]] = []
        self._order = 0
        self._generation = dict.fromkeys(range(n), 0)
        self._index = {addr(i): i for i in range(n)}

    def start(self, i: int, bootstrap: list[int]) -> None:
        """Start node ``i`` (again, after a crash) and join through ``bootstrap``."""
        self._generation[i] += 1
        rng = random.Random(self.seed * 1_000_003 + i * 1_009 + self._generation[i])
        core = Swim(actor_id=actor(i), addr=addr(i), cluster_id=CLUSTER_ID, rng=rng,
                    config=self.config)  # fmt: skip
        self.nodes[i] = core
        self._run(i, core.join(self.now, [addr(b) for b in bootstrap]))

    def crash(self, i: int) -> None:
        """Stop node ``i`` without a word: its timers and inbound datagrams vanish."""
        del self.nodes[i]
        self._generation[i] += 1

    def leave(self, i: int) -> None:
        """Ask node ``i`` to leave gracefully."""
        self._run(i, self.nodes[i].leave(self.now))

    def run_until(self, t: float) -> None:
        """Deliver everything due up to virtual time ``t``."""
        while self._heap and self._heap[0][0] <= t:
            when, kind, _, dst, gen, item = heapq.heappop(self._heap)
            self.now = when
            core = self.nodes.get(dst)
            if core is None or (kind == _TIMER and gen != self._generation[dst]):
                continue
            if isinstance(item, tuple):
                src, data = item
                self._run(dst, core.handle_bytes(when, src, data))
            else:
                self._run(dst, core.handle_timer(when, item))
        self.now = t

    def states(self, observer: int) -> dict[int, MemberState]:
        """What ``observer`` holds about every other member, by node index."""
        return {self._index[m.addr]: m.state for m in self.nodes[observer].members()}

    def events(self, name: str, member: int) -> dict[int, float]:
        """First time each observer reported event ``name`` about ``member``."""
        out: dict[int, float] = {}
        for t, obs, ev, m, _ in self.trace:
            if ev == name and m == member:
                out.setdefault(obs, t)
        return out

    def _push(self, when: float, kind: int, dst: int, item: tuple[Addr, bytes] | Timer) -> None:
        self._order += 1
        entry = (when, kind, self._order, dst, self._generation[dst], item)
        heapq.heappush(self._heap, entry)

    def _run(self, i: int, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, Send):
                data = encode_packet(e.packet)
                assert len(data) <= self.config.max_packet_size
                self.sent += 1
                dst = self._index.get(e.addr)
                if dst is None or self._net.random() < self.loss:
                    continue
                delay = self._net.uniform(0.001, 0.005)
                self._push(self.now + delay, _DATAGRAM, dst, (addr(i), data))
            elif isinstance(e, SetTimer):
                self._push(self.now + e.delay, _TIMER, i, e.token)
            elif isinstance(e, Notify):
                self._record(i, e.event)

    def _record(self, i: int, event: MembershipEvent) -> None:
        member = getattr(event, "member", None)
        who = self._index[member.addr] if member is not None else i
        inc = member.incarnation if member is not None else -1
        self.trace.append((round(self.now, 9), i, type(event).__name__, who, inc))


def form(cluster: Cluster, stagger: float = 0.1) -> None:
    """Start node 0 alone, then every other node joining through node 0 alone."""
    cluster.start(0, [])
    for i in range(1, cluster.n):
        cluster.run_until(cluster.now + stagger)
        cluster.start(i, [0])
