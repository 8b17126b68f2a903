"""CRR engine benchmark: every figure is a ratio against plain SQLite measured in the same run.

Run with `make bench` (or `python bench/crdt_bench.py --quick` for a smaller run). Prints a table;
record the figures in docs/benchmarks.md with the date and the machine.
"""

from __future__ import annotations

import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import common

from corrosion_py import crdt

CACHE_KIB = 64 * 1024  # the same page cache for plain SQLite and the CRR runs

SCHEMA = (
    "CREATE TABLE items (id INTEGER PRIMARY KEY NOT NULL, name TEXT, region TEXT, "
    "qty INTEGER, price REAL, blob BLOB)"
)


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    return conn


def rows(n: int, seed: int = 1) -> list[tuple[object, ...]]:
    rnd = random.Random(seed)
    return [
        (
            i,
            f"name-{i}",
            rnd.choice(["ams", "ord", "syd", "nrt"]),
            rnd.randrange(1000),
            rnd.random() * 100,
            rnd.randbytes(8),
        )
        for i in range(1, n + 1)
    ]


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def make_db(tmp: Path, name: str, crr: bool) -> sqlite3.Connection:
    conn = connect(tmp / f"{name}.db")
    conn.execute(SCHEMA)
    if crr:
        crdt.init(conn)
        crdt.as_crr(conn, "items")
    return conn


def bench_insert(tmp: Path, n: int) -> tuple[float, float]:
    data = rows(n)
    insert = "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)"
    plain = make_db(tmp, "ins-plain", False)

    def run_plain() -> None:
        plain.execute("BEGIN")
        plain.executemany(insert, data)
        plain.execute("COMMIT")

    crr = make_db(tmp, "ins-crr", True)

    def run_crr() -> None:
        with crdt.transaction(crr):
            crr.executemany(insert, data)

    return timed(run_plain), timed(run_crr)


def bench_clock_floor(tmp: Path, n: int) -> float:
    """What cr-sqlite's layout costs by itself: the lookaside and clock rows a CRR insert of ``n``
    rows writes, inserted with executemany (no triggers, no Python per row)."""
    conn = make_db(tmp, "floor", True)
    cols = ("name", "region", "qty", "price", "blob")
    pks = [(i, i) for i in range(1, n + 1)]
    clocks = [(i, c, 1, 1, 0, (i - 1) * 5 + j) for i in range(1, n + 1) for j, c in enumerate(cols)]

    def run() -> None:
        conn.execute("BEGIN")
        conn.executemany('INSERT INTO "items__crsql_pks" (__crsql_key, id) VALUES (?, ?)', pks)
        conn.executemany('INSERT INTO "items__crsql_clock" VALUES (?, ?, ?, ?, ?, ?)', clocks)
        conn.execute("COMMIT")

    return timed(run)


def bench_updates(tmp: Path, n: int) -> tuple[float, float]:
    data = rows(1000)
    plain = make_db(tmp, "upd-plain", False)
    plain.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)", data)
    crr = make_db(tmp, "upd-crr", True)
    with crdt.transaction(crr):
        crr.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)", data)
    update = "UPDATE items SET qty = ? WHERE id = ?"

    def run_plain() -> None:
        for i in range(n):
            plain.execute("BEGIN")
            plain.execute(update, (i, i % 1000 + 1))
            plain.execute("COMMIT")

    def run_crr() -> None:
        for i in range(n):
            with crdt.transaction(crr):
                crr.execute(update, (i, i % 1000 + 1))

    return n / timed(run_plain), n / timed(run_crr)


def bench_merge(tmp: Path, n_rows: int) -> tuple[int, float]:
    src = make_db(tmp, "merge-src", True)
    with crdt.transaction(src):
        src.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)", rows(n_rows))
    changes = crdt.changes(src)
    dst = make_db(tmp, "merge-dst", True)
    return len(changes), timed(lambda: crdt.merge(dst, changes))


def bench_merge_per_change(tmp: Path, n_rows: int) -> tuple[int, float]:
    """Baseline for the batched merge: one change per statement through cr-sqlite's SQL habit,
    ``INSERT INTO crsql_changes`` (executemany), which merges each row on its own."""
    src = make_db(tmp, "loop-src", True)
    with crdt.transaction(src):
        src.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)", rows(n_rows))
    changes = [attrs.astuple(c) for c in crdt.changes(src)]
    dst = make_db(tmp, "loop-dst", True)
    crdt.register(dst)

    def run() -> None:
        dst.execute("BEGIN")
        dst.executemany("INSERT INTO crsql_changes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", changes)
        dst.execute("COMMIT")

    return len(changes), timed(run)


def bench_add_column(tmp: Path, n_rows: int) -> tuple[int, float]:
    conn = make_db(tmp, f"alter-{n_rows}", True)
    with crdt.transaction(conn):
        conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)", rows(n_rows))
    before = len(crdt.changes(conn))

    def run() -> None:
        with crdt.alter(conn, "items"):
            conn.execute("ALTER TABLE items ADD COLUMN state TEXT DEFAULT 'started'")

    elapsed = timed(run)
    return len(crdt.changes(conn)) - before, elapsed


def main() -> None:
    scale = common.start(__doc__)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        n = 200_000 // scale
        plain, crr = bench_insert(tmp, n)
        print(
            f"batch insert {n} rows, one tx: plain {plain:.3f}s  CRR {crr:.3f}s  "
            f"ratio {crr / plain:.2f} (target <= 2.0)"
        )
        floor = bench_clock_floor(tmp, n)
        print(
            f"  layout floor, its lookaside + clock rows alone (executemany): {floor:.3f}s  "
            f"ratio {floor / plain:.2f}"
        )
        u = 5_000 // scale
        plain_tps, crr_tps = bench_updates(tmp, u)
        print(
            f"single-row update txns ({u}): plain {plain_tps:.0f}/s  CRR {crr_tps:.0f}/s  "
            f"ratio {crr_tps / plain_tps:.2f} (target >= 0.50)"
        )
        m_rows = 200_000 // scale
        count, secs = bench_merge(tmp, m_rows)
        print(
            f"merge {count} column changes into an empty replica: {secs:.2f}s  "
            f"{count / secs:,.0f} changes/s (target >= 100,000/s)"
        )
        count, secs = bench_merge_per_change(tmp, m_rows // 10)
        print(
            f"  baseline, one change per INSERT INTO crsql_changes ({count}): "
            f"{count / secs:,.0f} changes/s"
        )
        for size in (1_000 // scale, 100_000 // scale):
            added, secs = bench_add_column(tmp, size)
            print(f"add column to a {size}-row CRR: {added} change rows, {secs * 1000:.1f} ms")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
