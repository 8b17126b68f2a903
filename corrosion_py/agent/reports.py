"""What the agent reports about itself through its facade: health and table row counts.

Plain values, computed from a snapshot of the bookkeeping or one read of the database, so the
HTTP API, the admin socket and embedders all see the same numbers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from corrosion_py.api_types import TableStats
from corrosion_py.crdt.tables import crr_names, q
from corrosion_py.replication.booked import BookedVersions


@attrs.frozen
class Health:
    """Is this node keeping up?

    ``gaps``: versions this node knows exist and does not hold (every missing version, plus
    every version received only in part), over the actors the node vouches for (members in any
    state, itself, or actors a member advertised in a sync session). ``members``: members SWIM
    holds alive, plus this node. ``p99_lag``: 99th percentile of seconds from a remote change's
    timestamp to its apply here over the last 120 s (None before any). ``queue_size``:
    changesets waiting to be applied. ``faults``: what stops the node from doing its job
    (``Agent.faults``). ``sync``: seconds since the last sync round that worked and the rounds
    failed in a row since (``Agent.sync_status``)."""

    gaps: int
    members: int
    p99_lag: float | None
    queue_size: int
    faults: list[dict[str, Any]]
    sync: dict[str, Any]


def count_gaps(
    bookie: Mapping[bytes, BookedVersions], vouched: Callable[[bytes], bool] = lambda a: True
) -> int:
    """Missing versions over the actors ``vouched`` accepts; a partially received version
    counts as missing."""
    return sum(
        sum(end - start + 1 for start, end in booked.gaps) + len(booked.partials)
        for actor, booked in bookie.items()
        if vouched(actor)
    )


def count_rows(conn: sqlite3.Connection, tables: Sequence[str]) -> TableStats:
    """`TableStats` of ``tables`` (duplicates counted once), read on ``conn``."""
    crrs = set(crr_names(conn))
    total = 0
    invalid = []
    for table in dict.fromkeys(tables):
        if table in crrs:
            total += int(conn.execute(f"SELECT count(*) FROM {q(table)}").fetchone()[0])
        else:
            invalid.append(table)
    return TableStats(total, invalid)
