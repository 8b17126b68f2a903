"""What a lying peer can make a node do, against what the same work costs when honest:

1. planning a sync round against a server claiming a head of 2**53 - 1 for an actor (time and
   peak traced memory), beside planning against an honest head of 10,000;
2. serving NeedFull(1, 2**53 - 1) for an actor known up to 300,000 (three versions with rows,
   the rest cleared): SQL statements and time, beside serving NeedFull(1, 3);
3. an honest catch-up by sync of many one-row versions store to store: rounds (each asks at
   most 100,000 versions past the head and 1,024 needs) and time.

Run with `python bench/claims_bench.py` (`--quick` for smaller sizes).
"""

from __future__ import annotations

import tempfile
import time
import tracemalloc
from pathlib import Path

import common

from corrosion_py import crdt
from corrosion_py.crdt.limits import MAX_CLOCK
from corrosion_py.replication.sync_plan import plan_requests
from corrosion_py.store.store import Store
from corrosion_py.wire.messages import Changeset, EmptyChangeset, NeedFull, SyncState

ME, X = bytes([1]) * 16, bytes([2]) * 16
SCHEMA = "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT);"


def plan_cost(head: int) -> tuple[int, float, float]:
    tracemalloc.start()
    started = time.perf_counter()
    plan = plan_requests(SyncState(ME, {}, {}, {}), {"s": SyncState(X, {X: head}, {}, {})})
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return sum(len(needs) for per in plan.values() for _, needs in per), elapsed, peak / 1e6


def one_row(actor: bytes, version: int) -> Changeset:
    change = crdt.Change("kv", crdt.pack_pk([version]), "v", f"r{version}", 1, version, actor, 1, 0)
    return Changeset(actor, version, (change,), (0, 0), 0, 0)


def serve_cost(tmp: Path) -> list[tuple[str, int, int, float]]:
    (tmp / "s.sql").write_text(SCHEMA)
    b = Store.open(tmp / "b.db", schema_paths=[tmp / "s.sql"])
    b.apply_sync([one_row(X, v) for v in (1, 2, 3)])
    for hi in range(100_000, 300_001, 100_000):
        b.apply_sync([EmptyChangeset(X, (4, hi), 0)])
    out = []
    for label, need in (("(1, 3)", NeedFull((1, 3))), ("(1, 2**53-1)", NeedFull((1, MAX_CLOCK)))):
        conn = b.reader()
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        started = time.perf_counter()
        items = list(b.serve_sync({X: [need]}, conn))
        elapsed = time.perf_counter() - started
        conn.set_trace_callback(None)
        out.append((label, len(items), len(statements), elapsed))
    b.close()
    return out


def catch_up(tmp: Path, versions: int) -> tuple[int, float]:
    (tmp / "s.sql").write_text(SCHEMA)
    src = Store.open(tmp / "src.db", schema_paths=[tmp / "s.sql"])
    for first in range(1, versions + 1, 20_000):
        src.apply_sync([one_row(X, v) for v in range(first, min(versions, first + 19_999) + 1)])
    dst = Store.open(tmp / "dst.db", schema_paths=[tmp / "s.sql"])
    started, rounds = time.perf_counter(), 0
    while needs := dict(plan_requests(dst.sync_state(), {"s": src.sync_state()})["s"]):
        rounds += 1
        items = list(src.serve_sync(needs))
        for i in range(0, len(items), 5_000):
            dst.apply_sync(items[i : i + 5_000])
    elapsed = time.perf_counter() - started
    assert dst.bookie_snapshot()[X].max == versions and not dst.bookie_snapshot()[X].gaps
    src.close()
    dst.close()
    return rounds, elapsed


def main() -> None:
    scale = common.start(__doc__)
    for head in (10_000, MAX_CLOCK):
        needs, elapsed, peak = plan_cost(head)
        print(f"plan against a head of {head:,}: {needs} needs, {elapsed * 1e3:.1f} ms, "
              f"peak {peak:.2f} MB")  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        for label, items, statements, elapsed in serve_cost(Path(d)):
            print(f"serve NeedFull{label}, actor known up to 300,000: {items} messages, "
                  f"{statements} SQL statements, {elapsed * 1e3:.1f} ms")  # fmt: skip
    versions = 250_000 // scale
    with tempfile.TemporaryDirectory() as d:
        rounds, elapsed = catch_up(Path(d), versions)
        print(f"honest catch-up of {versions:,} one-row versions store to store: {rounds} rounds, "
              f"{elapsed:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
