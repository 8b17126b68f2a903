"""The broadcast tree (corrosion_py.replication.plumtree), sans-IO: eager and lazy peers, pushes
that never go back, prunes on duplicates, announcements, grafts after a lost push, bounded
caches; and a whole cluster of trees on a toy network, where each node ends up receiving each
piece about once and a lossy network still delivers everything."""

from __future__ import annotations

import functools
import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from corrosion_py.replication.plumtree import Peer, Plumtree, PlumtreeConfig, Send
from corrosion_py.wire.codec import decode, encode
from corrosion_py.wire.messages import Broadcast

CLUSTER = 5


def actor(i: int) -> bytes:
    return bytes([i + 1]) * 16


def addr(i: int) -> tuple[str, int]:
    return ("10.0.0.1", 7000 + i)


def tree(me: int, n: int, seed: int = 0, **kw: int | float) -> Plumtree:
    t = Plumtree(
        PlumtreeConfig(**kw),  # type: ignore[arg-type]
        random.Random(seed * 1000 + me),
        encode=functools.partial(encode, cluster_id=CLUSTER, check=False),
        max_payload=1200,
    )
    t.set_peers(tuple(Peer(actor(j), addr(j)) for j in range(n) if j != me))
    return t


def messages(sends: list[Send]) -> list[tuple[tuple[str, int], Broadcast]]:
    out = []
    for send in sends:
        assert len(send.data) <= 1200
        msg = decode(send.data, cluster_id=CLUSTER)
        assert isinstance(msg, Broadcast)
        out.append((send.addr, msg))
    return out


def test_a_new_node_grafts_its_first_eager_peers_and_tells_them() -> None:
    t = tree(0, 8, eager_peers=3)
    assert len(t.eager) == 3 and len(t.lazy) == 4
    sent = messages(t.flush())
    assert {a for a, _ in sent} == {addr(j) for j in range(8) if actor(j) in t.eager}
    assert all(m.join and not m.gossip for _, m in sent)


def test_a_push_goes_to_the_eager_peers_but_the_sender_and_the_origin() -> None:
    t = tree(0, 8, eager_peers=3)
    t.flush()
    eager = sorted(t.eager)
    sender, origin = eager[0], eager[1]
    t.push(0.0, (origin, 1), b"piece", sender=sender)
    sent = messages(t.flush())
    targets = {a for a, m in sent if m.gossip == (b"piece",)}
    assert targets == {addr(j) for j in range(8) if actor(j) in t.eager} - {
        addr(j) for j in range(8) if actor(j) in (sender, origin)
    }
    assert t.seen(b"piece")


def test_a_duplicate_from_an_eager_peer_prunes_it_and_the_last_one_is_kept() -> None:
    t = tree(0, 4, eager_peers=2)
    t.flush()
    first, second = sorted(t.eager)
    t.duplicate(first)
    assert first in t.lazy and [m.prune for a, m in messages(t.flush())] == [True]
    t.duplicate(second)  # the last eager peer: a lazy one is grafted in its place
    assert second in t.lazy and len(t.eager) == 1 and first in t.eager | t.lazy
    assert t.stats["pruned"] == 2


def test_a_prune_from_a_peer_makes_it_lazy() -> None:
    t = tree(0, 6, eager_peers=3)
    peer = sorted(t.eager)[0]
    t.prune(peer)
    assert peer in t.lazy and t.stats["pruned_by_peer"] == 1


def test_arrivals_are_announced_to_lazy_peers_at_the_interval() -> None:
    t = tree(0, 10, eager_peers=2, lazy_peers=3, ihave_interval=0.25, announce_rounds=2)
    t.flush()
    for v in (1, 2, 3, 7):
        t.push(0.0, (actor(9), v), b"p%d" % v, sender=None)
    t.flush()
    assert t.next_deadline() == 0.25
    t.tick(0.1)
    assert not any(m.ihave for _, m in messages(t.flush()))
    t.tick(0.25)
    announced = [(a, m.ihave) for a, m in messages(t.flush()) if m.ihave]
    assert len(announced) == 3
    assert all(a in {addr(j) for j in range(10) if actor(j) in t.lazy} for a, _ in announced)
    assert all(ih == ((actor(9), ((1, 3), (7, 7))),) for _, ih in announced)
    t.push(0.3, (actor(9), 8), b"p8", sender=None)
    t.tick(0.5)  # the next announcement repeats the last interval's versions too
    again = [m.ihave for _, m in messages(t.flush()) if m.ihave]
    assert again and all(ih == ((actor(9), ((1, 3), (7, 8))),) for ih in again)
    t.tick(0.75)  # nothing new for two intervals: quiet again
    t.tick(1.0)
    t.flush()
    assert t.next_deadline() is None


def test_an_announced_version_that_does_not_come_is_grafted_from_the_announcer() -> None:
    t = tree(0, 6, eager_peers=1, graft_timeout=0.2)
    t.flush()
    announcer = sorted(t.lazy)[0]
    t.ihave(1.0, announcer, [(actor(5), ((4, 4),))])
    assert t.next_deadline() == 1.2
    t.tick(1.1)
    assert not any(m.graft for _, m in messages(t.flush()))
    t.tick(1.2)
    grafts = [(a, m.graft) for a, m in messages(t.flush()) if m.graft]
    assert grafts == [(addr(announcer[0] - 1), ((actor(5), ((4, 4),)),))]
    assert announcer in t.eager  # the graft repaired the tree there


def test_an_announced_version_that_arrives_is_not_grafted() -> None:
    t = tree(0, 6, eager_peers=1, graft_timeout=0.2)
    announcer = sorted(t.lazy)[0]
    t.ihave(1.0, announcer, [(actor(5), ((4, 4),))])
    t.push(1.1, (actor(5), 4), b"arrived", sender=sorted(t.eager)[0])
    t.flush()
    t.tick(1.3)
    assert not any(m.graft for _, m in messages(t.flush())) and t.stats["grafted"] == 0


def test_what_the_host_says_it_holds_is_never_awaited() -> None:
    t = tree(0, 6)
    t.missing = lambda a, v: v != 4
    t.ihave(0.0, sorted(t.lazy)[0], [(actor(5), ((3, 5),))])
    assert t.stats["missing"] == 2


def test_a_graft_is_answered_from_the_cache_and_makes_the_link_eager() -> None:
    t = tree(0, 6, eager_peers=1)
    t.push(0.0, (actor(5), 8), b"eight", sender=None)
    t.flush()
    asker = sorted(t.lazy)[0]
    t.graft(asker, [(actor(5), ((7, 9),))])
    answers = [m.gossip for a, m in messages(t.flush()) if a == addr(asker[0] - 1)]
    assert answers == [(b"eight",)] and asker in t.eager


def test_caches_are_bounded() -> None:
    t = tree(0, 3, cache_items=10, max_missing=5)
    for v in range(1, 101):
        t.push(0.0, (actor(2), v), b"v%d" % v, sender=None)
    assert not t.seen(b"v1") and t.seen(b"v100")
    t.ihave(0.0, actor(1), [(actor(4), ((1, 1000),))])
    assert t.stats["missing"] == 5 and t.stats["dropped_missing"] > 0


@settings(max_examples=100, deadline=None)
@given(
    announced=st.lists(
        st.tuples(st.integers(1, 2**53 - 1), st.integers(0, 2**40)), min_size=1, max_size=50
    )
)
def test_absurd_announcements_cost_bounded_work(announced: list[tuple[int, int]]) -> None:
    t = tree(0, 3)
    ranges = tuple((s, min(2**53 - 1, s + w)) for s, w in announced)
    t.ihave(0.0, actor(1), [(actor(2), ranges)])
    t.graft(actor(1), [(actor(2), ranges)])
    assert t.stats["missing"] <= 4096 and len(t.flush()) <= 2


# -- a cluster of trees on a toy network ---------------------------------------------------------


class Net:
    """N trees exchanging datagrams through a queue, with seeded loss."""

    def __init__(self, n: int, loss: float = 0.0, seed: int = 0) -> None:
        self.trees = [tree(i, n, seed) for i in range(n)]
        self.rng = random.Random(seed)
        self.loss = loss
        self.delivered: list[Counter[bytes]] = [Counter() for _ in range(n)]
        self.queue: list[tuple[int, int, bytes]] = []
        self.now = 0.0
        self.datagrams = 0

    def send_all(self, i: int) -> None:
        for send in self.trees[i].flush():
            self.datagrams += 1
            if self.rng.random() >= self.loss:
                self.queue.append((i, send.addr[1] - 7000, send.data))

    def write(self, i: int, data: bytes) -> None:
        self.trees[i].push(self.now, key_of(data), data, sender=None)
        self.delivered[i][data] += 1
        self.send_all(i)

    def run(self, seconds: float, step: float = 0.01) -> None:
        end = self.now + seconds
        while self.now < end:
            while self.queue:
                src, dst, data = self.queue.pop(0)
                self.receive(src, dst, data)
            self.now += step
            for i, t in enumerate(self.trees):
                t.tick(self.now)
                self.send_all(i)

    def receive(self, src: int, dst: int, data: bytes) -> None:
        t = self.trees[dst]
        msg = decode(data, cluster_id=CLUSTER)
        assert isinstance(msg, Broadcast)
        sender = actor(src)
        for piece in msg.gossip:
            if t.seen(piece):
                t.duplicate(sender)
            else:
                t.push(self.now, key_of(piece), piece, sender=sender)
            self.delivered[dst][piece] += 1
        if msg.prune:
            t.prune(sender)
        if msg.graft or msg.join:
            t.graft(sender, msg.graft)
        if msg.ihave:
            t.ihave(self.now, sender, msg.ihave)
        self.send_all(dst)


def key_of(piece: bytes) -> tuple[bytes, int]:
    return piece[:16], int.from_bytes(piece[16:24], "big")


def payload(i: int, k: int) -> bytes:
    return actor(i) + (k + 1).to_bytes(8, "big") + b"x" * 100


def test_a_stable_tree_delivers_each_piece_about_once_to_each_node() -> None:
    net = Net(12, seed=3)
    net.run(0.1)
    for k in range(40):  # warm-up: duplicates prune the eager links down to a tree
        net.write(k % 12, payload(k % 12, k))
        net.run(0.05)
    before = [sum(c.values()) for c in net.delivered]
    for k in range(40, 140):
        net.write(k % 12, payload(k % 12, k))
        net.run(0.05)
    net.run(1.0)
    received = [sum(c.values()) - b for c, b in zip(net.delivered, before, strict=True)]
    per_node = sum(received) / 12 / 100  # pieces received (or written) per write per node
    assert all(payload(k % 12, k) in c for c in net.delivered for k in range(140))
    assert per_node <= 1.2


def test_a_lossy_network_still_delivers_every_piece_by_grafts() -> None:
    net = Net(10, loss=0.1, seed=5)
    net.run(0.1)
    for k in range(60):
        net.write(k % 10, payload(k % 10, k))
        net.run(0.05)
    net.run(3.0)
    missing = [
        (i, k)
        for i, c in enumerate(net.delivered)
        for k in range(60)
        if payload(k % 10, k) not in c
    ]
    assert missing == []
    assert sum(t.stats["grafted"] for t in net.trees) > 0
