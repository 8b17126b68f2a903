"""Anti-entropy sync over real TCP on 127.0.0.1 with real store files: convergence, catching up
a large store, several servers without double asking, rejections, bad frames, stalled peers,
and partial versions (the gossip port's routing of first frames: tests/net/test_port.py)."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import pytest
import trio

from corrosion_py.addr import Addr
from corrosion_py.net.sync_client import SyncReport, sync_with
from corrosion_py.net.sync_server import SyncServer
from corrosion_py.replication import chunking
from corrosion_py.replication.hlc import ntp64_from_ns
from corrosion_py.store.store import Store
from corrosion_py.wire.codec import decode, encode
from corrosion_py.wire.framing import HEADER, FrameReader, frame
from corrosion_py.wire.messages import (
    Changeset,
    Item,
    Message,
    NeedFull,
    SyncClock,
    SyncDone,
    SyncStart,
    SyncState,
)
from corrosion_py.wire.swim import Join, NodeId, Packet, encode_packet

SCHEMA = "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT);"
CLUSTER = 3

OpenStore = Callable[[str], Store]


@pytest.fixture
def open_store(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "schema.sql").write_text(SCHEMA)
    opened: list[Store] = []

    def make(name: str) -> Store:
        store = Store.open(tmp_path / f"{name}.db", schema_paths=[tmp_path / "schema.sql"])
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


async def start(
    nursery: trio.Nursery, handler: Callable[[trio.SocketStream], Awaitable[object]]
) -> Addr:
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return ("127.0.0.1", listeners[0].socket.getsockname()[1])


async def serve(nursery: trio.Nursery, store: Store, **kwargs: object) -> tuple[Addr, SyncServer]:
    kwargs.setdefault("is_member", lambda actor: True)
    server = SyncServer(store, kwargs.pop("cluster_id", CLUSTER), **kwargs)  # type: ignore[arg-type]
    return await start(nursery, server.serve), server


def writes(store: Store, versions: int, rows: int = 1, base: int = 0) -> None:
    for v in range(versions):
        store.transaction_sync(
            [
                (
                    "INSERT INTO kv VALUES (?, ?)",
                    [base + v * rows + i, f"{store.path.stem}-{v}-{i}"],
                )
                for i in range(rows)
            ]
        )


async def pull(store: Store, peers: list[Addr], *, handshake_timeout: float = 2.0) -> SyncReport:
    async def deliver(items: list[Item]) -> None:
        await store.apply(items)

    return await sync_with(
        store, CLUSTER, peers, deliver, rng=random.Random(1), handshake_timeout=handshake_timeout
    )


def rows(store: Store) -> list[tuple[object, ...]]:
    return store.reader().execute("SELECT k, v FROM kv ORDER BY k").fetchall()


def no_gaps(store: Store) -> bool:
    state = store.sync_state()
    return not state.need and not state.partial_need


async def eventually(check: Callable[[], bool]) -> None:
    """Wait (at most 5 s) for ``check()``: server counters move after the client sees EOF."""
    with trio.fail_after(5):
        while True:
            if check():
                return
            await trio.sleep(0.01)


async def closed_by_peer(stream: trio.SocketStream) -> bool:
    """Whether the server closes the connection (EOF or reset) within 5 s."""
    with trio.fail_after(5):
        try:
            while await stream.receive_some(4096):
                pass
        except trio.BrokenResourceError:
            pass
    return True


async def raw_hello(
    addr: Addr, store: Store, *, cluster_id: int = CLUSTER, ts: int = 1
) -> tuple[trio.SocketStream, list[Message]]:
    """Handshake by hand: send SyncStart + SyncClock, read the two replies (or one rejection)."""
    stream = await trio.open_tcp_stream(*addr)
    hello: list[Message] = [SyncStart(store.actor_id), SyncClock(ts)]
    await stream.send_all(b"".join(frame(encode(m, cluster_id=cluster_id)) for m in hello))
    reader, got = FrameReader(1 << 24), list[Message]()
    with trio.fail_after(5):
        while len(got) < 2:
            data = await stream.receive_some(65536)
            if not data:
                break
            got += [decode(p) for p in reader.feed(data)]
    return stream, got


# -- convergence -----------------------------------------------------------------------------------


async def test_two_stores_converge_after_one_round_each_way(
    open_store: OpenStore, nursery: trio.Nursery
) -> None:
    a, b = open_store("a"), open_store("b")
    writes(a, 30, rows=2, base=0)
    writes(b, 20, rows=3, base=1_000)
    b.transaction_sync([("UPDATE kv SET v = 'from b' WHERE k = 1000")])
    addr_a, server_a = await serve(nursery, a)
    addr_b, server_b = await serve(nursery, b)

    report = await pull(a, [addr_b])
    assert report.ok and report.peers[0].error is None
    assert report.peers[0].actor_id == b.actor_id
    assert report.peers[0].changesets == 21 and report.peers[0].bytes_received > 0
    report = await pull(b, [addr_a])
    assert report.ok and report.peers[0].changesets == 30

    assert rows(a) == rows(b) and len(rows(a)) == 120
    assert no_gaps(a) and no_gaps(b)
    assert a.sync_state().heads == b.sync_state().heads == {a.actor_id: 30, b.actor_id: 21}
    assert server_a.stats.completed == server_b.stats.completed == 1
    # a second round finds nothing to do
    report = await pull(a, [addr_b])
    assert report.ok and report.peers[0].changesets == 0 and report.peers[0].needs_sent == 0


async def test_an_empty_node_catches_up_5000_rows(
    open_store: OpenStore, nursery: trio.Nursery
) -> None:
    source, empty = open_store("source"), open_store("empty")
    writes(source, 500, rows=10)
    addr, server = await serve(nursery, source)
    batches: list[int] = []

    async def deliver(items: list[Item]) -> None:
        batches.append(len(items))
        await empty.apply(items)

    report = await sync_with(empty, CLUSTER, [addr], deliver, rng=random.Random(0))
    assert report.ok, report
    assert report.peers[0].changesets == sum(batches) == 500
    assert report.peers[0].needs_sent == 50  # chunks of 10 versions
    assert len(batches) > 1 and max(batches) <= 64  # delivered in batches, not all at once
    assert rows(empty) == rows(source) and len(rows(empty)) == 5_000
    assert no_gaps(empty) and empty.sync_state().heads == {source.actor_id: 500}
    assert server.stats.changesets_sent == 500 and server.stats.active == 0


async def test_three_servers_share_the_work_without_double_asking(
    open_store: OpenStore, nursery: trio.Nursery
) -> None:
    source = open_store("source")
    writes(source, 120, rows=2)
    s1, s2, s3 = open_store("s1"), open_store("s2"), open_store("s3")
    everything = list(source.serve_sync(s1.needs_from(source.sync_state())))
    s1.apply_sync(everything)
    s3.apply_sync(everything)
    s2.apply_sync(list(source.serve_sync({source.actor_id: [NeedFull((1, 80))]})))  # a gap 81..120
    writes(s3, 10, base=10_000)  # s3's own actor: only s3 has it
    addrs = [(await serve(nursery, s))[0] for s in (s1, s2, s3)]
    client = open_store("client")
    seen: list[tuple[bytes, int, tuple[int, int]]] = []

    async def deliver(items: list[Item]) -> None:
        seen.extend((i.actor_id, i.version, i.seqs) for i in items if isinstance(i, Changeset))
        await client.apply(items)

    report = await sync_with(client, CLUSTER, addrs, deliver, rng=random.Random(5))
    assert all(p.ok for p in report.peers), report
    assert len(seen) == len(set(seen)) == 130  # every version once, from one server
    assert sum(1 for p in report.peers if p.changesets) >= 2  # the work was spread
    assert report.by_addr()[addrs[2]].changesets >= 10
    assert rows(client) == rows(s3) and len(rows(client)) == 250
    assert no_gaps(client)


# -- rejections ------------------------------------------------------------------------------------


async def test_wrong_cluster_is_rejected_and_nothing_applied(
    open_store: OpenStore, nursery: trio.Nursery
) -> None:
    server_store, client = open_store("server"), open_store("client")
    writes(server_store, 5)
    addr, server = await serve(nursery, server_store, cluster_id=7)
    delivered: list[Item] = []

    async def deliver(items: list[Item]) -> None:
        delivered.extend(items)

    report = await sync_with(client, 8, [addr], deliver, rng=random.Random(0))
    assert not report.ok
    assert report.peers[0].error == "rejected: the peer belongs to a different cluster"
    assert delivered == [] and rows(client) == [] and client.sync_state().heads == {}
    assert server.stats.rejected_cluster == 1 and server.stats.sessions == 0


async def test_max_concurrency_is_rejected_clearly_and_the_slot_is_freed(
    open_store: OpenStore, nursery: trio.Nursery
) -> None:
    server_store, client, holder_store = open_store("server"), open_store("client"), open_store("h")
    writes(server_store, 3)
    addr, server = await serve(nursery, server_store, max_concurrent=1)
    future = ntp64_from_ns(time.time_ns() + 1_000 * 10**9)  # 1,000 s ahead of every clock
    holder, got = await raw_hello(addr, holder_store, ts=future)
    assert isinstance(got[0], SyncState) and isinstance(got[1], SyncClock)
    assert server.stats.clock_drift == 1  # counted, the session goes on
    assert server.stats.active == 1

    report = await pull(client, [addr])
    assert not report.ok
    assert report.peers[0].error == (
        "rejected: the peer already serves its maximum of concurrent syncs"
    )
    assert server.stats.rejected_busy == 1 and rows(client) == []

    await holder.send_all(frame(encode(SyncDone(), cluster_id=CLUSTER)))
    assert await closed_by_peer(holder)
    await holder.aclose()
    await eventually(lambda: server.stats.active == 0)
    report = await pull(client, [addr])
    assert report.ok and len(rows(client)) == 3


# -- bad input -------------------------------------------------------------------------------------


async def test_server_survives_garbage_and_oversized_frames(
    open_store: OpenStore, nursery: trio.Nursery
) -> None:
    server_store, client = open_store("server"), open_store("client")
    writes(server_store, 4)
    addr, server = await serve(nursery, server_store)
    attacks = [
        frame(b"\xff\x00 not cbor"),
        HEADER.pack(0xFFFF_FFFF) + b"x" * 100,  # oversized length header
        b"hello world, no frame here",  # reads as a 1.7 GB length
        frame(encode(SyncDone(), cluster_id=CLUSTER)),  # a valid message, not a SyncStart
        frame(encode(SyncStart(client.actor_id), cluster_id=CLUSTER)) + frame(b"\x00"),
        frame(b""),
    ]
    for data in attacks:
        stream = await trio.open_tcp_stream(*addr)
        await stream.send_all(data)
        assert await closed_by_peer(stream)
        await stream.aclose()
    stream = await trio.open_tcp_stream(*addr)  # cut off inside the first frame
    await stream.send_all(HEADER.pack(50) + b"abc")
    await stream.aclose()
    await eventually(lambda: server.stats.disconnects + server.stats.bad_frames == len(attacks) + 1)
    assert server.stats.bad_frames == len(attacks)
    assert server.stats.internal_errors == 0

    report = await pull(client, [addr])  # still serving
    assert report.ok and len(rows(client)) == 4


async def test_a_stalled_or_dead_peer_does_not_block_the_round(
    open_store: OpenStore, nursery: trio.Nursery
) -> None:
    good_store, client = open_store("good"), open_store("client")
    writes(good_store, 6)
    good, _ = await serve(nursery, good_store)

    async def stall(stream: trio.SocketStream) -> None:
        await stream.receive_some(1024)  # reads the hello, never answers
        await trio.sleep_forever()

    stalled = await start(nursery, stall)
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        dead = ("127.0.0.1", sock.getsockname()[1])

    began = trio.current_time()
    report = await pull(client, [stalled, good, dead], handshake_timeout=0.3)
    assert trio.current_time() - began < 3
    by = report.by_addr()
    assert report.ok and by[good].ok and by[good].changesets == 6
    assert by[stalled].error == "timed out after 0.3 s waiting for the peer's SyncState"
    assert str(by[dead].error).startswith("connection failed")
    assert rows(client) == rows(good_store)


# -- partial versions ------------------------------------------------------------------------------


async def test_partial_versions_are_completed_through_sync(
    open_store: OpenStore, nursery: trio.Nursery
) -> None:
    source, partial_holder, client = open_store("source"), open_store("ph"), open_store("client")
    big = source.transaction_sync(
        [("INSERT INTO kv VALUES (?, ?)", [i, "x" * 40]) for i in range(200)]
    ).changeset
    assert big is not None
    pieces = list(chunking.pieces(big, budget=600))
    assert len(pieces) >= 6
    client.apply_sync(pieces[:2])
    partial_holder.apply_sync(pieces[2:4])
    assert client.sync_state().partial_need  # a partial version: seqs missing
    addr_ph, _ = await serve(nursery, partial_holder)
    addr_source, _ = await serve(nursery, source)

    # a peer holding other pieces of it gives what it has; the version stays partial
    report = await pull(client, [addr_ph])
    assert report.ok and report.peers[0].changesets >= 1
    missing = client.sync_state().partial_need[source.actor_id][big.version]
    assert missing and missing[0][0] > pieces[3].seqs[1]
    # the origin completes it
    report = await pull(client, [addr_source])
    assert report.ok
    assert rows(client) == rows(source) and len(rows(client)) == 200 and no_gaps(client)


# -- a SWIM frame alone ----------------------------------------------------------------------------


async def test_a_swim_frame_to_the_sync_server_alone_is_a_bad_frame(
    open_store: OpenStore, nursery: trio.Nursery
) -> None:
    store = open_store("s")
    packet = encode_packet(Packet(CLUSTER, NodeId(store.actor_id, ("127.0.0.1", 1)), 0, Join()))
    addr, server = await serve(nursery, store)
    stream = await trio.open_tcp_stream(*addr)
    await stream.send_all(frame(packet))
    assert await closed_by_peer(stream)
    await stream.aclose()
    await eventually(lambda: server.stats.bad_frames == 1)
