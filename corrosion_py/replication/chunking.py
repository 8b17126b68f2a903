"""Cutting a version's changes into pieces that each fit a byte budget (as Corrosion chunks a
version's changes before broadcasting them).

Each piece carries the contiguous seq range it covers: the first starts at 0, the last ends at
the version's last_seq, and together they cover 0..=last_seq even where some seqs have no
surviving row. A receiver knows it has the whole version when its pieces cover 0..=last_seq. A
single change larger than the budget gets a piece of its own: it is never dropped, the transport
decides how to carry it (a datagram cannot; a sync stream can).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from corrosion_py.crdt import Change
from corrosion_py.wire.codec import MAX_CHANGESET_OVERHEAD, encoded_change_size
from corrosion_py.wire.messages import Changeset

DEFAULT_BUDGET = 1100  # one UDP datagram's payload after headers
SYNC_BUDGET = 8 * 1024  # pieces streamed by sync


def chunk(
    actor_id: bytes,
    version: int,
    changes: Sequence[Change],
    last_seq: int,
    ts: int,
    *,
    budget: int,
    size_of: Callable[[Change], int],
    overhead: int,
) -> Iterator[Changeset]:
    """Pieces of one version, in seq order; ``overhead`` is a piece's size without changes."""
    ordered = sorted(changes, key=lambda c: c.seq)
    start = 0
    piece: list[Change] = []
    size = overhead
    for change in ordered:
        cost = size_of(change)
        if piece and size + cost > budget:
            end = piece[-1].seq
            yield Changeset(actor_id, version, tuple(piece), (start, end), last_seq, ts)
            start, piece, size = end + 1, [], overhead
        piece.append(change)
        size += cost
    yield Changeset(actor_id, version, tuple(piece), (start, last_seq), last_seq, ts)


def pieces(changeset: Changeset, budget: int = DEFAULT_BUDGET) -> Iterator[Changeset]:
    """A changeset cut into pieces that each encode to at most ``budget`` bytes (broadcast cuts
    to one datagram's payload)."""
    return chunk(
        changeset.actor_id,
        changeset.version,
        changeset.changes,
        changeset.last_seq,
        changeset.ts,
        budget=budget,
        size_of=encoded_change_size,
        overhead=MAX_CHANGESET_OVERHEAD,
    )
