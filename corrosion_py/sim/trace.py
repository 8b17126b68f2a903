"""The trace hash of a run: sha256 over every datagram sent and every event, with their times.

Why: a seed must fix a run byte for byte, and the cheapest proof is one hash that any change
of a packet, an event or the time either happens at changes (tests/sim/test_sim_determinism.py
pins it per seed and says how to re-pin). Both simulators write the same record formats:

- a datagram: ``<dIIB`` (virtual time, sender, receiver or 0xFFFFFFFF when the address is no
  node's, kind: 0 SWIM, 1 broadcast, 2 injected by a test), then its bytes;
- an event: one text line ``"{time!r} {observer} {name} {member} {detail}"``.
"""

from __future__ import annotations

import hashlib
import struct

SWIM = 0
BROADCAST = 1
INJECTED = 2
NO_NODE = 0xFFFFFFFF
"""The receiver of a datagram sent to an address that is no node's."""

_DATAGRAM = struct.Struct("<dIIB")


class Trace:
    """The running hash of one simulation."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def datagram(self, now: float, src: int, dst: int | None, kind: int, data: bytes) -> None:
        """A datagram sent at ``now`` (``dst`` None: to no node)."""
        update = self._hash.update
        update(_DATAGRAM.pack(now, src, NO_NODE if dst is None else dst, kind))
        update(data)

    def datagram_again(self, now: float, src: int, dst: int | None, kind: int) -> None:
        """A datagram with the same bytes as the previous one (a round of one broadcast
        piece): its header only, so a round costs one hash of the bytes, not one per copy."""
        self._hash.update(_DATAGRAM.pack(now, src, NO_NODE if dst is None else dst, kind))

    def data(self, data: bytes) -> None:
        """Bytes sent on a stream (sync sessions)."""
        self._hash.update(data)

    def event(self, now: float, observer: int, name: str, member: int, detail: int) -> None:
        """An event ``observer`` saw or did about ``member``."""
        self._hash.update(f"{now!r} {observer} {name} {member} {detail}\n".encode())

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
