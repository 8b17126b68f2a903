"""One node's changeset gossip: what a local changeset sends, and what a broadcast datagram that
arrives becomes. Sans-IO; the agent's trio shell (net/broadcast.py) and the simulator drive this
same object, so both spread changesets by the same rules.

Rules, in the order they apply:

- **Local.** A changeset committed here is cut into pieces that each fit one datagram
  (``budget`` bytes encoded, ``chunking.pieces``); each piece is encoded once and handed to the
  broadcaster, whose first round is returned at once. A piece already queued is not queued
  twice. A single change too large for a datagram still gets a piece of its own: the transport
  refuses and counts it, sync carries it.
- **Inbound.** A datagram is decoded first: an unknown message (or one that is not a
  changeset) is ``dropped_unknown``, another cluster's ``dropped_wrong_cluster``, anything else
  that does not decode ``dropped_malformed``. A piece the bookkeeping already holds is a
  duplicate, never a refusal (our own changesets relayed back land here). Otherwise the claim
  must be believed (``claims.broadcast_refusal``; counted as ``refused_<reason>``, never
  relayed). Then the broadcaster's seen-cache decides: a piece it saw is a duplicate; a new one
  is returned for the apply queue (the host puts it without waiting: the queue drops its oldest
  on overflow) and its first relay round goes out at once, in the same result.
- **Ticks.** ``tick`` sends the rounds that are due; the host calls it at ``next_deadline``
  and again whenever a call may have moved that deadline earlier.

Time (``now``) is passed in; the peers (live members other than this node), the bookkeeping and
the member list are read through the callables given at construction, each only when a call
needs it (a datagram that does not decode costs none of them). Nothing here reads a clock, a
socket or the store.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import attrs

from corrosion_py.replication.booked import BookedVersions
from corrosion_py.replication.broadcast import Broadcaster, Peer, Send
from corrosion_py.replication.chunking import DEFAULT_BUDGET, pieces
from corrosion_py.replication.claims import broadcast_refusal
from corrosion_py.replication.known import is_known, piece_key
from corrosion_py.wire.codec import decode, encode
from corrosion_py.wire.errors import DecodeError, UnknownMessageError, WrongClusterError
from corrosion_py.wire.messages import Changeset, EmptyChangeset, Item, Message

Decode = Callable[[bytes], Message]
"""Bytes to a message, raising ``DecodeError`` (a host may share a cache of equal bytes)."""


@attrs.frozen
class Received:
    """What a broadcast datagram became: the item to queue for apply (None: dropped, refused
    or a duplicate) and the datagrams to send now (relay rounds that came due)."""

    item: Item | None
    sends: list[Send]


class Gossip:
    """A node's changeset gossip over one ``Broadcaster``. Input methods return what to send."""

    def __init__(
        self,
        broadcaster: Broadcaster,
        *,
        cluster_id: int,
        own_actor: bytes,
        peers: Callable[[], Sequence[Peer]],
        bookie: Callable[[], Mapping[bytes, BookedVersions]],
        is_member: Callable[[bytes], bool],
        budget: int = DEFAULT_BUDGET,
        decode_datagram: Decode | None = None,
    ) -> None:
        self.broadcaster = broadcaster
        self.cluster_id = cluster_id
        self.own_actor = own_actor
        self.peers = peers
        """The peers to broadcast to now."""
        self.bookie = bookie
        """The bookkeeping now (the store's published snapshot)."""
        self.is_member = is_member
        """Whether an actor id is a member SWIM knows (in any state)."""
        self.budget = budget
        """Bytes a piece may take encoded: one datagram's payload."""
        self._decode = decode_datagram or functools.partial(decode, cluster_id=cluster_id)
        self.stats: Counter[str] = Counter()
        """received, new, duplicates, dropped_malformed, dropped_unknown, dropped_wrong_cluster,
        refused_<reason> (claims.broadcast_refusal), local_pieces."""

    def next_deadline(self) -> float | None:
        """When ``tick`` is next due (None: nothing queued)."""
        return self.broadcaster.next_deadline()

    def tick(self, now: float) -> list[Send]:
        """The rounds due now."""
        return self.broadcaster.tick(now, self.peers())

    def local(self, now: float, changeset: Changeset) -> list[Send]:
        """A changeset committed on this node: the first round of each of its pieces."""
        peers = self.peers()
        out: list[Send] = []
        for piece in pieces(changeset, self.budget):
            key = piece_key(piece)
            if key in self.broadcaster:
                continue
            self.stats["local_pieces"] += 1
            data = encode(piece, cluster_id=self.cluster_id, check=False)
            out += self.broadcaster.local(now, key, data, peers)
        return out

    def datagram(self, now: float, data: bytes) -> Received:
        """A broadcast datagram arrived (the host routed it here by its tag)."""
        self.stats["received"] += 1
        item = self._item(data)
        if item is None:
            return Received(None, [])
        bookie = self.bookie()
        known = is_known(bookie, item)
        if not known:
            refusal = broadcast_refusal(
                item, own_actor=self.own_actor, bookie=bookie, is_member=self.is_member
            )
            if refusal is not None:
                self.stats[f"refused_{refusal}"] += 1
                return Received(None, [])
        if not self.broadcaster.received(now, piece_key(item), data, known):
            self.stats["duplicates"] += 1
            return Received(None, [])
        self.stats["new"] += 1
        return Received(item, self.broadcaster.tick(now, self.peers()))

    def _item(self, data: bytes) -> Changeset | EmptyChangeset | None:
        try:
            msg = self._decode(data)
        except UnknownMessageError:
            self.stats["dropped_unknown"] += 1
            return None
        except WrongClusterError:
            self.stats["dropped_wrong_cluster"] += 1
            return None
        except DecodeError:
            self.stats["dropped_malformed"] += 1
            return None
        if not isinstance(msg, Changeset | EmptyChangeset):
            self.stats["dropped_unknown"] += 1
            return None
        return msg
