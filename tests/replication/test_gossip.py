"""The sans-IO gossip core: a local changeset's pieces out, and every kind of datagram a peer (or
an attacker) can send in: new pieces queued and relayed at once, duplicates and known pieces
stopped, claims refused, undecodable bytes counted, none of it raising."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from corrosion_py.crdt import Change
from corrosion_py.replication.booked import MAX_VERSION_JUMP, BookedVersions
from corrosion_py.replication.broadcast import BroadcastConfig, Broadcaster, Peer
from corrosion_py.replication.gossip import Gossip
from corrosion_py.wire.codec import encode
from corrosion_py.wire.messages import Changeset, EmptyChangeset, SyncDone

CLUSTER = 4
ME, A, STRANGER = (bytes([i]) * 16 for i in (1, 2, 9))
PEERS = [Peer(bytes([20 + i]) * 16, ("127.0.0.1", 9000 + i)) for i in range(6)]


class World:
    """What the core reads through its callables, and how often it reads them."""

    def __init__(self) -> None:
        self.bookie: dict[bytes, BookedVersions] = {ME: BookedVersions(max=3)}
        self.reads = 0

    def read_bookie(self) -> dict[bytes, BookedVersions]:
        self.reads += 1
        return self.bookie

    def peers(self) -> list[Peer]:
        self.reads += 1
        return PEERS


def gossip(world: World, **kw: object) -> Gossip:
    return Gossip(
        Broadcaster(BroadcastConfig(**kw), random.Random(1)),  # type: ignore[arg-type]
        cluster_id=CLUSTER,
        own_actor=ME,
        peers=world.peers,
        bookie=world.read_bookie,
        is_member=lambda actor: actor == A,
    )


def change(actor: bytes, version: int, seq: int, value: str) -> Change:
    return Change("kv", b"\x01\x09\x01", "v", value, 1, version, actor, 1, seq)


def changeset(actor: bytes, version: int, rows: int = 1, size: int = 10) -> Changeset:
    changes = tuple(change(actor, version, s, "x" * size) for s in range(rows))
    return Changeset(actor, version, changes, (0, rows - 1), rows - 1, 1)


def datagram(item: Changeset | EmptyChangeset, cluster_id: int = CLUSTER) -> bytes:
    return encode(item, cluster_id=cluster_id)


def test_a_local_changeset_goes_out_in_pieces_that_fit_the_budget() -> None:
    core = gossip(World(), close_peers=0, min_fanout=2)
    cs = changeset(ME, 4, rows=30, size=100)
    sends = core.local(0.0, cs)
    pieces = {send.data for send in sends}
    assert len(pieces) == core.stats["local_pieces"] > 1
    assert all(len(data) <= core.budget for data in pieces)
    assert {send.addr for send in sends} <= {p.addr for p in PEERS}
    # the same changeset again (a retry of the caller): its pieces are queued already
    assert core.local(0.0, cs) == [] and core.stats["local_pieces"] == len(pieces)
    assert core.next_deadline() == 0.1  # the second round, resend_delay later


def test_a_new_piece_is_queued_and_relayed_at_once_and_a_copy_is_a_duplicate() -> None:
    core = gossip(World(), min_fanout=2)
    data = datagram(changeset(A, 1))
    received = core.datagram(0.0, data)
    assert received.item == changeset(A, 1)
    assert received.sends and all(send.data == data for send in received.sends)
    again = core.datagram(0.01, data)
    assert again.item is None and again.sends == []
    assert core.stats["new"] == 1 and core.stats["duplicates"] == 1


def test_a_piece_the_bookkeeping_holds_is_a_duplicate_never_relayed() -> None:
    world = World()
    world.bookie[A] = BookedVersions(max=5)
    core = gossip(world)
    for item in (changeset(A, 5), changeset(ME, 2)):  # our own changeset relayed back too
        received = core.datagram(0.0, datagram(item))
        assert received.item is None and received.sends == []
    assert core.stats["duplicates"] == 2 and core.next_deadline() is None
    assert not any(key.startswith("refused") for key in core.stats)


def test_claims_not_believed_are_refused_counted_and_never_relayed() -> None:
    core = gossip(World())
    forged = {
        "own_actor": changeset(ME, 9),
        "broadcast_empty": EmptyChangeset(A, (1, 100), 0),
        "unknown_actor": changeset(STRANGER, 1),
        "version_jump": changeset(A, MAX_VERSION_JUMP + 1),
    }
    for reason, item in forged.items():
        received = core.datagram(0.0, datagram(item))
        assert received.item is None and received.sends == []
        assert core.stats[f"refused_{reason}"] == 1
    assert core.broadcaster.queue_len == 0 and core.stats["new"] == 0


def test_what_does_not_decode_is_counted_and_costs_no_lookup() -> None:
    world = World()
    core = gossip(world)
    junk = {
        "dropped_malformed": b"\xff\x00 not cbor",
        "dropped_wrong_cluster": datagram(changeset(A, 1), cluster_id=CLUSTER + 1),
        "dropped_unknown": encode(SyncDone(), cluster_id=CLUSTER),  # decodes, not a changeset
    }
    for counter, data in junk.items():
        assert core.datagram(0.0, data).item is None
        assert core.stats[counter] == 1
    assert core.stats["received"] == 3
    assert world.reads == 0  # neither the bookkeeping nor the member list was read


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_never_raise_and_never_queue(data: bytes) -> None:
    core = gossip(World())
    received = core.datagram(0.0, data)
    assert received.item is None and received.sends == []
    assert core.broadcaster.queue_len == 0
