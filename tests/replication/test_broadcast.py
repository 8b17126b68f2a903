"""The changeset broadcaster (corrosion_py.replication.broadcast): first hop, fan-out, budgets,
resend delays, rate limit, bounds, dedupe, and a 100-node epidemic with loss."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corrosion_py.replication import (
    BroadcastConfig,
    Broadcaster,
    Peer,
    Send,
    fanout,
    max_transmissions,
    relay_transmissions,
)


def addr(i: int) -> tuple[str, int]:
    return (f"10.0.{i // 250}.{i % 250}", 7000)


def make_peers(count: int, rtts: Sequence[float | None] | None = None) -> list[Peer]:
    return [
        Peer(i.to_bytes(16, "big"), addr(i), None if rtts is None else rtts[i])
        for i in range(count)
    ]


def drain(
    b: Broadcaster, peers: Sequence[Peer], start: float = 0.0
) -> list[tuple[float, list[Send]]]:
    """Tick at every deadline until nothing is queued; the non-empty rounds with their times."""
    rounds: list[tuple[float, list[Send]]] = []
    now = start
    while (deadline := b.next_deadline()) is not None:
        assert deadline >= now, "a deadline in the past would make the host spin"
        now = deadline
        sends = b.tick(now, peers)
        if sends:
            rounds.append((now, sends))
    return rounds


def test_formulas_match_foca_and_corrosion() -> None:
    assert [max_transmissions(n) for n in (1, 10, 100, 1000)] == [1, 4, 8, 12]
    assert [relay_transmissions(n) for n in (1, 10, 100, 1000)] == [1, 2, 4, 6]
    assert fanout(100, 3) == 3
    assert fanout(10_000, 3) == 9_999 // 160 == 62
    assert fanout(10_000, 100) == 100


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        BroadcastConfig(min_fanout=0)
    with pytest.raises(ValueError):
        BroadcastConfig(rate_bytes_per_s=0.0)
    with pytest.raises(ValueError):
        BroadcastConfig(max_queue=0)


def test_local_goes_to_closest_peers_at_once_plus_random_fanout() -> None:
    rtts: list[float | None] = [0.001 * (i + 1) for i in range(20)]
    random.Random(1).shuffle(rtts)
    peers = make_peers(20, rtts)
    closest = [p.addr for p in sorted(peers, key=lambda p: p.rtt or 0.0)[:3]]
    b = Broadcaster(BroadcastConfig(close_peers=3), random.Random(7))

    sends = b.local(0.0, "k", b"data", peers)

    assert [s.addr for s in sends[:3]] == closest
    assert len(sends) == 3 + fanout(21, 3) == 6
    assert len({s.addr for s in sends}) == 6
    assert all(s.data == b"data" for s in sends)
    assert "k" in b and b.queue_len == 1
    assert b.next_deadline() == pytest.approx(0.1)
    assert b.stats["sent_datagrams"] == 6 and b.stats["sent_bytes"] == 24


def test_unknown_rtt_comes_after_known_and_ties_are_random() -> None:
    peers = make_peers(10, [0.002, None, None, 0.001, None, None, None, None, None, None])
    third: set[tuple[str, int]] = set()
    for seed in range(20):
        b = Broadcaster(BroadcastConfig(close_peers=3), random.Random(seed))
        sends = b.local(0.0, "k", b"x", peers)
        assert [s.addr for s in sends[:2]] == [addr(3), addr(0)]
        assert sends[2].addr not in (addr(0), addr(3))
        third.add(sends[2].addr)
    assert len(third) > 1


def test_new_items_are_relayed_known_and_duplicates_are_not() -> None:
    peers = make_peers(50)
    b = Broadcaster(BroadcastConfig(), random.Random(3))

    assert b.received(1.0, "a", b"A", known=False)
    assert b.queue_len == 1 and b.next_deadline() == 1.0
    sends = b.tick(1.0, peers)
    assert len(sends) == fanout(51, 3) and {s.data for s in sends} == {b"A"}

    assert not b.received(1.0, "a", b"A", known=False)  # in the seen-cache
    assert not b.received(1.0, "b", b"B", known=True)  # the store already had it
    assert "b" not in b and b.queue_len == 1
    b.local(1.0, "c", b"C", peers)
    assert not b.received(1.0, "c", b"C", known=False)  # our own write coming back
    assert b.stats["duplicates"] == 3 and b.stats["relayed"] == 1 and b.stats["local"] == 1


def test_local_key_already_queued_is_refused() -> None:
    b = Broadcaster(BroadcastConfig(), random.Random(0))
    b.local(0.0, "k", b"x", make_peers(30))
    with pytest.raises(ValueError, match="already queued"):
        b.local(0.0, "k", b"x", make_peers(30))


@pytest.mark.parametrize("n", [100, 1000])
@pytest.mark.parametrize("local", [True, False])
def test_each_item_is_sent_its_budget_of_rounds_never_twice_to_a_peer(n: int, local: bool) -> None:
    peers = make_peers(n - 1)
    b = Broadcaster(BroadcastConfig(), random.Random(n))
    first = b.local(0.0, "k", b"x", peers) if local else []
    if not local:
        assert b.received(0.0, "k", b"x", known=False)
    rounds = ([(0.0, first)] if local else []) + drain(b, peers)

    budget = max_transmissions(n) if local else relay_transmissions(n)
    assert len(rounds) == budget
    per_round = [len(sends) for _, sends in rounds]
    f = fanout(n, 3)
    assert per_round == ([3 + f] + [f] * (budget - 1) if local else [f] * budget)
    addrs = [s.addr for _, sends in rounds for s in sends]
    assert len(addrs) == len(set(addrs))
    assert b.queue_len == 0 and b.stats["completed"] == 1


def test_small_cluster_every_peer_once_then_done_early() -> None:
    peers = make_peers(9)  # n = 10: budget 4 rounds, but 3 close + 3 + 3 cover everyone
    b = Broadcaster(BroadcastConfig(), random.Random(5))
    rounds = [(0.0, b.local(0.0, "k", b"x", peers)), *drain(b, peers)]
    assert [len(s) for _, s in rounds] == [6, 3]
    assert Counter(s.addr for _, sends in rounds for s in sends) == {p.addr: 1 for p in peers}
    assert b.queue_len == 0


def test_kth_resend_waits_resend_delay_times_k() -> None:
    peers = make_peers(99)
    b = Broadcaster(BroadcastConfig(resend_delay=0.1), random.Random(2))
    b.local(10.0, "k", b"x", peers)
    assert b.tick(10.09, peers) == []  # not due yet
    times = [10.0] + [t for t, _ in drain(b, peers, start=10.09)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps == pytest.approx([0.1 * k for k in range(1, 8)])


def test_rate_limit_caps_bytes_per_simulated_second() -> None:
    rate, size, dt, seconds = 20_000.0, 1000, 0.01, 10
    peers = make_peers(99)
    b = Broadcaster(BroadcastConfig(rate_bytes_per_s=rate), random.Random(4))
    per_second = [0] * seconds
    key = 0
    for step in range(seconds * 100):
        now = step * dt
        if step % 10 == 0:  # 50 new items every 100 ms: 60 kB/s offered per round, far above
            for _ in range(50):
                key += 1
                assert b.received(now, key, bytes(size), known=False)
        per_second[step // 100] += sum(len(s.data) for s in b.tick(now, peers))

    biggest_round = size * fanout(100, 3)
    assert per_second[0] <= rate + rate + biggest_round  # the initial burst, then the rate
    for sent in per_second[1:]:
        assert rate * 0.9 <= sent <= rate * (1 + dt) + biggest_round, per_second
    assert sum(per_second) <= rate + rate * seconds + biggest_round
    assert b.stats["rate_limited"] > 0


def test_round_after_a_rate_limited_call_halves_fanout() -> None:
    peers = make_peers(20)  # n = 21: fan-out 3, relay budget 3

    def first_two_ticks(rate: float) -> tuple[int, int]:
        b = Broadcaster(BroadcastConfig(rate_bytes_per_s=rate), random.Random(6))
        assert b.received(0.0, "a", bytes(1000), known=False)
        assert b.received(0.0, "b", bytes(1000), known=False)
        one = len(b.tick(0.0, peers))
        deadline = b.next_deadline()
        assert deadline is not None
        return one, len(b.tick(deadline, peers))

    assert first_two_ticks(1e9) == (6, 6)  # both items, full fan-out, twice
    # 2000 B/s: "a" overdraws the bucket (3000 B), "b" waits until 0.5 s, then goes out to
    # 3 // 2 = 1 peer: the previous call was stopped by the limiter.
    assert first_two_ticks(2000.0) == (3, 1)

    b = Broadcaster(BroadcastConfig(rate_bytes_per_s=2000.0), random.Random(6))
    b.received(0.0, "a", bytes(1000), known=False)
    b.received(0.0, "b", bytes(1000), known=False)
    drain(b, peers)
    assert b.stats["rate_limited"] > 0
    b.received(1000.0, "c", bytes(1000), known=False)  # bucket full again, nothing stopped
    assert len(b.tick(1000.0, peers)) == 3


def test_local_write_waits_for_the_bucket_and_keeps_its_close_peers() -> None:
    peers = make_peers(20, [0.001 * (20 - i) for i in range(20)])  # peer 19 is the closest
    b = Broadcaster(BroadcastConfig(rate_bytes_per_s=1000.0), random.Random(8))
    b.received(0.0, "r", bytes(1000), known=False)
    assert len(b.tick(0.0, peers)) == 3  # overdraws by 2000 B: no round before 2.0
    assert b.local(1.0, "l", b"L" * 1000, peers) == []
    assert b.stats["rate_limited"] == 1 and "l" in b
    assert b.next_deadline() == 2.0
    assert [s.data[:1] for s in b.tick(2.0, peers)] == [b"\0"]  # "r", halved fan-out
    assert b.next_deadline() == 3.0
    sends = b.tick(3.0, peers)
    assert [s.addr for s in sends[:3]] == [addr(19), addr(18), addr(17)]
    assert len(sends) == 3 + 1 and {s.data for s in sends} == {b"L" * 1000}


def test_per_call_cap_bounds_work_and_the_rest_stays_due() -> None:
    peers = make_peers(99)
    b = Broadcaster(BroadcastConfig(max_sends_per_call=5), random.Random(9))
    for k in range(20):
        b.received(0.0, k, b"x", known=False)
    assert len(b.tick(0.0, peers)) == 6  # a round is whole: 3, 3, then the cap
    assert b.next_deadline() == 0.0 and b.stats["send_cap"] == 1
    total = 6
    while b.next_deadline() == 0.0:
        total += len(b.tick(0.0, peers))
    assert total == 20 * 3


def test_overflow_drops_the_most_sent_item() -> None:
    peers = make_peers(99)
    b = Broadcaster(BroadcastConfig(max_queue=3), random.Random(10))
    b.received(0.0, "x1", b"1", known=False)
    b.tick(0.0, peers)  # x1 has been sent once
    b.received(0.01, "x2", b"2", known=False)
    b.received(0.01, "x3", b"3", known=False)
    b.received(0.01, "x4", b"4", known=False)
    assert "x1" not in b and all(k in b for k in ("x2", "x3", "x4"))
    assert b.stats["dropped_overflow"] == 1 and b.queue_len == 3
    assert b"1" not in {s.data for _, sends in drain(b, peers, 0.01) for s in sends}


def test_overflow_ties_drop_relayed_before_local_oldest_first() -> None:
    peers = make_peers(99)
    b = Broadcaster(BroadcastConfig(max_queue=3), random.Random(11))
    b.local(0.0, "L", b"L", peers)  # sent once
    b.received(0.0, "R", b"R", known=False)
    b.tick(0.0, peers)  # R sent once; L is due at 0.1
    b.received(0.01, "N1", b"1", known=False)
    b.received(0.01, "N2", b"2", known=False)  # over: R and L tie at one round, R goes
    assert "R" not in b and "L" in b
    b.received(0.01, "N3", b"3", known=False)  # over: L is the most sent
    assert "L" not in b and all(k in b for k in ("N1", "N2", "N3"))
    b.received(0.01, "N4", b"4", known=False)  # over: all unsent, the oldest relayed goes
    assert "N1" not in b and all(k in b for k in ("N2", "N3", "N4"))
    assert b.stats["dropped_overflow"] == 3


def test_overflow_flood_keeps_queue_and_heap_bounded() -> None:
    peers = make_peers(99)
    b = Broadcaster(BroadcastConfig(max_queue=50), random.Random(12))
    for k in range(5000):
        b.received(k * 0.001, k, b"x", known=False)
        if k % 7 == 0:
            b.tick(k * 0.001, peers)
        assert b.queue_len <= 50
        assert len(b._heap) <= 2 * 50 + 1
    assert b.stats["dropped_overflow"] > 4000


def test_seen_cache_is_bounded_fifo() -> None:
    b = Broadcaster(BroadcastConfig(seen_cache=3), random.Random(13))
    for k in ("k1", "k2", "k3", "k4"):
        assert b.received(0.0, k, b"x", known=False)
    for k in ("k4", "k3", "k2"):
        assert not b.received(0.0, k, b"x", known=False)
    assert b.received(0.0, "k1", b"x", known=False)  # evicted first, so new again
    assert len(b._seen) == 3


# A small epidemic ---------------------------------------------------------------------------

KEY = (b"\x01" * 16, 1, 0, 0)


def epidemic(seed: int, nodes: int = 100, loss: float = 0.1) -> dict[str, object]:
    """``nodes`` broadcasters, one local item at node 0, each datagram lost with ``loss``;
    datagrams take one 10 ms step; every node ticks at its deadlines."""
    net = random.Random(seed)
    everyone = make_peers(nodes, [net.uniform(0.001, 0.05) for _ in range(nodes)])
    index = {p.addr: i for i, p in enumerate(everyone)}
    views = [everyone[:i] + everyone[i + 1 :] for i in range(nodes)]
    nodes_ = [Broadcaster(BroadcastConfig(), random.Random(seed * 1000 + i)) for i in range(nodes)]
    has = [False] * nodes
    has[0] = True
    log: list[tuple[int, int, int]] = []
    inflight = [(0, s) for s in nodes_[0].local(0.0, KEY, b"changeset", views[0])]
    lost = step = all_at = 0
    while inflight or any(b.next_deadline() is not None for b in nodes_):
        step += 1
        now = step * 0.01
        arriving, inflight = inflight, []
        for src, send in arriving:
            dst = index[send.addr]
            log.append((step, src, dst))
            if net.random() < loss:
                lost += 1
            elif nodes_[dst].received(now, KEY, send.data, known=has[dst]):
                has[dst] = True
                all_at = all_at or (step if all(has) else 0)
        for i, b in enumerate(nodes_):
            deadline = b.next_deadline()
            if deadline is not None and deadline <= now + 1e-9:
                inflight += [(i, s) for s in b.tick(now, views[i])]
    return {
        "reached": sum(has),
        "all_at": all_at,
        "datagrams": len(log),
        "lost": lost,
        "steps": step,
        "log": log,
    }


def test_epidemic_reaches_nearly_all_of_100_nodes_despite_10_percent_loss() -> None:
    reports = [epidemic(seed) for seed in range(5)]
    for r in reports:
        print(
            f"epidemic: reached {r['reached']}/100 (all after {r['all_at']} steps), "
            f"{r['datagrams']} datagrams "
            f"({r['lost']} lost), quiet after {r['steps']} steps of 10 ms"
        )
    # The budget bounds the traffic: the writer 3 + 3 + 7·3, each of 99 relays 4·3.
    budget = 27 + 99 * 12
    for r in reports:
        assert isinstance(r["reached"], int) and isinstance(r["datagrams"], int)
        assert r["reached"] >= 95, r
        assert r["datagrams"] <= budget, r


def test_epidemic_is_deterministic_for_a_seed() -> None:
    assert epidemic(21)["log"] == epidemic(21)["log"]
    assert epidemic(21)["log"] != epidemic(22)["log"]


# Properties ---------------------------------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("local"), st.integers(0, 40)),
        st.tuples(st.just("received"), st.integers(0, 40)),
        st.tuples(st.just("tick"), st.floats(0.0, 0.5)),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(ops=ops, n_peers=st.integers(0, 40), max_queue=st.integers(1, 8), seed=st.integers(0, 99))
def test_no_peer_twice_budgets_and_bounds_hold(
    ops: list[tuple[str, float]], n_peers: int, max_queue: int, seed: int
) -> None:
    peers = make_peers(n_peers)
    n = n_peers + 1
    b = Broadcaster(BroadcastConfig(max_queue=max_queue), random.Random(seed))
    pairs: Counter[tuple[bytes, tuple[str, int]]] = Counter()
    rounds: Counter[bytes] = Counter()
    used: set[bytes] = set()  # every key names one item, written here or heard of
    local_keys: set[bytes] = set()
    now = 0.0

    def record(sends: list[Send]) -> None:
        pairs.update((s.data, s.addr) for s in sends)
        rounds.update({s.data for s in sends})  # at most one round of an item per call

    for op, arg in ops:
        key = str(arg).encode()
        if op == "local" and key not in used:
            local_keys.add(key)
            record(b.local(now, key, key, peers))
        elif op == "received":
            b.received(now, key, key, known=False)
        elif op == "tick":
            now += arg
            record(b.tick(now, peers))
        if op != "tick":
            used.add(key)
        assert b.queue_len <= max_queue
    while (deadline := b.next_deadline()) is not None:
        now = max(now, deadline)
        record(b.tick(now, peers))

    assert b.queue_len == 0
    assert all(count == 1 for count in pairs.values()), "a peer got an item twice"
    for key, count in rounds.items():
        budget = max_transmissions(n) if key in local_keys else relay_transmissions(n)
        assert count <= budget, (key, count, budget)
