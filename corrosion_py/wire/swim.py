"""SWIM membership packets and their bytes: one datagram is one ``Packet``.

Wire form (one CBOR array, same envelope and cbor2 settings as codec.py)::

    [protocol_version, cluster_id, tag, sender_actor, sender_host, sender_port, incarnation,
     *body_fields, [rumour, ...]]

    tag  body       fields
    32   Ping       seq, target_actor
    33   Ack        seq
    34   PingReq    seq, target_actor, target_host, target_port
    35   Nack       seq
    36   Join       (no fields)
    37   Feed       [rumour, ...]       (a member list: the answer to Join)
    38   Gossip     (no fields)         (a packet that only carries rumours)

    rumour = [state, actor_id, host, port, incarnation, source_actor]
    state  = 0 alive | 1 suspect | 2 dead | 3 left

Tags start at 32 so they never collide with the replication messages of schema.py (1..8): one
UDP socket can carry both, and each decoder refuses the other's tags as unknown.

Rules: ``decode_packet`` raises only ``DecodeError`` subclasses, whatever the bytes (size first,
then CBOR, protocol version, cluster id range, tag, fields); it does *not* compare the cluster id
with the node's: the SWIM core does, so that it can count packets from other clusters. Actor ids
are 16 bytes; hosts are text of at most ``MAX_HOST_LEN`` characters; ports are in [0, 65535];
seqs in [0, 2**32-1]; incarnations in [0, 2**63-1]; a packet carries at most ``MAX_RUMOURS``
rumours and a feed at most ``MAX_RUMOURS`` members. ``encode_packet`` is canonical (equal packets
give equal bytes) and, with ``check=True``, refuses what ``decode_packet`` would refuse.

Sizes: ``encode_packet(p)`` is exactly ``packet_size(p)`` bytes, and adding rumours to a packet
without rumours grows it by the sum of their ``rumour_size`` plus at most ``RUMOURS_HEADER_SLACK``
(the rumour array's length header grows from 1 to 3 bytes), which is how the core fills a packet
up to its size cap.

Speed: a rumour is piggybacked a dozen times or more by every node that queues it, so each
``Rumour`` encodes itself once (``Rumour.wire``, cached) and a packet's bytes are its header items
encoded by cbor2 followed by the rumour array spliced from those cached bytes. A CBOR array is its
length header followed by its items' encodings, so the splice gives exactly the bytes cbor2 would.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import Any, TypeAlias

import attrs
import cbor2

from corrosion_py.addr import Addr
from corrosion_py.wire.codec import MAX_CLUSTER_ID, PROTOCOL_VERSION, _dumps, load_item
from corrosion_py.wire.errors import (
    DecodeError,
    EncodeError,
    ProtocolVersionError,
    UnknownMessageError,
)
from corrosion_py.wire.layout import I64_MAX, _actor, _array, _int, _kind, _list

MAX_DATAGRAM = 65_507
"""Default input limit of ``decode_packet``: the largest UDP payload."""
MAX_HOST_LEN = 253
MAX_RUMOURS = 255
U32_MAX = 2**32 - 1
RUMOURS_HEADER_SLACK = 2

PING, ACK, PING_REQ, NACK, JOIN, FEED, GOSSIP = range(32, 39)
SWIM_TAGS = frozenset(range(32, 39))
"""The tags this module owns (a driver multiplexing one socket routes on them)."""

_HEADER = 7  # items before the body: version, cluster, tag, actor, host, port, incarnation


class MemberState(enum.IntEnum):
    """A member's state as every node sees it; the wire carries the number."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


@attrs.frozen
class NodeId:
    """Who a member is: its actor id (16 bytes, stable across restarts) and gossip address."""

    actor_id: bytes
    addr: Addr


@attrs.frozen
class Rumour:
    """A claim about a member: ``node`` is ``state`` at ``incarnation``, said first by ``source``.

    ``source`` is the accuser of a suspect/dead rumour (suspicion confirmations are counted per
    distinct source) and the member itself for alive and left.
    """

    state: MemberState
    node: NodeId
    incarnation: int
    source: bytes

    @functools.cached_property
    def wire(self) -> bytes:
        """The rumour's encoded bytes, as they appear inside a packet (computed once)."""
        return _dumps(rumour_to_wire(self))


@attrs.frozen
class Ping:
    """Are you alive? ``target`` guards against a different node now living at the address."""

    seq: int
    target: bytes


@attrs.frozen
class Ack:
    """Answer to a Ping (or forwarded by a ping-req relay under the requester's seq)."""

    seq: int


@attrs.frozen
class PingReq:
    """Please ping ``target`` for me; answer Ack(seq) if it answers, Nack(seq) if it does not."""

    seq: int
    target: NodeId


@attrs.frozen
class Nack:
    """The relay did not hear from the target in time (Lifeguard: the relay itself is fine)."""

    seq: int


@attrs.frozen
class Join:
    """A new node asks a bootstrap address for the member list."""


@attrs.frozen
class Feed:
    """The member list (as much as fits in one packet), answering Join."""

    members: tuple[Rumour, ...]


@attrs.frozen
class Gossip:
    """A packet sent only to carry rumours."""


Body: TypeAlias = Ping | Ack | PingReq | Nack | Join | Feed | Gossip


@attrs.frozen
class Packet:
    """One datagram: who sent it (at which incarnation), its body, and piggybacked rumours."""

    cluster_id: int
    sender: NodeId
    incarnation: int
    body: Body
    rumours: tuple[Rumour, ...] = ()


# ---------------------------------------------------------------------------------------------
# Field rules


def _host(x: object) -> str:
    if type(x) is not str or not 0 < len(x) <= MAX_HOST_LEN:
        raise DecodeError(f"host must be text of 1..{MAX_HOST_LEN} characters, got {_kind(x)}")
    return x


def _node(actor: object, host: object, port: object) -> NodeId:
    return NodeId(_actor(actor), (_host(host), _int(port, 0, 65_535, "port")))


def _seq(x: object) -> int:
    return _int(x, 0, U32_MAX, "seq")


def _incarnation(x: object) -> int:
    return _int(x, 0, I64_MAX, "incarnation")


def _node_to(n: NodeId) -> list[object]:
    return [n.actor_id, n.addr[0], n.addr[1]]


def rumour_to_wire(r: Rumour) -> list[object]:
    """The 6-item array of a rumour."""
    return [int(r.state), *_node_to(r.node), r.incarnation, r.source]


def _rumour_from(x: object) -> Rumour:
    state, actor, host, port, inc, source = _array(x, 6, "rumour")
    return Rumour(
        MemberState(_int(state, 0, len(MemberState) - 1, "member state")),
        _node(actor, host, port),
        _incarnation(inc),
        _actor(source, "rumour source"),
    )


def _rumours_from(x: object, what: str) -> tuple[Rumour, ...]:
    items = _list(x, what)
    if len(items) > MAX_RUMOURS:
        raise DecodeError(f"{what} has {len(items)} entries, at most {MAX_RUMOURS} allowed")
    return tuple(_rumour_from(r) for r in items)


# tag -> (class, number of body fields, to_wire, from_wire)
_BodyCodec = tuple[type, int, Callable[[Any], list[object]], Callable[[list[Any]], Body]]
_BODIES: dict[int, _BodyCodec] = {
    PING: (Ping, 2, lambda b: [b.seq, b.target], lambda f: Ping(_seq(f[0]), _actor(f[1]))),
    ACK: (Ack, 1, lambda b: [b.seq], lambda f: Ack(_seq(f[0]))),
    PING_REQ: (
        PingReq,
        4,
        lambda b: [b.seq, *_node_to(b.target)],
        lambda f: PingReq(_seq(f[0]), _node(f[1], f[2], f[3])),
    ),
    NACK: (Nack, 1, lambda b: [b.seq], lambda f: Nack(_seq(f[0]))),
    JOIN: (Join, 0, lambda b: [], lambda f: Join()),
    FEED: (
        Feed,
        1,
        lambda b: [[rumour_to_wire(r) for r in b.members]],
        lambda f: Feed(_rumours_from(f[0], "feed")),
    ),
    GOSSIP: (Gossip, 0, lambda b: [], lambda f: Gossip()),
}
_TAGS: dict[type, int] = {cls: tag for tag, (cls, *_) in _BODIES.items()}


def _head_to_wire(p: Packet) -> list[object]:
    """Every item of the packet's array but the last (its rumours)."""
    tag = _TAGS.get(type(p.body))
    if tag is None:
        raise EncodeError(f"{type(p.body).__name__} is not a SWIM packet body")
    body = _BODIES[tag][2](p.body)
    return [PROTOCOL_VERSION, p.cluster_id, tag, *_node_to(p.sender), p.incarnation, *body]


def _to_wire(p: Packet) -> list[object]:
    return [*_head_to_wire(p), [rumour_to_wire(r) for r in p.rumours]]


def _array_head(n: int) -> bytes:
    """CBOR's header of an array of ``n`` items (major type 4, shortest form)."""
    if n < 24:
        return bytes((0x80 + n,))
    if n < 2**8:
        return bytes((0x98, n))
    if n < 2**16:
        return b"\x99" + n.to_bytes(2, "big")
    return b"\x9a" + n.to_bytes(4, "big")


def _encode(p: Packet) -> bytes:
    """The packet's bytes: its head items with an empty rumour array (the encoding's last byte,
    0x80), which is then replaced by the real array spliced from the rumours' cached bytes."""
    head = _dumps([*_head_to_wire(p), []])
    rumours = p.rumours
    if not rumours:
        return head
    return b"".join((head[:-1], _array_head(len(rumours)), *[r.wire for r in rumours]))


def _from_wire(item: Any) -> Packet:
    if type(item) is not list or len(item) < 3:
        raise DecodeError("a packet is an array [protocol_version, cluster_id, tag, ...]")
    protocol, cluster, tag = item[:3]
    if type(protocol) is not int or protocol != PROTOCOL_VERSION:
        raise ProtocolVersionError(protocol if type(protocol) is int else None, PROTOCOL_VERSION)
    cluster_id = _int(cluster, 0, MAX_CLUSTER_ID, "cluster id")
    if type(tag) is not int:
        raise DecodeError(f"type tag must be an integer, got {_kind(tag)}")
    if tag not in _BODIES:
        raise UnknownMessageError(tag)
    cls, n, _, build = _BODIES[tag]
    if len(item) != _HEADER + n + 1:
        raise DecodeError(f"a {cls.__name__} packet has {_HEADER + n + 1} items, got {len(item)}")
    actor, host, port, inc = item[3:_HEADER]
    return Packet(
        cluster_id=cluster_id,
        sender=_node(actor, host, port),
        incarnation=_incarnation(inc),
        body=build(item[_HEADER : _HEADER + n]),
        rumours=_rumours_from(item[-1], "rumours"),
    )


def encode_packet(p: Packet, *, check: bool = True) -> bytes:
    """The datagram bytes of ``p``; with ``check``, refuse what a receiver would refuse."""
    try:
        if check:
            _from_wire(_to_wire(p))
        return _encode(p)
    except (
        DecodeError,
        TypeError,
        ValueError,
        AttributeError,
        IndexError,
        cbor2.CBOREncodeError,
    ) as e:
        raise EncodeError(f"cannot send {type(p.body).__name__} packet: {e}") from e


def decode_packet(data: bytes | bytearray | memoryview, *, max_size: int = MAX_DATAGRAM) -> Packet:
    """The packet in ``data`` (cluster id not compared). Raises only ``DecodeError``s."""
    item = load_item(data, max_size)
    try:
        return _from_wire(item)
    except DecodeError:
        raise
    except Exception as e:
        raise DecodeError(f"unexpected error while decoding: {type(e).__name__}: {e}") from e


def packet_size(p: Packet) -> int:
    """Exact encoded size of ``p`` in bytes (unchecked encoding)."""
    return len(encode_packet(p, check=False))


def rumour_size(r: Rumour) -> int:
    """Exact number of bytes ``r`` adds to a packet's rumour array (besides its header)."""
    return len(r.wire)
