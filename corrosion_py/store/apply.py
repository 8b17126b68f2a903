"""Applying remote changesets in one SQLite transaction (Corrosion's batched apply of changes).

Rules, in the order they are applied to each item of a batch:
- claims are bounded first (docs/limits.md), each refusal counted in ``ApplyResult.rejected`` by
  reason: anything about this node's own actor ("own_actor": a node is the only authority on its
  own versions); a version above the actor's ``ceiling()`` as published when the batch began
  ("version_jump"; an empty range reaching past it is cut there, "empty_clamped"), so items of one
  batch cannot lift each other's ceiling; a changeset whose rows do not belong to it
  ("inconsistent": malformed, never quarantined);
- versions (or seq ranges) the bookkeeping already knows are skipped;
- an empty (cleared) version range only advances bookkeeping, and drops buffered pieces of it;
- a complete changeset is merged into the CRR tables;
- a piece of a version is buffered on disk (`__corro_buffered_changes`) with its seq range; when
  the pieces cover 0..=last_seq the version is merged from the buffer. A new partial version
  beyond MAX_PARTIAL_VERSIONS, or pieces beyond MAX_PARTIAL_BYTES, make room by dropping the
  actor's oldest partial versions ("partial_evicted"); a piece of a version that alone exceeds
  the byte budget is dropped ("partial_too_large");
- all merges of a batch run as one engine merge; if that fails, each changeset is merged in its
  own savepoint and the ones that still fail (unknown table after a schema divergence, a value a
  CHECK refuses) are quarantined with the reason, so they block neither the batch nor later ones.
  `retry_quarantined` re-applies them (after a schema change). The quarantine keeps at most
  MAX_QUARANTINE_ROWS changesets and MAX_QUARANTINE_BYTES of payload: the oldest are dropped
  (counted in ``ApplyResult.quarantine_dropped``); a dropped one is still missing from the
  bookkeeping, so sync fetches it again.
Bookkeeping is changed on copies, written in the same transaction, and returned for the caller to
publish after the commit.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Sequence

import attrs
import cbor2

from corrosion_py import crdt
from corrosion_py.aliases import Range
from corrosion_py.crdt import Change
from corrosion_py.errors import CorrosionError
from corrosion_py.replication.booked import (
    MAX_PARTIAL_BYTES,
    MAX_PARTIAL_VERSIONS,
    MAX_VERSION_JUMP,
    BookedVersions,
    change_size,
)
from corrosion_py.store.bookkeeping import persist
from corrosion_py.store.faults import classify
from corrosion_py.wire.messages import Changeset, EmptyChangeset, Item

SCHEMA = [
    'CREATE TABLE IF NOT EXISTS __corro_buffered_changes ("table" TEXT NOT NULL, pk BLOB NOT NULL, '
    "cid TEXT NOT NULL, val ANY, col_version INTEGER NOT NULL, db_version INTEGER NOT NULL, "
    "site_id BLOB NOT NULL, cl INTEGER NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL, "
    "PRIMARY KEY (site_id, db_version, seq)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS __corro_quarantine (actor_id BLOB NOT NULL, "
    "version INTEGER NOT NULL, last_seq INTEGER NOT NULL, ts INTEGER NOT NULL, "
    "reason TEXT NOT NULL, changes BLOB NOT NULL, quarantined_at INTEGER NOT NULL, "
    "PRIMARY KEY (actor_id, version)) WITHOUT ROWID",
]


MAX_QUARANTINE_ROWS = 1_000
MAX_QUARANTINE_BYTES = 64 * 1024 * 1024


@attrs.frozen
class Quarantined:
    actor_id: bytes
    version: int
    reason: str


@attrs.define
class ApplyResult:
    """What a batch did. `impactful` are the changes that changed rows: what subscriptions
    look at."""

    applied: list[tuple[bytes, int]] = attrs.Factory(list)
    cleared: list[tuple[bytes, Range]] = attrs.Factory(list)
    buffered: int = 0
    skipped: int = 0
    quarantined: list[Quarantined] = attrs.Factory(list)
    impactful: list[Change] = attrs.Factory(list)
    rows_impacted: int = 0
    rejected: Counter[str] = attrs.Factory(Counter)
    """Claims refused or cut, by reason (see the module rules)."""
    quarantine_dropped: int = 0

    def extend(self, other: ApplyResult) -> None:
        self.applied += other.applied
        self.cleared += other.cleared
        self.buffered += other.buffered
        self.skipped += other.skipped
        self.quarantined += other.quarantined
        self.impactful += other.impactful
        self.rows_impacted += other.rows_impacted
        self.rejected.update(other.rejected)
        self.quarantine_dropped += other.quarantine_dropped


@attrs.frozen
class _Pending:
    actor_id: bytes
    version: int
    changes: tuple[Change, ...]
    last_seq: int
    ts: int
    from_buffer: bool


def _buffered(conn: sqlite3.Connection, actor: bytes, version: int) -> tuple[Change, ...]:
    rows = conn.execute(
        'SELECT "table", pk, cid, val, col_version, db_version, site_id, cl, seq '
        "FROM __corro_buffered_changes WHERE site_id = ? AND db_version = ? ORDER BY seq",
        (actor, version),
    )
    return tuple(Change(*r) for r in rows)


def _inconsistency(item: Changeset) -> str | None:
    """Why a changeset's rows do not belong to it, or None."""
    start, end = item.seqs
    for ch in item.changes:
        if ch.site_id != item.actor_id or ch.db_version != item.version:
            return "a change does not belong to the changeset's actor and version"
        if not start <= ch.seq <= end:
            return f"seq {ch.seq} is outside the changeset's range {start}..{end}"
    return None


class Applier:
    """Applies one batch on the write connection, inside the caller's transaction."""

    def __init__(
        self, conn: sqlite3.Connection, actor_id: bytes, bookie: dict[bytes, BookedVersions]
    ) -> None:
        self.conn = conn
        self.actor_id = actor_id
        self.bookie = bookie
        self.work: dict[bytes, BookedVersions] = {}
        self.result = ApplyResult()
        self.pending: list[_Pending] = []
        self.scheduled: set[tuple[bytes, int]] = set()

    def booked(self, actor: bytes) -> BookedVersions:
        got = self.work.get(actor)
        if got is None:
            base = self.bookie.get(actor)
            got = self.work[actor] = base.copy() if base is not None else BookedVersions()
        return got

    def apply(self, items: Sequence[Item]) -> ApplyResult:
        for item in items:
            admitted = self._bound(item)
            if admitted is None:
                continue
            if isinstance(admitted, EmptyChangeset):
                self._empty(admitted)
            elif admitted.complete:
                self._complete(admitted)
            else:
                self._piece(admitted)
        self._merge_pending()
        for actor, booked in list(self.work.items()):
            base = self.bookie.get(actor)
            if base is None and booked.max == 0 and not booked.gaps and not booked.partials:
                del self.work[actor]  # nothing learnt (all skipped or quarantined): no entry
                continue
            persist(self.conn, actor, booked, base)
        if self.result.quarantined:
            self.result.quarantine_dropped += trim_quarantine(self.conn)
        return self.result

    def _bound(self, item: Item) -> Item | None:
        """The item as far as it may be believed, or None (counted) when not at all."""
        rejected = self.result.rejected
        if item.actor_id == self.actor_id:
            rejected["own_actor"] += 1
            return None
        base = self.bookie.get(item.actor_id)
        ceiling = base.ceiling() if base is not None else MAX_VERSION_JUMP
        if isinstance(item, EmptyChangeset):
            start, end = item.versions
            if start > ceiling:
                rejected["version_jump"] += 1
                return None
            if end > ceiling:
                rejected["empty_clamped"] += 1
                return EmptyChangeset(item.actor_id, (start, ceiling), item.ts)
            return item
        if item.version > ceiling:
            rejected["version_jump"] += 1
            return None
        if _inconsistency(item) is not None:
            rejected["inconsistent"] += 1
            return None
        return item

    def _empty(self, item: EmptyChangeset) -> None:
        booked = self.booked(item.actor_id)
        start, end = item.versions
        if booked.knows_range(start, end):
            self.result.skipped += 1
            return
        for version in booked.partials_in(start, end):
            self.conn.execute(
                "DELETE FROM __corro_buffered_changes WHERE site_id = ? AND db_version = ?",
                (item.actor_id, version),
            )
        booked.record(start, end)
        self.result.cleared.append((item.actor_id, (start, end)))

    def _admit(self, item: Changeset, known: bool) -> bool:
        """Whether to take the changeset: not known already, nor scheduled in this batch."""
        if known or (item.actor_id, item.version) in self.scheduled:
            self.result.skipped += 1
            return False
        return True

    def _complete(self, item: Changeset) -> None:
        key = (item.actor_id, item.version)
        if not self._admit(item, self.booked(item.actor_id).knows(item.version)):
            return
        self.scheduled.add(key)
        self.pending.append(_Pending(*key, item.changes, item.last_seq, item.ts, False))

    def _piece(self, item: Changeset) -> None:
        key = (item.actor_id, item.version)
        booked = self.booked(item.actor_id)
        if not self._admit(item, booked.knows_seqs(item.version, item.seqs)):
            return
        size = sum(change_size(ch) for ch in item.changes)
        if not self._make_room(booked, item, size):
            return
        self.conn.executemany(
            'INSERT OR IGNORE INTO __corro_buffered_changes ("table", pk, cid, val, col_version, '
            "db_version, site_id, cl, seq, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*attrs.astuple(ch, recurse=False), item.ts) for ch in item.changes],
        )
        self.result.buffered += 1
        partial = booked.record_partial(item.version, item.seqs, item.last_seq, item.ts)
        partial.bytes += size
        if partial.complete():
            changes = _buffered(self.conn, *key)
            self.scheduled.add(key)
            self.pending.append(_Pending(*key, changes, partial.last_seq, partial.ts, True))

    def _make_room(self, booked: BookedVersions, item: Changeset, size: int) -> bool:
        """Keep the actor's partial versions within MAX_PARTIAL_VERSIONS and MAX_PARTIAL_BYTES
        by dropping its oldest ones (first received first); False when the piece's version
        cannot fit at all (it is dropped, and any pieces of it already held)."""
        current = booked.partials.get(item.version)
        if size + (current.bytes if current is not None else 0) > MAX_PARTIAL_BYTES:
            self.result.rejected["partial_too_large"] += 1
            if current is not None:
                self._drop_partial(item.actor_id, booked, item.version)
            return False
        count = len(booked.partials) + (current is None)
        total = booked.partial_bytes() + size
        for version in list(booked.partials):  # oldest first
            if count <= MAX_PARTIAL_VERSIONS and total <= MAX_PARTIAL_BYTES:
                break
            if version == item.version:
                continue
            count -= 1
            total -= booked.partials[version].bytes
            self._drop_partial(item.actor_id, booked, version)
            self.result.rejected["partial_evicted"] += 1
        return True

    def _drop_partial(self, actor: bytes, booked: BookedVersions, version: int) -> None:
        booked.forget_partial(version)
        self.conn.execute(
            "DELETE FROM __corro_buffered_changes WHERE site_id = ? AND db_version = ?",
            (actor, version),
        )

    def _merge_pending(self) -> None:
        if not self.pending:
            return
        try:
            merged = crdt.merge_changes(self.conn, [ch for p in self.pending for ch in p.changes])
        except (CorrosionError, sqlite3.Error) as exc:
            if classify(exc) is not None:
                raise  # the file failed (disk full, corrupt), not the changesets: stop the batch
            for pending in self.pending:  # isolate the changesets that fail
                try:
                    one = crdt.merge_changes(self.conn, pending.changes)
                except (CorrosionError, sqlite3.Error) as err:
                    if classify(err) is not None:
                        raise
                    self._quarantine(pending, f"{type(err).__name__}: {err}")
                else:
                    self._done(pending, one)
        else:
            for pending in self.pending:
                self._done(pending, None)
            self.result.impactful += merged.impactful
            self.result.rows_impacted += merged.rows_impacted
        self.pending = []

    def _done(self, pending: _Pending, merged: crdt.MergeResult | None) -> None:
        booked = self.booked(pending.actor_id)
        had_pieces = pending.version in booked.partials
        booked.record(pending.version, pending.version)
        if had_pieces:  # merged from the buffer, or a complete copy arrived meanwhile
            self.conn.execute(
                "DELETE FROM __corro_buffered_changes WHERE site_id = ? AND db_version = ?",
                (pending.actor_id, pending.version),
            )
        self.result.applied.append((pending.actor_id, pending.version))
        if merged is not None:
            self.result.impactful += merged.impactful
            self.result.rows_impacted += merged.rows_impacted

    def _quarantine(self, pending: _Pending, reason: str) -> None:
        """Set a changeset aside: recorded with the reason, not applied, not known."""
        booked = self.booked(pending.actor_id)
        if pending.version in booked.partials:
            booked.forget_partial(pending.version)
        if pending.from_buffer:
            self.conn.execute(
                "DELETE FROM __corro_buffered_changes WHERE site_id = ? AND db_version = ?",
                (pending.actor_id, pending.version),
            )
        payload = cbor2.dumps([list(attrs.astuple(ch, recurse=False)) for ch in pending.changes])
        self.conn.execute(
            "INSERT INTO __corro_quarantine (actor_id, version, last_seq, ts, reason, changes, "
            "quarantined_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (actor_id, version) DO "
            "UPDATE SET reason = excluded.reason, quarantined_at = excluded.quarantined_at",
            (
                pending.actor_id,
                pending.version,
                pending.last_seq,
                pending.ts,
                reason,
                payload,
                time.time_ns(),
            ),
        )
        self.result.quarantined.append(Quarantined(pending.actor_id, pending.version, reason))


def trim_quarantine(conn: sqlite3.Connection) -> int:
    """Drop the oldest quarantined changesets until at most MAX_QUARANTINE_ROWS rows and
    MAX_QUARANTINE_BYTES of payload remain; return how many were dropped."""
    count, size = conn.execute(
        "SELECT count(*), coalesce(sum(length(changes)), 0) FROM __corro_quarantine"
    ).fetchone()
    if count <= MAX_QUARANTINE_ROWS and size <= MAX_QUARANTINE_BYTES:
        return 0
    drop = []
    for actor, version, length in conn.execute(
        "SELECT actor_id, version, length(changes) FROM __corro_quarantine "
        "ORDER BY quarantined_at, actor_id, version"
    ):
        if count <= MAX_QUARANTINE_ROWS and size <= MAX_QUARANTINE_BYTES:
            break
        drop.append((actor, version))
        count, size = count - 1, size - length
    conn.executemany("DELETE FROM __corro_quarantine WHERE actor_id = ? AND version = ?", drop)
    return len(drop)


def take_quarantined(conn: sqlite3.Connection) -> list[Changeset]:
    """Remove every quarantined changeset from the quarantine and return it, to be re-applied."""
    out = []
    for actor, version, last_seq, ts, payload in conn.execute(
        "SELECT actor_id, version, last_seq, ts, changes FROM __corro_quarantine"
    ).fetchall():
        changes = tuple(Change(*row) for row in cbor2.loads(payload))
        out.append(Changeset(bytes(actor), version, changes, (0, last_seq), last_seq, ts))
    conn.execute("DELETE FROM __corro_quarantine")
    return out
