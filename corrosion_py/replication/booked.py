"""What this node knows of every actor's versions (Corrosion's "bookie"), as pure data.

Per actor: the highest version known (`max`), the versions below it known to be missing
(`gaps`), and versions received only in part (`partials`: which seqs arrived, out of
0..=last_seq). A version is known when it is <= max, not in a gap and not partial. Everything
is kept as ranges, so memory follows the number of ranges, never the number of versions.

The store persists this (``store/bookkeeping.py``) in the same SQLite transaction as the data it
describes; a batch works on copies (`BookedVersions.copy`) and the copies replace the originals
only after the commit.

Limits on what may be believed (docs/limits.md):
- **Version jumps.** A version of actor A is believed only up to ``ceiling()`` = (the highest
  version known of A) + ``MAX_VERSION_JUMP``, and never above ``MAX_CLOCK``. Beyond it a claim
  is refused (an empty range is cut at the ceiling): one message can move an actor's head by at
  most the allowance, so a forged head far ahead never becomes a gap of 2**63 versions, and an
  honest node far behind catches up by at most that many versions per sync round.
- **Partial versions.** At most ``MAX_PARTIAL_VERSIONS`` versions per actor wait for their
  remaining pieces, holding at most ``MAX_PARTIAL_BYTES`` of buffered changes (an estimate,
  ``change_size``). The applier makes room by dropping the actor's oldest partial version (its
  pieces are deleted and it becomes a gap: sync fetches it whole later); a version that alone
  needs more than the byte budget cannot be buffered here at all.
"""

from __future__ import annotations

import attrs

from corrosion_py.aliases import Range
from corrosion_py.crdt import Change
from corrosion_py.crdt.limits import MAX_CLOCK
from corrosion_py.replication.ranges import RangeSet

MAX_VERSION_JUMP = 100_000
"""How far past the highest known version of an actor a claim may reach."""
MAX_PARTIAL_VERSIONS = 1_024
"""Versions of one actor received in part at a time."""
MAX_PARTIAL_BYTES = 256 * 1024 * 1024
"""Estimated bytes of buffered pieces of one actor."""


def change_size(ch: Change) -> int:
    """Bytes a buffered change takes, roughly (the same estimate as ``_BUFFERED_SIZE_SQL``)."""
    val = ch.val
    size = len(val.encode()) if type(val) is str else len(val) if type(val) is bytes else 8
    return 32 + len(ch.table) + len(ch.pk) + len(ch.cid) + size


@attrs.define
class Partial:
    """A version of which only some seqs arrived (they wait in the buffer table)."""

    seqs: RangeSet
    last_seq: int
    ts: int
    bytes: int = 0
    """Estimated size of its buffered changes (``change_size``), for MAX_PARTIAL_BYTES."""

    def complete(self) -> bool:
        return self.seqs.covers(0, self.last_seq)

    def missing(self) -> list[Range]:
        return self.seqs.missing(0, self.last_seq)


@attrs.define
class BookedVersions:
    """One actor's versions as this node knows them."""

    max: int = 0
    gaps: RangeSet = attrs.Factory(RangeSet)
    partials: dict[int, Partial] = attrs.Factory(dict)

    def copy(self) -> BookedVersions:
        partials = {
            v: Partial(p.seqs.copy(), p.last_seq, p.ts, p.bytes) for v, p in self.partials.items()
        }
        return BookedVersions(self.max, self.gaps.copy(), partials)

    def ceiling(self) -> int:
        """The highest version of this actor that may be believed now (MAX_VERSION_JUMP)."""
        return min(MAX_CLOCK, self.max + MAX_VERSION_JUMP)

    def partial_bytes(self) -> int:
        return sum(p.bytes for p in self.partials.values())

    def knows(self, version: int) -> bool:
        return (
            version <= self.max
            and not self.gaps.contains(version)
            and (version not in self.partials)
        )

    def knows_range(self, start: int, end: int) -> bool:
        if end > self.max or self.gaps.overlaps(start, end):
            return False
        return not self.partials_in(start, end)

    def partials_in(self, start: int, end: int) -> list[int]:
        """The partial versions in start..=end (at most MAX_PARTIAL_VERSIONS of them)."""
        return [v for v in self.partials if start <= v <= end]

    def knows_seqs(self, version: int, seqs: Range) -> bool:
        if self.knows(version):
            return True
        partial = self.partials.get(version)
        return partial is not None and partial.seqs.covers(*seqs)

    def _extend(self, start: int, end: int) -> None:
        if start > self.max + 1:
            self.gaps.add(self.max + 1, start - 1)
        self.gaps.remove(start, end)
        self.max = max(self.max, end)

    def record(self, start: int, end: int) -> None:
        """Versions start..=end are now fully known (applied, or cleared)."""
        self._extend(start, end)
        for v in self.partials_in(start, end):
            del self.partials[v]

    def forget_partial(self, version: int) -> None:
        """A partial version's pieces were dropped: the version is missing again (a gap)."""
        del self.partials[version]
        self.gaps.add(version, version)

    def record_partial(self, version: int, seqs: Range, last_seq: int, ts: int) -> Partial:
        """Some seqs of a version arrived; returns the version's partial state."""
        self._extend(version, version)
        partial = self.partials.get(version)
        if partial is None:
            partial = self.partials[version] = Partial(RangeSet(), last_seq, ts)
        partial.seqs.add(*seqs)
        return partial
