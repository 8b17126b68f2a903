"""One node's changeset gossip: what a local changeset sends, and what a broadcast datagram that
arrives becomes. Sans-IO; the agent's trio shell (net/broadcast.py) and the simulator drive this
same object, so both spread changesets by the same rules (the tree itself: replication/
plumtree.py).

Rules, in the order they apply:

- **Local.** A changeset committed here is cut into pieces that each fit one datagram with the
  broadcast envelope around it (``chunking.pieces`` with ``budget``); each piece is encoded once
  and pushed to the tree. A single change too large for a datagram still gets a piece of its
  own: the transport refuses and counts it, sync carries it.
- **Inbound.** A datagram is a ``Broadcast`` (pieces, announcements, grafts, prune) or, from an
  older sender, a bare changeset (one piece). What does not decode is dropped and counted
  (``dropped_unknown``, ``dropped_wrong_cluster``, ``dropped_malformed``). Control entries count
  only from a live member's address. Each piece is looked up in the tree's seen-cache by its
  bytes **before it is decoded**: a piece seen before is a duplicate (and prunes that link).
  A new piece is decoded; the bookkeeping may hold it already (it came by sync, or it is our
  own relayed back): it is a duplicate for apply but still pushed on (the tree below us may
  lack it). Otherwise the claim must be believed (``claims.broadcast_refusal``; counted as
  ``refused_<reason>``, never pushed on), then it is returned for the apply queue and pushed.
- **Output.** Sends accumulate in the tree; the host calls ``flush`` after each burst of
  datagrams, after ``local`` and after ``tick`` (at ``next_deadline``), so what is bound for one
  peer in one burst shares datagrams.

Time (``now``) is passed in; the peers (live members other than this node), the bookkeeping
and the member list are read through the callables given at construction, each only when a
call needs it (a datagram that does not decode, or a duplicate, costs none of them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from corrosion_py.addr import Addr
from corrosion_py.replication.booked import BookedVersions
from corrosion_py.replication.chunking import pieces
from corrosion_py.replication.claims import broadcast_refusal
from corrosion_py.replication.known import is_known
from corrosion_py.replication.plumtree import PIECE_SLACK, Peer, Plumtree, Send
from corrosion_py.wire.codec import decode, encode
from corrosion_py.wire.errors import DecodeError, UnknownMessageError, WrongClusterError
from corrosion_py.wire.messages import Broadcast, Changeset, EmptyChangeset, Item

Booked = Callable[[bytes], BookedVersions | None]
"""One actor's published bookkeeping (None: nothing known of it)."""


def piece_budget(max_payload: int, tree: Plumtree) -> int:
    """Bytes an encoded piece may take so that it fits a datagram alone, with the broadcast
    envelope around it."""
    return max_payload - tree.empty_size - PIECE_SLACK


class Gossip:
    """A node's changeset gossip over one broadcast tree. Inputs queue sends; ``flush`` returns
    them."""

    def __init__(
        self,
        tree: Plumtree,
        *,
        cluster_id: int,
        own_actor: bytes,
        peers: Callable[[], Sequence[Peer]],
        booked: Booked,
        is_member: Callable[[bytes], bool],
    ) -> None:
        self.tree = tree
        self.cluster_id = cluster_id
        self.own_actor = own_actor
        self.peers = peers
        """The live members other than this node, now (the same sequence while unchanged)."""
        self.booked = booked
        self.is_member = is_member
        """Whether an actor id is a member SWIM knows (in any state)."""
        self.budget = piece_budget(tree.max_payload, tree)
        tree.missing = self._missing
        self.stats: Counter[str] = Counter()
        """received, pieces, new, duplicates, dropped_malformed, dropped_unknown,
        dropped_wrong_cluster, refused_<reason>, local_pieces, control_from_stranger."""

    def next_deadline(self) -> float | None:
        """When ``tick`` is next due (None: nothing pending)."""
        return self.tree.next_deadline()

    def tick(self, now: float) -> None:
        """Announce and graft what is due."""
        self.tree.set_peers(self.peers())
        self.tree.tick(now)

    def flush(self) -> list[Send]:
        """Everything queued since the last flush, as datagrams."""
        return self.tree.flush()

    def local(self, now: float, changeset: Changeset) -> None:
        """A changeset committed on this node: push its pieces."""
        tree = self.tree
        tree.set_peers(self.peers())
        for piece in pieces(changeset, self.budget):
            data = encode(piece, cluster_id=self.cluster_id, check=False)
            if tree.seen(data):
                continue
            self.stats["local_pieces"] += 1
            tree.push(now, (piece.actor_id, piece.version), data, sender=None)

    def datagram(self, now: float, addr: Addr, data: bytes) -> list[Item]:
        """A broadcast datagram arrived from ``addr``: the new items to queue for apply."""
        self.stats["received"] += 1
        message = self._decode(data)
        if message is None:
            return []
        tree = self.tree
        tree.set_peers(self.peers())
        sender = tree.actor_at(addr)
        if isinstance(message, Changeset | EmptyChangeset):  # a bare piece (older senders)
            item = self._piece(now, data, sender, message)
            return [item] if item is not None else []
        items = []
        for piece in message.gossip:
            item = self._piece(now, piece, sender, None)
            if item is not None:
                items.append(item)
        if message.ihave or message.graft or message.prune or message.join:
            if sender is None:
                self.stats["control_from_stranger"] += 1
            else:
                if message.prune:
                    tree.prune(sender)
                if message.graft or message.join:
                    tree.graft(sender, message.graft)
                if message.ihave:
                    tree.ihave(now, sender, message.ihave)
        return items

    def _piece(
        self, now: float, data: bytes, sender: bytes | None, item: Item | None
    ) -> Item | None:
        """One piece: a duplicate (None), refused (None), or new (returned, and pushed on)."""
        self.stats["pieces"] += 1
        tree = self.tree
        if tree.seen(data):
            self.stats["duplicates"] += 1
            tree.duplicate(sender)
            return None
        if item is None:
            item = self._item(data)
            if item is None:
                return None
        booked = self.booked(item.actor_id)
        known = is_known(booked, item)
        if not known:
            refusal = broadcast_refusal(
                item, own_actor=self.own_actor, booked=booked, is_member=self.is_member
            )
            if refusal is not None:
                self.stats[f"refused_{refusal}"] += 1
                return None
        key = (item.actor_id, item.version if isinstance(item, Changeset) else item.versions[0])
        tree.push(now, key, data, sender=sender)
        if known:
            self.stats["duplicates"] += 1
            return None
        self.stats["new"] += 1
        return item

    def _missing(self, actor: bytes, version: int) -> bool:
        """Whether an announced version is one this node lacks (and may believe)."""
        if actor == self.own_actor:
            return False
        booked = self.booked(actor)
        if booked is None:
            return self.is_member(actor)
        return version <= booked.ceiling() and not booked.knows(version)

    def _decode(self, data: bytes) -> Broadcast | Changeset | EmptyChangeset | None:
        try:
            msg = decode(data, cluster_id=self.cluster_id)
        except UnknownMessageError:
            self.stats["dropped_unknown"] += 1
            return None
        except WrongClusterError:
            self.stats["dropped_wrong_cluster"] += 1
            return None
        except DecodeError:
            self.stats["dropped_malformed"] += 1
            return None
        if not isinstance(msg, Broadcast | Changeset | EmptyChangeset):
            self.stats["dropped_unknown"] += 1
            return None
        return msg

    def _item(self, data: bytes) -> Item | None:
        msg = self._decode(data)
        if msg is None or isinstance(msg, Broadcast):
            if isinstance(msg, Broadcast):
                self.stats["dropped_malformed"] += 1  # a broadcast inside a broadcast
            return None
        return msg
