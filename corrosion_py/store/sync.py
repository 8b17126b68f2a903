"""Anti-entropy logic without the network (reference §3.9): this node's sync state, what to ask
a peer for given its state, and the changesets that answer a peer's needs.

Serving walks the requested versions newest first, a window of versions per query, so memory
stays bounded by the window whatever the size of the range. Versions with no surviving change
rows (every cell overwritten since) are answered with empty ranges, versions in our own gaps are
skipped, and versions we hold only in part are answered from the buffer with the seqs we have.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator

from corrosion_py import crdt
from corrosion_py.crdt import Change
from corrosion_py.store.bookkeeping import BookedVersions
from corrosion_py.store.chunking import chunk
from corrosion_py.store.ranges import Range, RangeSet
from corrosion_py.wire.messages import Changeset, EmptyChangeset, NeedFull, NeedPartial, SyncState

FULL_NEED_VERSIONS = 10  # versions per Full need (Corrosion's chunking of requests)
SERVE_WINDOW = 64  # versions planned per query while serving
SERVE_PAGE = 2_000  # change rows read per query while serving a large version

Need = NeedFull | NeedPartial


def sync_state(actor_id: bytes, bookie: dict[bytes, BookedVersions]) -> SyncState:
    heads = {actor: b.max for actor, b in bookie.items() if b.max > 0}
    need = {actor: tuple(b.gaps) for actor, b in bookie.items() if b.gaps}
    partial_need = {
        actor: {v: tuple(p.missing()) for v, p in b.partials.items()}
        for actor, b in bookie.items()
        if b.partials
    }
    return SyncState(actor_id, heads, need, partial_need)


def _split(ranges: list[Range]) -> list[NeedFull]:
    out = []
    for start, end in ranges:
        for s in range(start, end + 1, FULL_NEED_VERSIONS):
            out.append(NeedFull((s, min(end, s + FULL_NEED_VERSIONS - 1))))
    return out


def compute_needs(ours: SyncState, theirs: SyncState) -> dict[bytes, list[Need]]:
    """What to ask the peer whose state is ``theirs`` for, actor by actor (newest first)."""
    out: dict[bytes, list[Need]] = {}
    for actor, their_head in theirs.heads.items():
        if actor == ours.actor_id or their_head <= 0:
            continue
        has = RangeSet([(1, their_head)])
        for start, end in theirs.need.get(actor, ()):
            has.remove(start, end)
        their_partials = theirs.partial_need.get(actor, {})
        for version in their_partials:
            has.remove(version, version)
        wanted: list[Range] = []
        for start, end in ours.need.get(actor, ()):  # our gaps the peer can fill
            wanted += has.intersection(start, end)
        our_head = ours.heads.get(actor, 0)
        if their_head > our_head:
            wanted += has.intersection(our_head + 1, their_head)
        needs: list[Need] = list(_split(sorted(wanted, reverse=True)))
        for version, missing in ours.partial_need.get(actor, {}).items():
            if has.contains(version):
                needs.append(NeedPartial(version, tuple(missing)))
            elif version in their_partials:
                # they hold what they are not missing: ask for our missing minus theirs
                theirs_missing = RangeSet(their_partials[version])
                ask = [r for s, e in missing for r in theirs_missing.missing(s, e)]
                if ask:
                    needs.append(NeedPartial(version, tuple(ask)))
        if needs:
            out[actor] = needs
    return out


class Server:
    """Answers needs from a read connection and a snapshot of the bookkeeping."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        bookie: dict[bytes, BookedVersions],
        *,
        budget: int,
        size_of: Callable[[Change], int],
        overhead: int,
    ) -> None:
        self.conn = conn
        self.bookie = bookie
        self.budget, self.size_of, self.overhead = budget, size_of, overhead

    def serve(self, actor: bytes, need: Need) -> Iterator[Changeset | EmptyChangeset]:
        if isinstance(need, NeedFull):
            yield from self._full(actor, *need.versions)
        else:
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
        empty: Range | None = None  # consecutive versions with no surviving rows
        hi = end
        while hi >= start:
            lo = max(start, hi - SERVE_WINDOW + 1)
            sizes = crdt.version_sizes(self.conn, site_id=actor, min_version=lo, max_version=hi)
            small = {v for v, (n, _) in sizes.items() if n <= SERVE_PAGE}
            by_version: dict[int, list[Change]] = {}
            if small:  # one query for the window's small versions
                for ch in crdt.changes(
                    self.conn, site_id=actor, min_version=min(small), max_version=max(small)
                ):
                    if ch.db_version in small:
                        by_version.setdefault(ch.db_version, []).append(ch)
            for version in range(hi, lo - 1, -1):
                size = sizes.get(version)
                unknown = version in booked.partials or booked.gaps.contains(version)
                if size is None and not unknown:
                    empty = (version, empty[1] if empty else version)
                    continue
                if empty is not None:
                    yield EmptyChangeset(actor, empty, 0)
                    empty = None
                if size is None:
                    if version in booked.partials:
                        yield from self._buffered(actor, version, None)
                elif version in by_version:
                    rows = by_version.pop(version)
                    yield from self._pieces(actor, version, rows, size[1], 0)
                else:
                    yield from self._paged(actor, version, size[1])
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
