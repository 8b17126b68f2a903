"""The messages nodes exchange for replication: small immutable records, no encoding here.

Rules (checked by the codec when it decodes, and when it encodes with ``check=True``; the
constructors accept anything so tests can build invalid messages):

- An actor id is 16 bytes (a cr-sqlite site id).
- A version is an integer in [1, 2**63 - 1] (a SQLite INTEGER); a seq is in [0, 2**63 - 1].
- A range ``(start, end)`` is inclusive and has ``start <= end``.
- ``ts`` is an HLC timestamp: an unsigned 64-bit integer.
- Integers are never bools; sequences are tuples and mappings are dicts, as typed below.

Changesets travel over UDP (broadcast) and TCP (sync); the ``Sync*`` messages and ``NeedFull`` /
``NeedPartial`` only inside a sync session (Corrosion's session, in this order):

    client                           server
    SyncStart(actor) SyncClock(ts) ─▶
                                  ◀─ SyncState(...) SyncClock(ts)   or SyncRejection(reason)
    SyncRequest(needs) ...        ─▶
                                  ◀─ Changeset / EmptyChangeset ...
    SyncDone()                    ─▶ ◀─ SyncDone()
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import attrs

from corrosion_py.aliases import Range
from corrosion_py.crdt import Change


@attrs.frozen
class Changeset:
    """The changes of one version of one actor, or a piece of them (seqs ``seqs`` of 0..last_seq).

    A version's changes are cut into pieces that fit a byte budget; the pieces' seq ranges are
    contiguous and cover ``(0, last_seq)`` even where a seq has no surviving change.
    """

    actor_id: bytes
    version: int
    changes: tuple[Change, ...]
    seqs: Range
    last_seq: int
    ts: int

    @property
    def complete(self) -> bool:
        """Whether this piece holds the whole version (it can be applied without buffering)."""
        return self.seqs == (0, self.last_seq)


@attrs.frozen
class EmptyChangeset:
    """Versions of an actor none of whose changes survive ("cleared"): advance past them."""

    actor_id: bytes
    versions: Range
    ts: int


Item: TypeAlias = Changeset | EmptyChangeset
"""What travels for replication, by broadcast or sync: a piece of a version, or a cleared
range."""


@attrs.frozen
class SyncState:
    """What a node knows, per actor: its head, its gaps, and its partially received versions.

    ``heads[actor]`` may be 0 (the actor is known, none of its versions). ``need`` holds version
    ranges in gaps; ``partial_need[actor][version]`` the seq ranges still missing. Not hashable
    (dict fields).
    """

    actor_id: bytes
    heads: dict[bytes, int]
    need: dict[bytes, tuple[Range, ...]]
    partial_need: dict[bytes, dict[int, tuple[Range, ...]]]


@attrs.frozen
class NeedFull:
    """Request every change of a range of versions."""

    versions: Range


@attrs.frozen
class NeedPartial:
    """Request some seq ranges of one version."""

    version: int
    seqs: tuple[Range, ...]


Need: TypeAlias = NeedFull | NeedPartial


@attrs.frozen
class SyncRequest:
    """A batch of needs, grouped per actor (an actor may appear more than once)."""

    needs: tuple[tuple[bytes, tuple[Need, ...]], ...]


@attrs.frozen
class SyncStart:
    """First message of a sync session (client to server): who is asking."""

    actor_id: bytes


@attrs.frozen
class SyncClock:
    """An HLC timestamp, exchanged at the handshake so both clocks move forward."""

    ts: int


RejectionReason: TypeAlias = Literal[
    "different_cluster", "max_concurrency", "not_member", "already_syncing"
]
REJECTION_REASONS: tuple[RejectionReason, ...] = (
    "different_cluster",
    "max_concurrency",
    "not_member",
    "already_syncing",
)
"""The reasons in wire order: a reason travels as its index here (new ones go at the end)."""


@attrs.frozen
class SyncRejection:
    """The server refuses the session; the client tries another peer."""

    reason: RejectionReason


@attrs.frozen
class SyncDone:
    """This side has nothing more to send in this session."""


@attrs.frozen
class Broadcast:
    """One datagram of the broadcast tree (replication/plumtree.py): pieces pushed in full
    (each an encoded ``Changeset`` or ``EmptyChangeset`` message, forwarded as received),
    versions announced per actor (IHAVE), versions asked for (GRAFT, which also makes the
    link eager; an empty one only does that: ``join``), and ``prune`` (the link is lazy now)."""

    gossip: tuple[bytes, ...] = ()
    ihave: tuple[tuple[bytes, tuple[Range, ...]], ...] = ()
    graft: tuple[tuple[bytes, tuple[Range, ...]], ...] = ()
    prune: bool = False
    join: bool = False


Message: TypeAlias = (
    Changeset
    | Broadcast
    | EmptyChangeset
    | SyncState
    | SyncRequest
    | SyncStart
    | SyncClock
    | SyncRejection
    | SyncDone
)


@attrs.frozen
class Envelope:
    """A decoded message with the protocol version and cluster id it was sent with."""

    protocol: int
    cluster_id: int
    message: Message
