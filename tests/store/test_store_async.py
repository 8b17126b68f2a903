"""The store's async entry points, from trio: they run on worker threads, so the event loop keeps
running while SQLite works."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.lowlevel

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
