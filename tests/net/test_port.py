"""The gossip port's two routers over real sockets on 127.0.0.1: datagrams by their tag, TCP
connections by their first frame (read exactly, nothing past it), and every way a peer can
fail them counted, bounded and closed."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio

from corrosion_py.addr import Addr
from corrosion_py.net import port as port_module
from corrosion_py.net.port import GossipPort, Routes, open_gossip_port
from corrosion_py.wire.codec import encode
from corrosion_py.wire.framing import HEADER, frame
from corrosion_py.wire.messages import Changeset, SyncStart
from corrosion_py.wire.swim import Join, NodeId, Packet, encode_packet

CLUSTER = 3
ACTOR = os.urandom(16)
SWIM_PACKET = encode_packet(Packet(CLUSTER, NodeId(ACTOR, ("127.0.0.1", 1)), 0, Join()))
CHANGESET = encode(Changeset(ACTOR, 1, (), (0, 0), 0, 0), cluster_id=CLUSTER)
HANG = 5.0  # seconds: only catches hangs


class Recorder:
    """Route handlers that record what reached them."""

    def __init__(self) -> None:
        self.datagrams: list[tuple[str, Addr, bytes]] = []
        self.streams: list[tuple[str, bytes, Addr]] = []

    def datagram(self, route: str) -> Callable[[Addr, bytes], None]:
        def handle(addr: Addr, data: bytes) -> None:
            self.datagrams.append((route, addr, data))

        return handle

    async def push_pull(self, stream: trio.abc.Stream, first: bytes, peer: Addr) -> None:
        self.streams.append(("push_pull", first, peer))
        tail = await stream.receive_some(4)  # nothing past the first frame was read
        await stream.send_all(b"ack:" + tail)

    async def sync(self, stream: trio.abc.Stream, first: bytes, peer: Addr) -> None:
        self.streams.append(("sync", first, peer))
        await stream.send_all(b"sync")


@asynccontextmanager
async def serving(*, full: bool = True) -> AsyncIterator[tuple[GossipPort, Recorder]]:
    """A port routing to a recorder: every route, or (``full=False``) SWIM datagrams only."""
    rec = Recorder()
    if full:
        routes = Routes(
            swim=rec.datagram("swim"),
            broadcast=rec.datagram("broadcast"),
            push_pull=rec.push_pull,
            sync=rec.sync,
        )
    else:
        routes = Routes(swim=rec.datagram("swim"))
    async with open_gossip_port() as port, trio.open_nursery() as nursery:
        await nursery.start(port.serve, routes)
        yield port, rec
        nursery.cancel_scope.cancel()


def heard(rec: Recorder, count: int) -> bool:
    return len(rec.datagrams) == count


async def wait_for(cond: Callable[[], object]) -> None:
    with trio.fail_after(HANG):
        while not cond():  # noqa: ASYNC110 (the state is a counter; nothing to wait on)
            await trio.sleep(0.01)


async def exchange(addr: Addr, data: bytes) -> bytes:
    """Send ``data`` (then EOF) on a new connection; what the port sends back until it
    closes."""
    stream = await trio.open_tcp_stream(*addr)
    got = b""
    async with stream:
        with trio.fail_after(HANG):
            try:
                await stream.send_all(data)
                await stream.send_eof()
                while chunk := await stream.receive_some(1024):
                    got += chunk
            except trio.BrokenResourceError:  # closed with bytes unread: a reset
                pass
    return got


async def test_datagrams_go_by_their_tag_and_the_rest_is_counted() -> None:
    async with serving() as (port, rec), serving(full=False) as (swim_only, only):
        with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
            await sock.bind(("127.0.0.1", 0))
            me = sock.getsockname()[:2]
            for data in (SWIM_PACKET, CHANGESET, b"\xff\x00 no envelope"):
                await sock.sendto(data, port.addr)
                await sock.sendto(data, swim_only.addr)
            await wait_for(lambda: port.udp_stats["unrouted"] == 1)
            await wait_for(lambda: swim_only.udp_stats["unrouted"] == 2)
        assert rec.datagrams == [("swim", me, SWIM_PACKET), ("broadcast", me, CHANGESET)]
        assert only.datagrams == [("swim", me, SWIM_PACKET)]  # no broadcast route: unrouted
        assert port.last_seen(me) is not None
        port.forget(lambda addr: addr != me)
        assert port.last_seen(me) is None


async def test_addresses_heard_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(port_module, "MAX_HEARD", 2)
    async with serving() as (port, rec):
        senders = []
        for count in range(1, 4):  # one after the other, so the order heard is known
            sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            await sock.bind(("127.0.0.1", 0))
            senders.append(sock)
            await sock.sendto(SWIM_PACKET, port.addr)
            await wait_for(partial(heard, rec, count))
        first, second, third = (s.getsockname()[:2] for s in senders)
        for sock in senders:
            sock.close()
        assert port.last_seen(first) is None  # the least recently heard was forgotten
        assert port.last_seen(second) is not None and port.last_seen(third) is not None


async def test_the_first_frame_picks_push_pull_or_sync_and_nothing_past_it_is_read() -> None:
    async with serving() as (port, rec):
        assert await exchange(port.addr, frame(SWIM_PACKET) + b"tail") == b"ack:tail"
        hello = encode(SyncStart(ACTOR), cluster_id=CLUSTER)
        assert await exchange(port.addr, frame(hello)) == b"sync"
        assert [(route, first) for route, first, _ in rec.streams] == [
            ("push_pull", SWIM_PACKET),
            ("sync", hello),
        ]
        assert all(peer[0] == "127.0.0.1" for _, _, peer in rec.streams)
        assert port.tcp_stats["push_pull"] == 1 and port.tcp_stats["sync"] == 1


async def test_bad_first_frames_are_counted_closed_and_service_goes_on() -> None:
    async with serving(full=False) as (swim_only, _), serving() as (port, rec):
        # a membership-only node has no sync route: a sync hello is closed, counted
        hello = frame(encode(SyncStart(ACTOR), cluster_id=CLUSTER))
        assert await exchange(swim_only.addr, hello) == b""
        assert swim_only.tcp_stats["no_route"] == 1
        # too large, from the header alone; cut inside the frame
        assert await exchange(port.addr, HEADER.pack(0xFFFF_FFFF) + b"x" * 100) == b""
        assert await exchange(port.addr, HEADER.pack(50) + b"abc") == b""
        assert port.tcp_stats["bad_first_frame"] == 1 and port.tcp_stats["gone"] == 1
        assert rec.streams == []
        assert await exchange(port.addr, frame(SWIM_PACKET) + b"more") == b"ack:more"


async def test_a_first_frame_that_never_comes_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(port_module, "FIRST_FRAME_TIMEOUT", 0.2)
    async with serving() as (port, rec):
        stream = await trio.open_tcp_stream(*port.addr)
        async with stream:
            with trio.fail_after(HANG):
                assert await stream.receive_some(10) == b""  # closed by the port
        assert port.tcp_stats["first_frame_timeout"] == 1 and rec.streams == []


async def test_plaintext_connections_beyond_the_bound_are_closed_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(port_module, "MAX_PLAINTEXT_STREAMS", 2)
    async with serving() as (port, rec):
        idle = [await trio.open_tcp_stream(*port.addr) for _ in range(2)]  # hold both slots
        await trio.sleep(0.1)  # accepted
        assert await exchange(port.addr, frame(SWIM_PACKET) + b"tail") == b""
        assert port.tcp_stats["refused_busy"] == 1 and rec.streams == []
        for stream in idle:
            await stream.aclose()
        await wait_for(lambda: port._plaintext_streams == 0)  # slots freed
        assert await exchange(port.addr, frame(SWIM_PACKET) + b"tail") == b"ack:tail"
