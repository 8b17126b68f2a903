"""Spreading changesets: broadcast (push each new changeset to a few peers, who relay it) and
anti-entropy sync (repair what broadcast lost). Sans-IO cores; the trio shells live in ``net``.

    bcast = Broadcaster(BroadcastConfig(), rng=random.Random(seed))
    sends = bcast.local(now, key, datagram, peers)       # a changeset piece written here
    if bcast.received(now, key, datagram, known=False):  # one that arrived by broadcast
        apply(datagram)
    sends = bcast.tick(now, peers)                       # at bcast.next_deadline()
    for s in sends: sendto(s.data, s.addr)
"""

from corrosion_py.replication.broadcast import (
    BroadcastConfig,
    Broadcaster,
    Peer,
    Send,
    fanout,
    max_transmissions,
    relay_transmissions,
)
from corrosion_py.replication.sync_plan import (
    choose_peers,
    desired_peers,
    jittered_interval,
    missing_versions,
    plan_requests,
)

__all__ = [
    "BroadcastConfig",
    "Broadcaster",
    "Peer",
    "Send",
    "choose_peers",
    "desired_peers",
    "fanout",
    "jittered_interval",
    "max_transmissions",
    "missing_versions",
    "plan_requests",
    "relay_transmissions",
]
