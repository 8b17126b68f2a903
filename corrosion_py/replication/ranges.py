"""A set of integers kept as sorted, disjoint, non-adjacent inclusive ranges.

Bookkeeping speaks in ranges (missing versions, received seqs), and these sets stay small: a
million versions received in order are one range.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from corrosion_py.aliases import Range


class RangeSet:
    """Sorted disjoint inclusive ranges; adjacent ranges are merged on insert."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, ranges: Iterable[Range] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in ranges:
            self.add(start, end)

    def __iter__(self) -> Iterator[Range]:
        return iter(zip(self._starts, self._ends, strict=True))

    def __len__(self) -> int:
        return len(self._starts)

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeSet) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"RangeSet({list(self)!r})"

    @classmethod
    def from_ranges(cls, ranges: Iterable[Range]) -> RangeSet:
        """The union of ``ranges`` given in any order: one sort, then a linear merge (adding
        them one by one costs O(n) each when they arrive out of order)."""
        out = cls()
        starts, ends = out._starts, out._ends
        for start, end in sorted(ranges):
            if start > end:
                raise ValueError(f"empty range {start}..{end}")
            if ends and start <= ends[-1] + 1:
                ends[-1] = max(ends[-1], end)
            else:
                starts.append(start)
                ends.append(end)
        return out

    def copy(self) -> RangeSet:
        out = RangeSet()
        out._starts, out._ends = self._starts[:], self._ends[:]
        return out

    def add(self, start: int, end: int) -> None:
        if start > end:
            raise ValueError(f"empty range {start}..{end}")
        # ranges that overlap or touch [start, end] are merged into it
        lo = bisect.bisect_left(self._ends, start - 1)
        hi = bisect.bisect_right(self._starts, end + 1)
        if lo < hi:
            start = min(start, self._starts[lo])
            end = max(end, self._ends[hi - 1])
        self._starts[lo:hi] = [start]
        self._ends[lo:hi] = [end]

    def remove(self, start: int, end: int) -> None:
        if start > end:
            raise ValueError(f"empty range {start}..{end}")
        lo = bisect.bisect_left(self._ends, start)
        hi = bisect.bisect_right(self._starts, end)
        if lo >= hi:
            return
        keep: list[Range] = []
        if self._starts[lo] < start:
            keep.append((self._starts[lo], start - 1))
        if self._ends[hi - 1] > end:
            keep.append((end + 1, self._ends[hi - 1]))
        self._starts[lo:hi] = [s for s, _ in keep]
        self._ends[lo:hi] = [e for _, e in keep]

    def contains(self, value: int) -> bool:
        i = bisect.bisect_right(self._starts, value) - 1
        return i >= 0 and self._ends[i] >= value

    def covers(self, start: int, end: int) -> bool:
        """Whether every value of start..=end is in the set."""
        i = bisect.bisect_right(self._starts, start) - 1
        return i >= 0 and self._ends[i] >= end

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect.bisect_left(self._ends, start)
        return i < len(self._starts) and self._starts[i] <= end

    def intersection(self, start: int, end: int) -> list[Range]:
        """The parts of start..=end that are in the set."""
        out = []
        i = bisect.bisect_left(self._ends, start)
        while i < len(self._starts) and self._starts[i] <= end:
            out.append((max(start, self._starts[i]), min(end, self._ends[i])))
            i += 1
        return out

    def missing(self, start: int, end: int) -> list[Range]:
        """The parts of start..=end that are not in the set."""
        out = []
        cursor = start
        for s, e in self.intersection(start, end):
            if s > cursor:
                out.append((cursor, s - 1))
            cursor = e + 1
        if cursor <= end:
            out.append((cursor, end))
        return out

    def count(self) -> int:
        return sum(e - s + 1 for s, e in self)
