"""The sync client's state machine, sans-IO: peers chosen and remembered, states gathered, one
plan per round, requests cut lazily, only solicited answers believed, deliveries in batches."""

from __future__ import annotations

import inspect
import random

import pytest

from corrosion_py.replication import sync_client
from corrosion_py.replication.sync_client import (
    DELIVER_BATCH,
    DELIVER_BYTES,
    NEEDS_PER_REQUEST,
    Session,
    SyncClient,
)
from corrosion_py.wire.messages import (
    Changeset,
    EmptyChangeset,
    NeedFull,
    NeedPartial,
    SyncRequest,
    SyncState,
)

ME, A, B = (bytes([i]) * 16 for i in (1, 2, 3))


def state(actor: bytes, heads: dict[bytes, int]) -> SyncState:
    return SyncState(actor, heads, {}, {})


def cs(actor: bytes, version: int) -> Changeset:
    return Changeset(actor, version, (), (0, 0), 0, 0)


def test_peers_synced_lately_are_chosen_last() -> None:
    client = SyncClient[str](random.Random(1))
    candidates = [f"p{i}" for i in range(5)]
    first = client.choose(candidates, {})
    assert len(first) == 3
    for peer in first:
        client.completed(10.0, peer)
    second = client.choose(candidates, {})
    assert set(second) & {p for p in candidates if p not in first} == set(candidates) - set(first)
    assert client.choose(candidates, {"p4": 7})[0] == "p4"  # whose versions we miss most
    assert 1.0 <= client.next_interval() <= 15.0


def test_a_round_plans_once_with_every_state_and_nothing_is_asked_twice() -> None:
    client = SyncClient[str](random.Random(3))
    sync_round = client.round(["s1", "s2", "s3"])
    sync_round.answered("s1", state(B, {A: 40}))
    sync_round.answered("s2", state(B, {A: 40}))  # s3's handshake failed: left out
    with pytest.raises(ValueError, match="did not choose"):
        sync_round.answered("s9", state(B, {A: 1}))
    sessions = sync_round.plan(state(ME, {A: 0}))
    assert set(sessions) == {"s1", "s2"}
    asked = [
        v
        for session in sessions.values()
        for _, needs in session.needs
        for need in needs
        if isinstance(need, NeedFull)
        for v in range(need.versions[0], need.versions[1] + 1)
    ]
    assert sorted(asked) == list(range(1, 41))  # all of it, each version from one server
    assert all(session.needs for session in sessions.values())  # equal servers share it
    assert set(client.learnt) == {A}  # what the states advertised
    with pytest.raises(ValueError, match="planned once"):
        sync_round.plan(state(ME, {}))


def test_learnt_actors_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync_client, "LEARNT_ACTORS", 2)
    client = SyncClient[str](random.Random(0))
    for i in range(5):
        client.learn(state(B, {bytes([40 + i]) * 16: 1}))
    assert list(client.learnt) == [bytes([43]) * 16, bytes([44]) * 16]  # the latest two


def test_requests_are_cut_lazily_in_plan_order() -> None:
    needs = [
        (A, [NeedFull((v, v)) for v in range(25, 13, -1)]),
        (B, [NeedPartial(9, ((0, 3),)), NeedFull((1, 5))]),
    ]
    session = Session(needs)
    requests = session.requests()
    assert inspect.isgenerator(requests)  # cut as they are sent, never all at once
    cut = list(requests)
    assert [sum(len(n) for _, n in r.needs) for r in cut] == [NEEDS_PER_REQUEST, 4]
    assert cut[0] == SyncRequest(((A, tuple(NeedFull((v, v)) for v in range(25, 15, -1))),))
    assert cut[1].needs == (
        (A, (NeedFull((15, 15)), NeedFull((14, 14)))),
        (B, (NeedPartial(9, ((0, 3),)), NeedFull((1, 5)))),
    )
    assert list(Session([]).requests()) == []


def test_only_solicited_answers_are_believed_and_delivered_in_batches() -> None:
    session = Session([(A, [NeedFull((1, 200))])])
    assert session.receive(cs(B, 1), 100) is None  # asked nothing of B
    assert session.receive(cs(A, 500), 100) is None  # asked nothing past 200
    assert session.unsolicited == 2
    assert session.receive(EmptyChangeset(A, (150, 900), 0), 30) is None  # cut, kept
    delivered = []
    for v in range(1, DELIVER_BATCH):
        batch = session.receive(cs(A, v), 100)
        if batch is not None:
            delivered.append(batch)
    assert [len(b) for b in delivered] == [DELIVER_BATCH]
    assert delivered[0][0] == EmptyChangeset(A, (150, 200), 0)
    assert session.finish() == []
    # a batch also goes once its frames reach DELIVER_BYTES
    assert session.receive(cs(A, 100), DELIVER_BYTES) == [cs(A, 100)]
    assert session.receive(cs(A, 101), 10) is None
    assert session.finish() == [cs(A, 101)] and session.finish() == []
