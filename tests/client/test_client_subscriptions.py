"""Subscriptions and update notifications through the clients, against a real agent: initial
rows then changes, attach, skip_rows/from, and resuming on their own after a cut connection or
a lagging-subscriber disconnect with contiguous change ids, nothing missing and nothing twice;
"too old", "gone" and "gave up" as typed errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from client_harness import HANG, Proxy, SyncReader, agent_api, api, in_thread, proxied, wait_for

from corrosion_py.agent import Agent
from corrosion_py.client import (
    AsyncCorrosionClient,
    AsyncSubscription,
    AsyncUpdates,
    CannotResume,
    Change,
    ChangesTooOld,
    Columns,
    CorrosionClient,
    EndOfQuery,
    Event,
    Notify,
    ResumeFailed,
    ResumePolicy,
    Row,
    SubscriptionError,
    SubscriptionGone,
)
from corrosion_py.subs import SubsConfig

FAST = ResumePolicy(attempts=200, backoff=0.02, max_backoff=0.05)
SQL = "SELECT k, v FROM kv"


def change_ids(events: list[Event]) -> list[int]:
    return [e.change_id for e in events if isinstance(e, Change)]


def last_change(n: int) -> Callable[[list[Event]], bool]:
    return lambda events: bool(change_ids(events)) and change_ids(events)[-1] >= n


async def collect(
    sub: AsyncSubscription, events: list[Event], until: Callable[[list[Event]], bool]
) -> None:
    async for event in sub:
        events.append(event)
        if until(events):
            return


async def write(agent: Agent, *statements: str) -> None:
    await agent.transaction([(s, []) for s in statements])


def server_change_id(agent: Agent, sub_id: str | None) -> int:
    assert sub_id is not None
    sub = agent.subs.get(sub_id)
    return -1 if sub is None else sub.change_id


async def test_async_rows_then_changes_and_attach(tmp_path: Path) -> None:
    async with agent_api(tmp_path) as agent, AsyncCorrosionClient(api(agent)) as c:
        await write(
            agent,
            "INSERT INTO kv (k, v) VALUES (1, 'a')",
            "INSERT INTO kv VALUES (2, x'00ff', NULL)",
        )
        with trio.fail_after(HANG):
            async with c.subscribe(SQL) as sub:
                assert sub.id and sub.hash
                head = [await sub.__anext__() for _ in range(4)]
                assert head == [
                    Columns(("k", "v")),
                    Row(1, (1, "a")),
                    Row(2, (2, b"\x00\xff")),
                    EndOfQuery(head[3].time, 0),  # type: ignore[union-attr]
                ]
                assert sub.columns == ("k", "v") and sub.last_change_id == 0
                tail = []
                for statement in (
                    "INSERT INTO kv (k, v) VALUES (3, 'c')",
                    "UPDATE kv SET v = 'A' WHERE k = 1",
                    "DELETE FROM kv WHERE k = 2",
                ):
                    await write(agent, statement)
                    tail.append(await sub.__anext__())
                assert tail == [
                    Change("insert", 3, (3, "c"), 1),
                    Change("update", 1, (1, "A"), 2),
                    Change("delete", 2, (2, b"\x00\xff"), 3),
                ]
                # the same SQL is the same subscription
                async with c.subscribe(SQL, skip_rows=True) as same:
                    assert same.id == sub.id
                # attach by id: from a change, or the current rows
                async with c.attach(sub.id, from_change=1) as attached:
                    got = [await attached.__anext__() for _ in range(2)]
                    assert change_ids(got) == [2, 3]
                async with c.attach(sub.id) as attached:
                    got = [await attached.__anext__() for _ in range(4)]
                    assert got[1:3] == [Row(1, (1, "A")), Row(3, (3, "c"))]
                    assert isinstance(got[3], EndOfQuery) and got[3].change_id == 3
                # subscribe with `from` to the existing subscription: only newer changes
                async with c.subscribe(SQL, from_change=2) as resumed:
                    assert [await resumed.__anext__()] == [tail[2]]
        assert sub.closed


async def test_subscription_params_and_refusals(tmp_path: Path) -> None:
    async with agent_api(tmp_path) as agent, AsyncCorrosionClient(api(agent)) as c:
        await write(
            agent, "INSERT INTO kv (k, v) VALUES (1, 'a')", "INSERT INTO kv (k, v) VALUES (2, 'b')"
        )
        with trio.fail_after(HANG):
            async with c.subscribe("SELECT v FROM kv WHERE k = ?", [2]) as sub:
                got = [await sub.__anext__() for _ in range(3)]
                assert got[1] == Row(1, ("b",))
            with pytest.raises(SubscriptionGone, match="no existing subscription") as gone:
                async with c.subscribe("SELECT k FROM kv WHERE k > 100", from_change=3):
                    pass
            assert gone.value.status == 400
            with pytest.raises(SubscriptionGone) as gone:
                async with c.attach("0" * 32):
                    pass
            assert gone.value.status == 404
            with pytest.raises(SubscriptionError) as err:
                async with c.subscribe("SELECT nothing FROM nowhere"):
                    pass
            assert err.value.status == 400
            # skip_rows: only what changes from now on
            async with c.subscribe("SELECT k FROM kv WHERE k >= 2", skip_rows=True) as sub:
                # the server attaches the listener once the body starts (see prime())
                live = agent.subs.get(sub.id or "")
                await wait_for(lambda: live is not None and len(live.listeners) == 1)
                await write(agent, "INSERT INTO kv (k) VALUES (5)")
                assert await sub.__anext__() == Change("insert", 2, (5,), 1)


async def test_sync_rows_then_changes(tmp_path: Path) -> None:
    async with agent_api(tmp_path) as agent:
        await write(agent, "INSERT INTO kv (k, v) VALUES (1, 'a')")
        reader = SyncReader()

        def read() -> None:
            with CorrosionClient(api(agent)) as c, c.subscribe(SQL) as sub:
                reader.items.put(sub.id)
                for event in sub:
                    reader.items.put(event)
                    if isinstance(event, Change) and event.change_id == 2:
                        return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(in_thread, read)
            assert len(await reader.get()) == 32
            assert await reader.get() == Columns(("k", "v"))
            assert await reader.get() == Row(1, (1, "a"))
            assert isinstance(await reader.get(), EndOfQuery)
            await write(agent, "INSERT INTO kv (k, v) VALUES (2, 'b')")
            assert await reader.get() == Change("insert", 2, (2, "b"), 1)
            await write(agent, "DELETE FROM kv WHERE k = 1")
            assert await reader.get() == Change("delete", 1, (1, "a"), 2)


async def prime(agent: Agent, notes: AsyncUpdates) -> None:
    """Write until a notification arrives: the server registers the listener only once the
    stream's body starts, after the 200 reached the client, so the first writes may pass
    unseen. Returns once every priming notification was read."""

    async def keep_writing() -> None:
        for i in range(1, 1000):
            await write(agent, f"INSERT INTO pairs VALUES ('prime', {i}, NULL)")
            await trio.sleep(0.1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_writing)
        await notes.__anext__()
        nursery.cancel_scope.cancel()
    await write(agent, "INSERT INTO pairs VALUES ('primed', 0, NULL)")
    while await notes.__anext__() != Notify("update", ("primed", 0)):
        pass


async def test_updates_notify(tmp_path: Path) -> None:
    async with agent_api(tmp_path) as agent, AsyncCorrosionClient(api(agent)) as c:
        with trio.fail_after(HANG):
            async with c.updates("pairs") as notes:
                assert notes.id
                await prime(agent, notes)
                await write(agent, "INSERT INTO pairs VALUES ('x', 1, 'v')")
                assert await notes.__anext__() == Notify("update", ("x", 1))
                await write(agent, "UPDATE pairs SET v = 'w' WHERE a = 'x'")
                assert await notes.__anext__() == Notify("update", ("x", 1))
                await write(agent, "DELETE FROM pairs WHERE a = 'x'")
                assert await notes.__anext__() == Notify("delete", ("x", 1))
            with pytest.raises(SubscriptionError) as err:
                async with c.updates("nope"):
                    pass
            assert err.value.status == 400

        reader = SyncReader()

        def read() -> None:
            with CorrosionClient(api(agent)) as client, client.updates("kv") as stream:
                reader.items.put(stream.id)
                reader.items.put(next(stream))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(in_thread, read)
            await reader.get()
            k = 0
            while reader.items.empty():  # see prime()
                k += 1
                await write(agent, f"INSERT INTO kv (k) VALUES ({k})")
                await trio.sleep(0.05)
            note = await reader.get()
            assert note.kind == "update" and 1 <= note.pk[0] <= k and len(note.pk) == 1


async def cut_while_writing(agent: Agent, proxy: Proxy, rounds: int, per_round: int) -> None:
    """Write ``rounds`` × ``per_round`` single-row transactions, cutting every connection
    through the proxy after each round."""
    k = 100
    for _ in range(rounds):
        for _ in range(per_round):
            k += 1
            await write(agent, f"INSERT INTO kv (k, v) VALUES ({k}, 'v{k}')")
        await trio.sleep(0.01)
        proxy.cut()


async def test_async_resumes_after_cut_connections(tmp_path: Path) -> None:
    rounds, per_round = 6, 5
    total = rounds * per_round
    async with agent_api(tmp_path) as agent, proxied(agent) as proxy:
        await write(agent, "INSERT INTO kv (k, v) VALUES (1, 'a')")
        events: list[Event] = []
        async with AsyncCorrosionClient(proxy.addr, resume=FAST) as c:
            with trio.fail_after(HANG):
                async with c.subscribe(SQL) as sub, trio.open_nursery() as nursery:
                    nursery.start_soon(collect, sub, events, last_change(total))
                    await wait_for(lambda: any(isinstance(e, EndOfQuery) for e in events))
                    await cut_while_writing(agent, proxy, rounds, per_round)
        assert change_ids(events) == list(range(1, total + 1))
        assert [type(e) for e in events[:3]] == [Columns, Row, EndOfQuery]
        assert sub.reconnects >= 1 and proxy.connections >= 2
        inserted = {e.cells[0] for e in events if isinstance(e, Change)}
        assert inserted == set(range(101, 101 + total))


async def test_sync_resumes_after_cut_connections(tmp_path: Path) -> None:
    rounds, per_round = 4, 5
    total = rounds * per_round
    async with agent_api(tmp_path) as agent, proxied(agent) as proxy:
        reader = SyncReader()
        result: list[int] = []

        def read() -> None:
            with CorrosionClient(proxy.addr, resume=FAST) as c, c.subscribe(SQL) as sub:
                for event in sub:
                    reader.items.put(event)
                    if isinstance(event, Change) and event.change_id == total:
                        result.append(sub.reconnects)
                        return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(in_thread, read)
            assert isinstance(await reader.get(), Columns)
            assert isinstance(await reader.get(), EndOfQuery)
            await cut_while_writing(agent, proxy, rounds, per_round)
        events = []
        while not reader.items.empty():
            events.append(reader.items.get())
        assert change_ids(events) == list(range(1, total + 1))
        assert result and result[0] >= 1


async def test_a_cancelled_read_does_not_end_the_subscription(tmp_path: Path) -> None:
    async with agent_api(tmp_path) as agent, AsyncCorrosionClient(api(agent)) as c:
        with trio.fail_after(HANG):
            async with c.subscribe(SQL) as sub:
                assert [type(await sub.__anext__()) for _ in range(2)] == [Columns, EndOfQuery]
                await write(agent, "INSERT INTO kv (k) VALUES (1)")
                assert change_ids([await sub.__anext__()]) == [1]
                with trio.move_on_after(0.05) as scope:
                    await sub.__anext__()  # nothing comes: a timeout around the read
                assert scope.cancelled_caught and not sub.closed
                await write(agent, "INSERT INTO kv (k) VALUES (2)")
                await write(agent, "INSERT INTO kv (k) VALUES (3)")
                got = [await sub.__anext__() for _ in range(2)]
                assert change_ids(got) == [2, 3] and sub.reconnects == 1


async def test_resumes_after_falling_behind(tmp_path: Path) -> None:
    """A listener buffer of 2 and a 10-row transaction: the server drops the stream with an
    error line naming the last change sent; the client resumes from it."""
    subs = SubsConfig(listener_buffer=2)
    async with agent_api(tmp_path, subs=subs) as agent, AsyncCorrosionClient(api(agent)) as c:
        events: list[Event] = []
        with trio.fail_after(HANG):
            async with c.subscribe(SQL) as sub, trio.open_nursery() as nursery:
                nursery.start_soon(collect, sub, events, last_change(25))
                await wait_for(lambda: any(isinstance(e, EndOfQuery) for e in events))
                for batch in range(5):
                    values = ", ".join(f"({batch * 5 + i}, 'x')" for i in range(1, 6))
                    await write(agent, f"INSERT INTO kv (k, v) VALUES {values}")
                    # several changes at once: let them pass through one batch each time
        assert change_ids(events) == list(range(1, 26))
        assert agent.subs.stats["lagged"] >= 1
        assert sub.reconnects >= 1


async def test_resume_before_the_first_change(tmp_path: Path) -> None:
    """Dropped after the initial rows at change 0: re-attached without `from`, the resent rows
    are swallowed; if something changed meanwhile there is no way to replay from 0."""
    async with agent_api(tmp_path) as agent, proxied(agent) as proxy:
        await write(agent, "INSERT INTO kv (k, v) VALUES (1, 'a')")
        async with AsyncCorrosionClient(proxy.addr, resume=FAST) as c:
            with trio.fail_after(HANG):
                async with c.subscribe(SQL) as sub:
                    head = [await sub.__anext__() for _ in range(3)]
                    assert isinstance(head[2], EndOfQuery) and head[2].change_id == 0
                    proxy.cut()
                    await trio.sleep(0.05)
                    await write(agent, "INSERT INTO kv (k, v) VALUES (2, 'b')")
                    # the cut is noticed, the rows at change 0 are resent and swallowed...
                    # unless the write was processed before the re-attach: then CannotResume
                    try:
                        event = await sub.__anext__()
                    except CannotResume:
                        event = None
                    assert event in (None, Change("insert", 2, (2, "b"), 1))

                async with c.subscribe("SELECT k FROM kv WHERE k > 10") as sub:
                    head = [await sub.__anext__() for _ in range(2)]
                    assert head[1] == EndOfQuery(head[1].time, 0)  # type: ignore[union-attr]
                    proxy.up = False
                    proxy.cut()
                    await write(agent, "INSERT INTO kv (k) VALUES (11)")
                    await wait_for(lambda: server_change_id(agent, sub.id) == 1)
                    proxy.up = True
                    with pytest.raises(CannotResume, match="from change 0"):
                        await sub.__anext__()


async def test_changes_too_old(tmp_path: Path) -> None:
    subs = SubsConfig(retention=2)
    async with agent_api(tmp_path, subs=subs) as agent, proxied(agent) as proxy:
        async with AsyncCorrosionClient(proxy.addr, resume=FAST) as c:
            with trio.fail_after(HANG):
                async with c.subscribe(SQL) as sub:
                    await write(agent, "INSERT INTO kv (k) VALUES (1)")
                    head = [await sub.__anext__() for _ in range(3)]
                    assert change_ids(head) == [1]
                    proxy.up = False
                    proxy.cut()
                    for k in range(2, 7):
                        await write(agent, f"INSERT INTO kv (k) VALUES ({k})")
                    await wait_for(lambda: server_change_id(agent, sub.id) == 6)
                    proxy.up = True
                    with pytest.raises(ChangesTooOld) as err:
                        await sub.__anext__()
        assert err.value.status == 400
        assert err.value.min_change_id == 5
        assert sub.last_change_id == 1 and sub.closed


async def test_subscription_gone(tmp_path: Path) -> None:
    subs = SubsConfig(idle_ttl=0.2)
    async with agent_api(tmp_path, subs=subs) as agent, proxied(agent) as proxy:
        async with AsyncCorrosionClient(proxy.addr, resume=FAST) as c:
            with trio.fail_after(HANG):
                async with c.subscribe(SQL) as sub:
                    await sub.__anext__()
                    await sub.__anext__()
                    proxy.up = False
                    proxy.cut()
                    await wait_for(lambda: agent.subs.get(sub.id or "") is None)
                    proxy.up = True
                    with pytest.raises(SubscriptionGone) as err:
                        await sub.__anext__()
        assert err.value.status == 404


async def test_resume_gives_up(tmp_path: Path) -> None:
    policy = ResumePolicy(attempts=3, backoff=0.01, max_backoff=0.02)
    async with agent_api(tmp_path) as agent, proxied(agent) as proxy:
        async with AsyncCorrosionClient(proxy.addr, resume=policy) as c:
            with trio.fail_after(HANG):
                async with c.subscribe(SQL) as sub:
                    await sub.__anext__()
                    await sub.__anext__()
                    proxy.up = False
                    proxy.cut()
                    with pytest.raises(ResumeFailed, match="3 attempts") as err:
                        await sub.__anext__()
        assert err.value.sub_id == sub.id and err.value.last_change_id == 0
        assert proxy.connections == 1

        def sync_gives_up() -> ResumeFailed:
            with CorrosionClient(proxy.addr, resume=policy) as client:
                stream = client.subscribe(SQL)
                with stream, pytest.raises(ResumeFailed) as e:
                    assert isinstance(next(stream), Columns)
                    assert isinstance(next(stream), EndOfQuery)
                    trio.from_thread.run_sync(take_down)
                    next(stream)
                return e.value

        def take_down() -> None:
            proxy.up = False
            proxy.cut()

        proxy.up = True
        error: Any = await in_thread(sync_gives_up)
        assert isinstance(error.__cause__, Exception) and error.last_change_id == 0
