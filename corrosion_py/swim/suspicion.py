"""Lifeguard's dynamic suspicion timeout ("dogpile"): long alone, shorter with confirmations.

Rules (memberlist ``suspicion.go``):

- A suspicion starts at ``start`` with timeout ``max``; with K expected confirmations the
  timeout after c independent confirmations is
  ``max(min, max - (max - min) · log(c + 1) / log(K + 1))``, so K confirmations bring it to
  ``min``. With K = 0 (a tiny cluster) the timeout is ``min`` from the start.
- A confirmation counts only if it comes from a source not seen before, that is not the
  original accuser, and only the first K count.
- A suspicion belongs to one incarnation of the member: a suspect rumour at a higher
  incarnation starts a fresh ``Suspicion`` (the core's job), never extends an old one, or a
  timer started before a refutation could kill the refuted member.
"""

from __future__ import annotations

import math


def suspicion_timeout(low: float, high: float, k: int, confirmations: int) -> float:
    """The timeout after ``confirmations`` independent confirmations out of ``k`` expected."""
    if k < 1:
        return low
    frac = math.log(confirmations + 1) / math.log(k + 1)
    return max(low, high - (high - low) * frac)


class Suspicion:
    """One suspicion of one member at one incarnation, with its confirmations."""

    def __init__(self, *, start: float, accuser: bytes, k: int, low: float, high: float) -> None:
        self.start = start
        self.accuser = accuser
        self.k = k
        self._low = low
        self._high = high
        self._confirmers: dict[bytes, None] = {}  # a dict keeps insertion order (determinism)

    @property
    def confirmations(self) -> int:
        """Independent confirmations counted so far (at most K)."""
        return len(self._confirmers)

    @property
    def deadline(self) -> float:
        """When the member is declared dead unless it refutes first."""
        return self.start + suspicion_timeout(self._low, self._high, self.k, self.confirmations)

    def confirm(self, source: bytes) -> bool:
        """Count ``source``'s accusation; whether it was new (and the deadline moved)."""
        if source == self.accuser or source in self._confirmers or self.confirmations >= self.k:
            return False
        self._confirmers[source] = None
        return True
