"""What broadcast needs to know about a changeset piece: its identity and whether it is news.

Rules (shared by the agent and the simulator, so both spread exactly the same way):

- A piece is identified by (actor, version, first seq, last seq) for data, and by
  (actor, first version, last version) for an empty range: two pieces with the same key carry
  the same changes (a version's rows never change once written at its origin).
- A piece is *known* when the bookkeeping already holds all of it: the version is known and
  not partial, or it is partial and the piece's seqs are all held. Known pieces are neither
  applied again nor relayed (Corrosion's rule: "already-known changes stop spreading there").
"""

from __future__ import annotations

from corrosion_py.replication.booked import BookedVersions
from corrosion_py.wire.messages import Changeset, EmptyChangeset

PieceKey = tuple[bytes, int, int, int] | tuple[bytes, int, int]


def piece_key(item: Changeset | EmptyChangeset) -> PieceKey:
    """The identity of a piece, for seen-caches."""
    if isinstance(item, EmptyChangeset):
        return (item.actor_id, *item.versions)
    return (item.actor_id, item.version, *item.seqs)


def is_known(booked: BookedVersions | None, item: Changeset | EmptyChangeset) -> bool:
    """Whether ``booked`` (the bookkeeping of ``item``'s actor) already holds everything
    ``item`` carries."""
    if booked is None:
        return False
    if isinstance(item, EmptyChangeset):
        return booked.knows_range(*item.versions)
    return booked.knows_seqs(item.version, item.seqs)
