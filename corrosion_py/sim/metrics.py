"""What a run measured: detection latency, false deaths and suspicions, bytes, dissemination.

Why online aggregation: a 1,000-node run produces millions of events (a warm start alone is a
million MemberUp), so nothing is kept per event; the simulator calls ``event`` with the facts
the metric needs at that instant (is the member up, can the observer reach it, is it slow) and
only counters and the few latencies of interest are stored.

Definitions:

- **detection**: for each crash, the time from the crash to each live observer's first
  MemberDown about the crashed member; observers that never report it are **missed**;
- **false death**: MemberDown about a member that is up and reachable both ways from the
  observer; counted per observer report and once per (member, incarnation), split into healthy
  and slow victims. A death across a partition is expected and counted apart;
- **false suspicion**: MemberSuspect about a member that is up and reachable both ways; counted
  once per (member, incarnation), which is once per suspicion the member had to refute, and
  split into healthy and slow victims like false deaths;
- **bytes per node per second**: encoded bytes sent (lost datagrams included) per live node,
  over the measurement window;
- **dissemination**: the time from a change (a leave) to each live node reporting it, also
  expressed in gossip intervals.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import attrs


@attrs.frozen
class Distribution:
    """Nearest-rank percentiles of a sample (all zero when empty)."""

    count: int
    p50: float
    p99: float
    max: float
    mean: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution:
        """Summarise ``values``."""
        xs = sorted(values)
        if not xs:
            return cls(0, 0.0, 0.0, 0.0, 0.0)
        return cls(len(xs), _rank(xs, 0.50), _rank(xs, 0.99), xs[-1], sum(xs) / len(xs))

    def text(self, unit: str = "s") -> str:
        """One readable line."""
        return (
            f"p50 {self.p50:.2f}{unit}  p99 {self.p99:.2f}{unit}  max {self.max:.2f}{unit}  "
            f"(n={self.count})"
        )


def _rank(xs: Sequence[float], q: float) -> float:
    return xs[max(0, math.ceil(q * len(xs)) - 1)]


@attrs.define
class _Watch:
    """A change whose spread is timed: who reported it, and when."""

    member: int
    since: float
    event: str
    seen: dict[int, float] = attrs.field(factory=dict)


class Metrics:
    """Counters and latencies of one run, fed by the simulator."""

    def __init__(self, n: int) -> None:
        self.bytes_sent = [0] * n
        """Encoded bytes each node sent since ``start_window``."""
        self.packets_sent = [0] * n
        self.window_start = 0.0
        self.events: Counter[str] = Counter()
        self.false_deaths = 0
        self.false_death_victims: set[tuple[int, int]] = set()
        """(member, incarnation) falsely declared dead by at least one observer."""
        self.false_deaths_slow = 0
        """False deaths whose victim was a slow node (included in ``false_deaths``)."""
        self.false_suspicions = 0
        """Suspicions of members up and reachable, once per (member, incarnation)."""
        self.false_suspicions_slow = 0
        """False suspicions whose victim was a slow node (included in ``false_suspicions``)."""
        self.false_suspicion_reports = 0
        """The same, counted per observer report."""
        self._suspected: set[tuple[int, int]] = set()
        self.partition_deaths = 0
        self.crashes: list[_Watch] = []
        self.suspects: dict[int, float] = {}
        """First MemberSuspect time (any observer) for each crash watched, by crash index."""
        self.spreads: list[_Watch] = []
        self._open: dict[tuple[int, str], list[int]] = {}

    def start_window(self, now: float) -> None:
        """Count traffic from ``now`` on (after a warm-up)."""
        self.window_start = now
        self.bytes_sent = [0] * len(self.bytes_sent)
        self.packets_sent = [0] * len(self.packets_sent)

    def crashed(self, now: float, member: int) -> None:
        """Time every observer's MemberDown about ``member`` from ``now``."""
        self._watch(_Watch(member, now, "MemberDown"), self.crashes)

    def left(self, now: float, member: int) -> None:
        """Time the spread of ``member``'s leave from ``now``."""
        self._watch(_Watch(member, now, "MemberLeft"), self.spreads)

    def restarted(self, member: int) -> None:
        """Stop timing reports about ``member``'s previous life."""
        self._open.pop((member, "MemberDown"), None)
        self._open.pop((member, "MemberLeft"), None)

    def _watch(self, watch: _Watch, into: list[_Watch]) -> None:
        into.append(watch)
        self._open.setdefault((watch.member, watch.event), []).append(len(into) - 1)

    def event(
        self,
        now: float,
        observer: int,
        name: str,
        member: int,
        incarnation: int,
        *,
        member_up: bool,
        reachable: bool,
        slow: bool,
    ) -> None:
        """Account one membership event reported by ``observer`` about ``member``."""
        self.events[name] += 1
        if name == "MemberSuspect":
            if member_up and reachable:
                self.false_suspicion_reports += 1
                if (member, incarnation) not in self._suspected:
                    self._suspected.add((member, incarnation))
                    self.false_suspicions += 1
                    self.false_suspicions_slow += slow
            elif not member_up:
                for i in self._open.get((member, "MemberDown"), ()):
                    self.suspects.setdefault(i, now - self.crashes[i].since)
        elif name == "MemberDown" and member_up:
            if reachable:
                self.false_deaths += 1
                self.false_deaths_slow += slow
                self.false_death_victims.add((member, incarnation))
            else:
                self.partition_deaths += 1
        watched = self._open.get((member, name))
        if watched:
            into = self.crashes if name == "MemberDown" else self.spreads
            for i in watched:
                into[i].seen.setdefault(observer, now)

    def detection(self, observers: Iterable[int]) -> tuple[Distribution, int]:
        """Crash-to-MemberDown latencies over ``observers`` (the nodes live at the end), and
        how many (crash, observer) pairs never reported it."""
        obs = list(observers)
        latencies: list[float] = []
        missed = 0
        for w in self.crashes:
            for o in obs:
                if o == w.member:
                    continue
                t = w.seen.get(o)
                if t is None:
                    missed += 1
                else:
                    latencies.append(t - w.since)
        return Distribution.of(latencies), missed

    def dead_spread(self) -> Distribution:
        """First to last MemberDown of each crash: how fast the dead rumour travels."""
        return Distribution.of(
            max(w.seen.values()) - min(w.seen.values()) for w in self.crashes if w.seen
        )

    def first_suspect(self) -> Distribution:
        """Crash to the first MemberSuspect anywhere, per crash."""
        return Distribution.of(self.suspects.values())

    def dissemination(self, observers: Iterable[int]) -> tuple[Distribution, int]:
        """Time for each watched change to reach every live observer, and how many missed."""
        obs = list(observers)
        times: list[float] = []
        missed = 0
        for w in self.spreads:
            others = [o for o in obs if o != w.member]
            missing = [o for o in others if o not in w.seen]
            missed += len(missing)
            if others and not missing:
                times.append(max(w.seen[o] for o in others) - w.since)
        return Distribution.of(times), missed

    def traffic(self, now: float, nodes: Iterable[int]) -> tuple[float, float, float]:
        """(mean, max) bytes per second and mean packets per second per node in ``nodes``."""
        span = max(now - self.window_start, 1e-9)
        ids = list(nodes)
        if not ids:
            return 0.0, 0.0, 0.0
        rates = [self.bytes_sent[i] / span for i in ids]
        packets = sum(self.packets_sent[i] for i in ids) / span / len(ids)
        return sum(rates) / len(rates), max(rates), packets
