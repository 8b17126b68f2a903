"""Bytes <-> messages: the envelope, cbor2's settings, size limits, and exact encoded sizes.

Wire form of every message (one CBOR array, no maps, no tags, definite lengths only)::

    [protocol_version, cluster_id, type_tag, *fields]

``protocol_version`` is ``PROTOCOL_VERSION`` (1), ``cluster_id`` an unsigned 16-bit integer,
``type_tag`` and the fields are listed in schema.py.

Rules:

- ``decode`` never raises anything but ``DecodeError`` and its subclasses, whatever the bytes:
  input longer than ``max_size`` is refused before decoding (``MessageTooLarge``); CBOR tags,
  indefinite lengths, nesting deeper than any message needs, non-string map keys and trailing
  bytes are refused; every field is checked (schema.py). Checks run in this order: size, CBOR,
  protocol version (``ProtocolVersionError``, the rest is not read), cluster id
  (``WrongClusterError``), tag (``UnknownMessageError``: skip and count), fields.
- ``encode`` produces canonical CBOR (shortest integers and floats, so equal messages give equal
  bytes) and, with ``check=True`` (the default), refuses a message that ``decode`` would refuse
  (``EncodeError``): a bad message fails at its sender, not at every receiver.
- Floats round-trip bit-exactly, -0.0 and ±inf included, except NaN: every NaN is sent as the
  canonical quiet NaN (payload and sign are lost; SQLite stores NaN as NULL anyway).
- Memory: decoding builds Python objects of at most ~64 bytes per input byte (an array of empty
  arrays is the worst case), so ``max_size`` bounds the memory a peer can make a decode use.

Cutting a version into changesets that fit ``budget`` bytes (exact, see ``changeset_overhead``)::

    len(encode(Changeset(..., changes=cs), cluster_id=k))
        == changeset_overhead(..., cluster_id=k, n_changes=len(cs))
           + sum(encoded_change_size(c) for c in cs)

A chunker that does not know the piece's final seq range yet can use ``MAX_CHANGESET_OVERHEAD``
(the overhead of any valid changeset with fewer than 65,536 changes): pieces whose changes sum
to at most ``budget - MAX_CHANGESET_OVERHEAD`` encode to at most ``budget`` bytes.
"""

from __future__ import annotations

import io
from typing import Any

import cbor2

from corrosion_py.aliases import Range
from corrosion_py.crdt import Change
from corrosion_py.crdt.limits import MAX_CLOCK
from corrosion_py.wire import layout
from corrosion_py.wire.errors import (
    DecodeError,
    EncodeError,
    MessageTooLarge,
    ProtocolVersionError,
    UnknownMessageError,
    WrongClusterError,
)
from corrosion_py.wire.messages import Changeset, Envelope, Message

PROTOCOL_VERSION = 1
MAX_CLUSTER_ID = 2**16 - 1
MAX_MESSAGE_SIZE = 4 * 1024 * 1024
"""Default input limit of ``decode``: room for one large blob value; callers pass their own
(a UDP datagram's size, a TCP frame limit)."""

# The deepest valid message (SyncState's partial_need) nests 7 arrays; refuse anything deeper
# inside cbor2 itself, so hostile nesting costs neither recursion nor memory.
_MAX_DEPTH = 8

# Tags cbor2 decodes itself (found by probing tags 0..70,000 against cbor2 6.3; a test re-checks
# this list). Each gets a decoder that refuses, and tag_hook refuses every other tag, so no
# semantic decoding (bignums, bigfloats, regexes, shared references...) ever runs on peer input.
_CBOR2_BUILTIN_TAGS = (
    0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004,
    43000, 55799,
)  # fmt: skip

_UNEXPECTED = "unexpected error while decoding"  # a bug of ours; tests assert it never shows


class _TagRefused(Exception):
    """Raised inside cbor2 to abort on a tag; cbor2 wraps it in CBORDecodeError."""


def _refuse_semantic(value: object, immutable: bool) -> object:
    raise _TagRefused("CBOR tags are not part of this protocol")


def _refuse_tag(tag: cbor2.CBORTag, immutable: bool) -> object:
    raise _TagRefused(f"CBOR tag {tag.tag} is not part of this protocol")


_SEMANTIC_DECODERS = dict.fromkeys(_CBOR2_BUILTIN_TAGS, _refuse_semantic)


def _dumps(obj: object) -> bytes:
    return cbor2.dumps(obj, canonical=True)


def _loads(data: bytes) -> Any:
    """One CBOR item filling all of ``data``, with every cbor2 extension refused."""
    fp = io.BytesIO(data)
    item = cbor2.CBORDecoder(
        fp,
        tag_hook=_refuse_tag,
        semantic_decoders=_SEMANTIC_DECODERS,
        max_depth=_MAX_DEPTH,
        allow_indefinite=False,
        strict_hashable_types=True,
    ).decode()
    if fp.tell() != len(data):
        raise DecodeError(f"{len(data) - fp.tell()} bytes of junk after the message")
    return item


def _check_cluster_id(cluster_id: int) -> None:
    if type(cluster_id) is not int or not 0 <= cluster_id <= MAX_CLUSTER_ID:
        raise EncodeError(f"cluster_id must be an integer in [0, {MAX_CLUSTER_ID}]")


def encode(msg: Message, *, cluster_id: int, check: bool = True) -> bytes:
    """The wire bytes of ``msg`` for cluster ``cluster_id``.

    With ``check`` (default) the message is verified against the decoder's rules first, so
    a message this node sends is one its peers accept; pass ``check=False`` only on a hot path
    whose messages were built from already-checked data.
    """
    _check_cluster_id(cluster_id)
    try:
        tag, fields = layout.to_wire(msg)
        if check:
            layout.from_wire(tag, fields)
        return _dumps([PROTOCOL_VERSION, cluster_id, tag, *fields])
    except DecodeError as e:
        raise EncodeError(f"cannot send {type(msg).__name__}: {e}") from e
    except (TypeError, ValueError, AttributeError, IndexError, cbor2.CBOREncodeError) as e:
        raise EncodeError(f"cannot send {type(msg).__name__}: {e}") from e


def decode_envelope(
    data: bytes | bytearray | memoryview, *, max_size: int = MAX_MESSAGE_SIZE
) -> Envelope:
    """The message in ``data`` with its protocol version and cluster id (not compared).

    For the sync server, which answers a SyncStart from another cluster with a rejection; other
    callers use ``decode(..., cluster_id=...)``. Raises only ``DecodeError`` subclasses.
    """
    return _decode(data, None, max_size)


def decode(
    data: bytes | bytearray | memoryview,
    *,
    cluster_id: int | None = None,
    max_size: int = MAX_MESSAGE_SIZE,
) -> Message:
    """The message in ``data``; ``WrongClusterError`` if it is for another ``cluster_id``.

    ``cluster_id=None`` accepts any cluster. Raises only ``DecodeError`` subclasses.
    """
    return _decode(data, cluster_id, max_size).message


def load_item(data: bytes | bytearray | memoryview, max_size: int) -> Any:
    """The one CBOR item of ``data``, refused before decoding when longer than ``max_size``
    (SWIM packets and replication messages share this first step). Raises only
    ``DecodeError``s."""
    try:
        size = len(data)
    except Exception as e:
        raise DecodeError(f"input must be bytes, got {type(data).__name__}") from e
    if size > max_size:
        raise MessageTooLarge(size, max_size)
    try:
        return _loads(bytes(data))
    except DecodeError:
        raise
    except Exception as e:  # cbor2 raises many types (see module docstring); all mean "bad input"
        raise DecodeError(f"not a valid CBOR item: {e}") from e


def _decode(
    data: bytes | bytearray | memoryview, cluster_id: int | None, max_size: int
) -> Envelope:
    item = load_item(data, max_size)
    try:
        return _envelope(item, cluster_id)
    except DecodeError:
        raise
    except Exception as e:
        raise DecodeError(f"{_UNEXPECTED}: {type(e).__name__}: {e}") from e


def _envelope(item: Any, cluster_id: int | None) -> Envelope:
    if type(item) is not list or len(item) < 3:
        raise DecodeError("a message is an array [protocol_version, cluster_id, tag, ...]")
    protocol, cluster, tag, *fields = item
    if type(protocol) is not int or protocol != PROTOCOL_VERSION:
        raise ProtocolVersionError(protocol if type(protocol) is int else None, PROTOCOL_VERSION)
    if type(cluster) is not int or not 0 <= cluster <= MAX_CLUSTER_ID:
        raise DecodeError(f"cluster id must be an integer in [0, {MAX_CLUSTER_ID}]")
    if cluster_id is not None and cluster != cluster_id:
        raise WrongClusterError(cluster_id, cluster)
    if type(tag) is not int:
        raise DecodeError(f"type tag must be an integer, got {type(tag).__name__}")
    if tag not in layout.CODECS:
        raise UnknownMessageError(tag)
    return Envelope(protocol, cluster, layout.from_wire(tag, fields))


# ---------------------------------------------------------------------------------------------
# Exact sizes, for cutting changesets to a byte budget


def peek_tag(data: bytes) -> int | None:
    """The type tag of an encoded envelope, read from its first bytes without decoding the rest
    (None when they do not start like an envelope). One UDP socket carries SWIM packets and
    changesets; this routes a datagram to the decoder that owns its tag."""
    if not data or data[0] >> 5 != 4:  # major type 4: an array
        return None
    pos = _skip_head(data, 0)
    for _ in range(2):  # protocol version, cluster id
        if pos is None or pos >= len(data) or data[pos] >> 5 != 0:
            return None
        pos = _skip_head(data, pos)
    if pos is None or pos >= len(data) or data[pos] >> 5 != 0:
        return None
    info = data[pos] & 0x1F
    if info < 24:
        return info
    if info == 24 and pos + 1 < len(data):
        return data[pos + 1]
    return None


def _skip_head(data: bytes, pos: int) -> int | None:
    """The position after the head (major type and argument) of the item at ``pos``."""
    info = data[pos] & 0x1F
    if info < 24:
        return pos + 1
    if info <= 27:
        end = pos + 1 + (1 << (info - 24))
        return end if end <= len(data) else None
    return None


def encoded_change_size(change: Change) -> int:
    """The exact number of bytes ``change`` adds to an encoded changeset (its 9-item array)."""
    try:
        return len(_dumps(layout.change_to_wire(change)))
    except (TypeError, ValueError, AttributeError, IndexError, cbor2.CBOREncodeError) as e:
        raise EncodeError(f"cannot encode change: {e}") from e


def _array_header_size(n: int) -> int:
    """Bytes of a CBOR array header announcing ``n`` items."""
    if n < 24:
        return 1
    if n < 2**8:
        return 2
    if n < 2**16:
        return 3
    if n < 2**32:
        return 5
    return 9


def changeset_overhead(
    *,
    cluster_id: int,
    actor_id: bytes,
    version: int,
    seqs: Range,
    last_seq: int,
    ts: int,
    n_changes: int,
) -> int:
    """Bytes of an encoded changeset besides its changes' own arrays (see the module docstring).

    Everything but the changes: envelope, actor id, version, seqs, last_seq, ts, and the header
    of the changes array, which grows with ``n_changes`` (1 byte below 24, 3 below 65,536).
    """
    empty = Changeset(actor_id, version, (), seqs, last_seq, ts)
    return len(encode(empty, cluster_id=cluster_id)) - 1 + _array_header_size(n_changes)


MAX_CHANGESET_OVERHEAD = changeset_overhead(
    cluster_id=MAX_CLUSTER_ID,
    actor_id=bytes(16),
    version=MAX_CLOCK,
    seqs=(MAX_CLOCK, MAX_CLOCK),
    last_seq=MAX_CLOCK,
    ts=layout.U64_MAX,
    n_changes=2**16 - 1,
)
"""The largest ``changeset_overhead`` of any valid changeset with fewer than 65,536 changes."""
