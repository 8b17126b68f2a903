"""The simulator proper: N SWIM cores on one virtual clock over a seeded network model.

Why it is built this way:

- **Determinism.** Every random draw comes from a generator seeded from the run's seed: one per
  core (re-seeded per restart), one for the network, one for the host's reconnect choices. The
  scheduler's order is total. So a seed fixes the run, and ``trace_hash`` (sha256 over every
  datagram sent and every membership event, with their times) proves it byte for byte.
- **Lean hot path.** A datagram is encoded once (for its size and the hash) and the packet
  object itself is delivered to ``handle_datagram``: the encoding is canonical, so decoding it
  again would rebuild an equal object and only cost time. Effects are dispatched by type.
- **Push-pull.** The core's ``PushPull`` effect is a stream exchange: it reaches the peer after
  one link delay if both directions are connected and the peer runs (streams retransmit, so
  loss only delays them: modelled as lossless), the peer merges it and answers with its own
  list, which arrives one link delay later if the requester still runs. Otherwise the exchange
  fails silently, like a refused connection.
- **No cyclic garbage collection while running.** A large run holds millions of long-lived
  objects (member lists, rumour queues, pending timers), and the collector's passes over them
  took a quarter of the run time while finding nothing: the simulator and the cores make no
  reference cycles as they go (a collection after a 1,000-node run frees 0 objects). So
  ``run_until`` and ``start_all`` pause the collector and restore it when they return.
- **Crashes and restarts.** A crash removes the core; its pending timers die with its
  generation, datagrams to it are dropped on arrival. A restart is a fresh core with the same
  actor id and address, an incarnation one above the old core's, joining through live nodes.
"""

from __future__ import annotations

import gc
import hashlib
import random
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from corrosion_py.sim.metrics import Metrics
from corrosion_py.sim.network import Link, Network
from corrosion_py.sim.scheduler import DELIVERY, TIMER, Scheduler
from corrosion_py.swim import (
    LAN,
    Addr,
    Effect,
    Event,
    MemberState,
    Notify,
    PushPull,
    Send,
    SetTimer,
    Swim,
    SwimConfig,
    Timer,
)
from corrosion_py.wire.swim import Feed, NodeId, Packet, Rumour, encode_packet

CLUSTER_ID = 7
_ALIVE_EVENTS = frozenset({"MemberUp", "MemberRecovered", "MemberRejoined"})
_GONE_EVENTS = frozenset({"MemberSuspect", "MemberDown", "MemberLeft"})
_SEND = struct.Struct("<dII")
_NO_MEMBER = 0xFFFFFFFF


def actor_of(i: int) -> bytes:
    """The actor id of node ``i``."""
    return i.to_bytes(16, "big")


def addr_of(i: int) -> Addr:
    """The gossip address of node ``i``."""
    return (f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 7946)


class Simulation:
    """Nodes 0..n-1, their cores, the network between them, the clock and the metrics."""

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        config: SwimConfig = LAN,
        link: Link | None = None,
    ) -> None:
        if n < 2:
            raise ValueError("a simulation needs at least 2 nodes")
        self.n = n
        self.seed = seed
        self.config = config
        self.scheduler = Scheduler()
        self.network = Network(random.Random(f"{seed}/network"), link or Link())
        self.metrics = Metrics(n)
        self.cores: list[Swim | None] = [None] * n
        self.incarnations = [0] * n
        """Highest incarnation each node has used; a restart starts above it."""
        self.views: list[set[int]] = [set() for _ in range(n)]
        """Members each node currently reports alive (from its events)."""
        self.left: set[int] = set()
        self._generation = [0] * n
        self._addrs = [addr_of(i) for i in range(n)]
        self._index = {a: i for i, a in enumerate(self._addrs)}
        self._hash = hashlib.sha256()

    # -- views ----------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """Virtual time, in seconds."""
        return self.scheduler.now

    def live(self) -> list[int]:
        """Nodes running and not departed."""
        return [i for i, c in enumerate(self.cores) if c is not None and i not in self.left]

    def converged(self) -> bool:
        """Whether every live node reports every other live node alive."""
        live = self.live()
        want = set(live)
        return all(len(self.views[i] & want) == len(want) - 1 for i in live)

    def states(self, observer: int) -> dict[int, MemberState]:
        """What ``observer``'s core holds about every other member, by node index."""
        return {self._index[m.addr]: m.state for m in self._core(observer).members()}

    def trace_hash(self) -> str:
        """sha256 of the trace so far: every datagram sent and every event, with times."""
        return self._hash.hexdigest()

    # -- actions --------------------------------------------------------------------------------

    def start(self, i: int, bootstrap: Sequence[int]) -> None:
        """Start node ``i`` (again, after a crash) and join through ``bootstrap``."""
        if self.cores[i] is not None:
            raise ValueError(f"node {i} is already running")
        self._generation[i] += 1
        if self._generation[i] > 1:
            self.incarnations[i] += 1
            self.metrics.restarted(i)
        self.network.crashed.discard(i)
        self.left.discard(i)
        self.views[i] = set()
        core = Swim(
            actor_id=actor_of(i),
            addr=addr_of(i),
            cluster_id=CLUSTER_ID,
            rng=random.Random(f"{self.seed}/node/{i}/{self._generation[i]}"),
            config=self.config,
            incarnation=self.incarnations[i],
        )
        self.cores[i] = core
        self._record(i, "Start", i, self.incarnations[i])
        self._run(i, core.join(self.now, [addr_of(b) for b in bootstrap]))

    def start_all(self) -> None:
        """Start every node with the full member list, as after a completed push-pull.

        Why: forming a large cluster one join at a time costs minutes of simulated time and is
        not what crash or loss scenarios measure. Each node gets one in-process Feed naming all
        others at incarnation 0; the resulting alive rumours still spread (the warm-up).
        """
        everyone = tuple(
            Rumour(MemberState.ALIVE, NodeId(actor_of(j), addr_of(j)), 0, actor_of(j))
            for j in range(self.n)
        )
        with _gc_paused():
            for i in range(self.n):
                self.start(i, [])
            for i in range(self.n):
                core = self.cores[i]
                assert core is not None
                j = 1 if i == 0 else 0
                feed = Packet(CLUSTER_ID, everyone[j].node, 0, Feed(everyone))
                self._run(i, core.handle_datagram(self.now, addr_of(j), feed))

    def crash(self, i: int) -> None:
        """Stop node ``i`` without a word."""
        if self.cores[i] is None:
            return
        self.incarnations[i] = max(self.incarnations[i], self._core(i).incarnation)
        self.cores[i] = None
        self.network.crashed.add(i)
        self.views[i] = set()
        self._record(i, "Crash", i, self.incarnations[i])
        self.metrics.crashed(self.now, i)

    def leave(self, i: int) -> None:
        """Ask node ``i`` to leave gracefully (it stops when its core says LeaveComplete)."""
        self._record(i, "Leave", i, self.incarnations[i])
        self.metrics.left(self.now, i)
        self.left.add(i)
        self._run(i, self._core(i).leave(self.now))

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run a scenario ``action`` at virtual time ``when``."""
        self.scheduler.at(when, TIMER, _call, action)

    def run_until(self, t: float) -> None:
        """Advance virtual time to ``t``."""
        with _gc_paused():
            self.scheduler.run_until(t)

    def run_until_converged(self, deadline: float, step: float = 0.5) -> float | None:
        """Advance in ``step``s until ``converged``; the time it happened, or None."""
        while self.now < deadline:
            self.run_until(min(deadline, self.now + step))
            if self.converged():
                return self.now
        return None

    # -- plumbing -------------------------------------------------------------------------------

    def _core(self, i: int) -> Swim:
        core = self.cores[i]
        if core is None:
            raise ValueError(f"node {i} is not running")
        return core

    def _run(self, i: int, effects: Iterable[Effect]) -> None:
        """Carry out the effects node ``i``'s core returned."""
        now = self.scheduler.now
        at = self.scheduler.at
        for e in effects:
            if type(e) is Send:
                data = encode_packet(e.packet, check=False)
                self.metrics.bytes_sent[i] += len(data)
                self.metrics.packets_sent[i] += 1
                dst = self._index.get(e.addr)
                self._hash.update(_SEND.pack(now, i, _NO_MEMBER if dst is None else dst))
                self._hash.update(data)
                if dst is None:
                    continue
                for delay in self.network.arrivals(i, dst):
                    at(now + delay, DELIVERY, self._deliver, (dst, self._addrs[i], e.packet))
            elif type(e) is SetTimer:
                at(now + e.delay, TIMER, self._fire, (i, self._generation[i], e.token))
            elif type(e) is Notify:
                self._notify(i, e.event)
            elif type(e) is PushPull:
                self._push_pull(i, e)

    def _deliver(self, arg: tuple[int, Addr, Packet]) -> None:
        dst, src, packet = arg
        core = self.cores[dst]
        if core is not None:
            self._run(dst, core.handle_datagram(self.scheduler.now, src, packet))

    def _fire(self, arg: tuple[int, int, Timer]) -> None:
        i, generation, token = arg
        core = self.cores[i]
        if core is not None and generation == self._generation[i]:
            self._run(i, core.handle_timer(self.scheduler.now, token))

    def _push_pull(self, i: int, e: PushPull) -> None:
        dst = self._index.get(e.addr)
        net = self.network
        self._record(i, "PushPull", _NO_MEMBER if dst is None else dst, len(e.members))
        if dst is None or not (net.connected(i, dst) and net.connected(dst, i)):
            return
        delay = net.default.delay
        arg = (i, self._generation[i], dst, e.members)
        self.scheduler.at(self.now + delay, DELIVERY, self._push_pull_serve, arg)

    def _push_pull_serve(self, arg: tuple[int, int, int, tuple[Rumour, ...]]) -> None:
        i, generation, dst, members = arg
        core = self.cores[dst]
        if core is None:
            return
        self._run(dst, core.handle_push_pull(self.now, addr_of(i), members))
        answer = (i, generation, dst, core.push_pull_state())
        self.scheduler.at(
            self.now + self.network.default.delay, DELIVERY, self._push_pull_answer, answer
        )

    def _push_pull_answer(self, arg: tuple[int, int, int, tuple[Rumour, ...]]) -> None:
        i, generation, dst, members = arg
        core = self.cores[i]
        if core is not None and generation == self._generation[i]:
            self._run(i, core.handle_push_pull(self.now, addr_of(dst), members))

    def _notify(self, i: int, event: Event) -> None:
        name = type(event).__name__
        info = getattr(event, "member", None)
        if info is None:
            self._record(i, name, i, self.incarnations[i])
            if name == "LeaveComplete":
                self._stop(i)
            return
        member = self._index[info.addr]
        self._record(i, name, member, info.incarnation)
        if name in _ALIVE_EVENTS:
            self.views[i].add(member)
        elif name in _GONE_EVENTS:
            self.views[i].discard(member)
        net = self.network
        self.metrics.event(
            self.now,
            i,
            name,
            member,
            info.incarnation,
            member_up=self.cores[member] is not None and member not in self.left,
            reachable=net.connected(i, member) and net.connected(member, i),
            slow=member in net.slow,
        )

    def _stop(self, i: int) -> None:
        """Stop a node that has left: like a crash, but not timed as one."""
        self.incarnations[i] = max(self.incarnations[i], self._core(i).incarnation)
        self.cores[i] = None
        self.network.crashed.add(i)

    def _record(self, observer: int, name: str, member: int, incarnation: int) -> None:
        self._hash.update(f"{self.now!r} {observer} {name} {member} {incarnation}\n".encode())


def _call(action: Callable[[], None]) -> None:
    action()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (see the module doc); restore it as it was."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
