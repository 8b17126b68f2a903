"""The bookkeeping (``replication/booked.py``) of a node's database: persisted and published.

Persisted: per actor the max version (the engine's ``crsql_db_versions``), gaps and partially
received versions, written in the same SQLite transaction as the data they describe, only what
a batch changed, so the cost follows the batch and not the size of the bookkeeping.

Published: what every other thread reads (`Published`), replaced only once the transaction
that wrote it committed.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping

from corrosion_py import crdt
from corrosion_py.replication.booked import BookedVersions

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS __corro_bookkeeping_gaps (actor_id BLOB NOT NULL, "
    'start INTEGER NOT NULL, "end" INTEGER NOT NULL, PRIMARY KEY (actor_id, start)) '
    "WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS __corro_seq_bookkeeping (site_id BLOB NOT NULL, "
    "db_version INTEGER NOT NULL, start_seq INTEGER NOT NULL, end_seq INTEGER NOT NULL, "
    "last_seq INTEGER NOT NULL, ts INTEGER NOT NULL, "
    "PRIMARY KEY (site_id, db_version, start_seq)) WITHOUT ROWID",
]


_BUFFERED_SIZE_SQL = (
    'sum(32 + length(CAST("table" AS BLOB)) + length(pk) + length(CAST(cid AS BLOB)) + '
    "CASE typeof(val) WHEN 'text' THEN length(CAST(val AS BLOB)) "
    "WHEN 'blob' THEN length(val) ELSE 8 END)"
)


def load(conn: sqlite3.Connection) -> dict[bytes, BookedVersions]:
    """The bookie as persisted: max per actor from the engine's versions, gaps, partial seqs
    and the size of each partial version's buffered pieces."""
    bookie: dict[bytes, BookedVersions] = {
        actor: BookedVersions(max=version) for actor, version in crdt.site_versions(conn).items()
    }
    for actor, start, end in conn.execute(
        'SELECT actor_id, start, "end" FROM __corro_bookkeeping_gaps'
    ):
        bookie.setdefault(bytes(actor), BookedVersions()).gaps.add(start, end)
    for actor, version, start, end, last_seq, ts in conn.execute(
        "SELECT site_id, db_version, start_seq, end_seq, last_seq, ts FROM __corro_seq_bookkeeping"
    ):
        booked = bookie.setdefault(bytes(actor), BookedVersions())
        booked.record_partial(version, (start, end), last_seq, ts)
    for actor, version, size in conn.execute(
        f"SELECT site_id, db_version, {_BUFFERED_SIZE_SQL} FROM __corro_buffered_changes "
        "GROUP BY site_id, db_version"
    ):
        partial = bookie.get(bytes(actor), BookedVersions()).partials.get(version)
        if partial is not None:
            partial.bytes = size
    return bookie


def persist(
    conn: sqlite3.Connection, actor: bytes, booked: BookedVersions, base: BookedVersions | None
) -> None:
    """Write what changed of one actor's bookkeeping since ``base`` (the published state the
    batch started from; None for an actor new to it), inside the caller's transaction."""
    if base is None or booked.max != base.max:
        crdt.record_versions(conn, {actor: booked.max})
    old_gaps = set(base.gaps) if base is not None else set()
    new_gaps = set(booked.gaps)
    conn.executemany(
        "DELETE FROM __corro_bookkeeping_gaps WHERE actor_id = ? AND start = ?",
        [(actor, s) for s, _ in old_gaps - new_gaps],
    )
    conn.executemany(
        'INSERT INTO __corro_bookkeeping_gaps (actor_id, start, "end") VALUES (?, ?, ?)',
        [(actor, s, e) for s, e in new_gaps - old_gaps],
    )
    old_seqs = _seq_rows(base) if base is not None else set()
    new_seqs = _seq_rows(booked)
    conn.executemany(
        "DELETE FROM __corro_seq_bookkeeping WHERE site_id = ? AND db_version = ? "
        "AND start_seq = ?",
        [(actor, v, s) for v, s, *_ in old_seqs - new_seqs],
    )
    conn.executemany(
        "INSERT INTO __corro_seq_bookkeeping "
        "(site_id, db_version, start_seq, end_seq, last_seq, ts) VALUES (?, ?, ?, ?, ?, ?)",
        [(actor, *row) for row in new_seqs - old_seqs],
    )


def _seq_rows(booked: BookedVersions) -> set[tuple[int, int, int, int, int]]:
    return {(v, s, e, p.last_seq, p.ts) for v, p in booked.partials.items() for s, e in p.seqs}


class Published:
    """The bookkeeping every thread reads. Copy-on-write: an actor's entry is never changed once
    published, only replaced under the lock, so a snapshot is a shallow copy."""

    def __init__(self, bookie: dict[bytes, BookedVersions]) -> None:
        self._bookie = bookie
        self._lock = threading.Lock()

    def snapshot(self) -> dict[bytes, BookedVersions]:
        """Every actor's published entry, safe to read from any thread."""
        with self._lock:
            return dict(self._bookie)

    def get(self, actor: bytes) -> BookedVersions | None:
        """One actor's published entry (no lock: entries are replaced whole, never changed, and
        reading one dict entry is atomic)."""
        return self._bookie.get(actor)

    def publish(self, work: Mapping[bytes, BookedVersions]) -> None:
        """Replace the entries a committed batch changed (entries of its own, never shared)."""
        with self._lock:
            self._bookie.update(work)

    def record(self, actor: bytes, versions: Iterable[int]) -> None:
        """Add committed versions of ``actor`` (the node's own local transactions)."""
        with self._lock:
            old = self._bookie.get(actor)
            booked = old.copy() if old is not None else BookedVersions()
            for version in versions:
                booked.record(version, version)
            self._bookie[actor] = booked
