"""Errors of the wire layer.

Every problem with bytes that came from a peer is a ``DecodeError`` (or a subclass), so a caller
needs one ``except DecodeError`` to drop and count a bad datagram or frame (invariant 7). The
subclasses exist for the cases a caller treats differently:

- ``UnknownMessageError``: a valid envelope with a type tag this node does not know (a newer peer);
  skip it and count it, it is not an attack.
- ``WrongClusterError``: a well-formed message for another cluster; a sync server answers it with
  ``SyncRejection("different_cluster")``.
- ``ProtocolVersionError``: another protocol version; the rest of the bytes is not interpreted.
- ``MessageTooLarge`` / ``FrameTooLarge``: refused before any decoding or buffering.

``EncodeError`` is the sender's own bug (a message with a field out of range); it is not a
``DecodeError`` because nothing was received.
"""

from __future__ import annotations

from corrosion_py.errors import CorrosionError


class WireError(CorrosionError):
    """Base class of the wire layer's errors."""


class DecodeError(WireError):
    """Bytes from a peer are not a valid message (or frame) of this protocol version."""


class UnknownMessageError(DecodeError):
    """The envelope is valid but its type tag is unknown here: skip and count, never fatal."""

    def __init__(self, tag: int) -> None:
        super().__init__(f"unknown message type tag {tag}")
        self.tag = tag


class WrongClusterError(DecodeError):
    """A message for another cluster id: dropped (datagrams) or rejected (sync handshake)."""

    def __init__(self, expected: int, received: int) -> None:
        super().__init__(f"message for cluster {received}, this node is in cluster {expected}")
        self.expected = expected
        self.received = received


class ProtocolVersionError(DecodeError):
    """The message uses a protocol version this node does not speak."""

    def __init__(self, received: object, supported: int) -> None:
        super().__init__(f"protocol version {received!r} is not supported (this node: {supported})")
        self.received = received
        self.supported = supported


class MessageTooLarge(DecodeError):
    """The input is longer than the size limit; refused before decoding."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class FrameTooLarge(DecodeError):
    """A frame header announces more bytes than the limit; refused before buffering them."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class EncodeError(WireError):
    """A message this node tried to send breaks a wire rule (a bug of the sender)."""
