"""What this node knows of every actor's versions (Corrosion's "bookie", reference §3.7).

Per actor: the highest version known (`max`), the versions below it known to be missing
(`gaps`), and versions received only in part (`partials`: which seqs arrived, out of
0..=last_seq). A version is known when it is <= max, not in a gap and not partial.

The in-memory state is a cache of tables written in the same SQLite transaction as the data they
describe; a batch works on copies (`BookedVersions.copy`) and the copies replace the originals
only after the commit (DESIGN.md invariant 4).
"""

from __future__ import annotations

import sqlite3

import attrs

from corrosion_py.store.ranges import Range, RangeSet

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS __corro_bookkeeping_gaps (actor_id BLOB NOT NULL, "
    'start INTEGER NOT NULL, "end" INTEGER NOT NULL, PRIMARY KEY (actor_id, start)) '
    "WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS __corro_seq_bookkeeping (site_id BLOB NOT NULL, "
    "db_version INTEGER NOT NULL, start_seq INTEGER NOT NULL, end_seq INTEGER NOT NULL, "
    "last_seq INTEGER NOT NULL, ts INTEGER NOT NULL, "
    "PRIMARY KEY (site_id, db_version, start_seq)) WITHOUT ROWID",
]


@attrs.define
class Partial:
    """A version of which only some seqs arrived (they wait in the buffer table)."""

    seqs: RangeSet
    last_seq: int
    ts: int

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
        partials = {v: Partial(p.seqs.copy(), p.last_seq, p.ts) for v, p in self.partials.items()}
        return BookedVersions(self.max, self.gaps.copy(), partials)

    def knows(self, version: int) -> bool:
        return (
            version <= self.max
            and not self.gaps.contains(version)
            and (version not in self.partials)
        )

    def knows_range(self, start: int, end: int) -> bool:
        if end > self.max or self.gaps.overlaps(start, end):
            return False
        return not any(start <= v <= end for v in self.partials)

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
        for v in [v for v in self.partials if start <= v <= end]:
            del self.partials[v]

    def record_partial(self, version: int, seqs: Range, last_seq: int, ts: int) -> Partial:
        """Some seqs of a version arrived; returns the version's partial state."""
        self._extend(version, version)
        partial = self.partials.get(version)
        if partial is None:
            partial = self.partials[version] = Partial(RangeSet(), last_seq, ts)
        partial.seqs.add(*seqs)
        return partial


def load(conn: sqlite3.Connection) -> dict[bytes, BookedVersions]:
    """The bookie as persisted: max per actor from crsql_db_versions, gaps, partial seqs."""
    bookie: dict[bytes, BookedVersions] = {}
    for actor, version in conn.execute("SELECT site_id, db_version FROM crsql_db_versions"):
        bookie[bytes(actor)] = BookedVersions(max=version)
    for actor, start, end in conn.execute(
        'SELECT actor_id, start, "end" FROM __corro_bookkeeping_gaps'
    ):
        bookie.setdefault(bytes(actor), BookedVersions()).gaps.add(start, end)
    for actor, version, start, end, last_seq, ts in conn.execute(
        "SELECT site_id, db_version, start_seq, end_seq, last_seq, ts FROM __corro_seq_bookkeeping"
    ):
        booked = bookie.setdefault(bytes(actor), BookedVersions())
        booked.record_partial(version, (start, end), last_seq, ts)
    return bookie


def persist(conn: sqlite3.Connection, actor: bytes, booked: BookedVersions) -> None:
    """Write one actor's bookkeeping (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO crsql_db_versions (site_id, db_version) VALUES (?, ?) "
        "ON CONFLICT (site_id) DO UPDATE SET db_version = max(db_version, excluded.db_version)",
        (actor, booked.max),
    )
    conn.execute("DELETE FROM __corro_bookkeeping_gaps WHERE actor_id = ?", (actor,))
    conn.executemany(
        'INSERT INTO __corro_bookkeeping_gaps (actor_id, start, "end") VALUES (?, ?, ?)',
        [(actor, s, e) for s, e in booked.gaps],
    )
    conn.execute("DELETE FROM __corro_seq_bookkeeping WHERE site_id = ?", (actor,))
    conn.executemany(
        "INSERT INTO __corro_seq_bookkeeping "
        "(site_id, db_version, start_seq, end_seq, last_seq, ts) VALUES (?, ?, ?, ?, ?, ?)",
        [(actor, v, s, e, p.last_seq, p.ts) for v, p in booked.partials.items() for s, e in p.seqs],
    )
