"""The simulators' one SWIM host: restarts come back one incarnation higher in a new
generation, push-pull is a stream exchange a partition cuts, and the owner hears every event."""

from __future__ import annotations

import random
from pathlib import Path

from corrosion_py.sim import Link, Network, Scheduler, Simulation
from corrosion_py.sim.replication import ReplicationSim
from corrosion_py.sim.swim_host import SwimHost, addr_of
from corrosion_py.sim.trace import Trace
from corrosion_py.swim import LOCAL, MembershipEvent, PushPull


def test_both_simulators_run_their_cores_on_the_swim_host(tmp_path: Path) -> None:
    schema = "CREATE TABLE t (k INTEGER PRIMARY KEY NOT NULL);"
    with ReplicationSim(2, seed=1, directory=tmp_path, schema_sql=schema) as replication:
        assert type(replication.swim) is SwimHost
    assert type(Simulation(2, seed=1).swim) is SwimHost


def test_a_restart_is_a_new_generation_one_incarnation_higher() -> None:
    sim = Simulation(4, seed=2, config=LOCAL)
    sim.start_all()
    sim.run_until(5.0)
    assert sim.converged()
    sim.crash(3)
    sim.run_until(20.0)
    assert all(3 not in sim.views[i] for i in sim.live())
    sim.start(3, [0])
    assert sim.swim.generation[3] == 2 and sim.swim.incarnations[3] == 1
    assert sim.run_until_converged(60.0) is not None
    assert sim.swim.core(3).incarnation >= 1


def test_push_pull_is_cut_by_a_partition_and_completes_once_healed() -> None:
    scheduler = Scheduler()
    network = Network(random.Random(0), Link(loss=0.0))
    events: list[tuple[int, str, int | None]] = []

    def on_event(i: int, event: MembershipEvent, member: int | None) -> None:
        events.append((i, type(event).__name__, member))

    host = SwimHost(
        scheduler, network, Trace(), actors=[bytes([i]) * 16 for i in range(2)], cluster_id=7,
        config=LOCAL, rng_seed="5", on_event=on_event, on_send=lambda i, size: None,
    )  # fmt: skip
    host.start(0, [])
    host.start(1, [])
    network.partition([[0], [1]])
    host.run(0, [PushPull(addr_of(1), host.core(0).push_pull_state())])
    scheduler.run_until(1.0)
    assert host.core(1).member(bytes([0]) * 16) is None
    network.heal()
    host.run(0, [PushPull(addr_of(1), host.core(0).push_pull_state())])
    scheduler.run_until(scheduler.now + 0.01)  # two legs of the default link delay
    assert host.core(1).member(bytes([0]) * 16) is not None  # the peer merged our list
    assert host.core(0).member(bytes([1]) * 16) is not None  # and we merged its answer
    assert (1, "MemberUp", 0) in events and (0, "MemberUp", 1) in events
    assert 1 in host.views[0] and 0 in host.views[1]
    host.leave(0)
    scheduler.run_until(scheduler.now + 10.0)
    assert (0, "LeaveComplete", None) in events  # an event about no member: None
