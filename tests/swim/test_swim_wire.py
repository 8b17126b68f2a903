"""SWIM packets: round trips, exact sizes, refusals, fuzzing (only DecodeError, never a crash)."""

from __future__ import annotations

import random

import cbor2
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from swim_harness import CLUSTER_ID, actor, addr

from corrosion_py import wire
from corrosion_py.swim import Swim
from corrosion_py.wire.swim import (
    RUMOURS_HEADER_SLACK,
    Ack,
    Feed,
    Gossip,
    Join,
    MemberState,
    Nack,
    NodeId,
    Packet,
    Ping,
    PingReq,
    Rumour,
    decode_packet,
    encode_packet,
    packet_size,
    rumour_size,
)

_actors = st.binary(min_size=16, max_size=16)
_nodes = st.builds(
    NodeId,
    _actors,
    st.tuples(st.text(min_size=1, max_size=40), st.integers(0, 65_535)),
)
_incs = st.integers(0, 2**63 - 1)
_seqs = st.integers(0, 2**32 - 1)
_rumours = st.builds(Rumour, st.sampled_from(MemberState), _nodes, _incs, _actors)
_bodies = st.one_of(
    st.builds(Ping, _seqs, _actors),
    st.builds(Ack, _seqs),
    st.builds(PingReq, _seqs, _nodes),
    st.builds(Nack, _seqs),
    st.just(Join()),
    st.builds(Feed, st.lists(_rumours, max_size=5).map(tuple)),
    st.just(Gossip()),
)
_packets = st.builds(
    Packet,
    st.integers(0, 2**16 - 1),
    _nodes,
    _incs,
    _bodies,
    st.lists(_rumours, max_size=5).map(tuple),
)


@given(_packets)
def test_round_trip_and_exact_sizes(p: Packet) -> None:
    data = encode_packet(p)
    assert decode_packet(data) == p
    assert packet_size(p) == len(data)
    bare = Packet(p.cluster_id, p.sender, p.incarnation, p.body)
    assert len(data) <= packet_size(bare) + RUMOURS_HEADER_SLACK + sum(map(rumour_size, p.rumours))


def _decode_or_error(data: bytes) -> None:
    try:
        p = decode_packet(data, max_size=1 << 16)
    except wire.DecodeError as e:
        assert "unexpected error" not in str(e), f"a bug of ours showed as DecodeError: {e}"
        return
    assert decode_packet(encode_packet(p)) == p


@given(st.binary(max_size=300))
@example(b"")
@example(b"\x87\x01\x07\x20")
@example(b"\x9b" + b"\xff" * 8)
@settings(max_examples=300)
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    _decode_or_error(data)


@given(st.binary(max_size=200))
def test_random_tails_after_a_valid_header(tail: bytes) -> None:
    head = [1, CLUSTER_ID, 0, actor(1), "h", 1, 0]
    for n in range(3, 12):
        for tag in range(32, 40):
            prefix = cbor2.dumps([*head[:2], tag, *head[3:]])[1:]
            _decode_or_error(bytes([0x80 | n]) + prefix + tail)


_items = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False),
        st.text(max_size=5),
        st.binary(max_size=20),
    ),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=20,
)


@given(st.integers(31, 39), st.lists(_items, max_size=10))
def test_well_formed_cbor_with_wrong_fields(tag: int, fields: list[object]) -> None:
    _decode_or_error(cbor2.dumps([1, CLUSTER_ID, tag, *fields]))


@given(st.binary(max_size=200))
@settings(max_examples=100)
def test_garbage_never_hurts_a_node(data: bytes) -> None:
    s = Swim(actor_id=actor(0), addr=addr(0), cluster_id=CLUSTER_ID, rng=random.Random(0))
    s.join(0.0, [])
    s.handle_bytes(1.0, addr(1), data)


@pytest.mark.parametrize(
    ("packet", "error"),
    [
        (Packet(1, NodeId(b"short", ("h", 1)), 0, Gossip()), "actor id"),
        (Packet(1, NodeId(actor(1), ("", 1)), 0, Gossip()), "host"),
        (Packet(1, NodeId(actor(1), ("h", 70_000)), 0, Gossip()), "port"),
        (Packet(1, NodeId(actor(1), ("h", 1)), -1, Gossip()), "incarnation"),
        (Packet(1, NodeId(actor(1), ("h", 1)), 0, Ack(2**32)), "seq"),
    ],
)
def test_encode_refuses_what_decode_would(packet: Packet, error: str) -> None:
    with pytest.raises(wire.EncodeError, match=error):
        encode_packet(packet)


def test_replication_tags_are_unknown_here_and_swim_tags_there() -> None:
    with pytest.raises(wire.UnknownMessageError):
        decode_packet(wire.encode(wire.SyncDone(), cluster_id=CLUSTER_ID))
    swim_bytes = encode_packet(Packet(CLUSTER_ID, NodeId(actor(1), addr(1)), 0, Gossip()))
    with pytest.raises(wire.UnknownMessageError):
        wire.decode(swim_bytes)


def test_too_many_rumours_are_refused() -> None:
    r = Rumour(MemberState.ALIVE, NodeId(actor(1), addr(1)), 0, actor(1))
    with pytest.raises(wire.EncodeError, match="at most 255"):
        encode_packet(Packet(CLUSTER_ID, NodeId(actor(1), addr(1)), 0, Gossip(), (r,) * 256))
