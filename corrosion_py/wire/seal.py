"""Sealed datagrams: AES-256-GCM with the cluster keyring, fresh nonces, replay protection.
Sans-IO: no sockets, no clock, no global randomness (``now`` and ``random_bytes`` are passed in).

Wire form of one sealed datagram (overhead ``OVERHEAD`` = 41 bytes)::

    0x01 | key id (4) | epoch (8) | counter (4, big-endian) | AES-GCM(ts_ms (8) || payload)
    nonce = epoch || counter, additional data = the 17 header bytes || cluster id (2 bytes)

Rules:

- **Format byte** 0x01 can never start a plaintext envelope (a CBOR array starts with
  0x80..0x9f), so a receiver tells a peer that runs plaintext from a forgery (``plaintext``).
- **Keys.** A datagram is sealed with the keyring's primary; any key of the ring opens it,
  chosen by the key id (an unknown id is ``unknown_key``, no trial decryption). The AES key is
  derived from the cluster key with HKDF (label "datagram"), so a datagram key never equals a
  stream key. The cluster id is authenticated: a node of another cluster, even one sharing the
  key, fails the tag check (``bad_tag``).
- **Nonces never repeat.** Each destination gets its own epoch (8 random bytes) and a counter
  from 0; before the counter wraps (2**32 datagrams) the destination gets a new epoch. The
  table of destinations is bounded (``max_destinations``, least recently used forgotten; a
  forgotten destination simply gets a new epoch). Two epochs collide with probability about
  n**2 / 2**65 for n epochs ever drawn under one key.
- **Replay.** Checked only after the tag verified (a forger cannot touch the state). The sender's
  wall-clock timestamp must be within ``window`` seconds of ours (``stale``); then, per epoch, a
  sliding window of ``WINDOW_BITS`` counters (as IPsec and DTLS do): a counter seen before is a
  ``replay``, one more than ``WINDOW_BITS`` behind the highest is ``too_old``. An epoch's entry
  expires ``2 * window`` seconds after its last datagram: by then every datagram of that epoch
  fails the timestamp check, so forgetting it opens no replay. The table holds at most
  ``max_senders`` epochs; when it is full of live entries a new epoch is refused
  (``replay_table_full``: fail closed, gossip repeats and sync repairs) until entries expire.
  Only holders of a cluster key can create entries.
- ``open`` raises only `Dropped` (with one of ``DROP_REASONS``), whatever the bytes.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable, Hashable

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from corrosion_py.wire.keyring import KEY_ID_SIZE, Keyring

DATAGRAM_FORMAT = 0x01
_HEADER = struct.Struct(">B4s8sI")  # format, key id, epoch, counter
HEADER_SIZE = _HEADER.size
EPOCH_SIZE = 8
TAG_SIZE = 16
_TS = struct.Struct(">Q")
OVERHEAD = HEADER_SIZE + _TS.size + TAG_SIZE
"""Bytes a sealed datagram adds to its payload."""
MAX_COUNTER = 2**32 - 1
WINDOW_BITS = 1024
"""Counters remembered behind the highest, per epoch (reordering tolerated)."""
DEFAULT_WINDOW = 120.0
"""Seconds a datagram's timestamp may differ from the receiver's clock."""

DROP_REASONS = (
    "too_short",
    "plaintext",
    "unknown_format",
    "unknown_key",
    "bad_tag",
    "stale",
    "replay",
    "too_old",
    "replay_table_full",
)
_DATAGRAM_LABEL = b"corrosion_py datagram v1"


class Dropped(Exception):
    """A datagram refused by `DatagramOpener.open`; ``reason`` is one of ``DROP_REASONS``."""

    def __init__(self, reason: str, key_id: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.key_id = key_id


def _datagram_cipher(secret: bytes) -> AESGCM:
    derived = HKDF(hashes.SHA256(), 32, salt=None, info=_DATAGRAM_LABEL).derive(secret)
    return AESGCM(derived)


def _ciphers(keyring: Keyring) -> dict[bytes, AESGCM]:
    return {key.id: _datagram_cipher(key.secret) for key in keyring.keys}


def _aad(header: bytes, cluster_id: int) -> bytes:
    return header + cluster_id.to_bytes(2, "big")


@attrs.define
class _Out:
    epoch: bytes
    counter: int = 0


class DatagramSealer:
    """Seals outgoing datagrams with the primary key; one nonce sequence per destination."""

    def __init__(
        self,
        keyring: Keyring,
        cluster_id: int,
        random_bytes: Callable[[int], bytes],
        *,
        max_destinations: int = 8192,
    ) -> None:
        self.cluster_id = cluster_id
        self._random = random_bytes
        self._max = max_destinations
        self._out: OrderedDict[Hashable, _Out] = OrderedDict()
        self.epochs_started = 0
        self.set_keyring(keyring)

    def set_keyring(self, keyring: Keyring) -> None:
        self._kid = keyring.primary.id
        self._cipher = _datagram_cipher(keyring.primary.secret)

    def seal(self, dest: Hashable, payload: bytes, now: float) -> bytes:
        """``payload`` sealed for ``dest`` (any hashable naming the peer, e.g. its address)."""
        out = self._out.get(dest)
        if out is None or out.counter > MAX_COUNTER:
            out = self._out[dest] = _Out(self._new_epoch())
            if len(self._out) > self._max:
                self._out.popitem(last=False)
        else:
            self._out.move_to_end(dest)
        header = _HEADER.pack(DATAGRAM_FORMAT, self._kid, out.epoch, out.counter)
        out.counter += 1
        nonce = header[1 + KEY_ID_SIZE :]
        plain = _TS.pack(max(0, int(now * 1000))) + payload
        return header + self._cipher.encrypt(nonce, plain, _aad(header, self.cluster_id))

    def _new_epoch(self) -> bytes:
        self.epochs_started += 1
        epoch = self._random(EPOCH_SIZE)
        if len(epoch) != EPOCH_SIZE:
            raise ValueError("random_bytes returned the wrong number of bytes")
        return epoch


@attrs.define
class _Seen:
    top: int  # highest counter accepted
    bits: int  # bit i set: counter top - i accepted
    last: float  # receiver time of the last accepted datagram


class DatagramOpener:
    """Opens datagrams sealed with any key of the ring, refusing forgeries and replays."""

    def __init__(
        self,
        keyring: Keyring,
        cluster_id: int,
        *,
        window: float = DEFAULT_WINDOW,
        max_senders: int = 16_384,
    ) -> None:
        self.cluster_id = cluster_id
        self.window = window
        self.max_senders = max_senders
        self._seen: OrderedDict[bytes, _Seen] = OrderedDict()  # oldest `last` first
        self.set_keyring(keyring)

    def set_keyring(self, keyring: Keyring) -> None:
        self._ciphers = _ciphers(keyring)

    @property
    def senders(self) -> int:
        """Epochs remembered now."""
        return len(self._seen)

    def open(self, data: bytes, now: float) -> bytes:
        """The payload of a sealed datagram received at (wall-clock) ``now``; `Dropped`."""
        if len(data) < OVERHEAD:
            if data and 0x80 <= data[0] <= 0x9F:
                raise Dropped("plaintext")
            raise Dropped("too_short")
        fmt = data[0]
        if fmt != DATAGRAM_FORMAT:
            raise Dropped("plaintext" if 0x80 <= fmt <= 0x9F else "unknown_format")
        header = data[:HEADER_SIZE]
        _, kid, epoch, counter = _HEADER.unpack(header)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise Dropped("unknown_key", kid)
        try:
            plain = cipher.decrypt(
                header[1 + KEY_ID_SIZE :], data[HEADER_SIZE:], _aad(header, self.cluster_id)
            )
        except InvalidTag:
            raise Dropped("bad_tag", kid) from None
        (ts_ms,) = _TS.unpack_from(plain)
        if abs(ts_ms / 1000 - now) > self.window:
            raise Dropped("stale", kid)
        self._check_replay(epoch, counter, now)
        return plain[_TS.size :]

    def _check_replay(self, epoch: bytes, counter: int, now: float) -> None:
        seen = self._seen
        expired = now - 2 * self.window
        while seen:
            oldest = next(iter(seen.values()))
            if oldest.last >= expired:
                break
            seen.popitem(last=False)
        entry = seen.get(epoch)
        if entry is None:
            if len(seen) >= self.max_senders:
                raise Dropped("replay_table_full")
            seen[epoch] = _Seen(counter, 1, now)
            return
        if counter > entry.top:
            shift = counter - entry.top
            entry.bits = ((entry.bits << shift) | 1) & ((1 << WINDOW_BITS) - 1)
            entry.top = counter
        else:
            behind = entry.top - counter
            if behind >= WINDOW_BITS:
                raise Dropped("too_old")
            if entry.bits >> behind & 1:
                raise Dropped("replay")
            entry.bits |= 1 << behind
        entry.last = max(entry.last, now)
        seen.move_to_end(epoch)
