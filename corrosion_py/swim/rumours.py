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

from corrosion_py.wire.swim import Rumour, rumour_size


class _Entry:
    """A queued rumour; compared by identity (the queue finds entries by serial, not value)."""

    __slots__ = ("rumour", "serial", "size", "transmits")

    def __init__(self, rumour: Rumour, size: int, serial: int) -> None:
        self.rumour = rumour
        self.size = size
        self.serial = serial  # higher is newer
        self.transmits = 0


class _Bucket:
    """The entries sent equally often, newest first, with their sort keys (-serial) alongside so
    that finding an entry is a bisection, and a floor under their sizes (the smallest ever
    added), so that a packet's leftover budget below it skips the bucket instead of scanning it.
    """

    __slots__ = ("entries", "floor", "keys")

    def __init__(self) -> None:
        self.keys: list[int] = []
        self.entries: list[_Entry] = []
        self.floor = 1 << 30

    def add(self, entry: _Entry) -> None:
        key = -entry.serial
        i = bisect.bisect_left(self.keys, key)
        self.keys.insert(i, key)
        self.entries.insert(i, entry)
        self.floor = min(self.floor, entry.size)

    def remove(self, entry: _Entry) -> None:
        i = bisect.bisect_left(self.keys, -entry.serial)
        del self.keys[i], self.entries[i]

    def pop(self, picked: list[int]) -> tuple[list[int], list[_Entry]]:
        """Remove the entries at the ascending positions ``picked``; their keys and entries."""
        n = len(picked)
        keys, entries = self.keys, self.entries
        if picked[-1] == n - 1:  # the first n: the usual case, a packet takes the newest
            out = keys[:n], entries[:n]
            del keys[:n], entries[:n]
            return out
        out = [keys[i] for i in picked], [entries[i] for i in picked]
        for i in reversed(picked):
            del keys[i], entries[i]
        return out

    def merge(self, run_keys: list[int], run: list[_Entry], floor: int) -> None:
        """Add ``run`` (entries newest first, with their keys), whose sizes are >= ``floor``.

        Each stretch of the run that falls between the same two entries here goes in as one
        slice; a run usually splits into at most two (newer than all, older than all)."""
        self.floor = min(self.floor, floor)
        keys, entries = self.keys, self.entries
        if not keys or run_keys[0] > keys[-1]:
            keys += run_keys
            entries += run
            return
        where = [bisect.bisect_left(keys, key) for key in run_keys]  # non-decreasing
        end = len(run)
        while end:  # from the back, so that the positions still to use stay valid
            start = end - 1
            while start and where[start - 1] == where[end - 1]:
                start -= 1
            at = where[start]
            keys[at:at] = run_keys[start:end]
            entries[at:at] = run[start:end]
            end = start


class RumourQueue:
    """Transmit-limited rumours, keyed by member actor id.

    Entries sit in buckets by transmit count, each bucket newest first, so `take` walks them in
    order and stops once the packet is full instead of sorting the whole queue per packet, and
    moves what it took to the next bucket in one run per bucket.
    """

    def __init__(self, max_size: int) -> None:
        self._max = max_size
        self._entries: dict[bytes, _Entry] = {}
        self._buckets: dict[int, _Bucket] = {}  # transmits -> entries
        self._serial = 0
        self._min_size = 1 << 30  # no entry is smaller: a budget below it fits nothing
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, rumour: Rumour) -> bool:
        entry = self._entries.get(rumour.node.actor_id)
        return entry is not None and entry.rumour == rumour

    def _bucket(self, transmits: int) -> _Bucket:
        bucket = self._buckets.get(transmits)
        if bucket is None:
            bucket = self._buckets[transmits] = _Bucket()
        return bucket

    def _remove(self, entry: _Entry) -> None:
        bucket = self._buckets[entry.transmits]
        bucket.remove(entry)
        if not bucket.keys:
            del self._buckets[entry.transmits]
        del self._entries[entry.rumour.node.actor_id]

    def push(self, rumour: Rumour) -> None:
        """Queue ``rumour``, replacing any queued rumour about the same member."""
        self._serial += 1
        old = self._entries.get(rumour.node.actor_id)
        if old is not None:
            self._remove(old)
        entry = _Entry(rumour, rumour_size(rumour), self._serial)
        self._min_size = min(self._min_size, entry.size)
        self._entries[rumour.node.actor_id] = entry
        self._bucket(0).add(entry)
        if len(self._entries) > self._max:
            self._remove(self._buckets[max(self._buckets)].entries[-1])  # most sent, then oldest
            self.dropped += 1

    def take(self, budget: int, limit: int, max_count: int) -> list[Rumour]:
        """Up to ``max_count`` rumours within ``budget`` bytes; each counts one transmission."""
        taken: list[_Entry] = []
        moves: list[tuple[int, list[int]]] = []  # (bucket, positions taken from it)
        for transmits in sorted(self._buckets):
            if budget < self._min_size or len(taken) >= max_count:
                break
            bucket = self._buckets[transmits]
            floor = bucket.floor
            if budget < floor:
                continue
            picked: list[int] = []
            for i, entry in enumerate(bucket.entries):
                size = entry.size
                if budget < size:
                    continue
                if len(taken) >= max_count:
                    break
                budget -= size
                taken.append(entry)
                picked.append(i)
                if budget < floor:
                    break
            if picked:
                moves.append((transmits, picked))
        # Counted after the walk (each entry is considered once per take), highest bucket
        # first, so that a run moves into a bucket whose own run has already left it.
        for transmits, picked in reversed(moves):
            bucket = self._buckets[transmits]
            run_keys, run = bucket.pop(picked)
            if not bucket.keys:
                del self._buckets[transmits]
            for entry in run:
                entry.transmits += 1
            if transmits + 1 < limit:
                self._bucket(transmits + 1).merge(run_keys, run, bucket.floor)
            else:
                for entry in run:
                    del self._entries[entry.rumour.node.actor_id]
        return [entry.rumour for entry in taken]
