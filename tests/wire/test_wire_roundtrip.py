"""Every message type survives encode -> decode unchanged; floats bit-exactly (NaN: documented)."""

from __future__ import annotations

import math
import struct

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from wire_strategies import (
    I64_MAX,
    I64_MIN,
    U64_MAX,
    changes,
    changesets,
    cluster_ids,
    messages,
    sync_requests,
    sync_states,
)

from corrosion_py import wire
from corrosion_py.crdt import Change
from corrosion_py.crdt.limits import MAX_CLOCK
from corrosion_py.errors import CorrosionError

A = bytes(range(16))
B = bytes(range(16, 32))


def _roundtrip(msg: wire.Message, cluster_id: int = 7) -> wire.Message:
    data = wire.encode(msg, cluster_id=cluster_id)
    return wire.decode(data, cluster_id=cluster_id)


@given(messages, cluster_ids)
def test_every_message_round_trips(msg: wire.Message, cluster_id: int) -> None:
    data = wire.encode(msg, cluster_id=cluster_id)
    assert wire.decode(data, cluster_id=cluster_id) == msg
    env = wire.decode_envelope(data)
    assert env == wire.Envelope(wire.PROTOCOL_VERSION, cluster_id, msg)
    # without the check the bytes are the same (the check only refuses)
    assert wire.encode(msg, cluster_id=cluster_id, check=False) == data


@given(changesets(max_changes=30))
def test_changesets_round_trip(cs: wire.Changeset) -> None:
    assert _roundtrip(cs) == cs


@given(sync_states)
def test_sync_state_round_trips_and_encodes_deterministically(state: wire.SyncState) -> None:
    assert _roundtrip(state) == state
    shuffled = wire.SyncState(
        state.actor_id,
        dict(reversed(state.heads.items())),
        dict(reversed(state.need.items())),
        {a: dict(reversed(p.items())) for a, p in reversed(state.partial_need.items())},
    )
    assert wire.encode(shuffled, cluster_id=1) == wire.encode(state, cluster_id=1)


@given(sync_requests)
def test_sync_request_round_trips(req: wire.SyncRequest) -> None:
    assert _roundtrip(req) == req


@pytest.mark.parametrize(
    "msg",
    [
        wire.Changeset(A, 1, (), (0, 0), 0, 0),
        wire.Changeset(A, MAX_CLOCK, (), (MAX_CLOCK, MAX_CLOCK), MAX_CLOCK, U64_MAX),
        wire.EmptyChangeset(A, (1, MAX_CLOCK), U64_MAX),
        wire.SyncState(A, {}, {}, {}),
        wire.SyncState(A, {B: 0}, {B: ()}, {B: {}}),
        wire.SyncRequest(()),
        wire.SyncRequest(((A, ()), (A, (wire.NeedFull((1, 1)),)))),
        wire.SyncStart(A),
        wire.SyncClock(0),
        wire.SyncClock(U64_MAX),
        wire.SyncRejection("different_cluster"),
        wire.SyncRejection("max_concurrency"),
        wire.SyncDone(),
    ],
    ids=repr,
)
def test_edge_messages_round_trip(msg: wire.Message) -> None:
    assert _roundtrip(msg, cluster_id=0) == msg
    assert _roundtrip(msg, cluster_id=wire.MAX_CLUSTER_ID) == msg


@pytest.mark.parametrize(
    "val",
    [None, I64_MIN, I64_MAX, -1, 0, 23, 24, -24, -25, "", "é机🦀", "\x00", b"", b"\x00\xff", 1.5],
    ids=repr,
)
def test_values_round_trip_with_their_type(val: wire.SqlValue) -> None:
    ch = Change("t", b"\x01\x09\x01", "c", val, 1, 1, A, 1, 0)
    got = _roundtrip(wire.Changeset(A, 1, (ch,), (0, 0), 0, 0))
    assert isinstance(got, wire.Changeset)
    assert type(got.changes[0].val) is type(val)
    assert got.changes[0] == ch


def _float_via_wire(f: float) -> float:
    ch = Change("t", b"", "c", f, 1, 1, A, 1, 0)
    got = _roundtrip(wire.Changeset(A, 1, (ch,), (0, 0), 0, 0))
    assert isinstance(got, wire.Changeset)
    val = got.changes[0].val
    assert type(val) is float
    return val


@given(st.floats(allow_nan=False))
def test_floats_round_trip_bit_exactly(f: float) -> None:
    assert struct.pack(">d", _float_via_wire(f)) == struct.pack(">d", f)


@pytest.mark.parametrize("f", [-0.0, 0.0, math.inf, -math.inf, 5e-324, 1.5, 0.1, 65504.0, 1e308])
def test_special_floats_round_trip_bit_exactly(f: float) -> None:
    assert struct.pack(">d", _float_via_wire(f)) == struct.pack(">d", f)


@pytest.mark.parametrize("bits", [0x7FF8000000000000, 0xFFF8000000000000, 0x7FF0000000000001])
def test_nan_arrives_as_a_nan(bits: int) -> None:
    """Documented: any NaN is sent as the canonical quiet NaN (payload and sign lost)."""
    (nan,) = struct.unpack(">d", bits.to_bytes(8, "big"))
    assert math.isnan(_float_via_wire(nan))


@given(changes)
def test_encoding_is_canonical_and_compact(ch: Change) -> None:
    ch = attrs.evolve(ch, site_id=A, db_version=1, seq=0)  # a change belongs to its changeset
    data = wire.encode(wire.Changeset(A, 1, (ch,), (0, 0), 0, 0), cluster_id=1)
    # a changeset is an array of 9 items: [1, cluster, tag, actor, version, changes, seqs, ...]
    assert data[0] == 0x80 | 9
    assert data[1:4] == bytes([wire.PROTOCOL_VERSION, 1, 1])


def test_complete_property() -> None:
    assert wire.Changeset(A, 1, (), (0, 4), 4, 0).complete
    assert not wire.Changeset(A, 1, (), (0, 3), 4, 0).complete
    assert not wire.Changeset(A, 1, (), (1, 4), 4, 0).complete


def test_errors_are_corrosion_errors() -> None:
    for cls in (
        wire.DecodeError,
        wire.UnknownMessageError,
        wire.WrongClusterError,
        wire.ProtocolVersionError,
        wire.MessageTooLarge,
        wire.FrameTooLarge,
        wire.EncodeError,
    ):
        assert issubclass(cls, CorrosionError)
    for cls in (wire.UnknownMessageError, wire.WrongClusterError, wire.FrameTooLarge):
        assert issubclass(cls, wire.DecodeError)
    assert not issubclass(wire.EncodeError, wire.DecodeError)


def test_peek_tag_routes_replication_messages_and_swim_packets() -> None:
    from corrosion_py.wire import EmptyChangeset, encode, peek_tag
    from corrosion_py.wire.swim import SWIM_TAGS, Gossip, NodeId, Packet, encode_packet

    for cluster in (0, 23, 24, 255, 256, 65535):
        data = encode(EmptyChangeset(b"a" * 16, (1, 2), 0), cluster_id=cluster)
        assert peek_tag(data) == 2
        swim = encode_packet(Packet(cluster, NodeId(b"b" * 16, ("h", 1)), 0, Gossip()))
        assert peek_tag(swim) in SWIM_TAGS
    for junk in (b"", b"\x00", b"\x83", b"\x83\x01", b"\x83\x01\x19\x01", b"\xa1\x01\x02", b"\x9f"):
        assert peek_tag(junk) is None
