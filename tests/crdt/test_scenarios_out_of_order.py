"""Seeded, deterministic versions of upstream's out-of-order merge scenarios
(``test_out_of_order_merge``, ``_bidi`` and ``test_ordered_delta_merge_proxy``):
a scripted history is delivered one version at a time in a shuffled order, and the tables must
end up equal. (The hypothesis-driven property lives in test_convergence_property.py.)"""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest

ITEM = (
    "CREATE TABLE item (id PRIMARY KEY NOT NULL, width INTEGER, height INTEGER, name TEXT,"
    " description TEXT, weight INTEGER)"
)
COLUMNS = ("width", "height", "name", "description", "weight")


def _value(rng: random.Random, col: str) -> Any:
    if col in ("name", "description"):
        return "".join(rng.choice("abcé✓ ") for _ in range(rng.randint(0, 6)))
    return rng.randint(-(2**31), 2**31 - 1)


def _script(rng: random.Random, n: int) -> list[tuple[Any, ...]]:
    steps: list[tuple[Any, ...]] = []
    for _ in range(n):
        op = rng.choice(["insert", "insert", "update", "update", "delete", "reinsert"])
        cols = [c for c in COLUMNS if rng.random() < 0.5] or ["width"]
        steps.append(
            (op, str(uuid.UUID(int=rng.getrandbits(128))), {c: _value(rng, c) for c in cols})
        )
    return steps


def _run(h: Any, conn: Any, step: tuple[Any, ...], deleted: list[str]) -> None:
    op, new_id, data = step
    names = ", ".join(data)
    marks = ", ".join("?" for _ in data)
    first = conn.execute("SELECT id FROM item ORDER BY id LIMIT 1").fetchone()
    if op == "insert":
        h.write(
            conn, (f"INSERT INTO item (id, {names}) VALUES (?, {marks})", [new_id, *data.values()])
        )
    elif op == "reinsert" and deleted:
        rid = deleted.pop()
        h.write(
            conn, (f"INSERT INTO item (id, {names}) VALUES (?, {marks})", [rid, *data.values()])
        )
    elif op == "update" and first is not None:
        sets = ", ".join(f"{c} = ?" for c in data)
        h.write(conn, (f"UPDATE item SET {sets} WHERE id = ?", [*data.values(), first[0]]))
    elif op == "delete" and first is not None:
        h.write(conn, ("DELETE FROM item WHERE id = ?", [first[0]]))
        deleted.append(first[0])


def _sync_version(h: Any, src: Any, dst: Any, version: int) -> None:
    dst_site = h.site(dst)
    h.merge(dst, [r for r in h.changes(src) if r[5] == version and r[6] != dst_site])


def _sync_shuffled(h: Any, src: Any, dst: Any, rng: random.Random) -> None:
    versions = list(range(1, h.dbv(src) + 1))
    rng.shuffle(versions)
    for v in versions:
        _sync_version(h, src, dst, v)


def _items(c: Any) -> list[tuple[Any, ...]]:
    return c.execute("SELECT * FROM item ORDER BY id").fetchall()


def _meta(h: Any, c: Any) -> tuple[list[Any], list[Any]]:
    """Column changes in full, sentinels by (table, pk, cl) only: a sentinel created by an
    out-of-order column change carries that change's db_version/seq, so its metadata may
    legitimately differ from the origin's own sentinel at the same cl."""
    rows = h.changes(c)
    cols = sorted(r for r in rows if r[2] != "-1")
    sentinels = sorted((r[0], r[1], r[7]) for r in rows if r[2] == "-1")
    return cols, sentinels


@pytest.mark.parametrize("seed", range(6))
def test_out_of_order_merge(make_db: Any, h: Any, seed: int) -> None:
    rng = random.Random(seed)
    c1, c2 = make_db(ITEM, crr=["item"]), make_db(ITEM, crr=["item"])
    deleted: list[str] = []
    for step in _script(rng, 60):
        _run(h, c1, step, deleted)
    _sync_shuffled(h, c1, c2, rng)
    assert _items(c1) == _items(c2)
    # per-origin metadata: column clocks end identical to the sender's
    assert _meta(h, c2) == _meta(h, c1)


@pytest.mark.parametrize("seed", range(6))
def test_out_of_order_merge_bidi(make_db: Any, h: Any, seed: int) -> None:
    rng = random.Random(1000 + seed)
    c1, c2 = make_db(ITEM, crr=["item"]), make_db(ITEM, crr=["item"])
    d1: list[str] = []
    d2: list[str] = []
    shared = _script(rng, 10)  # some rows exist on both sides (same ids)
    for step in shared:
        _run(h, c1, step, d1)
        _run(h, c2, step, d2)
    for s1, s2 in zip(_script(rng, 40), _script(rng, 40), strict=True):
        _run(h, c1, s1, d1)
        _run(h, c2, s2, d2)
    _sync_shuffled(h, c1, c2, rng)
    _sync_shuffled(h, c2, c1, rng)
    assert _items(c1) == _items(c2)
    assert _meta(h, c1) == _meta(h, c2)


@pytest.mark.parametrize("seed", range(4))
def test_delta_merge_through_proxy(make_db: Any, h: Any, seed: int) -> None:
    rng = random.Random(2000 + seed)
    a, b, c = (make_db(ITEM, crr=["item"]) for _ in range(3))
    da: list[str] = []
    dc: list[str] = []
    for sa, sc in zip(_script(rng, 30), _script(rng, 30), strict=True):
        _run(h, a, sa, da)
        h.sync(a, b, exclude_receiver=True)
        h.sync(b, c, exclude_receiver=True)
        _run(h, c, sc, dc)
        h.sync(c, b, exclude_receiver=True)
        h.sync(b, a, exclude_receiver=True)
    h.sync(a, b, exclude_receiver=True)
    h.sync(b, c, exclude_receiver=True)
    assert _items(a) == _items(b) == _items(c)
