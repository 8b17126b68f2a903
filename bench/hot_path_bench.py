"""The replication hot path, measured in CPU time (utime + stime of each agent process, read from
/proc/PID/stat, which a busy machine does not distort): what one replicated write costs its
writer and each receiver, and what the cluster sustains.

Agents are OS processes on 127.0.0.1 with the LAN timing preset and the HTTP API; every write is
one 6-column INSERT sent to ``POST /v1/transactions`` (keep-alive connections from this
process, whose own CPU is not counted).

1. ``cpu N``: N agents, idle CPU for 10 s, then writes at a steady rate, all on agent 0: CPU per
   local write on the writer, CPU per replicated write on each receiver (raw, and less the idle
   rate), datagrams received per write per receiver, propagation p50/p99.
2. ``sustain``: 10 agents, writes spread over every node at a cluster-wide rate: p99 of the
   time until a write is on every node.
3. ``burst``: 10,000 writes at once on one node of 10: seconds until every node has all.
4. ``loss``: 10 agents with 5% of datagrams lost: the slowest write to reach every node.

    python bench/hot_path_bench.py [--quick] [--only cpu,sustain,burst,loss]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import common
import httpx

from corrosion_py.testing.agent_process import AgentProcess, agent_cluster, wait_converged

SCHEMA = (
    "CREATE TABLE machines (id TEXT PRIMARY KEY NOT NULL, app TEXT, region TEXT, "
    "address TEXT, state TEXT, cpus INTEGER);\n"
)
ROWS = "SELECT id, app, region, address, state, cpus FROM machines ORDER BY id"
INSERT = "INSERT INTO machines (id, app, region, address, state, cpus) VALUES (?, ?, ?, ?, ?, ?)"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextmanager
def cluster(n: int, **options: Any) -> Iterator[list[AgentProcess]]:
    with tempfile.TemporaryDirectory() as tmp:
        options.setdefault("preset", "lan")
        options.setdefault("sync_interval", (1.0, 15.0))
        with agent_cluster(n, Path(tmp), SCHEMA, api="127.0.0.1:0", **options) as agents:
            deadline = time.monotonic() + 120
            while any(a.request(state=True)["alive"] < n - 1 for a in agents):
                if time.monotonic() > deadline:
                    raise TimeoutError("the cluster did not form")
                time.sleep(0.5)
            time.sleep(2)  # let joins and first syncs settle
            for a in agents:
                a.request(arrivals=True)  # forget the set-up
            yield agents


def row(i: int, node: int) -> list[Any]:
    return [f"m{node}-{i}", "web", "ams", f"[fdaa:0:{node}::{i}]:8080", "started", 2]


def write_at_rate(
    agents: list[AgentProcess], writers: list[int], rate: float, count: int
) -> tuple[float, int]:
    """``count`` writes at ``rate`` per second over HTTP, spread over ``writers``: (seconds it
    took, writes that were behind schedule)."""
    start = time.monotonic() + 0.2
    late = [0] * len(writers)

    def run(slot: int) -> None:
        agent = agents[writers[slot]]
        with httpx.Client(base_url=f"http://{agent.api}", timeout=60) as client:
            for i in range(slot, count, len(writers)):
                if (wait := start + i / rate - time.monotonic()) > 0:
                    time.sleep(wait)
                else:
                    late[slot] += 1
                body = [[INSERT, row(i, writers[slot])]]
                answer = client.post("/v1/transactions", json=body)
                answer.raise_for_status()

    threads = [threading.Thread(target=run, args=(s,)) for s in range(len(writers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - start, sum(late)


def propagation(agents: list[AgentProcess]) -> list[float]:
    """Per version written since the last call: seconds until the last node had it."""
    written: dict[tuple[str, int], float] = {}
    last: dict[tuple[str, int], float] = defaultdict(float)
    seen: dict[tuple[str, int], int] = defaultdict(int)
    for agent in agents:
        for actor, version, t in agent.request(arrivals=True)["arrivals"]:
            key = (actor, version)
            if actor == agent.actor:
                written[key] = t
            else:
                last[key] = max(last[key], t)
                seen[key] += 1
    n = len(agents)
    return [last[k] - t for k, t in written.items() if seen[k] == n - 1]


def udp_received(agent: AgentProcess) -> int:
    return int(agent.request(stats=True)["stats"]["udp"]["received"])


def cpu(n: int, rate: float, seconds: float) -> dict[str, float]:
    """CPU per write on the writer and on each receiver (see the module docstring)."""
    with cluster(n) as agents:
        pids = [a.proc.pid for a in agents if a.proc is not None]
        idle_for = 10.0
        before = [cpu_seconds(p) for p in pids]
        time.sleep(idle_for)
        idle = [(cpu_seconds(p) - b) / idle_for for p, b in zip(pids, before, strict=True)]
        count = int(rate * seconds)
        received0 = [udp_received(a) for a in agents]
        before = [cpu_seconds(p) for p in pids]
        took, late = write_at_rate(agents, [0, 0, 0, 0], rate, count)
        wait_converged(agents, ROWS, timeout=120)
        spent = [cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
        received = [udp_received(a) - r for a, r in zip(agents, received0, strict=True)]
        delays = propagation(agents)
    writer_us = spent[0] / count * 1e6
    receivers = spent[1:]
    receiver_us = statistics.mean(receivers) / count * 1e6
    idle_share = statistics.mean(idle[1:])
    receiver_less_idle = (statistics.mean(receivers) - idle_share * took) / count * 1e6
    datagrams = statistics.mean(received[1:]) / count
    print(
        f"cpu: {n} agents, {count} writes on agent 0 at {count / took:.0f}/s "
        f"({late} behind schedule)"
    )
    print(
        f"  writer {writer_us:.0f} us CPU per local write; receivers {receiver_us:.0f} us per "
        f"replicated write (min {min(receivers) / count * 1e6:.0f}, max "
        f"{max(receivers) / count * 1e6:.0f}), {receiver_less_idle:.0f} us less idle"
    )
    print(
        f"  idle: {statistics.mean(idle) * 100:.2f}% of a core per agent (max "
        f"{max(idle) * 100:.2f}%); datagrams received per write per receiver {datagrams:.2f}; "
        f"propagation p50 {statistics.median(delays) * 1000:.0f} ms, p99 "
        f"{quantile(delays, 0.99) * 1000:.0f} ms"
    )
    return {
        "writer_us": writer_us,
        "receiver_us": receiver_us,
        "receiver_less_idle_us": receiver_less_idle,
        "idle_pct": statistics.mean(idle) * 100,
        "datagrams_per_write": datagrams,
    }


def sustain(n: int, rate: float, seconds: float) -> dict[str, float]:
    with cluster(n) as agents:
        count = int(rate * seconds)
        took, late = write_at_rate(agents, list(range(n)), rate, count)
        wait_converged(agents, ROWS, timeout=300)
        delays = propagation(agents)
    print(
        f"sustain: {n} agents, {count} writes spread over every node at {count / took:.0f}/s "
        f"({late} behind schedule): to every node p50 {statistics.median(delays) * 1000:.0f} ms, "
        f"p99 {quantile(delays, 0.99) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms "
        f"(target: >= 300/s with p99 <= 1,000 ms)"
    )
    return {"writes_per_s": count / took, "p99_ms": quantile(delays, 0.99) * 1000}


def burst(n: int, count: int) -> dict[str, float]:
    with cluster(n) as agents:
        txs = [[[INSERT, row(i, 0)]] for i in range(count)]
        start = time.monotonic()
        agents[0].request(timeout=600, txs=txs)
        written = time.monotonic() - start
        took = wait_converged(agents, ROWS, timeout=600) + written
    print(
        f"burst: {count} writes at once on one node of {n}: written in {written:.1f} s, on every "
        f"node after {took:.1f} s (target <= 15 s)"
    )
    return {"written_s": written, "everywhere_s": took}


def loss(n: int, rate: float, seconds: float) -> dict[str, float]:
    with cluster(n, loss=0.05) as agents:
        count = int(rate * seconds)
        write_at_rate(agents, list(range(n)), rate, count)
        wait_converged(agents, ROWS, timeout=300)
        delays = propagation(agents)
    print(
        f"loss: {n} agents, 5% of datagrams lost, {count} writes at {rate:.0f}/s: every write on "
        f"every node: p50 {statistics.median(delays) * 1000:.0f} ms, p99 "
        f"{quantile(delays, 0.99) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms over "
        f"{len(delays)} writes (target: max <= 5,000 ms)"
    )
    return {"max_ms": max(delays) * 1000}


def main() -> None:
    only = "cpu,sustain,burst,loss"
    if "--only" in sys.argv:
        at = sys.argv.index("--only")
        only = sys.argv[at + 1]
        del sys.argv[at : at + 2]
    scale = common.start(__doc__.splitlines()[0] if __doc__ else None)
    parts = set(only.split(","))
    runs: dict[str, Callable[[], Any]] = {
        "cpu": lambda: (cpu(5, 100, 30 / scale), cpu(10, 100, 30 / scale)),
        "sustain": lambda: sustain(10, 300, 20 / scale),
        "burst": lambda: burst(10, 10_000 // scale),
        "loss": lambda: loss(10, 50, 20 / scale),
    }
    for name, run in runs.items():
        if name in parts:
            run()


if __name__ == "__main__":
    main()
