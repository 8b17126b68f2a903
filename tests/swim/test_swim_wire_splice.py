"""The spliced encoding (cached rumour bytes after cbor2's header) is byte for byte what cbor2
gives for the whole packet array, whatever the rumour count (array headers of 1 and 2 bytes)."""

from __future__ import annotations

import cbor2
from hypothesis import given
from hypothesis import strategies as st

from corrosion_py.wire.codec import PROTOCOL_VERSION
from corrosion_py.wire.swim import (
    GOSSIP,
    PING,
    Gossip,
    MemberState,
    NodeId,
    Packet,
    Ping,
    Rumour,
    encode_packet,
    rumour_to_wire,
)

_actors = st.binary(min_size=16, max_size=16)
_nodes = st.builds(
    NodeId, _actors, st.tuples(st.text(min_size=1, max_size=40), st.integers(0, 65_535))
)
_rumours = st.builds(
    Rumour, st.sampled_from(MemberState), _nodes, st.integers(0, 2**63 - 1), _actors
)


@given(
    sender=_nodes,
    incarnation=st.integers(0, 2**63 - 1),
    ping=st.none() | st.tuples(st.integers(0, 2**32 - 1), _actors),
    rumours=st.lists(_rumours, max_size=40),
)
def test_spliced_bytes_equal_cbor2_of_the_whole_array(
    sender: NodeId,
    incarnation: int,
    ping: tuple[int, bytes] | None,
    rumours: list[Rumour],
) -> None:
    body = Gossip() if ping is None else Ping(*ping)
    packet = Packet(9, sender, incarnation, body, tuple(rumours))
    fields: list[object] = [] if ping is None else list(ping)
    item = [
        PROTOCOL_VERSION,
        9,
        GOSSIP if ping is None else PING,
        sender.actor_id,
        *sender.addr,
        incarnation,
        *fields,
        [rumour_to_wire(r) for r in rumours],
    ]
    expected = cbor2.dumps(item, canonical=True)
    assert encode_packet(packet, check=False) == expected
    for r in rumours:  # the cached bytes are reused, never stale
        assert r.wire == cbor2.dumps(rumour_to_wire(r), canonical=True)
    assert encode_packet(packet, check=False) == expected
