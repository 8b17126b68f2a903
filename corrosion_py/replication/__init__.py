"""Spreading changesets: broadcast (push each new changeset to a few peers, who relay it) and
anti-entropy sync (repair what broadcast lost), and the queue in front of the store. Sans-IO
cores: the agent drives them with trio and sockets (``net``, ``agent``), the simulator on
virtual time (``sim``).

    tree = Plumtree(PlumtreeConfig(), random.Random(seed), encode=enc, max_payload=1200)
    gossip = Gossip(tree, cluster_id=cid, own_actor=me, peers=peers, booked=store.booked,
                    is_member=known)
    gossip.local(now, changeset)                  # a changeset committed here
    items = gossip.datagram(now, addr, data)      # one that arrived by broadcast
    queue.offer(now, items)                       # ApplyQueue: batch = queue.tick(now) ...
    gossip.tick(now)                              # at gossip.next_deadline()
    for s in gossip.flush(): sendto(s.data, s.addr)

Modules, one concern each: ``gossip`` (a node's inbound and outbound broadcast path),
``plumtree`` (the broadcast tree: who gets a piece and when), ``known`` and ``claims`` (what is
news, what is believed), ``chunking`` (pieces), ``apply_queue`` (bounds, overflow, linger, retries),
``sync_client`` (a client's rounds and sessions), ``sync_plan`` (peer choice and the plan),
``needs`` (what to ask, what one session was served), ``booked`` and ``ranges`` (bookkeeping
as ranges), ``hlc`` (the hybrid logical clock).
"""

from corrosion_py.replication.apply_queue import ApplyQueue
from corrosion_py.replication.gossip import Gossip
from corrosion_py.replication.plumtree import Peer, Plumtree, PlumtreeConfig, Send
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
    "Gossip",
    "Peer",
    "Plumtree",
    "PlumtreeConfig",
    "Send",
    "Session",
    "SyncClient",
    "SyncRound",
    "choose_peers",
    "desired_peers",
    "jittered_interval",
    "missing_versions",
    "plan_requests",
]
