"""Framed message streams of the gossip port's TCP side: length-prefixed frames
(``wire.framing``), each holding one envelope (``wire.codec``), with a timeout on every receive
and send, and the readable reasons a session failed.

Shared by the sync server, the sync client and the port's first-frame router. The first frame
of a connection is read exactly (``read_first_frame``): nothing past it, so the router can hand
the rest of the stream to whoever the frame names.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from corrosion_py.errors import CorrosionError
from corrosion_py.wire.codec import decode, encode
from corrosion_py.wire.errors import DecodeError, FrameTooLarge
from corrosion_py.wire.framing import HEADER, HEADER_SIZE, FrameReader, frame
from corrosion_py.wire.messages import Message

RECEIVE_SIZE = 65_536


class SessionError(CorrosionError):
    """A session failed in a way its report explains (the message is the readable reason)."""


class Framed:
    """A stream with a frame reader, byte counters and timeouts on every receive and send."""

    def __init__(self, stream: trio.abc.Stream, cluster_id: int, max_frame: int) -> None:
        self.stream = stream
        self.cluster_id = cluster_id
        self.reader = FrameReader(max_frame)
        self.max_frame = max_frame
        self.pending: list[bytes] = []
        self.bytes_received = 0
        self.bytes_sent = 0

    async def receive_payload(self, within: float, what: str) -> bytes | None:
        """The next frame's payload, or None at a clean end of stream."""
        with trio.move_on_after(within):
            while not self.pending:
                data = await self.stream.receive_some(RECEIVE_SIZE)
                if not data:
                    self.reader.end()
                    return None
                self.pending = self.reader.feed(bytes(data))
            payload = self.pending.pop(0)
            self.bytes_received += HEADER_SIZE + len(payload)
            return payload
        raise SessionError(f"timed out after {within:g} s waiting for {what}")

    async def receive(self, within: float, what: str) -> Message:
        payload = await self.receive_payload(within, what)
        if payload is None:
            raise SessionError(f"connection closed while waiting for {what}")
        return decode(payload, cluster_id=self.cluster_id, max_size=self.max_frame)

    async def send(
        self, messages: Sequence[Message], within: float, *, cluster_id: int | None = None
    ) -> None:
        """Send ``messages`` in one write (in another ``cluster_id`` only for a rejection)."""
        cid = self.cluster_id if cluster_id is None else cluster_id
        data = b"".join(frame(encode(m, cluster_id=cid)) for m in messages)
        with trio.move_on_after(within):
            await self.stream.send_all(data)
            self.bytes_sent += len(data)
            return
        raise SessionError(f"timed out after {within:g} s sending to the peer")


async def _read_exact(stream: trio.abc.Stream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = await stream.receive_some(n - len(buf))
        if not data:
            raise SessionError("connection closed inside the first frame")
        buf += data
    return bytes(buf)


async def read_first_frame(stream: trio.abc.Stream, max_frame: int, within: float) -> bytes:
    """The first frame's payload, reading nothing past it (`FrameTooLarge` from its header,
    `SessionError` when it does not come within ``within`` seconds)."""
    with trio.move_on_after(within):
        (size,) = HEADER.unpack(await _read_exact(stream, HEADER_SIZE))
        if size > max_frame:
            raise FrameTooLarge(size, max_frame)
        return await _read_exact(stream, size)
    raise SessionError("timed out waiting for the first frame")


def describe(exc: BaseException) -> str:
    """A readable reason for a failed session (the first leaf of an exception group)."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    if isinstance(exc, SessionError):
        return str(exc)
    if isinstance(exc, DecodeError):
        return f"bad frame from the peer: {exc}"
    if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
        return f"connection lost: {exc.__cause__ or exc}"
    if isinstance(exc, OSError):
        return f"connection failed: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"
