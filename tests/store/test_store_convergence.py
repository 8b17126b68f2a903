"""Property: stores that exchange changeset pieces over a lossy, duplicating, reordering network
and then run one sync exchange hold identical tables and no bookkeeping gaps (convergence, and
no gaps after quiescence), also when a store is closed and reopened from disk between batches."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from corrosion_py.replication import chunking
from corrosion_py.store.store import Store
from corrosion_py.wire.messages import Changeset

SCHEMA = """
CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT, n INTEGER);
CREATE TABLE pairs (a TEXT NOT NULL, b INTEGER NOT NULL, w, PRIMARY KEY (a, b));
"""


def random_statements(rnd: random.Random) -> list[tuple[str, list[object]]]:
    out: list[tuple[str, list[object]]] = []
    for _ in range(rnd.randint(1, 4)):
        k = rnd.randint(1, 8)
        kind = rnd.random()
        if kind < 0.35:
            out.append(
                (
                    "INSERT OR REPLACE INTO kv VALUES (?, ?, ?)",
                    [k, rnd.choice("abc") * rnd.randint(1, 80), rnd.randint(0, 9)],
                )
            )
        elif kind < 0.55:
            out.append(("UPDATE kv SET n = coalesce(n, 0) + 1 WHERE k = ?", [k]))
        elif kind < 0.7:
            out.append(("DELETE FROM kv WHERE k = ?", [k]))
        elif kind < 0.9:
            out.append(
                (
                    "INSERT OR REPLACE INTO pairs VALUES (?, ?, ?)",
                    [rnd.choice("xy"), k % 3, rnd.random()],
                )
            )
        else:
            out.append(("DELETE FROM pairs WHERE a = ?", [rnd.choice("xy")]))
    return out


def snapshot(store: Store) -> list[object]:
    return store.read_sync(
        lambda c: [
            c.execute("SELECT * FROM kv ORDER BY k").fetchall(),
            c.execute("SELECT * FROM pairs ORDER BY a, b").fetchall(),
        ]
    )


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), reopen=st.booleans())
def test_lossy_delivery_then_sync_converges(seed: int, reopen: bool) -> None:
    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "schema.sql").write_text(SCHEMA)
        paths = [d / f"s{i}.db" for i in range(3)]
        stores = [Store.open(p, schema_paths=[d / "schema.sql"]) for p in paths]
        try:
            in_flight: list[tuple[int, Changeset]] = []
            for step in range(30):
                origin = rnd.randrange(3)
                try:
                    res = stores[origin].transaction_sync(random_statements(rnd))
                except Exception:  # a constraint error: nothing happened
                    continue
                if res.changeset is not None:
                    budget = rnd.choice([200, 500, 1100, 4000])
                    for piece in chunking.pieces(res.changeset, budget=budget):
                        for dst in range(3):
                            if dst == origin or rnd.random() < 0.3:  # 30% loss
                                continue
                            in_flight.append((dst, piece))
                            if rnd.random() < 0.2:  # duplication
                                in_flight.append((dst, piece))
                if rnd.random() < 0.3 and in_flight:
                    rnd.shuffle(in_flight)  # reordering
                    batch, in_flight = (
                        in_flight[: len(in_flight) // 2],
                        in_flight[len(in_flight) // 2 :],
                    )
                    for dst in range(3):
                        stores[dst].apply_sync([p for t, p in batch if t == dst])
                if reopen and step == 15:
                    victim = rnd.randrange(3)
                    stores[victim].close()
                    stores[victim] = Store.open(paths[victim], schema_paths=[d / "schema.sql"])
            rnd.shuffle(in_flight)
            for dst, piece in in_flight[: len(in_flight) // 2]:  # the rest is lost
                stores[dst].apply_sync([piece])
            # one sync exchange: everyone pulls from everyone
            for dst in range(3):
                for src in range(3):
                    if src != dst:
                        needs = stores[dst].needs_from(stores[src].sync_state())
                        stores[dst].apply_sync(list(stores[src].serve_sync(needs)))
            snaps = [snapshot(s) for s in stores]
            assert snaps[0] == snaps[1] == snaps[2]
            for s in stores:
                for actor, booked in s.bookie_snapshot().items():
                    assert not booked.gaps, (actor.hex(), list(booked.gaps))
                    assert not booked.partials
        finally:
            for s in stores:
                s.close()
