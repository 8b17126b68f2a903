"""The SWIM simulator: N SWIM cores on one virtual clock over a seeded network model.

Why it is built this way:

- **Determinism.** Every random draw comes from a generator seeded from the run's seed: one per
  core (re-seeded per restart), one for the network. The scheduler's order is total. So a seed
  fixes the run, and ``trace_hash`` (sim/trace.py: every datagram sent and every membership
  event, with their times) proves it byte for byte.
- **One SWIM host.** The cores run under ``SwimHost`` (sim/swim_host.py), the same host the
  replication simulator uses: effects, timers, the push-pull stream model, restarts. This
  module adds what membership scenarios measure (``Metrics``) and graceful leaves.
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
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from corrosion_py.sim.metrics import Metrics
from corrosion_py.sim.network import Link, Network
from corrosion_py.sim.scheduler import TIMER, Scheduler
from corrosion_py.sim.swim_host import SwimHost, addr_of
from corrosion_py.sim.trace import Trace
from corrosion_py.swim import LAN, LeaveComplete, MembershipEvent, MemberState, Swim, SwimConfig

CLUSTER_ID = 7


def actor_of(i: int) -> bytes:
    """The actor id of node ``i``."""
    return i.to_bytes(16, "big")


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
        self.trace = Trace()
        self.swim = SwimHost(
            self.scheduler,
            self.network,
            self.trace,
            actors=[actor_of(i) for i in range(n)],
            cluster_id=CLUSTER_ID,
            config=config,
            rng_seed=f"{seed}/node",
            on_event=self._event,
            on_send=self._sent,
        )
        self.left: set[int] = set()

    # -- views ----------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """Virtual time, in seconds."""
        return self.scheduler.now

    @property
    def cores(self) -> list[Swim | None]:
        """Each node's core (None while it is down)."""
        return self.swim.cores

    @property
    def views(self) -> list[set[int]]:
        """Members each node currently reports alive (from its events)."""
        return self.swim.views

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
        index = self.swim.index
        return {index[m.addr]: m.state for m in self.swim.core(observer).members()}

    def trace_hash(self) -> str:
        """sha256 of the trace so far: every datagram sent and every event, with times."""
        return self.trace.hexdigest()

    # -- actions --------------------------------------------------------------------------------

    def start(self, i: int, bootstrap: Sequence[int]) -> None:
        """Start node ``i`` (again, after a crash) and join through ``bootstrap``."""
        if self.cores[i] is not None:
            raise ValueError(f"node {i} is already running")
        if self.swim.generation[i]:
            self.metrics.restarted(i)
        self.left.discard(i)
        self.swim.start(i, bootstrap)

    def start_all(self) -> None:
        """Start every node with the full member list, as after a completed push-pull
        (``SwimHost.introduce_all`` says why)."""
        with _gc_paused():
            for i in range(self.n):
                self.start(i, [])
            self.swim.introduce_all()

    def crash(self, i: int) -> None:
        """Stop node ``i`` without a word."""
        if self.cores[i] is None:
            return
        self.swim.stop(i)
        self.trace.event(self.now, i, "Crash", i, self.swim.incarnations[i])
        self.metrics.crashed(self.now, i)

    def leave(self, i: int) -> None:
        """Ask node ``i`` to leave gracefully (it stops when its core says LeaveComplete)."""
        self.trace.event(self.now, i, "Leave", i, self.swim.incarnations[i])
        self.metrics.left(self.now, i)
        self.left.add(i)
        self.swim.leave(i)

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

    # -- the SWIM host's reports ----------------------------------------------------------------

    def _sent(self, i: int, size: int) -> None:
        self.metrics.bytes_sent[i] += size
        self.metrics.packets_sent[i] += 1

    def _event(self, i: int, event: MembershipEvent, member: int | None) -> None:
        info = getattr(event, "member", None)
        if member is None or info is None:
            if isinstance(event, LeaveComplete):
                self.swim.stop(i)  # like a crash, but not timed as one
            return
        net = self.network
        self.metrics.event(
            self.now,
            i,
            type(event).__name__,
            member,
            info.incarnation,
            member_up=self.cores[member] is not None and member not in self.left,
            reachable=net.connected(i, member) and net.connected(member, i),
            slow=member in net.slow,
        )


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


__all__ = ["CLUSTER_ID", "Simulation", "actor_of", "addr_of"]
