"""Named scenarios: each builds a cluster, runs one story on virtual time and returns a Report.

Why named functions: a scenario is the unit a user sizes a cluster with (``python -m
corrosion_py.sim crash --nodes 1000 --loss 0.1``) and the unit a test pins with a seed, so both
see the same numbers. Every scenario starts from ``Simulation.start_all`` (full member lists)
and a warm-up that lets the start's alive rumours drain before anything is measured.

- ``crash``: crash 1% of the nodes (at least one) after the warm-up; time every live node's
  MemberDown of each, and the spread of the dead rumour;
- ``steady``: nothing fails; false deaths and suspicions caused by loss alone, and bandwidth;
- ``partition``: split the cluster 50/50 for ``seconds``, heal, and time until every node sees
  every other alive again (each side declaring the other dead meanwhile is expected);
- ``slow-node``: 5% of the nodes (at least one) get inbound delays of 0.5-2.5 s; false deaths
  and suspicions with Lifeguard and without it (``lifeguard_off``) on the same seed, split by
  victim: suspicions of the starved nodes themselves are deserved in both arms (they do miss
  their acks), Lifeguard's gain shows in the suspicions of healthy nodes;
- ``dissemination``: one node leaves gracefully; the time (and gossip rounds) until every live
  node reports it left.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs

from corrosion_py.sim.cluster import Simulation
from corrosion_py.sim.network import Link
from corrosion_py.swim import LAN, SwimConfig

SLOW_DELAY = (0.5, 2.5)
"""Inbound delay of a CPU-starved node, in seconds (the Lifeguard paper's slow-member setting)."""


@attrs.frozen
class Params:
    """What every scenario takes."""

    nodes: int = 50
    loss: float = 0.0
    seconds: float = 60.0
    """Length of the measured part of the run (the partition's length for ``partition``)."""
    seed: int = 1
    config: SwimConfig = LAN
    warmup: float = 10.0


@attrs.frozen
class Report:
    """A scenario's results: named values (for tests and CSV) and a readable text."""

    scenario: str
    params: Params
    values: dict[str, float]
    lines: tuple[str, ...]
    trace_hash: str
    sim_seconds: float
    wall_seconds: float

    def text(self) -> str:
        """The report as printed by the command line."""
        p = self.params
        speed = self.sim_seconds / max(self.wall_seconds, 1e-9)
        head = [
            f"scenario {self.scenario}: {p.nodes} nodes, loss {p.loss:.1%}, seed {p.seed}, "
            f"probe interval {p.config.probe_interval:g}s",
            *self.lines,
            f"simulated {self.sim_seconds:.0f}s in {self.wall_seconds:.1f}s wall "
            f"({speed:.2f}x real time)",
            f"trace sha256 {self.trace_hash}",
        ]
        return "\n".join(head)


def _simulation(p: Params, config: SwimConfig | None = None) -> Simulation:
    sim = Simulation(
        p.nodes,
        seed=p.seed,
        config=config or p.config,
        link=Link(loss=p.loss),
    )
    sim.start_all()
    sim.run_until(p.warmup)
    sim.metrics.start_window(sim.now)
    return sim


def _health(sim: Simulation, values: dict[str, float], lines: list[str]) -> None:
    """False deaths and suspicions, and bandwidth, into ``values`` and ``lines``."""
    m = sim.metrics
    mean, peak, packets = m.traffic(sim.now, sim.live())
    values.update(
        false_deaths=m.false_deaths,
        false_death_victims=len(m.false_death_victims),
        false_deaths_slow=m.false_deaths_slow,
        false_suspicions=m.false_suspicions,
        false_suspicions_slow=m.false_suspicions_slow,
        false_suspicion_reports=m.false_suspicion_reports,
        bytes_per_node_s=mean,
        bytes_per_node_s_max=peak,
        packets_per_node_s=packets,
    )
    lines.append(
        f"false deaths: {m.false_deaths} reports about {len(m.false_death_victims)} "
        f"(member, incarnation) ({m.false_deaths_slow} of slow nodes); "
        f"false suspicions: {m.false_suspicions} ({m.false_suspicions_slow} of slow nodes; "
        f"{m.false_suspicion_reports} observer reports)"
    )
    lines.append(
        f"traffic per node: {mean / 1000:.2f} KB/s mean, {peak / 1000:.2f} KB/s max, "
        f"{packets:.1f} packets/s"
    )


def _report(name: str, p: Params, sim: Simulation, values: dict[str, float], lines: list[str],
            started: float) -> Report:  # fmt: skip
    return Report(name, p, values, tuple(lines), sim.trace_hash(), sim.now,
                  time.perf_counter() - started)  # fmt: skip


def crash(p: Params) -> Report:
    """Crash 1% of the nodes (at least one) and time their detection by every live node."""
    started = time.perf_counter()
    sim = _simulation(p)
    k = max(1, p.nodes // 100)
    victims = [1 + j * (p.nodes - 1) // k for j in range(k)]
    for v in victims:
        sim.crash(v)
    sim.run_until(p.warmup + p.seconds)
    m = sim.metrics
    detection, missed = m.detection(sim.live())
    spread = m.dead_spread()
    suspect = m.first_suspect()
    values: dict[str, float] = {
        "crashed": len(victims),
        "detect_p50": detection.p50,
        "detect_p99": detection.p99,
        "detect_max": detection.max,
        "detected": detection.count,
        "missed": missed,
        "dead_spread_p50": spread.p50,
        "dead_spread_max": spread.max,
        "first_suspect_mean": suspect.mean,
    }
    lines = [
        f"crashed {len(victims)} node(s) at t={p.warmup:g}s, ran {p.seconds:g}s more",
        f"detection (crash -> MemberDown, every live observer): {detection.text()}",
        f"missed (live observers that never declared a crashed node dead): {missed}",
        f"first suspicion after the crash: mean {suspect.mean:.2f}s",
        f"dead rumour spread (first to last observer): {spread.text()}",
    ]
    _health(sim, values, lines)
    return _report("crash", p, sim, values, lines, started)


def steady(p: Params) -> Report:
    """No faults but loss: every death is a false one."""
    started = time.perf_counter()
    sim = _simulation(p)
    sim.run_until(p.warmup + p.seconds)
    values: dict[str, float] = {"alive_everywhere": float(sim.converged())}
    lines = [f"ran {p.seconds:g}s after warm-up; all see all alive at the end: {sim.converged()}"]
    _health(sim, values, lines)
    return _report("steady", p, sim, values, lines, started)


def partition(p: Params) -> Report:
    """Split 50/50 for ``seconds``, heal, and time the return to a full live view."""
    started = time.perf_counter()
    sim = _simulation(p)
    half = list(range(0, p.nodes, 2))
    sim.network.partition([half])
    sim.run_until(p.warmup + p.seconds)
    split_view = sum(len(sim.views[i]) for i in sim.live()) / p.nodes
    sim.network.heal()
    healed = sim.now
    converged = sim.run_until_converged(healed + 300.0)
    took = -1.0 if converged is None else converged - healed
    values: dict[str, float] = {
        "partition_deaths": sim.metrics.partition_deaths,
        "view_during_split": split_view,
        "converge_s": took,
    }
    lines = [
        f"partition of {len(half)} | {p.nodes - len(half)} nodes for {p.seconds:g}s; "
        f"members seen alive per node just before healing: {split_view:.1f}",
        f"deaths declared across the partition (expected): {sim.metrics.partition_deaths}",
        "every node sees all members alive "
        + (f"{took:.1f}s after healing" if converged is not None else "NOT within 300s"),
    ]
    _health(sim, values, lines)
    return _report("partition", p, sim, values, lines, started)


def _slow_arm(p: Params, config: SwimConfig) -> Simulation:
    sim = _simulation(p, config)
    slow = max(1, p.nodes // 20)
    for i in range(slow):
        sim.network.slow[1 + i * (p.nodes - 1) // slow] = SLOW_DELAY
    sim.run_until(p.warmup + p.seconds)
    return sim


def lifeguard_off(config: SwimConfig) -> SwimConfig:
    """``config`` as plain SWIM: no local health, no dynamic suspicion timeout, no nacks, no
    buddy (see ``SwimConfig.lifeguard``)."""
    return attrs.evolve(config, lifeguard=False)


def slow_node(p: Params) -> Report:
    """5% CPU-starved nodes, with Lifeguard and without it, on the same seed."""
    started = time.perf_counter()
    sim = _slow_arm(p, p.config)
    off = _slow_arm(p, lifeguard_off(p.config))
    values: dict[str, float] = {"slow_nodes": len(sim.network.slow)}
    lines = [
        f"{len(sim.network.slow)} slow node(s), inbound delayed "
        f"{SLOW_DELAY[0]:g}-{SLOW_DELAY[1]:g}s, for {p.seconds:g}s",
        "with Lifeguard:",
    ]
    _health(sim, values, lines)
    on, m = sim.metrics, off.metrics
    ratio = m.false_suspicions / max(1, on.false_suspicions)
    healthy_on = on.false_suspicions - on.false_suspicions_slow
    healthy_off = m.false_suspicions - m.false_suspicions_slow
    healthy_ratio = healthy_off / max(1, healthy_on)
    slow_ratio = m.false_suspicions_slow / max(1, on.false_suspicions_slow)
    values.update(
        off_false_deaths=m.false_deaths,
        off_false_deaths_slow=m.false_deaths_slow,
        off_false_suspicions=m.false_suspicions,
        off_false_suspicions_slow=m.false_suspicions_slow,
        suspicion_ratio=ratio,
        healthy_suspicion_ratio=healthy_ratio,
        slow_suspicion_ratio=slow_ratio,
    )
    lines += [
        "without Lifeguard (same seed):",
        f"false deaths: {m.false_deaths} ({m.false_deaths_slow} of slow nodes); "
        f"false suspicions: {m.false_suspicions} ({m.false_suspicions_slow} of slow nodes)",
        f"false suspicions off/on: {ratio:.1f}x overall; of healthy nodes {healthy_off}/"
        f"{healthy_on} = {healthy_ratio:.1f}x; of slow nodes {m.false_suspicions_slow}/"
        f"{on.false_suspicions_slow} = {slow_ratio:.1f}x",
    ]
    report = _report("slow-node", p, sim, values, lines, started)
    return attrs.evolve(report, sim_seconds=sim.now + off.now)


def dissemination(p: Params) -> Report:
    """One node leaves; time until every live node has heard it."""
    started = time.perf_counter()
    sim = _simulation(p)
    sim.leave(p.nodes - 1)
    sim.run_until(p.warmup + p.seconds)
    spread, missed = sim.metrics.dissemination(sim.live())
    rounds = spread.max / p.config.gossip_interval
    values: dict[str, float] = {"reach_all_s": spread.max, "reach_all_rounds": rounds,
                                "missed": missed}  # fmt: skip
    lines = [
        f"node {p.nodes - 1} left at t={p.warmup:g}s",
        f"every live node reported it after {spread.max:.2f}s = {rounds:.1f} gossip intervals "
        f"({p.config.gossip_interval:g}s); missed: {missed}",
    ]
    _health(sim, values, lines)
    return _report("dissemination", p, sim, values, lines, started)


SCENARIOS: dict[str, Callable[[Params], Report]] = {
    "crash": crash,
    "steady": steady,
    "partition": partition,
    "slow-node": slow_node,
    "dissemination": dissemination,
}
