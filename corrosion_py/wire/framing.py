"""Length-prefixed frames for TCP streams (sync sessions), sans-IO.

A frame is a 4-byte big-endian unsigned length followed by that many payload bytes (one encoded
message). Rules:

- ``FrameReader`` refuses a length above ``max_frame`` as soon as the 4 header bytes are in,
  before buffering any of the payload (``FrameTooLarge``), so a peer cannot make it hold more
  than ``max_frame + 4`` bytes besides what the caller fed in one call.
- After ``FrameTooLarge`` the stream cannot be resynchronised: the reader stays failed (every
  later ``feed`` raises again) and the caller closes the connection.
- ``end()`` at end of stream raises ``DecodeError`` if a frame was cut off.
- A zero-length frame is a valid frame (its payload ``b""`` will not decode as a message).
"""

from __future__ import annotations

import struct

from corrosion_py.wire.errors import DecodeError, EncodeError, FrameTooLarge

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size
MAX_FRAME_LIMIT = 2**32 - 1
"""The largest length a 4-byte header can announce."""


def frame(payload: bytes) -> bytes:
    """``payload`` with its length prefix."""
    if len(payload) > MAX_FRAME_LIMIT:
        raise EncodeError(f"a frame holds at most {MAX_FRAME_LIMIT} bytes, got {len(payload)}")
    return HEADER.pack(len(payload)) + payload


class FrameReader:
    """Turns the bytes of a stream, in pieces of any size, into whole frame payloads."""

    def __init__(self, max_frame: int) -> None:
        if not 0 <= max_frame <= MAX_FRAME_LIMIT:
            raise ValueError(f"max_frame must be in [0, {MAX_FRAME_LIMIT}], got {max_frame}")
        self.max_frame = max_frame
        self._buf = bytearray()
        self._need: int | None = None  # payload length of the frame being read, once known
        self._failed: FrameTooLarge | None = None

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet make a whole frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return the payloads of the frames it completes, in order."""
        if self._failed is not None:
            raise self._failed
        self._buf += data
        buf = self._buf
        out: list[bytes] = []
        pos = 0
        while True:
            if self._need is None:
                if len(buf) - pos < HEADER_SIZE:
                    break
                (n,) = HEADER.unpack_from(buf, pos)
                if n > self.max_frame:
                    self._failed = FrameTooLarge(n, self.max_frame)
                    self._buf = bytearray()
                    raise self._failed
                self._need = n
                pos += HEADER_SIZE
            if len(buf) - pos < self._need:
                break
            out.append(bytes(buf[pos : pos + self._need]))
            pos += self._need
            self._need = None
        del buf[:pos]
        return out

    def end(self) -> None:
        """The stream ended: raise ``DecodeError`` if it stopped inside a frame."""
        if self._failed is not None:
            raise self._failed
        if self._need is not None or self._buf:
            raise DecodeError(f"stream ended inside a frame ({len(self._buf)} bytes pending)")
