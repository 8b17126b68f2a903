"""The sans-IO sync planner: peer choice order, chunking of Full needs by 10 versions, and never
asking two servers for the same version (or the same seqs of a version) in one round."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from corrosion_py.replication.needs import compute_needs
from corrosion_py.replication.ranges import RangeSet
from corrosion_py.replication.sync_plan import (
    choose_peers,
    desired_peers,
    jittered_interval,
    missing_versions,
    plan_requests,
)
from corrosion_py.wire.messages import Need, NeedFull, NeedPartial, SyncState

ME, A, B, C, X = (bytes([i]) * 16 for i in range(1, 6))


def state(
    actor: bytes,
    heads: dict[bytes, int],
    need: dict[bytes, tuple[tuple[int, int], ...]] | None = None,
    partial: dict[bytes, dict[int, tuple[tuple[int, int], ...]]] | None = None,
) -> SyncState:
    return SyncState(actor, heads, need or {}, partial or {})


def full_versions(needs: list[Need]) -> list[int]:
    return [
        v for n in needs if isinstance(n, NeedFull) for v in range(n.versions[0], n.versions[1] + 1)
    ]


# -- peer choice -----------------------------------------------------------------------------------


def test_desired_peers_is_clamped() -> None:
    assert [desired_peers(n) for n in (0, 5, 299, 300, 750, 1_000, 5_000)] == [
        3,
        3,
        3,
        3,
        7,
        10,
        10,
    ]


def test_choose_peers_orders_by_missing_then_oldest_sync() -> None:
    candidates = ["p1", "p2", "p3", "p4", "p5"]  # 5 candidates: desired 3, sample all 5
    missing = {"p1": 0, "p2": 7, "p3": 0, "p4": 7, "p5": 1}
    last_sync = {"p1": 100.0, "p2": 50.0, "p3": 10.0, "p4": 60.0}  # p5 never synced
    for seed in range(20):  # whatever the sample order
        chosen = choose_peers(
            candidates, rng=random.Random(seed), missing=missing, last_sync=last_sync
        )
        assert chosen == ["p2", "p4", "p5"]
    # equal missing: never synced first, then the oldest
    chosen = choose_peers(candidates, rng=random.Random(1), missing={}, last_sync=last_sync)
    assert chosen == ["p5", "p3", "p2"]


def test_choose_peers_samples_twice_desired_from_a_large_cluster() -> None:
    candidates = list(range(1_000))
    missing = {7: 1_000}  # the best candidate is only kept when the sample picks it
    picked = 0
    for seed in range(50):
        chosen = choose_peers(candidates, rng=random.Random(seed), missing=missing, last_sync={})
        assert len(chosen) == 10 and len(set(chosen)) == 10
        if 7 in chosen:
            picked += 1
            assert chosen[0] == 7
    assert 0 < picked < 50  # sampled 20 of 1,000: sometimes, not always
    assert choose_peers([], rng=random.Random(0), missing={}, last_sync={}) == []


def test_missing_versions_counts_gaps_and_partials() -> None:
    ours = state(ME, {A: 50}, {A: ((3, 5), (10, 10))}, {A: {20: ((0, 1),)}, B: {2: ((3, 3),)}})
    assert missing_versions(ours) == {A: 5, B: 1}


def test_jittered_interval_stays_in_bounds() -> None:
    rng = random.Random(3)
    values = [jittered_interval(rng) for _ in range(200)]
    assert all(1.0 <= v <= 15.0 for v in values) and len(set(values)) > 100
    assert 2.0 <= jittered_interval(rng, 2.0, 3.0) <= 3.0


# -- planning --------------------------------------------------------------------------------------


def test_full_ranges_are_chunked_by_10_newest_first() -> None:
    ours = state(ME, {})
    plan = plan_requests(ours, {"s": state(A, {A: 35})})
    [(actor, needs)] = plan["s"]
    assert actor == A
    assert needs == [NeedFull((26, 35)), NeedFull((16, 25)), NeedFull((6, 15)), NeedFull((1, 5))]


def test_equal_servers_share_the_work_round_robin() -> None:
    ours = state(ME, {X: 10})
    theirs = {name: state(bytes([i]) * 16, {X: 60}) for i, name in enumerate(["s1", "s2", "s3"], 1)}
    plan = plan_requests(ours, theirs)
    asked = {name: full_versions([n for _, needs in plan[name] for n in needs]) for name in plan}
    assert sorted(len(v) for v in asked.values()) == [10, 20, 20]  # 5 chunks spread 2/2/1
    counts = sorted(len(needs) for name in plan for _, needs in plan[name])
    assert counts == [1, 2, 2]
    everything = sorted(v for vs in asked.values() for v in vs)
    assert everything == list(range(11, 61))


def test_a_server_lacking_a_range_is_not_asked_for_it() -> None:
    ours = state(ME, {X: 0})
    theirs = {
        "short": state(A, {X: 20}),
        "long": state(B, {X: 40}, {X: ((5, 8),)}),  # long has a gap at 5..8
    }
    plan = plan_requests(ours, theirs)
    short = full_versions([n for _, ns in plan["short"] for n in ns])
    long = full_versions([n for _, ns in plan["long"] for n in ns])
    assert set(range(21, 41)) <= set(long)
    assert set(range(5, 9)) <= set(short)
    assert not set(short) & set(long)
    assert sorted(short + long) == list(range(1, 41))


def test_partial_versions_are_asked_once_by_seqs() -> None:
    # we miss seqs 0..9 of X's version 5; s1 holds it whole, s2 holds only seqs 0..4
    ours = state(ME, {X: 5}, partial={X: {5: ((0, 9),)}})
    theirs = {"s2": state(B, {X: 5}, partial={X: {5: ((5, 9),)}}), "s1": state(A, {X: 5})}
    plan = plan_requests(ours, theirs)
    assert plan == {"s2": [], "s1": [(X, [NeedPartial(5, ((0, 9),))])]}  # the whole is preferred
    # nobody holds it whole: the partial holder gives what it has
    plan = plan_requests(ours, {"s2": theirs["s2"]})
    assert plan == {"s2": [(X, [NeedPartial(5, ((0, 4),))])]}


def test_every_server_is_in_the_plan_and_our_own_actor_is_never_asked() -> None:
    ours = state(ME, {ME: 9, X: 3})
    plan = plan_requests(ours, {"s": state(A, {ME: 12, X: 3})})
    assert plan == {"s": []}


# -- property: no double asking, nothing lost ------------------------------------------------------

ACTORS = [A, B, X]


@st.composite
def states(draw: st.DrawFn, actor: bytes) -> SyncState:
    heads: dict[bytes, int] = {}
    need: dict[bytes, tuple[tuple[int, int], ...]] = {}
    partial: dict[bytes, dict[int, tuple[tuple[int, int], ...]]] = {}
    for who in ACTORS:
        head = draw(st.integers(0, 45))
        if head == 0:
            continue
        heads[who] = head
        gaps = RangeSet()
        for _ in range(draw(st.integers(0, 3))):
            s = draw(st.integers(1, head))
            gaps.add(s, min(head, s + draw(st.integers(0, 6))))
        gaps.remove(head, head)  # the head itself is known
        if gaps:
            need[who] = tuple(gaps)
        versions = [v for v in range(1, head) if not gaps.contains(v)]
        for v in (
            draw(st.lists(st.sampled_from(versions), max_size=2, unique=True)) if versions else []
        ):
            lo = draw(st.integers(0, 8))
            partial.setdefault(who, {})[v] = ((lo, lo + draw(st.integers(0, 4))),)
    return SyncState(actor, heads, need, partial)


@settings(max_examples=200, deadline=None)
@given(ours=states(ME), s1=states(A), s2=states(B), s3=states(C))
def test_plan_never_asks_twice_and_loses_nothing(
    ours: SyncState, s1: SyncState, s2: SyncState, s3: SyncState
) -> None:
    theirs = {"s1": s1, "s2": s2, "s3": s3}
    plan = plan_requests(ours, theirs)
    assert set(plan) == set(theirs)
    asked_full: dict[tuple[bytes, int], str] = {}
    asked_seq: dict[tuple[bytes, int, int], str] = {}
    for server, per_actor in plan.items():
        offer = compute_needs(ours, theirs[server])
        assert len({a for a, _ in per_actor}) == len(per_actor)  # one entry per actor
        for actor, needs in per_actor:
            offered_full = {
                v
                for n in offer.get(actor, [])
                if isinstance(n, NeedFull)
                for v in range(n.versions[0], n.versions[1] + 1)
            }
            offered_seq = {
                (n.version, q)
                for n in offer.get(actor, [])
                if isinstance(n, NeedPartial)
                for s, e in n.seqs
                for q in range(s, e + 1)
            }
            for need in needs:
                if isinstance(need, NeedFull):
                    lo, hi = need.versions
                    assert 1 <= hi - lo + 1 <= 10
                    for v in range(lo, hi + 1):
                        assert v in offered_full  # only what the server has
                        assert (actor, v) not in asked_full  # never twice
                        asked_full[actor, v] = server
                else:
                    for s, e in need.seqs:
                        for q in range(s, e + 1):
                            assert (need.version, q) in offered_seq
                            assert (actor, need.version, q) not in asked_seq
                            asked_seq[actor, need.version, q] = server
    # everything some server offered is asked from one of them
    for st_ in theirs.values():
        for actor, needs in compute_needs(ours, st_).items():
            for n in needs:
                if isinstance(n, NeedFull):
                    for v in range(n.versions[0], n.versions[1] + 1):
                        assert (actor, v) in asked_full
                else:
                    for s, e in n.seqs:
                        for q in range(s, e + 1):
                            assert (actor, n.version, q) in asked_seq
