"""Fair sync service over real TCP on 127.0.0.1: only members get a session, one per member at
a time, a member that asks for nothing loses its slot after the idle timeout, and strangers
hammering the port neither hold slots nor move the clock, so members keep syncing."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
import trio

from corrosion_py.addr import Addr
from corrosion_py.net.sync_client import SyncReport, sync_with
from corrosion_py.net.sync_server import SyncServer
from corrosion_py.replication.hlc import ntp64_from_ns
from corrosion_py.store.store import Store
from corrosion_py.wire.codec import decode, encode
from corrosion_py.wire.framing import FrameReader, frame
from corrosion_py.wire.messages import (
    Item,
    Message,
    SyncClock,
    SyncDone,
    SyncRejection,
    SyncRequest,
    SyncStart,
    SyncState,
)

SCHEMA = "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT);"
CLUSTER = 5
HANG = 20.0  # seconds: only catches hangs


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """A server store holding 5 versions and an empty client store."""
    (tmp_path / "schema.sql").write_text(SCHEMA)
    opened = [
        Store.open(tmp_path / f"{name}.db", schema_paths=[tmp_path / "schema.sql"])
        for name in ("server", "client")
    ]
    for k in range(5):
        opened[0].transaction_sync([("INSERT INTO kv VALUES (?, 'v')", [k])])
    yield opened[0], opened[1]
    for store in opened:
        store.close()


async def serve(nursery: trio.Nursery, server: SyncServer) -> Addr:
    listeners = await nursery.start(partial(trio.serve_tcp, server.serve, 0, host="127.0.0.1"))
    return ("127.0.0.1", listeners[0].socket.getsockname()[1])


async def pull(store: Store, addr: Addr) -> SyncReport:
    async def deliver(items: list[Item]) -> None:
        await store.apply(items)

    return await sync_with(store, CLUSTER, [addr], deliver, rng=random.Random(1))


async def hello(addr: Addr, actor: bytes, ts: int = 1) -> tuple[trio.SocketStream, list[Message]]:
    """SyncStart + SyncClock by hand; the server's answer (a state and a clock, or a rejection)."""
    stream = await trio.open_tcp_stream(*addr)
    await send(stream, SyncStart(actor), SyncClock(ts))
    reader, got = FrameReader(1 << 24), list[Message]()
    with trio.fail_after(HANG):
        while len(got) < 2:
            data = await stream.receive_some(65536)
            if not data:
                break
            got += [decode(p) for p in reader.feed(data)]
    return stream, got


async def send(stream: trio.SocketStream, *messages: Message) -> None:
    await stream.send_all(b"".join(frame(encode(m, cluster_id=CLUSTER)) for m in messages))


async def closed_by_peer(stream: trio.SocketStream) -> None:
    """Wait (bounded) until the server closes the connection."""
    with trio.fail_after(HANG):
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
    await stream.aclose()


async def eventually(check: Callable[[], bool]) -> None:
    with trio.fail_after(HANG):
        while True:
            if check():
                return
            await trio.sleep(0.01)


def kv(store: Store) -> int:
    return int(store.reader().execute("SELECT count(*) FROM kv").fetchone()[0])


async def test_strangers_are_rejected_hold_no_slot_and_move_no_clock(
    stores: tuple[Store, Store], nursery: trio.Nursery
) -> None:
    server_store, client = stores
    members = {client.actor_id}
    server = SyncServer(server_store, CLUSTER, is_member=members.__contains__, max_concurrent=1)
    addr = await serve(nursery, server)
    future = ntp64_from_ns(time.time_ns() + 1_000 * 10**9)  # would count as drift if observed

    async def stranger() -> None:
        stream, got = await hello(addr, os.urandom(16), ts=future)
        assert got == [SyncRejection("not_member")]
        await closed_by_peer(stream)

    async with trio.open_nursery() as strangers:
        for _ in range(20):
            strangers.start_soon(stranger)
    # the server's own actor is no member of itself either
    stream, got = await hello(addr, server_store.actor_id, ts=future)
    assert got == [SyncRejection("not_member")]
    await closed_by_peer(stream)
    assert server.stats.rejected_not_member == 21
    assert server.stats.sessions == 0 and server.stats.clock_drift == 0
    assert server.stats.active == 0

    report = await pull(client, addr)  # the one slot is free for a member
    assert report.ok and kv(client) == 5

    members.clear()  # a member SWIM no longer holds alive: rejected, with a readable reason
    report = await pull(client, addr)
    assert not report.ok
    assert report.peers[0].error == (
        "rejected: the peer does not hold this node as a live member (yet)"
    )


async def test_one_session_per_member_at_a_time(
    stores: tuple[Store, Store], nursery: trio.Nursery
) -> None:
    server_store, client = stores
    holder = os.urandom(16)
    server = SyncServer(server_store, CLUSTER, is_member={holder, client.actor_id}.__contains__)
    addr = await serve(nursery, server)
    first, got = await hello(addr, holder)
    assert isinstance(got[0], SyncState) and isinstance(got[1], SyncClock)
    second, got = await hello(addr, holder)
    assert got == [SyncRejection("already_syncing")]
    await closed_by_peer(second)
    assert server.stats.rejected_duplicate == 1 and server.stats.active == 1

    report = await pull(client, addr)  # another member is served meanwhile
    assert report.ok and kv(client) == 5

    await send(first, SyncDone())  # the first session ends: the member may come back
    await closed_by_peer(first)
    await eventually(lambda: server.stats.active == 0)  # counters move after the close
    third, got = await hello(addr, holder)
    assert isinstance(got[0], SyncState)
    await send(third, SyncDone())
    await closed_by_peer(third)


async def test_an_idle_member_loses_its_slot_and_empty_requests_do_not_keep_it(
    stores: tuple[Store, Store], nursery: trio.Nursery
) -> None:
    server_store, client = stores
    idler = os.urandom(16)
    server = SyncServer(
        server_store,
        CLUSTER,
        is_member={idler, client.actor_id}.__contains__,
        max_concurrent=1,
        idle_timeout=0.5,
    )
    addr = await serve(nursery, server)
    stream, got = await hello(addr, idler)
    assert isinstance(got[0], SyncState)
    assert (await pull(client, addr)).peers[0].error == (
        "rejected: the peer already serves its maximum of concurrent syncs"
    )
    # asks for nothing, several times a second, until the server drops it (bounded wait: an
    # empty request that counted as activity would keep the slot forever)
    with trio.fail_after(HANG):
        try:
            while True:
                await send(stream, SyncRequest(()))
                await trio.sleep(0.05)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    await stream.aclose()
    assert server.stats.timeouts == 1 and server.stats.empty_requests >= 2
    assert server.stats.active == 0
    report = await pull(client, addr)
    assert report.ok and kv(client) == 5
