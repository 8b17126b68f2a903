"""Node store benchmark: applying remote changesets against the bare engine merge of the same
changes, local transactions from trio, and memory while serving a large sync.

Run with `make bench` (or `python bench/store_bench.py --quick`). Prints a table; record the
figures in docs/benchmarks.md with the date and the machine.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import trio

from corrosion_py import crdt
from corrosion_py.crdt import Change, pack_pk
from corrosion_py.store.store import Store
from corrosion_py.wire.messages import Changeset

SCHEMA = (
    "CREATE TABLE items (id INTEGER PRIMARY KEY NOT NULL, name TEXT, region TEXT, "
    "qty INTEGER, price REAL, blob BLOB);"
)
COLS = ("name", "region", "qty", "price", "blob")


def remote_changesets(n: int, actor: bytes, first: int = 1) -> list[Changeset]:
    """n versions of a remote actor from ``first`` on, each inserting one row: 5 column changes
    per changeset."""
    rnd = random.Random(first)
    out = []
    for v in range(first, first + n):
        pk = pack_pk([v])
        vals = (f"name-{v}", rnd.choice(["ams", "ord"]), v % 1000, rnd.random(), rnd.randbytes(8))
        changes = tuple(
            Change("items", pk, col, val, 1, v, actor, 1, seq)
            for seq, (col, val) in enumerate(zip(COLS, vals, strict=True))
        )
        out.append(Changeset(actor, v, changes, (0, 4), 4, 0))
    return out


def bench_apply(tmp: Path, n: int) -> tuple[int, float, float]:
    actor = bytes(range(16))
    sets = remote_changesets(n, actor)
    (tmp / "schema.sql").write_text(SCHEMA)
    bare = sqlite3.connect(tmp / "bare.db", isolation_level=None)
    bare.execute("PRAGMA journal_mode=WAL")
    bare.execute("PRAGMA synchronous=NORMAL")
    bare.execute(SCHEMA)
    crdt.as_crr(bare, "items")
    all_changes = [c for cs in sets for c in cs.changes]
    t0 = time.perf_counter()
    crdt.merge(bare, all_changes)
    bare_secs = time.perf_counter() - t0
    store = Store.open(tmp / "store.db", schema_paths=[tmp / "schema.sql"])
    t0 = time.perf_counter()
    result = store.apply_sync(sets)
    store_secs = time.perf_counter() - t0
    assert len(result.applied) == n
    store.close()
    return len(all_changes), bare_secs, store_secs


def bench_local(tmp: Path, n: int, tasks: int) -> tuple[float, float, float]:
    """One-row, one-statement local transactions: from one trio task (each waits for its
    commit), from ``tasks`` concurrent trio tasks (group commit), and on the calling thread."""
    (tmp / "schema.sql").write_text(SCHEMA)
    store = Store.open(tmp / "local.db", schema_paths=[tmp / "schema.sql"])
    insert = "INSERT INTO items (id, name) VALUES (?, ?)"

    async def sequential() -> float:
        t0 = time.perf_counter()
        for i in range(n):
            await store.transaction([(insert, [i, "x"])])
        return time.perf_counter() - t0

    async def concurrent() -> float:
        async def worker(k: int) -> None:
            for i in range(k, n, tasks):
                await store.transaction([(insert, [n + i, "x"])])

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for k in range(tasks):
                nursery.start_soon(worker, k)
        return time.perf_counter() - t0

    seq_secs = trio.run(sequential)
    con_secs = trio.run(concurrent)
    t0 = time.perf_counter()
    for i in range(2 * n, 3 * n):
        store.transaction_sync([(insert, [i, "x"])])
    sync_secs = time.perf_counter() - t0
    store.close()
    return n / seq_secs, n / con_secs, n / sync_secs


# The serving side runs in a fresh process. Its peak is read from VmHWM, not ru_maxrss: on
# Linux ru_maxrss survives exec, so a child of a large parent starts with the parent's peak.
SERVE_CHILD = """
import sys
from pathlib import Path
from corrosion_py.store.store import Store
from corrosion_py.wire.codec import encode
from corrosion_py.wire.messages import NeedFull

def status_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

def rss_kib():
    return status_kib("VmRSS")

store = Store.open(Path(sys.argv[1]))
# everything, in one need per actor (a peer's own needs stop 100,000 versions past its head)
needs = {actor: [NeedFull((1, head))] for actor, head in store.sync_state().heads.items()}
before = rss_kib()
sent = items = 0
for item in store.serve_sync(needs):
    sent += len(encode(item, cluster_id=0))
    items += 1
print(before, status_kib("VmHWM"), sent, items)
"""


def bench_serve(tmp: Path, n: int) -> tuple[int, int, int, int]:
    (tmp / "schema.sql").write_text(SCHEMA)
    store = Store.open(tmp / "serve.db", schema_paths=[tmp / "schema.sql"])
    actor = bytes(range(1, 17))
    for first in range(1, n + 1, 20_000):
        store.apply_sync(remote_changesets(min(20_000, n + 1 - first), actor, first))
    store.close()
    out = subprocess.run(
        [sys.executable, "-c", SERVE_CHILD, str(tmp / "serve.db")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    before, peak, sent, items = (int(x) for x in out)
    return before, peak, sent, items


def main() -> None:
    scale = common.start(__doc__)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        n = 100_000 // scale
        changes, bare, store = bench_apply(tmp, n)
        print(
            f"apply {n} remote changesets ({changes} column changes): bare engine merge "
            f"{changes / bare:,.0f}/s  store (with bookkeeping) {changes / store:,.0f}/s  "
            f"ratio {bare / store:.2f} (target >= 100,000/s)"
        )
        m = 3_000 // scale
        seq_rate, con_rate, sync_rate = bench_local(tmp, m, tasks=16)
        print(
            f"local one-row transactions ({m}): one trio task {seq_rate:,.0f}/s  "
            f"16 trio tasks (group commit) {con_rate:,.0f}/s  "
            f"calling thread, no trio {sync_rate:,.0f}/s (target >= 5,000/s from trio)"
        )
        versions = 200_000 // scale
        before, peak, sent, items = bench_serve(tmp, versions)
        print(
            f"serve a sync of {versions * 5} column changes ({items} messages, {sent:,} bytes): "
            f"RSS {before / 1024:.0f} MiB before, peak {peak / 1024:.0f} MiB, "
            f"growth {(peak - before) / 1024:.1f} MiB (target <= 100 MB)"
        )


if __name__ == "__main__":
    main()
