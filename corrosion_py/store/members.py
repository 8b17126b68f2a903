"""Persisted membership: the last known state of every member, so a restarted node rejoins
through the members it knew (in `__corro_members`, as Corrosion keeps them).

The store does not interpret states; membership owns their meaning.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

import attrs


@attrs.frozen
class MemberRecord:
    actor_id: bytes
    address: str  # "host:port"
    state: str  # e.g. "alive", "suspect", "dead", "left"
    incarnation: int
    updated_at: int  # nanoseconds since the Unix epoch


def save(conn: sqlite3.Connection, members: Iterable[MemberRecord]) -> None:
    """Upsert member records (inside the caller's transaction)."""
    conn.executemany(
        "INSERT INTO __corro_members (actor_id, address, state, incarnation, updated_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (actor_id) DO UPDATE SET address = excluded.address, "
        "state = excluded.state, incarnation = excluded.incarnation, "
        "updated_at = excluded.updated_at",
        [attrs.astuple(m) for m in members],
    )


def load(conn: sqlite3.Connection) -> list[MemberRecord]:
    return [
        MemberRecord(bytes(a), addr, state, inc, at)
        for a, addr, state, inc, at in conn.execute(
            "SELECT actor_id, address, state, incarnation, updated_at FROM __corro_members "
            "ORDER BY actor_id"
        )
    ]
