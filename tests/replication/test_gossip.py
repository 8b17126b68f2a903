"""The sans-IO gossip core: a local changeset's pieces out, and every kind of datagram a peer (or
an attacker) can send in: new pieces queued and pushed on, duplicates and known pieces stopped,
claims refused, undecodable bytes counted, none of it raising."""

from __future__ import annotations

import functools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from corrosion_py.crdt import Change
from corrosion_py.replication.booked import MAX_VERSION_JUMP, BookedVersions
from corrosion_py.replication.gossip import Gossip
from corrosion_py.replication.plumtree import Peer, Plumtree, PlumtreeConfig
from corrosion_py.wire.codec import decode, encode
from corrosion_py.wire.messages import Broadcast, Changeset, EmptyChangeset, SyncDone

CLUSTER = 4
ME, A, STRANGER = (bytes([i]) * 16 for i in (1, 2, 9))
PEERS = tuple(Peer(bytes([20 + i]) * 16, ("127.0.0.1", 9000 + i)) for i in range(6))
FROM = PEERS[0].addr


class World:
    """What the core reads through its callables, and how often it reads them."""

    def __init__(self) -> None:
        self.bookie: dict[bytes, BookedVersions] = {ME: BookedVersions(max=3)}
        self.reads = 0

    def booked(self, actor: bytes) -> BookedVersions | None:
        self.reads += 1
        return self.bookie.get(actor)

    def peers(self) -> tuple[Peer, ...]:
        self.reads += 1
        return PEERS


def gossip(world: World, **kw: int) -> Gossip:
    tree = Plumtree(
        PlumtreeConfig(**kw),
        random.Random(1),
        encode=functools.partial(encode, cluster_id=CLUSTER, check=False),
        max_payload=1200,
    )
    return Gossip(
        tree,
        cluster_id=CLUSTER,
        own_actor=ME,
        peers=world.peers,
        booked=world.booked,
        is_member=lambda actor: actor == A,
    )


def change(actor: bytes, version: int, seq: int, value: str) -> Change:
    return Change("kv", b"\x01\x09\x01", "v", value, 1, version, actor, 1, seq)


def changeset(actor: bytes, version: int, rows: int = 1, size: int = 10) -> Changeset:
    changes = tuple(change(actor, version, s, "x" * size) for s in range(rows))
    return Changeset(actor, version, changes, (0, rows - 1), rows - 1, 1)


def piece(item: Changeset | EmptyChangeset, cluster_id: int = CLUSTER) -> bytes:
    return encode(item, cluster_id=cluster_id)


def wrapped(*pieces: bytes) -> bytes:
    return encode(Broadcast(tuple(pieces)), cluster_id=CLUSTER)


def pieces_sent(core: Gossip) -> list[tuple[tuple[str, int], bytes]]:
    out = []
    for send in core.flush():
        msg = decode(send.data, cluster_id=CLUSTER)
        assert isinstance(msg, Broadcast) and len(send.data) <= 1200
        out += [(send.addr, p) for p in msg.gossip]
    return out


def test_a_local_changeset_goes_out_in_pieces_that_fit_a_datagram() -> None:
    core = gossip(World(), eager_peers=2)
    cs = changeset(ME, 4, rows=30, size=100)
    core.local(0.0, cs)
    sent = pieces_sent(core)
    pieces = {p for _, p in sent}
    assert len(pieces) == core.stats["local_pieces"] > 1
    assert len({addr for addr, _ in sent}) == 2  # each piece to the two eager peers
    assert len(sent) == 2 * len(pieces)
    # the same changeset again (a retry of the caller): its pieces are seen already
    core.local(0.0, cs)
    assert pieces_sent(core) == [] and core.stats["local_pieces"] == len(pieces)
    assert core.next_deadline() == 0.1  # the announcement to lazy peers


def test_a_new_piece_is_queued_and_pushed_on_and_a_copy_is_a_duplicate() -> None:
    core = gossip(World(), eager_peers=3)
    data = piece(changeset(A, 1))
    assert core.datagram(0.0, FROM, wrapped(data)) == [changeset(A, 1)]
    sent = pieces_sent(core)
    assert sent and all(p == data for _, p in sent)
    assert FROM not in {addr for addr, _ in sent}  # never back to its sender
    assert core.datagram(0.01, PEERS[1].addr, wrapped(data)) == []
    assert core.stats["new"] == 1 and core.stats["duplicates"] == 1


def test_a_bare_changeset_datagram_is_one_piece() -> None:
    core = gossip(World())
    assert core.datagram(0.0, FROM, piece(changeset(A, 1))) == [changeset(A, 1)]


def test_a_piece_the_bookkeeping_holds_is_not_queued() -> None:
    world = World()
    world.bookie[A] = BookedVersions(max=5)
    core = gossip(world)
    for item in (changeset(A, 5), changeset(ME, 2)):  # our own changeset relayed back too
        assert core.datagram(0.0, FROM, wrapped(piece(item))) == []
    assert core.stats["duplicates"] == 2 and core.stats["new"] == 0
    assert not any(key.startswith("refused") for key in core.stats)


def test_claims_not_believed_are_refused_counted_and_never_pushed() -> None:
    core = gossip(World())
    forged = {
        "own_actor": changeset(ME, 9),
        "broadcast_empty": EmptyChangeset(A, (1, 100), 0),
        "unknown_actor": changeset(STRANGER, 1),
        "version_jump": changeset(A, MAX_VERSION_JUMP + 1),
    }
    for reason, item in forged.items():
        assert core.datagram(0.0, FROM, wrapped(piece(item))) == []
        assert core.stats[f"refused_{reason}"] == 1
    assert pieces_sent(core) == [] and core.stats["new"] == 0


def test_what_does_not_decode_is_counted_and_costs_no_lookup() -> None:
    world = World()
    core = gossip(world)
    junk = {
        "dropped_malformed": b"\xff\x00 not cbor",
        "dropped_wrong_cluster": piece(changeset(A, 1), cluster_id=CLUSTER + 1),
        "dropped_unknown": encode(SyncDone(), cluster_id=CLUSTER),  # decodes, not a changeset
    }
    for counter, data in junk.items():
        assert core.datagram(0.0, FROM, data) == []
        assert core.stats[counter] == 1
    assert core.stats["received"] == 3
    assert world.reads == 0  # neither the bookkeeping nor the member list was read


def test_a_piece_that_does_not_decode_inside_a_broadcast_is_dropped_alone() -> None:
    core = gossip(World())
    good = piece(changeset(A, 1))
    assert core.datagram(0.0, FROM, wrapped(b"junk", good)) == [changeset(A, 1)]
    assert core.stats["dropped_malformed"] == 1


def test_control_from_a_stranger_changes_nothing() -> None:
    core = gossip(World())
    core.tick(0.0)
    eager = set(core.tree.eager)
    prune = encode(Broadcast(prune=True), cluster_id=CLUSTER)
    assert core.datagram(0.0, ("10.9.9.9", 1), prune) == []
    assert core.tree.eager == eager and core.stats["control_from_stranger"] == 1


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_never_raise_and_never_queue(data: bytes) -> None:
    core = gossip(World())
    assert core.datagram(0.0, FROM, data) == []
    assert pieces_sent(core) == []
