"""The trio shell of changeset broadcast: local changesets out as datagrams at once, received
ones into the apply queue and on to a few more peers (the rules are in replication/broadcast.py and
replication/known.py; this module only does the I/O).

- Local: a committed changeset is cut into pieces that fit one datagram (the store's chunk
  budget), each piece encoded once and handed to the broadcaster, which sends it to the closest
  peers at once and schedules the further rounds. A single change too large for a datagram is
  refused by the endpoint and counted; sync carries it.
- Received: a datagram that does not decode, or comes from another cluster, is counted and
  dropped. So is a claim not believed (replication/claims.py: about our own actor, an empty range,
  an actor neither a member nor known, a version past the actor's ceiling), counted as
  ``refused_<reason>``; it is never relayed. A piece the bookkeeping already holds is a
  duplicate; a new one is queued for apply (never waiting: the queue drops its oldest on
  overflow) and relayed.
- Peers are the members SWIM holds alive, read at every send.
- One task sleeps until the broadcaster's next deadline or a new item, then ticks it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import trio

from corrosion_py.addr import Addr
from corrosion_py.net.udp import UdpEndpoint
from corrosion_py.replication import Broadcaster, Peer, Send
from corrosion_py.replication.claims import broadcast_refusal
from corrosion_py.replication.known import is_known, piece_key
from corrosion_py.store.store import Store
from corrosion_py.wire import (
    Changeset,
    DecodeError,
    EmptyChangeset,
    UnknownMessageError,
    WrongClusterError,
)
from corrosion_py.wire import decode as decode_message
from corrosion_py.wire import encode as encode_message

if TYPE_CHECKING:  # its type only: the agent, which owns the queue, imports this module
    from corrosion_py.agent.apply_queue import ApplyQueue


class Gossiper:
    """Broadcast of one node's changesets over the shared UDP endpoint."""

    def __init__(
        self,
        broadcaster: Broadcaster,
        endpoint: UdpEndpoint,
        store: Store,
        queue: ApplyQueue,
        *,
        cluster_id: int,
        peers: Callable[[], Sequence[Peer]],
        is_member: Callable[[bytes], bool] = lambda actor: False,
    ) -> None:
        self.broadcaster = broadcaster
        self.endpoint = endpoint
        self.store = store
        self.queue = queue
        self.cluster_id = cluster_id
        self.peers = peers
        self.is_member = is_member
        """Whether an actor id is a member SWIM knows (in any state)."""
        self.stats: Counter[str] = Counter()
        """received, new, duplicates, dropped_malformed, dropped_unknown, dropped_wrong_cluster,
        refused_<reason> (claims.broadcast_refusal), local_pieces."""
        self._wake = trio.Event()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Tick the broadcaster at its deadlines until cancelled."""
        task_status.started()
        while True:
            deadline = self.broadcaster.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else float("inf")):
                await self._wake.wait()
            self._wake = trio.Event()
            await self._send(self.broadcaster.tick(trio.current_time(), self.peers()))

    async def local(self, changeset: Changeset) -> None:
        """Broadcast a changeset committed on this node."""
        for piece in self.store.pieces(changeset):
            data = encode_message(piece, cluster_id=self.cluster_id, check=False)
            key = piece_key(piece)
            if key in self.broadcaster:
                continue
            self.stats["local_pieces"] += 1
            sends = self.broadcaster.local(trio.current_time(), key, data, self.peers())
            await self._send(sends)
        self._wake.set()

    async def handle_datagram(self, addr: Addr, data: bytes) -> None:
        """A broadcast datagram arrived (the caller routed it here by its tag)."""
        self.stats["received"] += 1
        try:
            item = decode_message(data, cluster_id=self.cluster_id)
        except UnknownMessageError:
            self.stats["dropped_unknown"] += 1
            return
        except WrongClusterError:
            self.stats["dropped_wrong_cluster"] += 1
            return
        except DecodeError:
            self.stats["dropped_malformed"] += 1
            return
        if not isinstance(item, Changeset | EmptyChangeset):
            self.stats["dropped_unknown"] += 1
            return
        bookie = self.store.bookie_snapshot()
        known = is_known(bookie, item)  # e.g. our own changesets relayed back: duplicates
        refusal = (
            None
            if known
            else broadcast_refusal(
                item, own_actor=self.store.actor_id, bookie=bookie, is_member=self.is_member
            )
        )
        if refusal is not None:
            self.stats[f"refused_{refusal}"] += 1
            return
        if self.broadcaster.received(trio.current_time(), piece_key(item), data, known):
            self.stats["new"] += 1
            self.queue.put_nowait([item])
            self._wake.set()
        else:
            self.stats["duplicates"] += 1

    async def _send(self, sends: Sequence[Send]) -> None:
        for send in sends:
            await self.endpoint.send(send.addr, send.data)
