"""Serving a peer's needs from this node's database (the reads half of anti-entropy).

Serving walks the requested versions newest first, at most ``SERVE_WINDOW`` existing versions
per query, finding them with a backward index scan (``crdt.top_versions``): the cost follows
the versions that exist and the ranges of our bookkeeping, never the width of the requested
range. Versions with no surviving change rows (every cell overwritten since) are answered with
empty ranges, versions in our own gaps are skipped, and versions we hold only in part are
answered from the buffer with the seqs we have. One session never gets a version twice
(``replication.needs.Served``): a client repeating or overlapping its needs costs nothing more,
and a session's work is bounded by the versions that exist and ``MAX_SESSION_NEEDS``.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Callable, Iterator

from corrosion_py import crdt
from corrosion_py.aliases import Range
from corrosion_py.crdt import Change
from corrosion_py.replication.booked import BookedVersions
from corrosion_py.replication.chunking import chunk
from corrosion_py.replication.needs import Need, Served
from corrosion_py.replication.ranges import RangeSet
from corrosion_py.wire.messages import Changeset, EmptyChangeset, NeedFull

SERVE_WINDOW = 64  # existing versions planned per query while serving
SERVE_PAGE = 2_000  # change rows read per query while serving a large version


_ROWS, _PARTIAL, _GAP, _CLEARED = range(4)


def _segments(
    lo: int, hi: int, existing: list[int], gaps: RangeSet, partials: list[int]
) -> Iterator[tuple[int, int, int]]:
    """lo..=hi as (kind, start, end) segments, highest first: versions with change rows, partial
    versions, our gaps, and the cleared versions between them. O(existing + ranges)."""
    special = {v: _PARTIAL for v in partials}
    special.update((v, _ROWS) for v in existing)
    points = sorted(special)
    pieces = [(v, v, kind) for v, kind in special.items()]
    for start, end in gaps.intersection(lo, hi):  # a gap minus the versions we do hold
        cursor = start
        for v in points[bisect.bisect_left(points, start) : bisect.bisect_right(points, end)]:
            if v > cursor:
                pieces.append((cursor, v - 1, _GAP))
            cursor = v + 1
        if cursor <= end:
            pieces.append((cursor, end, _GAP))
    cursor = hi
    for start, end, kind in sorted(pieces, reverse=True):
        if end < cursor:
            yield (_CLEARED, end + 1, cursor)
        yield (kind, start, end)
        cursor = start - 1
    if cursor >= lo:
        yield (_CLEARED, lo, cursor)


class Server:
    """Answers needs from a read connection and a snapshot of the bookkeeping; ``served`` is
    the session's record of what it got already (a fresh one when not given)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        bookie: dict[bytes, BookedVersions],
        *,
        budget: int,
        size_of: Callable[[Change], int],
        overhead: int,
        served: Served | None = None,
    ) -> None:
        self.conn = conn
        self.bookie = bookie
        self.budget, self.size_of, self.overhead = budget, size_of, overhead
        self.served = served if served is not None else Served()

    def serve(self, actor: bytes, need: Need) -> Iterator[Changeset | EmptyChangeset]:
        if isinstance(need, NeedFull):
            for start, end in reversed(self.served.take_full(actor, *need.versions)):
                yield from self._full(actor, start, end)
        elif self.served.take_partial(actor, need.version):
            yield from self._partial(actor, need.version, need.seqs)

    def _pieces(
        self, actor: bytes, version: int, changes: list[Change], last_seq: int, ts: int
    ) -> Iterator[Changeset]:
        return chunk(
            actor,
            version,
            changes,
            last_seq,
            ts,
            budget=self.budget,
            size_of=self.size_of,
            overhead=self.overhead,
        )

    def _full(self, actor: bytes, start: int, end: int) -> Iterator[Changeset | EmptyChangeset]:
        booked = self.bookie.get(actor, BookedVersions())
        end = min(end, booked.max)
        partials = sorted(booked.partials_in(start, end))
        empty: Range | None = None  # consecutive versions with no surviving rows
        hi = end
        while hi >= start:
            top = crdt.top_versions(
                self.conn, site_id=actor, min_version=start, max_version=hi, limit=SERVE_WINDOW
            )
            lo = top[-1] if len(top) == SERVE_WINDOW else start
            sizes = crdt.version_sizes(self.conn, site_id=actor, min_version=lo, max_version=hi)
            small = {v for v, (n, _) in sizes.items() if n <= SERVE_PAGE}
            by_version: dict[int, list[Change]] = {}
            if small:  # one query for the window's small versions
                for ch in crdt.changes(
                    self.conn, site_id=actor, min_version=min(small), max_version=max(small)
                ):
                    if ch.db_version in small:
                        by_version.setdefault(ch.db_version, []).append(ch)
            window = partials[bisect.bisect_left(partials, lo) : bisect.bisect_right(partials, hi)]
            for kind, first, last in _segments(lo, hi, list(sizes), booked.gaps, window):
                if kind == _CLEARED:
                    if empty is not None and empty[0] == last + 1:
                        empty = (first, empty[1])
                        continue
                    if empty is not None:
                        yield EmptyChangeset(actor, empty, 0)
                    empty = (first, last)
                    continue
                if empty is not None:
                    yield EmptyChangeset(actor, empty, 0)
                    empty = None
                if kind == _PARTIAL:
                    yield from self._buffered(actor, first, None)
                elif kind == _ROWS:
                    size = sizes[first]
                    if first in by_version:
                        yield from self._pieces(actor, first, by_version.pop(first), size[1], 0)
                    else:
                        yield from self._paged(actor, first, size[1])
            hi = lo - 1
        if empty is not None:
            yield EmptyChangeset(actor, empty, 0)

    def _paged(self, actor: bytes, version: int, last_seq: int) -> Iterator[Changeset]:
        """A large version, read SERVE_PAGE seqs at a time so memory stays bounded."""
        for low in range(0, last_seq + 1, SERVE_PAGE):
            high = min(last_seq, low + SERVE_PAGE - 1)
            rows = crdt.changes(
                self.conn,
                site_id=actor,
                min_version=version,
                max_version=version,
                min_seq=low,
                max_seq=high,
            )
            for piece in self._pieces(actor, version, rows, last_seq, 0):
                lo, hi = max(piece.seqs[0], low), min(piece.seqs[1], high)
                yield Changeset(actor, version, piece.changes, (lo, hi), last_seq, 0)

    def _partial(
        self, actor: bytes, version: int, seqs: tuple[Range, ...]
    ) -> Iterator[Changeset | EmptyChangeset]:
        booked = self.bookie.get(actor, BookedVersions())
        if booked.knows(version):  # we have it all: send the whole version
            yield from self._full(actor, version, version)
        elif version in booked.partials:
            yield from self._buffered(actor, version, seqs)

    def _buffered(
        self, actor: bytes, version: int, wanted: tuple[Range, ...] | None
    ) -> Iterator[Changeset]:
        """The pieces of a version we hold only in part, limited to ``wanted`` seqs."""
        partial = self.bookie[actor].partials[version]
        held = list(partial.seqs)
        if wanted is not None:
            want = RangeSet(wanted)
            held = [r for s, e in held for r in want.intersection(s, e)]
        for s, e in held:
            rows = [
                Change(*r)
                for r in self.conn.execute(
                    'SELECT "table", pk, cid, val, col_version, db_version, site_id, cl, seq '
                    "FROM __corro_buffered_changes WHERE site_id = ? AND db_version = ? "
                    "AND seq BETWEEN ? AND ? ORDER BY seq",
                    (actor, version, s, e),
                )
            ]
            for piece in self._pieces(actor, version, rows, partial.last_seq, partial.ts):
                # keep the piece inside the held range: chunk() assumes 0..=last_seq
                lo, hi = max(piece.seqs[0], s), min(piece.seqs[1], e)
                yield Changeset(
                    actor, version, piece.changes, (lo, hi), partial.last_seq, partial.ts
                )
