"""The apply loop drives the apply queue's fault rules on a real store: while a full database
stops applies it keeps what failed and retries, within its bounds (the oldest go over them
first); an unexpected error drops its batch, is logged once and counted, and the queue goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import trio
from disk_faults import limit_growth

from corrosion_py.agent.apply_loop import ApplyLoop
from corrosion_py.replication.apply_queue import ApplyQueue
from corrosion_py.store.apply import ApplyResult
from corrosion_py.store.store import Store
from corrosion_py.wire import Changeset
from corrosion_py.wire.messages import Item

SCHEMA = "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT);\n"
HANG = 30.0  # seconds: only catches hangs


def stores(tmp: Path) -> tuple[Store, Store]:
    (tmp / "schema.sql").write_text(SCHEMA)
    return tuple(  # type: ignore[return-value]
        Store.open(tmp / f"{name}.db", schema_paths=[tmp / "schema.sql"])
        for name in ("node", "peer")
    )


def versions(peer: Store, count: int, size: int = 20_000) -> list[Changeset]:
    out = []
    for k in range(count):
        changeset = peer.transaction_sync([("INSERT INTO kv VALUES (?, ?)", [k, "v" * size])])
        assert changeset.changeset is not None
        out.append(changeset.changeset)
    return out


async def eventually(check: Callable[[], bool]) -> None:
    """Returns as soon as ``check()`` holds, without yielding after it (so the caller acts on
    exactly the state it checked)."""
    with trio.fail_after(HANG):
        while True:
            if check():
                return
            await trio.sleep(0.01)


def held(store: Store, peer: Store) -> list[int]:
    return sorted(v for a, v in _applied(store) if a == peer.actor_id)


def _applied(store: Store) -> list[tuple[bytes, int]]:
    booked = store.bookie_snapshot()
    return [(a, v) for a, b in booked.items() for v in range(1, b.max + 1) if b.knows(v)]


async def test_a_full_database_keeps_what_failed_within_the_bounds_then_applies_it(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    node, peer = stores(tmp_path)
    try:
        sets = versions(peer, 20)
        queue = ApplyLoop(node, ApplyQueue(max_items=10, linger=0))
        await nursery.start(queue.run)
        limit_growth(node, node.reader().execute("PRAGMA page_count").fetchone()[0])
        queue.put_nowait(sets[:10])
        await eventually(lambda: queue.stats["apply_retries"] >= 2 and queue.depth == 10)
        assert held(node, peer) == []  # kept, nothing applied
        queue.put_nowait(sets[10:])  # broadcasts keep coming while the disk is full
        assert queue.depth == 10 and queue.stats["dropped_overflow"] == 10  # the oldest went
        limit_growth(node, None)
        await eventually(lambda: queue.depth == 0 and len(held(node, peer)) == 10)
        with trio.fail_after(HANG):
            await queue.drained()  # the loop has seen the apply end, not only the store
        assert held(node, peer) == list(range(11, 21))  # the newest ten; sync brings the rest
        assert queue.stats["applied_changesets"] == 10 and queue.stats["apply_errors"] == 0
    finally:
        node.close()
        peer.close()


async def test_an_unexpected_apply_error_drops_the_batch_and_the_queue_goes_on(
    tmp_path: Path,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    node, peer = stores(tmp_path)
    try:
        sets = versions(peer, 4, size=10)
        real_apply = node.apply
        calls = 0

        async def buggy_apply(items: Sequence[Item]) -> ApplyResult:
            nonlocal calls
            calls += 1
            if calls <= 2:
                raise RuntimeError("a bug in apply")
            return await real_apply(items)

        monkeypatch.setattr(node, "apply", buggy_apply)
        queue = ApplyLoop(node, ApplyQueue(linger=0))
        await nursery.start(queue.run)
        caplog.set_level(logging.ERROR, logger="corrosion_py.agent.apply_loop")
        queue.put_nowait(sets[:1])
        await eventually(lambda: queue.stats["apply_errors"] == 1)
        queue.put_nowait(sets[1:2])
        await eventually(lambda: queue.stats["apply_errors"] == 2)
        queue.put_nowait(sets[2:])
        await eventually(lambda: len(held(node, peer)) == 2)
        assert held(node, peer) == [3, 4] and queue.stats["dropped_error"] == 2
        [record] = caplog.records  # one traceback, not one per failure
        assert record.exc_info is not None and "a bug in apply" in str(record.exc_info[1])
        assert "applying 1 changesets failed (dropped, sync brings them again" in (
            record.getMessage()
        )
    finally:
        node.close()
        peer.close()
