"""The broadcast tree's datagram (tag 9): its layout round trips, and its claims are bounded
before anything is built from them."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corrosion_py.crdt.limits import MAX_CLOCK
from corrosion_py.wire import DecodeError, decode, encode
from corrosion_py.wire.layout import BROADCAST, MAX_BROADCAST_PIECES, MAX_BROADCAST_RANGES
from corrosion_py.wire.messages import Broadcast

CLUSTER = 7
A = bytes(range(16))

versions = st.tuples(st.integers(1, MAX_CLOCK), st.integers(0, 1000)).map(
    lambda t: (t[0], min(MAX_CLOCK, t[0] + t[1]))
)
entries = st.lists(
    st.tuples(st.binary(min_size=16, max_size=16), st.lists(versions, max_size=4).map(tuple)),
    max_size=4,
).map(tuple)


@settings(max_examples=200, deadline=None)
@given(
    gossip=st.lists(st.binary(max_size=50), max_size=5).map(tuple),
    ihave=entries,
    graft=entries,
    prune=st.booleans(),
    join=st.booleans(),
)
def test_a_broadcast_round_trips(
    gossip: tuple[bytes, ...],
    ihave: tuple[tuple[bytes, tuple[tuple[int, int], ...]], ...],
    graft: tuple[tuple[bytes, tuple[tuple[int, int], ...]], ...],
    prune: bool,
    join: bool,
) -> None:
    msg = Broadcast(gossip, ihave, graft, prune, join)
    assert decode(encode(msg, cluster_id=CLUSTER), cluster_id=CLUSTER) == msg


def raw(*fields: object) -> bytes:
    return cbor2.dumps([1, CLUSTER, BROADCAST, *fields])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (raw([b"p"] * (MAX_BROADCAST_PIECES + 1), [], [], False, False), "at most"),
        (raw([], [[A, [[1, 1]] * (MAX_BROADCAST_RANGES + 1)]], [], False, False), "ranges"),
        (raw([], [[A, [[1, MAX_CLOCK + 1]]]], [], False, False), "versions end"),
        (raw([], [], [[A, [[5, 4]]]], False, False), "start 5 > end 4"),
        (raw([], [[b"short", [[1, 1]]]], [], False, False), "16 bytes"),
        (raw(["text"], [], [], False, False), "byte string"),
        (raw([], [], [], 1, False), "booleans"),
        (raw([], [], [], False), "5 fields"),
    ],
)
def test_absurd_broadcasts_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(data, cluster_id=CLUSTER)
