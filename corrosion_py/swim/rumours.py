"""The rumour queue: what to piggyback on the next packet, and when to stop telling it.

Rules (memberlist ``queue.go``, SWIM §4.1, tarantool issue 4253):

- One rumour per member: a newer rumour about the same member replaces the queued one
  (invalidation), with its transmit count reset.
- Order: fewest transmissions first, and among equals the newest first. FIFO order would starve
  ``dead`` rumours behind a burst of ``alive`` rumours while a cluster forms.
- ``take(budget, limit, max_count)`` returns rumours in that order whose encoded sizes fit the
  byte budget; one that does not fit is skipped and stays queued for the next packet. Each rumour
  taken counts one transmission and leaves the queue after ``limit`` of them (λ·log n, see
  config.py).
- Bounded by ``max_size``: when a push overflows it, the rumour with the most transmissions
  (the oldest among those) is dropped; ``dropped`` counts them. Push-pull repairs what is lost.
"""

from __future__ import annotations

import attrs

from corrosion_py.wire.swim import Rumour, rumour_size


@attrs.define
class _Entry:
    rumour: Rumour
    size: int
    serial: int  # higher is newer
    transmits: int = 0


class RumourQueue:
    """Transmit-limited rumours, keyed by member actor id."""

    def __init__(self, max_size: int) -> None:
        self._max = max_size
        self._entries: dict[bytes, _Entry] = {}
        self._serial = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, rumour: Rumour) -> bool:
        entry = self._entries.get(rumour.node.actor_id)
        return entry is not None and entry.rumour == rumour

    def push(self, rumour: Rumour) -> None:
        """Queue ``rumour``, replacing any queued rumour about the same member."""
        self._serial += 1
        key = rumour.node.actor_id
        self._entries.pop(key, None)
        self._entries[key] = _Entry(rumour, rumour_size(rumour), self._serial)
        if len(self._entries) > self._max:
            worst = max(self._entries.values(), key=lambda e: (e.transmits, -e.serial))
            del self._entries[worst.rumour.node.actor_id]
            self.dropped += 1

    def take(self, budget: int, limit: int, max_count: int) -> list[Rumour]:
        """Up to ``max_count`` rumours within ``budget`` bytes; each counts one transmission."""
        taken: list[Rumour] = []
        for entry in sorted(self._entries.values(), key=lambda e: (e.transmits, -e.serial)):
            if len(taken) >= max_count:
                break
            if budget < entry.size:
                continue
            budget -= entry.size
            taken.append(entry.rumour)
            entry.transmits += 1
            if entry.transmits >= limit:
                del self._entries[entry.rumour.node.actor_id]
        return taken
