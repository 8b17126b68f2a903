"""The trio shell of gossip encryption: seals and opens the node's datagrams, runs the stream
handshakes and wraps TCP streams (the rules are in wire/seal.py and wire/record.py).

- `GossipSecurity` is one node's state: the keyring (swapped whole by ``set_keyring``: keys
  rotate without a restart), the datagram sealer and opener, and counters of every drop and
  failed handshake by reason. The UDP endpoint calls ``seal``/``open``; TCP code calls
  ``client``/``server`` to get a `SecureStream`.
- A wrong key, a peer that runs plaintext, or a forged message is logged **once per peer**
  (UDP: its address; TCP: its host, the port being ephemeral) and reason; the set of peers
  already logged is bounded (``MAX_LOGGED_PEERS``, oldest forgotten) and at most
  ``LOG_BURST`` such lines go out per minute (the rest are counted in ``log_suppressed``), so
  spoofed source addresses cannot flood the log. Key material is never logged.
- `SecureStream` is a ``trio.abc.Stream`` over records: sync and push-pull run over it
  unchanged. A record that fails raises ``trio.BrokenResourceError`` (what those protocols
  already handle as a lost connection) and is counted in ``streams["bad_record"]``.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from pathlib import Path

import trio

from corrosion_py.addr import Addr
from corrosion_py.errors import GossipKeyError
from corrosion_py.wire.keyring import Keyring, KeyringError, parse_keyring
from corrosion_py.wire.record import (
    CLIENT_HELLO_SIZE,
    RANDOM_SIZE,
    SERVER_HELLO_SIZE,
    ClientHandshake,
    HandshakeError,
    RecordError,
    Session,
    server_accept,
)
from corrosion_py.wire.record import FINISHED_SIZE as _FINISHED
from corrosion_py.wire.seal import OVERHEAD, DatagramOpener, DatagramSealer, Dropped

log = logging.getLogger("corrosion_py.net.secure")

MAX_LOGGED_PEERS = 4096
LOG_BURST = 10
"""Warning lines about peers per minute, at most."""
HANDSHAKE_TIMEOUT = 5.0
RECEIVE_SIZE = 65_536

_EXPLAIN = {
    "unknown_key": "sealed with a key this node does not hold (key id {kid}): check "
    "[gossip] keyring_file on both nodes",
    "bad_tag": "failed authentication (a forgery, a corrupted datagram, or a node of another "
    "cluster id)",
    "plaintext": "is plaintext: that node runs without a key ([gossip] plaintext, or no "
    "keyring_file)",
    "bad_finished": "does not hold our primary key (or serves another cluster id)",
}


class HandshakeFailed(trio.BrokenResourceError):
    """A stream handshake failed; the message says why. A kind of broken connection, which is
    how sync and push-pull already count and report it."""


class GossipSecurity:
    """One node's keys, datagram seal/open and stream handshakes."""

    def __init__(
        self,
        keyring: Keyring,
        cluster_id: int,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
        window: float = 120.0,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        self.keyring = keyring
        self.cluster_id = cluster_id
        self._random = random_bytes
        self.handshake_timeout = handshake_timeout
        self._sealer = DatagramSealer(keyring, cluster_id, random_bytes)
        self._opener = DatagramOpener(keyring, cluster_id, window=window)
        self.dropped: Counter[str] = Counter()
        """Datagrams refused, by reason (wire.seal.DROP_REASONS)."""
        self.streams: Counter[str] = Counter()
        """Stream handshakes by outcome (accepted, connected, failed_<reason>), bad records."""
        self.log_suppressed = 0
        self._logged: OrderedDict[tuple[str, object], None] = OrderedDict()
        self._log_tokens = float(LOG_BURST)
        self._log_refilled = 0.0

    overhead = OVERHEAD
    """Bytes sealing adds to a datagram."""

    def set_keyring(self, keyring: Keyring) -> None:
        """Swap the keyring: the new primary seals from now on, every key of it opens."""
        self.keyring = keyring
        self._sealer.set_keyring(keyring)
        self._opener.set_keyring(keyring)

    def stats(self) -> dict[str, object]:
        return {
            "key_ids": self.keyring.ids(),
            "datagrams_dropped": dict(self.dropped),
            "streams": dict(self.streams),
            "replay_senders": self._opener.senders,
            "log_suppressed": self.log_suppressed,
        }

    # -- datagrams -------------------------------------------------------------------------------

    def seal(self, addr: Addr, payload: bytes, now: float) -> bytes:
        return self._sealer.seal(addr, payload, now)

    def open(self, addr: Addr, data: bytes, now: float) -> bytes | None:
        """The payload, or None when the datagram is dropped (counted, maybe logged)."""
        try:
            return self._opener.open(data, now)
        except Dropped as drop:
            self.dropped[drop.reason] += 1
            if drop.reason in _EXPLAIN:
                kid = drop.key_id.hex() if drop.key_id else "?"
                what = _EXPLAIN[drop.reason].format(kid=kid)
                self._warn_once(drop.reason, addr, f"datagram from {addr[0]}:{addr[1]} {what}")
            return None

    # -- streams ---------------------------------------------------------------------------------

    async def client(self, stream: trio.abc.Stream, peer: Addr) -> SecureStream:
        """Run the client side of the handshake on a fresh connection to ``peer``; raises
        `HandshakeFailed` (counted) when the server does not prove it holds our key."""
        state = ClientHandshake.start(self.keyring, self.cluster_id, self._random(RANDOM_SIZE))
        with trio.move_on_after(self.handshake_timeout) as scope:
            await stream.send_all(state.hello())
            answer = await _read_exactly(stream, SERVER_HELLO_SIZE)
        if scope.cancelled_caught:
            self.streams["failed_timeout"] += 1
            raise HandshakeFailed("timed out in the encryption handshake")
        if answer is None:
            self.streams["failed_closed"] += 1
            raise HandshakeFailed(
                "the peer closed the connection in the encryption handshake: it does not hold "
                "our primary key, or runs plaintext"
            )
        try:
            session, finished = state.complete(answer)
        except HandshakeError as exc:
            self.streams[f"failed_{exc.reason}"] += 1
            self._warn_once(exc.reason, peer[0], f"gossip server {peer[0]}:{peer[1]} {exc}")
            raise HandshakeFailed(str(exc)) from None
        await stream.send_all(finished)
        self.streams["connected"] += 1
        return SecureStream(stream, session, peer, self.streams)

    async def server(self, stream: trio.abc.Stream, peer: Addr) -> SecureStream | None:
        """Run the server side on an accepted connection; None (counted) when the client did
        not prove it holds a key of the ring within the handshake timeout. Nothing else is read
        or done for the client before that."""
        with trio.move_on_after(self.handshake_timeout) as scope:
            hello = await _read_exactly(stream, CLIENT_HELLO_SIZE)
            if hello is None:
                self.streams["failed_closed"] += 1
                return None
            try:
                session, answer = server_accept(
                    self.keyring, self.cluster_id, hello, self._random(RANDOM_SIZE)
                )
            except HandshakeError as exc:
                self.streams[f"failed_{exc.reason}"] += 1
                if exc.reason in _EXPLAIN:
                    kid = exc.key_id.hex() if exc.key_id else "?"
                    what = _EXPLAIN[exc.reason].format(kid=kid)
                    self._warn_once(exc.reason, peer[0], f"gossip stream from {peer[0]} {what}")
                return None
            await stream.send_all(answer)
            finished = await _read_exactly(stream, _FINISHED)
            if finished is None:
                self.streams["failed_closed"] += 1
                return None
            try:
                session.open_finished(finished)
            except RecordError:
                self.streams["failed_bad_finished"] += 1
                self._warn_once(
                    "bad_finished", peer[0], f"gossip stream from {peer[0]} failed authentication"
                )
                return None
        if scope.cancelled_caught:
            self.streams["failed_timeout"] += 1
            return None
        self.streams["accepted"] += 1
        return SecureStream(stream, session, peer, self.streams)

    # -- logging ---------------------------------------------------------------------------------

    def _warn_once(self, reason: str, peer: object, message: str) -> None:
        key = (reason, peer)
        if key in self._logged:
            return
        self._logged[key] = None
        if len(self._logged) > MAX_LOGGED_PEERS:
            self._logged.popitem(last=False)
        now = time.monotonic()
        self._log_tokens = min(
            float(LOG_BURST), self._log_tokens + (now - self._log_refilled) * LOG_BURST / 60
        )
        self._log_refilled = now
        if self._log_tokens < 1:
            self.log_suppressed += 1
            return
        self._log_tokens -= 1
        log.warning("%s (logged once per peer)", message)


async def _read_exactly(stream: trio.abc.ReceiveStream, n: int) -> bytes | None:
    """Exactly ``n`` bytes, or None when the stream ends first."""
    buf = bytearray()
    while len(buf) < n:
        data = await stream.receive_some(n - len(buf))
        if not data:
            return None
        buf += data
    return bytes(buf)


class SecureStream(trio.abc.Stream):
    """A byte stream over sealed records (wire/record.py) on another stream."""

    def __init__(
        self, transport: trio.abc.Stream, session: Session, peer: Addr, counters: Counter[str]
    ) -> None:
        self.transport = transport
        self.peer = peer
        """The peer's address as the TCP connection saw it."""
        self._session = session
        self._counters = counters
        self._plain = bytearray()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            records = self._session.seal(data)
        except RecordError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        if records:
            await self.transport.send_all(records)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        limit = RECEIVE_SIZE if max_bytes is None else max_bytes
        if limit < 1:
            raise ValueError("max_bytes must be >= 1")
        while not self._plain:
            data = await self.transport.receive_some(RECEIVE_SIZE)
            if not data:
                if self._session.buffered:
                    raise trio.BrokenResourceError("the stream ended inside a record")
                return b""
            try:
                self._plain += self._session.feed(bytes(data))
            except RecordError as exc:
                self._counters["bad_record"] += 1
                raise trio.BrokenResourceError(str(exc)) from exc
        out = bytes(self._plain[:limit])
        del self._plain[:limit]
        return out

    async def aclose(self) -> None:
        await self.transport.aclose()


def read_keyring_file(path: Path) -> Keyring:
    """The keyring in ``path`` (wire/keyring.py's format); `GossipKeyError` naming the file
    and line. A file that others can read is accepted with a warning."""
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise GossipKeyError(f"cannot read the keyring file {path}: {reason}") from None
    try:
        keyring = parse_keyring(text)
    except KeyringError as exc:
        raise GossipKeyError(f"keyring file {path}: {exc}") from None
    if mode & 0o077:
        log.warning(
            "keyring file %s can be read by other users (mode %o): chmod 600 it",
            path, stat.S_IMODE(mode),
        )  # fmt: skip
    return keyring
