"""The cluster's gossip keys: an ordered keyring, its text file format, and key ids. Sans-IO.

Rules (memberlist's keyring is the model):

- A keyring holds one or more 32-byte keys; the **first is the primary**: every datagram and
  stream this node starts is sealed with it. Every key of the ring is accepted on receive, which
  is what lets keys rotate without downtime (add everywhere, make primary everywhere, remove).
- Each key has a 4-byte **key id**, the first bytes of SHA-256 over a label and the key. A
  sealed datagram or stream hello names its key by id, so a receiver picks the key without
  trial decryption; an id the ring does not hold is a wrong key. The id reveals nothing usable
  about the key (a truncated hash), and is the only thing about a key ever printed or logged.
- The key file is text: one base64 key per line, first = primary; blank lines and lines
  starting with ``#`` are ignored. A bad line is refused with its line number; a key given
  twice is refused (the order would be ambiguous).
- Key material never appears in ``repr``, logs or error messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable

import attrs

KEY_SIZE = 32
"""AES-256 keys."""
KEY_ID_SIZE = 4
_KEY_ID_LABEL = b"corrosion_py gossip key id v1\x00"


class KeyringError(ValueError):
    """A keyring or key file is refused; the message names the line (never the key)."""


def key_id(secret: bytes) -> bytes:
    """The 4-byte id of a key: SHA-256(label || key), truncated."""
    return hashlib.sha256(_KEY_ID_LABEL + secret).digest()[:KEY_ID_SIZE]


@attrs.frozen
class Key:
    """One 32-byte key and its id."""

    secret: bytes = attrs.field(repr=False)
    id: bytes = attrs.field(init=False)

    @secret.validator
    def _check(self, _: attrs.Attribute[bytes], value: bytes) -> None:
        if not isinstance(value, bytes) or len(value) != KEY_SIZE:
            raise KeyringError(f"a key is {KEY_SIZE} bytes")

    @id.default
    def _id(self) -> bytes:
        return key_id(self.secret)

    @property
    def id_hex(self) -> str:
        return self.id.hex()


@attrs.frozen
class Keyring:
    """Keys in order; ``keys[0]`` is the primary. Immutable: rotation swaps the whole ring."""

    keys: tuple[Key, ...]

    def __attrs_post_init__(self) -> None:
        if not self.keys:
            raise KeyringError("a keyring needs at least one key")
        ids = [k.id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise KeyringError("a keyring holds each key once")

    @classmethod
    def of(cls, secrets: Iterable[bytes]) -> Keyring:
        return cls(tuple(Key(s) for s in secrets))

    @property
    def primary(self) -> Key:
        return self.keys[0]

    def get(self, kid: bytes) -> Key | None:
        """The key with id ``kid``, or None (a wrong key)."""
        for key in self.keys:  # a ring holds two or three keys: a scan beats a dict
            if key.id == kid:
                return key
        return None

    def ids(self) -> list[str]:
        """Key ids in hex, primary first: what may be shown to an operator."""
        return [k.id_hex for k in self.keys]


def generate_key(random_bytes: Callable[[int], bytes]) -> str:
    """A new key as its base64 text (``random_bytes`` is ``os.urandom`` outside tests)."""
    return base64.b64encode(random_bytes(KEY_SIZE)).decode("ascii")


def parse_keyring(text: str) -> Keyring:
    """A keyring from the key file format; `KeyringError` naming the line number."""
    keys: list[Key] = []
    seen: dict[bytes, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            secret = base64.b64decode(line.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise KeyringError(
                f"line {number}: not base64 (a key is the base64 of {KEY_SIZE} random bytes)"
            ) from None
        if len(secret) != KEY_SIZE:
            raise KeyringError(
                f"line {number}: a key is the base64 of {KEY_SIZE} bytes, this one holds "
                f"{len(secret)}"
            )
        key = Key(secret)
        if key.id in seen:
            raise KeyringError(f"line {number}: the same key as line {seen[key.id]}")
        seen[key.id] = number
        keys.append(key)
    if not keys:
        raise KeyringError("no key in the file (one base64 key per line, the first is primary)")
    return Keyring(tuple(keys))
