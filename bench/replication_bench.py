"""Replication between agent processes on 127.0.0.1:

1. write-to-every-node propagation at a steady write rate spread over all nodes (p50, p99);
2. a burst of writes on one node: time until every node has all of them;
3. bytes on the wire per write per node, against the ideal of one copy of the changeset per
   node (the ratio is the figure);
4. catch-up by sync of ~1M column changes into an empty node (time, peak RSS), against the same
   data served and applied store to store in this process (the baseline of the ratio).

Run with `make bench` (or `python bench/replication_bench.py --quick`).

With `--keys`, it measures what gossip encryption costs instead: the steady and burst runs
twice in the same run, plaintext then with a cluster key (every datagram and stream sealed),
and the cost of sealing and opening one datagram.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import common

from corrosion_py.store.store import Store
from corrosion_py.testing.agent_process import AgentProcess, agent_cluster, wait_converged
from corrosion_py.wire import encode
from corrosion_py.wire.keyring import Keyring, generate_key
from corrosion_py.wire.seal import OVERHEAD, DatagramOpener, DatagramSealer

SCHEMA = "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT, node INTEGER);\n"
ROWS = "SELECT k, v, node FROM kv ORDER BY k"


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def propagation(agents: list[AgentProcess], since: float) -> list[float]:
    """Per version written after ``since``: seconds until the last node had it."""
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
    return [last[k] - t for k, t in written.items() if t >= since and seen[k] == n - 1]


def traffic(agents: list[AgentProcess]) -> tuple[int, int]:
    """(broadcast bytes, sync bytes) sent by all agents so far, as on the wire: a sealed
    datagram carries OVERHEAD bytes more than its payload (sync's record overhead, 18 bytes
    per 16 KiB, is left out)."""
    bcast = sync = 0
    for agent in agents:
        stats = agent.request(stats=True)["stats"]
        sealed = OVERHEAD * stats["broadcast"].get("sent_datagrams", 0) if stats["security"] else 0
        bcast += stats["broadcast"].get("sent_bytes", 0) + sealed
        sync += stats["sync_server"].get("bytes_sent", 0)
    return bcast, sync


def _key_file(directory: Path) -> Path:
    path = directory / "gossip.keys"
    path.write_text(generate_key(os.urandom) + "\n")
    path.chmod(0o600)
    return path


def _cluster(n: int, tmp: str, keys: bool) -> Any:
    keyring = {"keyring_file": _key_file(Path(tmp))} if keys else {}
    return agent_cluster(n, Path(tmp), SCHEMA, preset="lan", sync_interval=(1.0, 15.0), **keyring)


def steady(n: int, rate: float, seconds: float, keys: bool = False) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, _cluster(n, tmp, keys) as agents:
        t0 = time.monotonic()
        while any(a.request(state=True)["alive"] < n - 1 for a in agents):
            if time.monotonic() - t0 > 120:
                raise TimeoutError("cluster did not form")
            time.sleep(0.5)
        for a in agents:
            a.request(arrivals=True)  # forget the set-up
        bcast0, sync0 = traffic(agents)
        start = time.time()
        writes = int(rate * seconds)
        payload = "x" * 40
        late = [0] * n

        def writer(j: int) -> None:  # one thread per agent: its share of the schedule
            for i in range(j, writes, n):
                if (wait := start + i / rate - time.time()) > 0:
                    time.sleep(wait)
                else:
                    late[j] += 1
                agents[j].write([["INSERT INTO kv VALUES (?, ?, ?)", [i, payload, j]]])

        threads = [threading.Thread(target=writer, args=(j,)) for j in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        achieved = writes / (time.time() - start)
        wait_converged(agents, ROWS, timeout=120)
        delays = propagation(agents, start)
        bcast, sync = traffic(agents)
        bcast, sync = bcast - bcast0, sync - sync0
        size = _changeset_size(payload)
        print(
            f"steady: {n} agents, {achieved:.0f} writes/s for {seconds:g}s ({writes} writes, "
            f"{sum(late)} behind schedule)"
        )
        print(
            f"  propagation to every node: p50 {statistics.median(delays) * 1000:.0f} ms, "
            f"p99 {quantile(delays, 0.99) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms "
            f"over {len(delays)} writes (target p99 <= 1000 ms)"
        )
        ideal = size * (n - 1)
        per_write = (bcast + sync) / writes
        print(
            f"  bytes per write per node: broadcast {bcast / writes / (n - 1):.0f} B + sync "
            f"{sync / writes / (n - 1):.0f} B; one copy is ~{size} B: "
            f"{per_write / ideal:.1f}x the ideal"
        )
        return {
            "writes/s": achieved,
            "p50 ms": statistics.median(delays) * 1000,
            "p99 ms": quantile(delays, 0.99) * 1000,
            "bytes/write/node": per_write / (n - 1),
        }


def _changeset_size(payload: str) -> int:
    """The encoded size of one write's changeset, made the same way in a scratch store."""
    with tempfile.TemporaryDirectory() as tmp:
        schema = Path(tmp) / "schema.sql"
        schema.write_text(SCHEMA)
        with Store.open(Path(tmp) / "s.db", schema_paths=[schema]) as store:
            result = store.transaction_sync([("INSERT INTO kv VALUES (?, ?, ?)", [1, payload, 1])])
            assert result.changeset is not None
            return len(encode(result.changeset, cluster_id=0))


def burst(n: int, count: int, keys: bool = False) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, _cluster(n, tmp, keys) as agents:
        time.sleep(3)
        txs = [[["INSERT INTO kv VALUES (?, 'burst', 0)", [i]]] for i in range(count)]
        start = time.monotonic()
        agents[0].request(timeout=600, txs=txs)
        written = time.monotonic() - start
        took = wait_converged(agents, ROWS, timeout=600) + written
        print(
            f"burst: {count} writes on one node of {n}: written in {written:.1f}s, on every "
            f"node after {took:.1f}s (target <= 5 s)"
        )
        return {
            "burst writes/s (writer)": count / written,
            "burst writes/s (all nodes)": count / took,
        }


def catch_up(rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with agent_cluster(1, tmp, SCHEMA) as agents:
            source = agents[0]
            for start in range(0, rows, 2000):
                values = ", ".join(f"({k}, 'value {k}', 1)" for k in range(start, start + 2000))
                source.write([f"INSERT INTO kv VALUES {values}"])
            changes = 2 * rows
            baseline = _store_to_store(source.db, tmp / "baseline.db", tmp / "schema.sql")
            newcomer = AgentProcess(tmp / "new.db", tmp / "schema.sql", bootstrap=[source.gossip])
            try:
                agents.append(newcomer)
                took = wait_converged(agents, ROWS, timeout=900)
                rss = _peak_rss_mb(newcomer)
            finally:
                newcomer.kill()
        print(
            f"catch-up: {changes} column changes into an empty node by sync in {took:.1f}s "
            f"(target <= 30 s), peak RSS {rss:.0f} MB (target <= 300 MB); store-to-store in "
            f"one process {baseline:.1f}s: {took / baseline:.1f}x"
        )


def _store_to_store(source: Path, target: Path, schema: Path) -> float:
    src = Store.open(source)
    dst = Store.open(target, schema_paths=[schema])
    try:
        start = time.monotonic()
        needs = dst.needs_from(src.sync_state())
        batch = []
        for item in src.serve_sync(needs):
            batch.append(item)
            if len(batch) >= 256:
                dst.apply_sync(batch)
                batch = []
        dst.apply_sync(batch)
        return time.monotonic() - start
    finally:
        src.close()
        dst.close()


def _peak_rss_mb(agent: AgentProcess) -> float:
    assert agent.proc is not None
    with open(f"/proc/{agent.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def sealing(rounds: int) -> None:
    """Microseconds to seal and to open one datagram of the changeset budget (1,100 bytes),
    and the AES-GCM floor: one bare encrypt and decrypt of the same bytes."""
    ring = Keyring.of([os.urandom(32)])
    sealer, opener = DatagramSealer(ring, 0, os.urandom), DatagramOpener(ring, 0)
    payload = os.urandom(1100)
    now = time.time()
    start = time.perf_counter()
    sealed = [sealer.seal(("10.0.0.1", 8787), payload, now) for _ in range(rounds)]
    seal_us = (time.perf_counter() - start) / rounds * 1e6
    start = time.perf_counter()
    for data in sealed:
        opener.open(data, now)
    open_us = (time.perf_counter() - start) / rounds * 1e6
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead, nonce = AESGCM(os.urandom(32)), os.urandom(12)
    start = time.perf_counter()
    for _ in range(rounds):
        aead.decrypt(nonce, aead.encrypt(nonce, payload, b"x"), b"x")
    floor_us = (time.perf_counter() - start) / rounds * 1e6
    print(
        f"sealing: seal {seal_us:.1f} us + open {open_us:.1f} us per 1,100-byte datagram "
        f"(bare AES-GCM encrypt+decrypt {floor_us:.1f} us) over {rounds} datagrams"
    )


def compare_keys(scale: int, repeats: int = 3) -> None:
    """Plaintext against sealed gossip, same sizes, same run: one steady run each (latency,
    bytes), then ``repeats`` bursts each, alternating, reported as the median (the machine is
    shared, so single runs vary)."""
    sealing(50_000 // scale)
    n = max(3, 5 // scale)
    results: dict[bool, dict[str, float]] = {}
    for keys in (False, True):
        print(f"-- gossip {'sealed with a cluster key' if keys else 'plaintext'}")
        results[keys] = steady(n, 100.0, 15.0 / scale, keys)
    bursts: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(repeats):
        for keys in (False, True):
            print(f"-- gossip {'sealed' if keys else 'plaintext'}: ", end="")
            bursts[keys].append(burst(n, 5000 // scale, keys))
    for keys, runs in bursts.items():
        for name in runs[0]:
            results[keys][name] = statistics.median(r[name] for r in runs)
    print(f"{'median of ' + str(repeats):24}{'plaintext':>12}{'sealed':>12}{'ratio':>8}")
    for name in results[False]:
        plain, sealed = results[False][name], results[True][name]
        print(f"{name:24}{plain:12.1f}{sealed:12.1f}{sealed / plain:8.2f}")


def main() -> None:
    scale = common.start(__doc__, {"--keys": "measure gossip encryption's cost instead"})
    if "--keys" in common.FLAGS:
        compare_keys(scale)
        return
    # 10 agents, not the 50: 50 busy Python processes cannot run on this 2-core machine
    # (docs/benchmarks.md has the 50-agent attempt).
    steady(max(5, 10 // scale), 100.0, 15.0 / scale)
    burst(max(5, 10 // scale), 10_000 // scale)
    catch_up(500_000 // scale)


if __name__ == "__main__":
    main()
