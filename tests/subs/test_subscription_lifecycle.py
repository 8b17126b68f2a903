"""A subscription's life: sharing, resume with ``from``, slow listeners, idle expiry, restarts
(state on disk), refused statements, the overflow fallback, table update notifications, and
the error kind each ending reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from subs_harness import Mirror, direct, open_manager

from corrosion_py.api_types import ErrorCode, Problem
from corrosion_py.store.store import Store
from corrosion_py.subs import (
    Change,
    ChangesTooOld,
    NoSuchSubscription,
    Notify,
    SubscriberLagged,
    SubscriptionClosed,
    SubscriptionManager,
    SubscriptionSqlError,
)

STARTED = "SELECT id, app_id, cpus FROM machines WHERE state = 'started'"


async def write(store: Store, manager: SubscriptionManager, *statements: Any) -> None:
    result = await store.transaction(list(statements))
    if result.changeset is not None:
        manager.notify(result.changeset.changes)


def machine(mid: str, state: str = "started", cpus: int = 1) -> tuple[str, list[Any]]:
    return (
        "INSERT INTO machines (id, app_id, region, state, cpus) VALUES (?, 1, 'ams', ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET state = excluded.state, cpus = excluded.cpus",
        [mid, state, cpus],
    )


async def next_changes(events: Any, n: int) -> list[Change]:
    out = []
    with trio.fail_after(10):
        async for event in events:
            if isinstance(event, Change):
                out.append(event)
                if len(out) == n:
                    return out
    raise AssertionError("the stream ended early")


async def test_identical_sql_shares_one_subscription(store: Store, tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        manager = await open_manager(nursery, store, tmp_path / "subs.db")
        a, created_a = await manager.subscribe("SELECT * FROM machines WHERE cpus > ?", [2])
        b, created_b = await manager.subscribe("select *  from machines\nwhere cpus > 2")
        c, _ = await manager.subscribe("SELECT * FROM machines WHERE cpus > 3")
        assert (created_a, created_b) == (True, False)
        assert a.id == b.id and a.hash == b.hash
        assert c.id != a.id and c.hash != a.hash
        with pytest.raises(NoSuchSubscription):
            await manager.subscribe("SELECT * FROM apps", existing_only=True)
        assert len(manager) == 2
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO apps (id) VALUES (1)",
        "DELETE FROM machines",
        "SELECT 1; SELECT 2",
        "SELECT * FROM nope",
        "SELECT * FROM __corro_members",
        "SELECT * FROM machines__crsql_clock",
        "SELECT 1",
        "SELEC * FROM apps",
        "",
    ],
)
async def test_refused_statements(store: Store, tmp_path: Path, sql: str) -> None:
    async with trio.open_nursery() as nursery:
        manager = await open_manager(nursery, store, tmp_path / "subs.db")
        with pytest.raises(SubscriptionSqlError):
            await manager.subscribe(sql)
        assert len(manager) == 0
        nursery.cancel_scope.cancel()


async def test_resume_from_a_change_id_and_too_old(store: Store, tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        manager = await open_manager(nursery, store, tmp_path / "subs.db", retention=5)
        sub, _ = await manager.subscribe(STARTED)
        async with sub.attach() as events:
            for i in range(8):
                await write(store, manager, machine(f"m{i}"))
            seen = await next_changes(events, 8)
        assert [c.change_id for c in seen] == list(range(1, 9))
        async with sub.attach(from_change=5) as events:
            resumed = await next_changes(events, 3)
        assert resumed == seen[5:]
        with pytest.raises(ChangesTooOld) as too_old:
            async with sub.attach(from_change=2):
                pass
        assert too_old.value.oldest == 4
        nursery.cancel_scope.cancel()


async def test_a_slow_listener_is_disconnected_and_resumes(store: Store, tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        manager = await open_manager(nursery, store, tmp_path / "subs.db", listener_buffer=3)
        sub, _ = await manager.subscribe(STARTED)
        got: list[Change] = []
        with pytest.raises(SubscriberLagged) as lagged:
            async with sub.attach(skip_rows=True) as events:
                for i in range(10):  # nobody reads: the buffer of 3 overflows
                    await write(store, manager, machine(f"m{i}"))
                    await trio.sleep(0.02)
                async for event in events:
                    assert isinstance(event, Change)
                    got.append(event)
        assert [c.change_id for c in got] == [1, 2, 3]
        assert lagged.value.last == 3
        async with sub.attach(from_change=lagged.value.last) as events:
            rest = await next_changes(events, 7)
        assert [c.change_id for c in rest] == list(range(4, 11))
        assert manager.stats["lagged"] == 1
        nursery.cancel_scope.cancel()


async def test_idle_subscriptions_expire(store: Store, tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        manager = await open_manager(nursery, store, tmp_path / "subs.db", idle_ttl=0.2)
        sub, _ = await manager.subscribe(STARTED)
        async with sub.attach():
            await trio.sleep(0.5)  # a listener keeps it alive
            assert manager.get(sub.id) is sub
        with trio.fail_after(10):
            while manager.get(sub.id) is not None:  # noqa: ASYNC110 (polls the engine's GC)
                await trio.sleep(0.05)
        with pytest.raises(SubscriptionClosed):
            async with sub.attach():
                pass
        nursery.cancel_scope.cancel()


async def test_subscriptions_survive_a_restart(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "subs.db"
    async with trio.open_nursery() as nursery:
        manager = await open_manager(nursery, store, path)
        sub, _ = await manager.subscribe(STARTED)
        mirror = Mirror()
        async with sub.attach() as events:
            await write(store, manager, machine("a"), machine("b"))
            async for event in events:
                mirror.apply(event)
                if mirror.change_id == 2:
                    break
        nursery.cancel_scope.cancel()
    # while no engine runs: b stops, c starts, a gets more cpus
    await store.transaction([machine("b", "stopped"), machine("c"), machine("a", cpus=4)])
    async with trio.open_nursery() as nursery:
        manager = await open_manager(nursery, store, path)
        again = manager.get(sub.id)
        assert again is not None and again.hash == sub.hash
        async with again.attach(from_change=mirror.change_id) as events:
            for change in await next_changes(events, 3):
                mirror.apply(change)
        assert mirror.multiset() == direct(store, STARTED, ())
        assert mirror.change_id == 5
        nursery.cancel_scope.cancel()


async def test_a_flood_past_the_pending_bound_falls_back_to_a_full_refresh(
    store: Store, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        manager = await open_manager(nursery, store, tmp_path / "subs.db", max_pending_keys=10)
        sub, _ = await manager.subscribe(STARTED)
        mirror = Mirror()
        async with sub.attach() as events:
            await write(store, manager, *[machine(f"m{i}") for i in range(50)])
            async for event in events:
                mirror.apply(event)
                if mirror.change_id == 50:
                    break
        assert manager.stats["overflows"] >= 1
        assert mirror.multiset() == direct(store, STARTED, ())
        nursery.cancel_scope.cancel()


async def test_table_updates_notify_primary_keys(store: Store, tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        manager = await open_manager(nursery, store, tmp_path / "subs.db")
        with pytest.raises(SubscriptionSqlError.__mro__[1]):
            async with manager.updates("nope"):
                pass
        async with manager.updates("machines") as notes:
            await write(store, manager, machine("x"))
            await write(store, manager, machine("x", cpus=3))
            await write(store, manager, ("DELETE FROM machines WHERE id = 'x'", []))
            await write(store, manager, ("INSERT INTO apps (id) VALUES (7)", []))
            got = []
            with trio.fail_after(10):
                async for note in notes:
                    got.append(note)
                    if len(got) == 3:
                        break
        assert got == [Notify("update", ("x",)), Notify("update", ("x",)), Notify("delete", ("x",))]
        nursery.cancel_scope.cancel()


async def test_each_ending_reports_its_kind(store: Store, tmp_path: Path) -> None:
    """What the API answers and clients decide by: changes no longer kept and a lagged listener
    with their fields; an engine that stops ends its listeners as shutting down."""
    assert ChangesTooOld(4).problem() == Problem(
        ErrorCode.CHANGES_TOO_OLD, str(ChangesTooOld(4)), min_change_id=4
    )
    assert SubscriberLagged(3).problem() == Problem(
        ErrorCode.SUBSCRIBER_LAGGED, str(SubscriberLagged(3)), resume_from=3
    )
    assert NoSuchSubscription("x").problem().code == ErrorCode.NO_SUCH_SUBSCRIPTION
    ended: list[SubscriptionClosed] = []
    async with trio.open_nursery() as outer, trio.open_nursery() as engine:
        manager = await open_manager(engine, store, tmp_path / "subs.db")
        sub, _ = await manager.subscribe(STARTED)

        async def listen() -> None:
            try:
                async with sub.attach() as events:
                    async for _ in events:
                        pass
            except SubscriptionClosed as exc:
                ended.append(exc)

        outer.start_soon(listen)
        with trio.fail_after(10):
            while not sub.listeners:  # noqa: ASYNC110 (polls the engine's state)
                await trio.sleep(0.01)
        engine.cancel_scope.cancel()
    [closed] = ended
    assert closed.problem() == Problem(ErrorCode.SHUTTING_DOWN, "the agent is stopping")
    with pytest.raises(SubscriptionClosed) as again:
        async with sub.attach():
            pass
    assert again.value.code == ErrorCode.SHUTTING_DOWN
