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

import bisect

import attrs

from corrosion_py.wire.swim import Rumour, rumour_size


@attrs.define
class _Entry:
    rumour: Rumour
    size: int
    serial: int  # higher is newer
    transmits: int = 0


class RumourQueue:
    """Transmit-limited rumours, keyed by member actor id.

    Entries sit in buckets by transmit count, each bucket newest first, so `take` walks them in
    order and stops once the packet is full instead of sorting the whole queue per packet.
    """

    def __init__(self, max_size: int) -> None:
        self._max = max_size
        self._entries: dict[bytes, _Entry] = {}
        self._buckets: dict[int, list[_Entry]] = {}  # transmits -> entries, newest first
        self._serial = 0
        self._min_size = 1 << 30  # no entry is smaller: a budget below it fits nothing
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, rumour: Rumour) -> bool:
        entry = self._entries.get(rumour.node.actor_id)
        return entry is not None and entry.rumour == rumour

    def _unlink(self, entry: _Entry) -> None:
        bucket = self._buckets[entry.transmits]
        bucket.remove(entry)
        if not bucket:
            del self._buckets[entry.transmits]
        del self._entries[entry.rumour.node.actor_id]

    def _link(self, entry: _Entry) -> None:
        """Put an entry in its bucket, keeping the bucket newest first."""
        bucket = self._buckets.setdefault(entry.transmits, [])
        i = bisect.bisect_left(bucket, -entry.serial, key=lambda e: -e.serial)
        bucket.insert(i, entry)
        self._entries[entry.rumour.node.actor_id] = entry

    def push(self, rumour: Rumour) -> None:
        """Queue ``rumour``, replacing any queued rumour about the same member."""
        self._serial += 1
        old = self._entries.get(rumour.node.actor_id)
        if old is not None:
            self._unlink(old)
        entry = _Entry(rumour, rumour_size(rumour), self._serial)
        self._min_size = min(self._min_size, entry.size)
        self._link(entry)
        if len(self._entries) > self._max:
            worst = self._buckets[max(self._buckets)][-1]  # most sent, then oldest
            self._unlink(worst)
            self.dropped += 1

    def take(self, budget: int, limit: int, max_count: int) -> list[Rumour]:
        """Up to ``max_count`` rumours within ``budget`` bytes; each counts one transmission."""
        taken: list[_Entry] = []
        for transmits in sorted(self._buckets):
            for entry in self._buckets[transmits]:
                if len(taken) >= max_count or budget < self._min_size:
                    break
                if budget < entry.size:
                    continue
                budget -= entry.size
                taken.append(entry)
            else:
                continue
            break
        for entry in taken:  # counted after the walk: each entry is considered once per take
            self._unlink(entry)
            entry.transmits += 1
            if entry.transmits < limit:
                self._link(entry)
        return [entry.rumour for entry in taken]
