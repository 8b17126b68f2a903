"""Sealed TCP streams: a handshake that proves both sides hold a cluster key, then AES-256-GCM
records with one key per direction and counter nonces. Sans-IO (randomness is passed in).

Handshake (every message has a fixed size, so the shell reads exactly that many bytes)::

    client -> server  ClientHello  0x02 | key id (4) | client random (32)           37 bytes
    server -> client  ServerHello  0x02 | server random (32) | finished record        51 bytes
    client -> server  finished record, then data records                            18 bytes

    keys    = HKDF-SHA256(cluster key, salt = client random || server random,
                          info = label || key id || cluster id (2 bytes)) -> 64 bytes
    c2s key = keys[:32], s2c key = keys[32:]
    record  = length (2 bytes, big-endian) | AES-GCM(plaintext, nonce = 0000 || counter (8),
                                                     additional data = the length bytes)

Rules:

- The first record in each direction is the **finished** record: empty plaintext, counter 0.
  Opening it proves the peer derived the same keys, i.e. holds the key named by the id, speaks
  for the same cluster id and saw both randoms. The server answers nothing but its ServerHello
  before the client's finished record verified, so a stranger gets no work done; the client
  checks the server's finished record before it sends any data, so a server without the key
  is detected (it cannot forge the record).
- A replayed recorded stream fails: the server draws a fresh random, so the recorded client
  finished record does not open under the new keys.
- Records carry at most ``MAX_RECORD`` plaintext bytes; a length header above
  ``MAX_RECORD + 16`` (or below 16) is refused before any of its body is buffered. Counter
  nonces make every reordered, dropped, replayed or altered record fail its tag. After a
  failure the session stays failed. Data records are never empty.
- Truncation at a record boundary looks like a clean end of stream: the protocols carried
  (sync, push-pull) have their own end markers and treat a missing one as a failure.
"""

from __future__ import annotations

import struct

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from corrosion_py.wire.keyring import KEY_ID_SIZE, Key, Keyring

STREAM_FORMAT = 0x02
RANDOM_SIZE = 32
TAG_SIZE = 16
_RECORD_HEADER = struct.Struct(">H")
RECORD_HEADER_SIZE = _RECORD_HEADER.size
MAX_RECORD = 16 * 1024
"""Plaintext bytes per record (TLS's limit)."""
MAX_CIPHERTEXT = MAX_RECORD + TAG_SIZE
FINISHED_SIZE = RECORD_HEADER_SIZE + TAG_SIZE
CLIENT_HELLO_SIZE = 1 + KEY_ID_SIZE + RANDOM_SIZE
SERVER_HELLO_SIZE = 1 + RANDOM_SIZE + FINISHED_SIZE
_MAX_COUNTER = 2**63
_LABEL = b"corrosion_py stream v1"


class HandshakeError(Exception):
    """The peer did not prove it holds a cluster key. ``reason``: ``plaintext``,
    ``unknown_format``, ``unknown_key``, ``bad_finished``; ``key_id`` when one was named."""

    def __init__(self, reason: str, message: str, key_id: bytes | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.key_id = key_id


class RecordError(Exception):
    """A record that is too large, too small, empty or fails its tag: the stream is broken."""


def _nonce(counter: int) -> bytes:
    return b"\x00\x00\x00\x00" + counter.to_bytes(8, "big")


class Session:
    """Both directions of one established stream: seal what we send, open what we receive."""

    def __init__(self, send_key: bytes, receive_key: bytes) -> None:
        self._send = AESGCM(send_key)
        self._receive = AESGCM(receive_key)
        self._sent = 0
        self._received = 0
        self._buf = bytearray()
        self._failed: RecordError | None = None

    def _record(self, plaintext: bytes) -> bytes:
        if self._sent >= _MAX_COUNTER:
            raise RecordError("record counter exhausted")
        header = _RECORD_HEADER.pack(len(plaintext) + TAG_SIZE)
        sealed = self._send.encrypt(_nonce(self._sent), plaintext, header)
        self._sent += 1
        return header + sealed

    def finished(self) -> bytes:
        """Our finished record (only as the first record we send)."""
        assert self._sent == 0, "the finished record comes first"
        return self._record(b"")

    def seal(self, data: bytes | bytearray | memoryview) -> bytes:
        """``data`` as records of at most ``MAX_RECORD`` bytes each (nothing for no data)."""
        view = memoryview(data)
        return b"".join(
            self._record(bytes(view[i : i + MAX_RECORD])) for i in range(0, len(view), MAX_RECORD)
        )

    @property
    def buffered(self) -> int:
        """Received bytes held that do not make a whole record yet (< MAX_CIPHERTEXT + 2)."""
        return len(self._buf)

    def open_finished(self, data: bytes) -> None:
        """Check the peer's finished record (exactly ``FINISHED_SIZE`` bytes)."""
        if len(data) != FINISHED_SIZE or self._open_one(data) != b"":
            raise RecordError("the peer's finished record is malformed")

    def feed(self, data: bytes) -> bytes:
        """Received bytes in; the plaintext of every record they complete, in order."""
        if self._failed is not None:
            raise self._failed
        self._buf += data
        out = bytearray()
        buf = self._buf
        pos = 0
        try:
            while len(buf) - pos >= RECORD_HEADER_SIZE:
                (size,) = _RECORD_HEADER.unpack_from(buf, pos)
                if size > MAX_CIPHERTEXT:
                    raise RecordError(f"record of {size} bytes, the limit is {MAX_CIPHERTEXT}")
                if size <= TAG_SIZE:
                    raise RecordError(f"record of {size} bytes holds no data")
                end = pos + RECORD_HEADER_SIZE + size
                if len(buf) < end:
                    break
                out += self._open_one(bytes(buf[pos:end]))
                pos = end
        except RecordError as exc:
            self._failed = exc
            self._buf = bytearray()
            raise
        del buf[:pos]
        return bytes(out)

    def _open_one(self, record: bytes) -> bytes:
        header = record[:RECORD_HEADER_SIZE]
        try:
            plain = self._receive.decrypt(
                _nonce(self._received), record[RECORD_HEADER_SIZE:], header
            )
        except InvalidTag:
            self._failed = RecordError("a record failed authentication")
            raise self._failed from None
        self._received += 1
        return plain


def _derive(key: Key, cluster_id: int, client_random: bytes, server_random: bytes) -> bytes:
    info = _LABEL + key.id + cluster_id.to_bytes(2, "big")
    return HKDF(hashes.SHA256(), 64, salt=client_random + server_random, info=info).derive(
        key.secret
    )


@attrs.frozen
class ClientHandshake:
    """The client's state between its hello and the server's answer."""

    key: Key = attrs.field(repr=False)
    cluster_id: int
    client_random: bytes

    @classmethod
    def start(cls, keyring: Keyring, cluster_id: int, client_random: bytes) -> ClientHandshake:
        if len(client_random) != RANDOM_SIZE:
            raise ValueError(f"the client random is {RANDOM_SIZE} bytes")
        return cls(keyring.primary, cluster_id, client_random)

    def hello(self) -> bytes:
        return bytes([STREAM_FORMAT]) + self.key.id + self.client_random

    def complete(self, server_hello: bytes) -> tuple[Session, bytes]:
        """Check the ServerHello; the session and our finished record to send."""
        if len(server_hello) != SERVER_HELLO_SIZE or server_hello[0] != STREAM_FORMAT:
            raise HandshakeError("unknown_format", "the server's hello is not a sealed stream's")
        server_random = server_hello[1 : 1 + RANDOM_SIZE]
        keys = _derive(self.key, self.cluster_id, self.client_random, server_random)
        session = Session(send_key=keys[:32], receive_key=keys[32:])
        try:
            session.open_finished(server_hello[1 + RANDOM_SIZE :])
        except RecordError:
            raise HandshakeError(
                "bad_finished", "the server does not hold our key (or serves another cluster)"
            ) from None
        return session, session.finished()


def server_accept(
    keyring: Keyring, cluster_id: int, client_hello: bytes, server_random: bytes
) -> tuple[Session, bytes]:
    """Answer a ClientHello (exactly ``CLIENT_HELLO_SIZE`` bytes): the session (whose next step
    is ``open_finished`` on the client's finished record) and the ServerHello to send."""
    fmt = client_hello[0] if client_hello else -1
    if fmt != STREAM_FORMAT:
        # a plaintext stream starts with a 4-byte frame length: 0x00 for any frame we accept
        reason = "plaintext" if fmt == 0 else "unknown_format"
        raise HandshakeError(reason, "the client does not speak the sealed stream protocol")
    if len(client_hello) != CLIENT_HELLO_SIZE or len(server_random) != RANDOM_SIZE:
        raise HandshakeError("unknown_format", "malformed client hello")
    kid = client_hello[1 : 1 + KEY_ID_SIZE]
    key = keyring.get(kid)
    if key is None:
        raise HandshakeError("unknown_key", f"unknown key id {kid.hex()}", kid)
    client_random = client_hello[1 + KEY_ID_SIZE :]
    keys = _derive(key, cluster_id, client_random, server_random)
    session = Session(send_key=keys[32:], receive_key=keys[:32])
    return session, bytes([STREAM_FORMAT]) + server_random + session.finished()
