"""The store's async entry points, from trio: they run on worker threads, so the event loop keeps
running while SQLite works."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.lowlevel

from corrosion_py.errors import StatementError
from corrosion_py.store.store import Store

SCHEMA = "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT);"


async def test_async_transaction_apply_query_and_sync_stream(tmp_path: Path) -> None:
    (tmp_path / "s.sql").write_text(SCHEMA)
    a = Store.open(tmp_path / "a.db", schema_paths=[tmp_path / "s.sql"])
    b = Store.open(tmp_path / "b.db", schema_paths=[tmp_path / "s.sql"])
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            results = [
                await a.transaction([("INSERT INTO kv VALUES (?, ?)", [i, f"v{i}"])])
                for i in range(200)
            ]
            assert [r.version for r in results] == list(range(1, 201))
            needs = b.needs_from(a.sync_state())
            served = []
            async for batch in a.stream_sync(needs, batch=16):
                assert len(batch) <= 16
                served += batch
            result = await b.apply(served)
            assert len(result.applied) == 200
            assert await b.query("SELECT count(*) FROM kv") == [(200,)]
            nursery.cancel_scope.cancel()
        assert ticks > 200  # the loop kept running while the worker threads did the SQL
    finally:
        a.close()
        b.close()


async def test_group_commit_keeps_transactions_separate(tmp_path: Path) -> None:
    (tmp_path / "s.sql").write_text(SCHEMA)
    store = Store.open(tmp_path / "g.db", schema_paths=[tmp_path / "s.sql"])
    results: dict[int, object] = {}

    async def writer(i: int) -> None:
        # every 7th transaction fails on its second statement (duplicate key)
        stmts: list[tuple[str, list[object]]] = [("INSERT INTO kv VALUES (?, ?)", [1000 + i, "x"])]
        if i % 7 == 0:
            stmts.append(("INSERT INTO kv VALUES (?, ?)", [1000 + i, "dup"]))
        try:
            results[i] = (await store.transaction(stmts)).version
        except StatementError as exc:
            results[i] = exc

    try:
        async with trio.open_nursery() as nursery:
            for i in range(60):
                nursery.start_soon(writer, i)
        failed = {i for i, r in results.items() if isinstance(r, StatementError)}
        assert failed == {i for i in range(60) if i % 7 == 0}
        versions = sorted(r for r in results.values() if isinstance(r, int))
        assert versions == list(range(1, 61 - len(failed)))  # one version each, no gaps
        keys = await store.query("SELECT k FROM kv ORDER BY k")
        assert [k for (k,) in keys] == [1000 + i for i in range(60) if i % 7]
        assert not store.bookie_snapshot()[store.actor_id].gaps
    finally:
        store.close()
