"""The sans-IO claim rules: what a broadcast datagram may claim, what a sync session believes
(only answers to what it asked), and rounds planned lazily within their need budget."""

from __future__ import annotations

import time

from corrosion_py.crdt.limits import MAX_CLOCK
from corrosion_py.replication.booked import MAX_VERSION_JUMP, BookedVersions
from corrosion_py.replication.claims import Solicited, broadcast_refusal
from corrosion_py.replication.sync_plan import MAX_ROUND_NEEDS, plan_requests
from corrosion_py.wire.messages import Changeset, EmptyChangeset, NeedFull, NeedPartial, SyncState

ME, A, B, STRANGER = (bytes([i]) * 16 for i in (1, 2, 3, 9))


def cs(actor: bytes, version: int) -> Changeset:
    return Changeset(actor, version, (), (0, 0), 0, 0)


def refusal(item: Changeset | EmptyChangeset, bookie: dict[bytes, BookedVersions]) -> str | None:
    return broadcast_refusal(
        item, own_actor=ME, booked=bookie.get(item.actor_id), is_member=lambda a: a == A
    )


def test_broadcast_rules() -> None:
    bookie = {ME: BookedVersions(max=5), B: BookedVersions(max=50)}
    assert refusal(cs(ME, 6), bookie) == "own_actor"
    assert refusal(EmptyChangeset(ME, (6, MAX_CLOCK), 0), bookie) == "own_actor"
    assert refusal(EmptyChangeset(A, (1, 2), 0), bookie) == "broadcast_empty"
    assert refusal(cs(STRANGER, 1), bookie) == "unknown_actor"
    # a member not yet in the bookkeeping, and an actor learnt through sync (in the bookie)
    assert refusal(cs(A, MAX_VERSION_JUMP), bookie) is None
    assert refusal(cs(A, MAX_VERSION_JUMP + 1), bookie) == "version_jump"
    assert refusal(cs(B, 50 + MAX_VERSION_JUMP), bookie) is None
    assert refusal(cs(B, 51 + MAX_VERSION_JUMP), bookie) == "version_jump"


def test_a_session_believes_only_what_it_asked() -> None:
    plan = [(A, [NeedFull((20, 29)), NeedFull((5, 9)), NeedPartial(40, ((2, 3),))])]
    solicited = Solicited(plan)
    assert solicited.admit(cs(A, 25)) == [cs(A, 25)]
    assert solicited.admit(cs(A, 40)) == [cs(A, 40)]  # a partial version, any piece of it
    assert solicited.admit(cs(A, 10)) == []
    assert solicited.admit(cs(B, 25)) == []
    assert solicited.admit(cs(ME, 25)) == []
    # an empty range is cut to what was asked in full; nothing of it past that is believed
    assert solicited.admit(EmptyChangeset(A, (1, MAX_CLOCK), 7)) == [
        EmptyChangeset(A, (5, 9), 7),
        EmptyChangeset(A, (20, 29), 7),
    ]
    assert solicited.admit(EmptyChangeset(A, (21, 22), 0)) == [EmptyChangeset(A, (21, 22), 0)]
    assert solicited.admit(EmptyChangeset(A, (40, 40), 0)) == []  # partial: only data
    assert solicited.admit(EmptyChangeset(B, (1, 2), 0)) == []


def test_a_round_is_planned_lazily_within_its_budget() -> None:
    """A node 100,000 versions behind on many actors, each server also full of single-version
    gaps: the plan is at most MAX_ROUND_NEEDS needs (about: a chunk split between servers
    counts each part), made in bounded time, and still starts with the newest versions."""
    actors = [bytes([i]) * 16 for i in range(10, 60)]
    ours = SyncState(ME, {}, {}, {})
    lacking = tuple((v, v) for v in range(2, 20_000, 2))
    theirs = {
        name: SyncState(
            name * 16,
            dict.fromkeys(actors, MAX_CLOCK),
            dict.fromkeys(actors, lacking),
            {},
        )
        for name in (b"s", b"t")
    }
    started = time.monotonic()
    plan = plan_requests(ours, theirs)
    assert time.monotonic() - started < 60  # a hang bound: 50 actors x 10,000 ranges
    needs = [n for per_actor in plan.values() for _, ns in per_actor for n in ns]
    assert MAX_ROUND_NEEDS // 2 <= len(needs) <= MAX_ROUND_NEEDS + len(theirs)
    for per_actor in plan.values():
        for _, ns in per_actor:
            for need in ns:
                assert isinstance(need, NeedFull)
                assert need.versions[1] <= MAX_VERSION_JUMP
    # each actor's first need is its newest chunk; the actors share the round
    firsts = {actor: ns[0] for per in plan.values() for actor, ns in per}
    assert set(firsts) == set(actors)
    assert all(n.versions[1] == MAX_VERSION_JUMP for n in firsts.values())  # type: ignore[union-attr]


def test_chunks_grow_so_a_far_behind_node_asks_everything_in_one_round() -> None:
    ours = SyncState(ME, {}, {}, {})
    theirs = {"s": SyncState(A, {A: 90_000}, {}, {})}
    plan = plan_requests(ours, theirs)
    needs = [n for _, ns in plan["s"] for n in ns if isinstance(n, NeedFull)]
    assert len(needs) <= MAX_ROUND_NEEDS
    covered = sum(n.versions[1] - n.versions[0] + 1 for n in needs)
    assert covered == 90_000
    assert needs[0].versions[1] == 90_000  # newest first
