"""The trio shell of sealed gossip on real sockets: sealed datagrams fit the endpoint to the
byte, `SecureStream` behaves as a stream (and breaks on a forged record), handshakes that stall
are bounded, and SWIM with push-pull runs sealed between keyed members only."""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from corrosion_py.net import pushpull
from corrosion_py.net.membership import Membership
from corrosion_py.net.port import Routes, open_gossip_port
from corrosion_py.net.secure import GossipSecurity, HandshakeFailed, SecureStream
from corrosion_py.net.udp import UdpEndpoint
from corrosion_py.swim import MemberState, Swim
from corrosion_py.swim.presets import LOCAL
from corrosion_py.wire import DecodeError, decode, peek_tag
from corrosion_py.wire.keyring import Keyring
from corrosion_py.wire.seal import DROP_REASONS, OVERHEAD
from corrosion_py.wire.swim import SWIM_TAGS, decode_packet


async def wait_for(cond: Callable[[], object], seconds: float = 20.0) -> None:
    """Poll counters (nothing to wait on) until a bound that only catches hangs."""
    with trio.fail_after(seconds):
        while not cond():  # noqa: ASYNC110
            await trio.sleep(0.02)


RING = Keyring.of([b"k" * 32])
OTHER = Keyring.of([b"o" * 32])
CLUSTER = 7


async def test_a_payload_of_max_payload_bytes_fits_one_sealed_datagram_and_one_more_does_not() -> (
    None
):
    sec_a, sec_b = GossipSecurity(RING, CLUSTER), GossipSecurity(RING, CLUSTER)
    async with UdpEndpoint.open(security=sec_a) as a, UdpEndpoint.open(security=sec_b) as b:
        got: list[tuple[tuple[str, int], bytes]] = []
        b.handler = lambda addr, data: got.append((addr, data))
        assert a.max_payload == 1200 - OVERHEAD
        assert a.send(b.addr, b"x" * a.max_payload)
        await wait_for(lambda: got)
        assert got == [(a.addr, b"x" * a.max_payload)]
        assert not a.send(b.addr, b"x" * (a.max_payload + 1))
        assert a.stats.dropped_too_large == 1
        # plaintext from the same port is dropped before anyone reads it
        async with UdpEndpoint.open() as plain:
            plain.send(b.addr, b"\x85plaintext")
            await wait_for(lambda: sec_b.dropped["plaintext"])
        assert b.stats.dropped_unsealed == 1 and b.stats.received == 1


def receive_path(security: GossipSecurity, data: bytes) -> object:
    """What a node does with a datagram: open it, route it by tag, decode it."""
    payload = security.open(("10.0.0.9", 8787), data, 1_800_000_000.0)
    if payload is None:
        return None
    tag = peek_tag(payload)
    if tag in SWIM_TAGS:
        return decode_packet(payload, max_size=1200)
    return decode(payload, cluster_id=CLUSTER, max_size=1200)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=1300), flip=st.integers(0, 2000), xor=st.integers(1, 255))
def test_fuzz_the_receive_path_drops_forgeries_and_mutations_by_reason(
    data: bytes, flip: int, xor: int
) -> None:
    receiver = GossipSecurity(RING, CLUSTER)
    assert receive_path(receiver, data) is None
    sender = GossipSecurity(RING, CLUSTER)
    sealed = bytearray(sender.seal(("10.0.0.1", 1), data[:1100], 1_800_000_000.0))
    sealed[flip % len(sealed)] ^= xor
    assert receive_path(receiver, bytes(sealed)) is None
    assert sum(receiver.dropped.values()) == 2 and set(receiver.dropped) <= set(DROP_REASONS)


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=1100))
def test_fuzz_sealed_garbage_from_a_key_holder_only_fails_decoding(payload: bytes) -> None:
    """A key holder's bytes open; whatever they hold, decoding raises only DecodeError."""
    now = 1_800_000_000.0
    sealed = GossipSecurity(RING, CLUSTER).seal(("10.0.0.1", 1), payload, now)
    assert GossipSecurity(RING, CLUSTER).open(("10.0.0.1", 1), sealed, now) == payload
    try:
        message = receive_path(GossipSecurity(RING, CLUSTER), sealed)
    except DecodeError:
        return
    assert message is not None  # it decoded: a valid message, which the layers above bound


async def secure_pair() -> tuple[SecureStream, SecureStream, GossipSecurity]:
    client_raw, server_raw = trio.testing.memory_stream_pair()
    client_sec, server_sec = GossipSecurity(RING, CLUSTER), GossipSecurity(RING, CLUSTER)
    out: list[SecureStream | None] = []
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            out.append(await server_sec.server(server_raw, ("peer", 1)))

        nursery.start_soon(serve)
        client = await client_sec.client(client_raw, ("server", 2))
    server = out[0]
    assert server is not None
    return client, server, server_sec


async def test_secure_stream_is_a_stream_that_respects_max_bytes() -> None:
    client, server, _ = await secure_pair()
    data = os.urandom(100_000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send_all, data)
        got = b""
        while len(got) < len(data):
            chunk = await server.receive_some(1000)
            assert 0 < len(chunk) <= 1000
            got += chunk
    assert got == data
    await client.aclose()
    assert await server.receive_some() == b""


async def test_a_forged_record_breaks_the_stream_and_is_counted() -> None:
    client, server, server_sec = await secure_pair()
    await client.transport.send_all(b"\x00\x20" + os.urandom(32))
    with pytest.raises(trio.BrokenResourceError):
        await server.receive_some()
    assert server_sec.streams["bad_record"] == 1


async def test_a_silent_client_is_dropped_after_the_handshake_timeout() -> None:
    _, server_raw = trio.testing.memory_stream_pair()
    sec = GossipSecurity(RING, CLUSTER, handshake_timeout=0.2)
    with trio.fail_after(10):
        assert await sec.server(server_raw, ("peer", 1)) is None
    assert sec.streams["failed_timeout"] == 1


@asynccontextmanager
async def node(seed: int, keyring: Keyring) -> AsyncIterator[Membership]:
    security = GossipSecurity(keyring, CLUSTER)
    async with (
        open_gossip_port(security=security) as port,
        trio.open_nursery() as nursery,
    ):
        core = Swim(
            actor_id=os.urandom(16),
            addr=port.addr,
            cluster_id=CLUSTER,
            rng=random.Random(seed),
            config=LOCAL,
        )
        m = Membership(core, port.endpoint, security=security)
        await nursery.start(m.run)
        routes = Routes(swim=m.handle_datagram, push_pull=m.serve_push_pull)
        await nursery.start(port.serve, routes)
        yield m
        nursery.cancel_scope.cancel()


async def test_sealed_swim_and_push_pull_between_keyed_members_only() -> None:
    async with node(1, RING) as a, node(2, RING) as b, node(3, OTHER) as stranger:
        await a.join([])
        await b.join([a.endpoint.addr])
        await stranger.join([a.endpoint.addr])
        await wait_for(lambda: b.push_pull_stats["ok"] and a.push_pull_stats["served"])
        info = a.core.member(b.core.actor_id)
        assert info is not None and info.state is MemberState.ALIVE
        assert a.core.member(stranger.core.actor_id) is None
        assert stranger.members() == []
        assert a.endpoint.security is not None
        assert a.endpoint.security.dropped["unknown_key"] >= 1
        # a push-pull from the stranger's side fails its handshake and is counted on both sides
        with pytest.raises(HandshakeFailed, match="does not hold our primary key"):
            await pushpull.request(
                a.endpoint.addr, stranger.core, stranger.merge, stranger.security
            )
        await wait_for(lambda: a.endpoint.security.streams["failed_unknown_key"])  # type: ignore[union-attr]
