"""Hybrid logical clock: timestamps that follow wall time but never go backwards, and that move
past every timestamp seen from a peer, so changes can be ordered and lag measured.

Sans-IO: the physical time is passed in (nanoseconds since the Unix epoch). Timestamps are NTP64
(upper 32 bits seconds, lower 32 bits fraction), like Corrosion's uhlc, as unsigned 64-bit ints.
Thread-safe when given a lock: the store's writer thread stamps local transactions while apply
and sync threads move the clock past peers' timestamps, so the store passes a
``threading.Lock``; a single-threaded host (the simulator's) needs none.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from corrosion_py.errors import CorrosionError

_FRACTION = 1 << 32
_NS = 1_000_000_000


class ClockDriftError(CorrosionError):
    """A peer's timestamp is further ahead of our clock than the allowed drift."""


def ntp64_from_ns(ns: int) -> int:
    seconds, rest = divmod(ns, _NS)
    return (seconds << 32) | (rest * _FRACTION // _NS)


def ns_from_ntp64(ts: int) -> int:
    return (ts >> 32) * _NS + (ts & (_FRACTION - 1)) * _NS // _FRACTION


class HLC:
    """One node's hybrid logical clock."""

    def __init__(
        self, max_drift_ns: int = 300_000_000, *, lock: AbstractContextManager[object] | None = None
    ) -> None:
        self.max_drift = ntp64_from_ns(max_drift_ns)
        self.last = 0
        self._lock = lock if lock is not None else nullcontext()

    def now(self, physical_ns: int) -> int:
        """A new timestamp, greater than every one given or seen so far."""
        with self._lock:
            self.last = max(ntp64_from_ns(physical_ns), self.last + 1)
            return self.last

    def update(self, remote: int, physical_ns: int) -> None:
        """Move past a peer's timestamp, unless it is implausibly far ahead of us."""
        if remote - ntp64_from_ns(physical_ns) > self.max_drift:
            raise ClockDriftError(
                f"remote timestamp is {ns_from_ntp64(remote) - physical_ns} ns ahead "
                f"(max drift {ns_from_ntp64(self.max_drift)} ns)"
            )
        with self._lock:
            self.last = max(self.last, remote)
