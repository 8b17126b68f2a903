"""Every kind of query gives exactly the right events: random writes on a real store while
subscriptions run; applying each subscription's events to its initial rows always equals
running the query directly (joins, LEFT JOIN null-side transitions, subqueries, EXISTS,
aggregates, DISTINCT, ORDER BY/LIMIT, parameters)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import trio
from subs_harness import QUERIES, Mirror, direct, open_manager

from corrosion_py.store.store import Store
from corrosion_py.subs import SubscriptionManager


def random_write(rng: random.Random) -> list[Any]:
    mid = f"m{rng.randrange(12)}"
    aid = rng.randrange(1, 6)
    roll = rng.random()
    if roll < 0.15:
        return [("DELETE FROM machines WHERE id = ?", [mid])]
    if roll < 0.22:
        return [("DELETE FROM apps WHERE id = ?", [aid])]
    if roll < 0.35:
        return [
            ("INSERT INTO apps (id, name, region) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE "
             "SET name = excluded.name, region = excluded.region",
             [aid, f"app{rng.randrange(4)}", rng.choice(["ams", "iad", "syd"])]),
        ]  # fmt: skip
    return [
        ("INSERT INTO machines (id, app_id, region, state, cpus) VALUES (?, ?, ?, ?, ?) "
         "ON CONFLICT (id) DO UPDATE SET app_id = excluded.app_id, region = excluded.region, "
         "state = excluded.state, cpus = excluded.cpus",
         [mid, aid, rng.choice(["ams", "iad"]), rng.choice(["started", "stopped"]),
          rng.randrange(1, 5)]),
    ]  # fmt: skip


async def settle(manager: SubscriptionManager) -> None:
    """Let the engine process what was notified (the processing task runs after a linger)."""
    for _ in range(3):
        await trio.sleep(0.02)
        async with manager._lock:
            pass


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_events_replay_to_the_direct_result(store: Store, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(10):  # some rows before the subscriptions start
        r = await store.transaction(random_write(rng))
    async with trio.open_nursery() as nursery:
        manager = await open_manager(nursery, store, tmp_path / "subs.db")
        mirrors: list[Mirror] = []

        async def follow(sql: str, params: Any, mirror: Mirror, ready: trio.Event) -> None:
            sub, _ = await manager.subscribe(sql, params)
            async with sub.attach() as events:
                async for event in events:
                    mirror.apply(event)
                    if mirror.ended:
                        ready.set()

        for sql, params in QUERIES:
            mirror = Mirror()
            mirrors.append(mirror)
            ready = trio.Event()
            nursery.start_soon(follow, sql, params, mirror, ready)
            await ready.wait()
        for step in range(150):
            r = await store.transaction(random_write(rng))
            if r.changeset is not None:
                manager.notify(r.changeset.changes)
            if step % 10 == 0:
                await settle(manager)
        await settle(manager)
        for (sql, params), mirror in zip(QUERIES, mirrors, strict=True):
            assert mirror.multiset() == direct(store, sql, params), sql
        assert any(m.change_id > 0 for m in mirrors)
        nursery.cancel_scope.cancel()


async def test_plans_are_incremental_where_provable(store: Store, tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        manager = await open_manager(nursery, store, tmp_path / "subs.db")
        modes = []
        for sql, params in QUERIES:
            sub, _ = await manager.subscribe(sql, params)
            modes.append(sub.plan.mode)
        assert modes == [
            "incremental", "incremental", "incremental", "full", "full", "full", "full",
            "full", "full", "full", "incremental", "incremental",
        ]  # fmt: skip
        nursery.cancel_scope.cancel()
