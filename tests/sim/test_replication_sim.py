"""Replication in the simulator: real stores, SWIM, broadcast and sync on the virtual clock.

The replication acceptance scenario (100 nodes, 10% loss, a partition of a third of the nodes,
crashes and restarts during writes: every live node converges after healing), broadcast alone
and sync alone each delivering everything, bad datagrams counted, and one seed giving one run.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

import pytest

from corrosion_py.sim.network import Link
from corrosion_py.sim.replication import ReplicationReport, ReplicationSim, site_of
from corrosion_py.swim import LOCAL

SCHEMA = """
CREATE TABLE kv (k TEXT PRIMARY KEY NOT NULL, v TEXT, n INTEGER NOT NULL DEFAULT 0);
CREATE TABLE blobs (id INTEGER PRIMARY KEY NOT NULL, owner TEXT, body TEXT);
"""


def schedule_writes(
    sim: ReplicationSim, rng: random.Random, count: int, start: float, every: float
) -> None:
    """``count`` writes on random live nodes, one each ``every`` seconds from ``start``:
    upserts of 40 shared keys (conflicts), some deletes, and every 20th write a multi-row
    transaction too large for one datagram (several pieces)."""

    def write(w: int) -> None:
        live = sim.live()
        i = live[rng.randrange(len(live))]
        if w % 20 == 19:
            body = "x" * 300
            sim.write(
                i,
                [
                    ("INSERT OR REPLACE INTO blobs VALUES (?, ?, ?)", (w * 10 + r, f"n{i}", body))
                    for r in range(6)
                ],
            )
        elif w % 7 == 6:
            sim.write(i, [("DELETE FROM kv WHERE k = ?", (f"k{rng.randrange(40)}",))])
        else:
            key = f"k{rng.randrange(40)}"
            sim.write(
                i,
                [
                    (
                        "INSERT INTO kv (k, v, n) VALUES (?, ?, 1) ON CONFLICT (k) "
                        "DO UPDATE SET v = excluded.v, n = n + 1",
                        (key, f"w{w}@{i}"),
                    )
                ],
            )

    for w in range(count):
        sim.at(start + w * every, functools.partial(write, w))


def chaos(
    directory: Path, *, n: int, writes: int, seed: int
) -> tuple[ReplicationSim, float | None]:
    """10% loss; ``writes`` writes from t=2 to t=6; a third of the nodes split off from t=3 to
    t=20 (long enough for SWIM to declare the other side dead); a majority node crashed at
    t=3.5 and restarted at t=5.5 (during writes), a minority node crashed at t=4.5 and
    restarted at t=22 (after healing). Applies are batched every 100 ms. Returns the
    simulation and the time it converged (None if not by t=150)."""
    sim = ReplicationSim(
        n,
        seed=seed,
        link=Link(loss=0.1),
        directory=directory,
        schema_sql=SCHEMA,
        apply_interval=0.1,
    )
    rng = random.Random(seed)
    nodes = list(range(n))
    rng.shuffle(nodes)
    minority, majority = nodes[: n // 3], nodes[n // 3 :]
    early, late = majority[0], minority[0]
    sim.start_all()
    schedule_writes(sim, rng, writes, start=2.0, every=4.0 / writes)
    sim.at(3.0, lambda: sim.network.partition([minority]))
    sim.at(3.5, lambda: sim.crash(early))
    sim.at(4.5, lambda: sim.crash(late))
    sim.at(5.5, lambda: sim.restart(early))
    sim.at(20.0, sim.network.heal)
    sim.at(22.0, lambda: sim.restart(late))
    try:
        sim.run_until(22.0)
        return sim, sim.run_until_converged(150.0)
    except BaseException:
        sim.close()
        raise


def show(report: ReplicationReport) -> None:
    print()
    print(report.text())


WRITES = 200


def test_hundred_nodes_loss_partition_crashes_converge(tmp_path: Path) -> None:
    sim, converged_at = chaos(tmp_path, n=100, writes=WRITES, seed=11)
    with sim:
        report = sim.report()
        show(report)
        print(f"converged at t={converged_at}")
        calm = sim.report(until=3.0)  # before the partition: loss only
        print(
            f"before the partition: {calm.values['writes']:.0f} writes, {calm.propagation.text()}"
        )
        v = report.values
        assert converged_at is not None
        assert len(sim.live()) == 100
        # deletes of absent keys change nothing: no version, no write
        assert WRITES * 0.9 <= v["writes"] == v["complete"] == len(sim.written_at)
        assert calm.values["complete"] == calm.values["writes"] > 0
        assert calm.propagation.p50 < 1.0
        assert v["bad_datagrams"] == 0
        assert v["sync_changesets"] > 0  # the partition and the crashes needed repairs
        assert sim.stats["crashes"] == 2 and sim.stats["restarts"] == 2
        # a restarted node kept its actor id and everything it had written
        for i in range(sim.n):
            assert sim.store(i).actor_id == site_of(11, i)
        tables = sim.user_tables(0)
        assert tables["kv"] and tables["blobs"]


def test_broadcast_alone_delivers_everything_without_loss(tmp_path: Path) -> None:
    with ReplicationSim(
        20, seed=3, directory=tmp_path, schema_sql=SCHEMA, sync=False, swim_config=LOCAL
    ) as sim:
        sim.start_all()
        schedule_writes(sim, random.Random(3), 60, start=1.0, every=0.05)
        sim.run_until(5.0)
        assert sim.converged()
        report = sim.report()
        show(report)
        v = report.values
        assert v["complete"] == v["writes"] == len(sim.written_at) >= 50
        assert v["sync_rounds"] == 0 and v["sync_changesets"] == 0
        assert report.propagation.max < 1.0
        # epidemic, not flooding: a bounded number of copies per write per node
        assert v["bcast_datagrams_per_write_per_node"] < 15


def test_sync_alone_repairs_everything(tmp_path: Path) -> None:
    with ReplicationSim(
        20,
        seed=4,
        link=Link(loss=0.1),
        directory=tmp_path,
        schema_sql=SCHEMA,
        broadcast=False,
        sync_interval=(1.0, 3.0),
        swim_config=LOCAL,
    ) as sim:
        sim.start_all()
        schedule_writes(sim, random.Random(4), 60, start=1.0, every=0.05)
        sim.run_until(4.0)
        assert not sim.converged()
        converged_at = sim.run_until_converged(60.0)
        report = sim.report()
        show(report)
        assert converged_at is not None
        v = report.values
        assert v["complete"] == v["writes"] == len(sim.written_at) >= 50
        assert sim.stats["bcast_datagrams"] == 0
        # every node holds every write, none of which was broadcast: sync carried them all
        # (fewer items than versions: a run of overwritten versions travels as one empty
        # changeset)
        assert v["sync_changesets"] > 0


def test_bad_datagrams_are_counted_and_change_nothing(tmp_path: Path) -> None:
    with ReplicationSim(5, seed=5, directory=tmp_path, schema_sql=SCHEMA) as sim:
        sim.start_all()
        sim.write(0, [("INSERT INTO kv (k, v) VALUES ('a', 'b')", ())])
        sim.run_until(1.0)
        before = sim.user_tables(1)
        for junk in (b"", b"\xff" * 40, b"\x85\x01\x07\x00\x00\x00"):
            sim.inject(0, 1, junk)
        sim.run_until(2.0)
        assert sim.report().values["bad_datagrams"] == 3
        assert sim.user_tables(1) == before
        assert sim.converged()


def test_same_seed_same_run(tmp_path: Path) -> None:
    def run(name: str, seed: int) -> tuple[ReplicationReport, float | None]:
        sim, converged_at = chaos(tmp_path / name, n=12, writes=40, seed=seed)
        with sim:
            return sim.report(), converged_at

    first, first_at = run("a", 21)
    again, again_at = run("b", 21)
    other, _ = run("c", 22)
    assert first_at is not None and first_at == again_at
    assert first.trace_hash == again.trace_hash
    assert first.values == again.values
    assert first.propagation == again.propagation
    assert other.trace_hash != first.trace_hash


def test_rejects_a_used_directory(tmp_path: Path) -> None:
    with ReplicationSim(2, seed=1, directory=tmp_path, schema_sql=SCHEMA) as sim:
        sim.start_all()
    with pytest.raises(ValueError, match="empty directory"):
        ReplicationSim(2, seed=1, directory=tmp_path, schema_sql=SCHEMA)
