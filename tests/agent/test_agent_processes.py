"""Agents as real OS processes on 127.0.0.1 (replication's acceptance): random writes on random
nodes end with identical tables and no bookkeeping gaps, also with 10% of datagrams dropped,
with a partition-like outage of a third of the nodes, and with kill -9 and restarts mid-write."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from corrosion_py.testing.agent_process import AgentProcess, agent_cluster, wait_converged

SCHEMA = "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT, node INTEGER);\n"
ROWS = "SELECT k, v, node FROM kv ORDER BY k"


def random_writes(agents: list[AgentProcess], count: int, rng: random.Random) -> None:
    for k in range(count):
        live = [a for a in agents if a.running()]
        i = rng.randrange(len(live))
        key = rng.randrange(count // 2)  # collisions: concurrent writes to the same rows
        if rng.random() < 0.1:
            live[i].write([["DELETE FROM kv WHERE k = ?", [key]]])
        else:
            live[i].write([["INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", [key, f"v{k}", i]]])


@pytest.mark.parametrize("n", [3, 10])
def test_random_writes_converge(tmp_path: Path, n: int) -> None:
    with agent_cluster(n, tmp_path, SCHEMA) as agents:
        random_writes(agents, 150, random.Random(n))
        wait_converged(agents, ROWS, timeout=60)
        assert len(agents[0].rows(ROWS)) > 0


def test_ten_percent_datagram_loss_converges(tmp_path: Path) -> None:
    with agent_cluster(5, tmp_path, SCHEMA, loss=0.1) as agents:
        random_writes(agents, 150, random.Random(5))
        wait_converged(agents, ROWS, timeout=60)


def test_kill_nine_and_restart_during_writes(tmp_path: Path) -> None:
    rng = random.Random(9)
    with agent_cluster(5, tmp_path, SCHEMA) as agents:
        random_writes(agents, 60, rng)
        agents[3].kill()
        agents[4].kill()
        random_writes(agents, 60, rng)
        agents[3].start()  # same database, same gossip address, joins through saved members
        random_writes(agents, 60, rng)
        agents[4].start()
        wait_converged(agents, ROWS, timeout=60)
        assert all(a.running() for a in agents)


def partition(side: list[AgentProcess], other: list[AgentProcess]) -> None:
    for a in side:
        a.request(block=[b.gossip for b in other])
    for b in other:
        b.request(block=[a.gossip for a in side])


def test_partition_of_a_third_for_thirty_seconds_heals(tmp_path: Path) -> None:
    rng = random.Random(30)
    with agent_cluster(6, tmp_path, SCHEMA) as agents:
        random_writes(agents, 30, rng)
        minority, majority = agents[4:], agents[:4]
        partition(minority, majority)
        end = time.monotonic() + 30
        while time.monotonic() < end:  # both sides keep writing while cut off
            random_writes(minority, 4, rng)
            random_writes(majority, 4, rng)
            time.sleep(1)
        heads = [a.request(state=True)["heads"] for a in agents]
        assert heads[0] != heads[5]  # the sides really were apart
        for a in agents:
            a.request(block=[])
        wait_converged(agents, ROWS, timeout=60)


@pytest.mark.slow
def test_new_empty_node_catches_up_a_hundred_thousand_rows(tmp_path: Path) -> None:
    with agent_cluster(2, tmp_path, SCHEMA) as agents:
        for batch in range(100):
            values = ", ".join(f"({batch * 1000 + i}, 'value {i}', 0)" for i in range(1000))
            agents[0].write([f"INSERT INTO kv VALUES {values}"])
        wait_converged(agents, ROWS, timeout=120)
        newcomer = AgentProcess(tmp_path / "new.db", tmp_path / "schema.sql",
                                bootstrap=[agents[0].gossip])  # fmt: skip
        try:
            agents.append(newcomer)
            wait_converged(agents, ROWS, timeout=120)
            assert newcomer.rows("SELECT count(*) FROM kv") == [(100_000,)]
        finally:
            newcomer.kill()


@pytest.mark.slow
def test_fifty_agents_converge_under_random_writes(tmp_path: Path) -> None:
    """LAN timing: 50 Python processes on 2 cores cannot keep LOCAL's 200 ms probes."""
    with agent_cluster(50, tmp_path, SCHEMA, preset="lan", sync_interval=(1.0, 5.0)) as agents:
        random_writes(agents, 300, random.Random(50))
        wait_converged(agents, ROWS, timeout=180)


def test_sigterm_stops_an_agent_process_cleanly(tmp_path: Path) -> None:
    schema = tmp_path / "schema.sql"
    schema.write_text(SCHEMA)
    agent = AgentProcess(tmp_path / "n.db", schema, api="127.0.0.1:0")
    proc = agent.proc
    assert proc is not None and agent.api is not None
    assert agent.write(["INSERT INTO kv (k, v) VALUES (1, 'a')"]) == 1
    agent.stop(timeout=20)  # SIGTERM; a SIGKILL after the timeout would show as -9
    assert proc.returncode == 0
    # the last connection closed was the writer: SQLite removed the WAL and its index
    assert not (tmp_path / "n.db-wal").exists() and not (tmp_path / "n.db-shm").exists()
