"""Replication messages and their bytes: sans-IO (no trio, no sockets), cbor2 arrays, frames.

    data = wire.encode(wire.SyncClock(ts), cluster_id=7)     # one datagram or frame payload
    msg = wire.decode(data, cluster_id=7, max_size=65_507)    # only DecodeError on bad input
    reader = wire.FrameReader(max_frame=wire.MAX_MESSAGE_SIZE)
    for payload in reader.feed(chunk): ...                    # TCP: length-prefixed frames

Modules: ``messages`` (the records), ``schema`` (each message's array layout and field rules),
``codec`` (envelope, limits, exact sizes), ``framing`` (TCP frames), ``errors``.
"""

from corrosion_py.aliases import Range, SqlValue
from corrosion_py.wire.codec import (
    MAX_CHANGESET_OVERHEAD,
    MAX_CLUSTER_ID,
    MAX_MESSAGE_SIZE,
    PROTOCOL_VERSION,
    changeset_overhead,
    decode,
    decode_envelope,
    encode,
    encoded_change_size,
    peek_tag,
)
from corrosion_py.wire.errors import (
    DecodeError,
    EncodeError,
    FrameTooLarge,
    MessageTooLarge,
    ProtocolVersionError,
    UnknownMessageError,
    WireError,
    WrongClusterError,
)
from corrosion_py.wire.framing import FrameReader, frame
from corrosion_py.wire.messages import (
    REJECTION_REASONS,
    Changeset,
    EmptyChangeset,
    Envelope,
    Message,
    Need,
    NeedFull,
    NeedPartial,
    RejectionReason,
    SyncClock,
    SyncDone,
    SyncRejection,
    SyncRequest,
    SyncStart,
    SyncState,
)

__all__ = [
    "MAX_CHANGESET_OVERHEAD",
    "MAX_CLUSTER_ID",
    "MAX_MESSAGE_SIZE",
    "PROTOCOL_VERSION",
    "REJECTION_REASONS",
    "Changeset",
    "DecodeError",
    "EmptyChangeset",
    "EncodeError",
    "Envelope",
    "FrameReader",
    "FrameTooLarge",
    "Message",
    "MessageTooLarge",
    "Need",
    "NeedFull",
    "NeedPartial",
    "ProtocolVersionError",
    "Range",
    "RejectionReason",
    "SqlValue",
    "SyncClock",
    "SyncDone",
    "SyncRejection",
    "SyncRequest",
    "SyncStart",
    "SyncState",
    "UnknownMessageError",
    "WireError",
    "WrongClusterError",
    "changeset_overhead",
    "decode",
    "decode_envelope",
    "encode",
    "encoded_change_size",
    "frame",
    "peek_tag",
]
