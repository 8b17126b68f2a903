"""Deterministic whole-cluster simulator: N SWIM cores, one process, virtual time, seeded faults.

    from corrosion_py.sim import Params, SCENARIOS, Simulation
    report = SCENARIOS["crash"](Params(nodes=200, loss=0.1, seconds=60, seed=3))
    print(report.text())                     # or report.values["detect_p99"], report.trace_hash

    sim = Simulation(50, seed=1, link=Link(loss=0.1))   # or build a story by hand
    sim.start_all(); sim.run_until(10); sim.crash(3); sim.run_until(60)
    sim.metrics.detection(sim.live())

Modules, one concern each: ``scheduler`` (the event heap on virtual time), ``network`` (loss,
delay, jitter, duplication, partitions, one-way blocks, crashes, slow receivers), ``swim_host``
(SWIM cores on the clock and network: effects, timers, push-pull, restarts), ``trace`` (the
trace hash), ``cluster`` (the SWIM simulation), ``replication`` (real stores replicating with
the agent's sans-IO cores), ``metrics`` (what a run measured), ``scenarios`` (named stories
returning a Report); ``python -m corrosion_py.sim`` runs one.
"""

from corrosion_py.sim.cluster import Simulation, actor_of, addr_of
from corrosion_py.sim.metrics import Distribution, Metrics
from corrosion_py.sim.network import Link, Network
from corrosion_py.sim.scenarios import SCENARIOS, Params, Report, lifeguard_off
from corrosion_py.sim.scheduler import Scheduler

__all__ = [
    "SCENARIOS",
    "Distribution",
    "Link",
    "Metrics",
    "Network",
    "Params",
    "Report",
    "Scheduler",
    "Simulation",
    "actor_of",
    "addr_of",
    "lifeguard_off",
]
