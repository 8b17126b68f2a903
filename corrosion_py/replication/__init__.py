"""Spreading changesets: broadcast (push each new changeset to a few peers, who relay it) and
anti-entropy sync (repair what broadcast lost), and the queue in front of the store. Sans-IO
cores: the agent drives them with trio and sockets (``net``, ``agent``), the simulator on
virtual time (``sim``).

    gossip = Gossip(Broadcaster(BroadcastConfig(), random.Random(seed)), cluster_id=cid,
                    own_actor=me, peers=peers, bookie=store.bookie_snapshot, is_member=known)
    sends = gossip.local(now, changeset)          # a changeset committed here
    got = gossip.datagram(now, data)              # one that arrived by broadcast
    if got.item: queue.offer(now, [got.item])     # ApplyQueue: batch = queue.tick(now) ...
    sends = got.sends + gossip.tick(now)          # at gossip.next_deadline()
    for s in sends: sendto(s.data, s.addr)

Modules, one concern each: ``gossip`` (a node's inbound and outbound broadcast path),
``broadcast`` (who gets a datagram and when), ``known`` and ``claims`` (what is news, what is
believed), ``chunking`` (pieces), ``apply_queue`` (bounds, overflow, linger, retries),
``sync_client`` (a client's rounds and sessions), ``sync_plan`` (peer choice and the plan),
``needs`` (what to ask, what one session was served), ``booked`` and ``ranges`` (bookkeeping
as ranges), ``hlc`` (the hybrid logical clock).
"""

from corrosion_py.replication.apply_queue import ApplyQueue
from corrosion_py.replication.broadcast import (
    BroadcastConfig,
    Broadcaster,
    Peer,
    Send,
    fanout,
    max_transmissions,
    relay_transmissions,
)
from corrosion_py.replication.gossip import Gossip, Received
from corrosion_py.replication.sync_client import Session, SyncClient, SyncRound
from corrosion_py.replication.sync_plan import (
    choose_peers,
    desired_peers,
    jittered_interval,
    missing_versions,
    plan_requests,
)

__all__ = [
    "ApplyQueue",
    "BroadcastConfig",
    "Broadcaster",
    "Gossip",
    "Peer",
    "Received",
    "Send",
    "Session",
    "SyncClient",
    "SyncRound",
    "choose_peers",
    "desired_peers",
    "fanout",
    "jittered_interval",
    "max_transmissions",
    "missing_versions",
    "plan_requests",
    "relay_transmissions",
]
