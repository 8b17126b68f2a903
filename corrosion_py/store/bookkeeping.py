"""Persisting the bookkeeping (``replication/booked.py``): per actor the max version (the
engine's ``crsql_db_versions``), gaps and partially received versions, written in the same
SQLite transaction as the data they describe, only what a batch changed, so the cost follows the
batch and not the size of the bookkeeping.
"""

from __future__ import annotations

import sqlite3

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
    """The bookie as persisted: max per actor from crsql_db_versions, gaps, partial seqs and
    the size of each partial version's buffered pieces."""
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
        conn.execute(
            "INSERT INTO crsql_db_versions (site_id, db_version) VALUES (?, ?) ON CONFLICT "
            "(site_id) DO UPDATE SET db_version = max(db_version, excluded.db_version)",
            (actor, booked.max),
        )
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
