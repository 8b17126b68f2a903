"""The isolated pieces: suspicion arithmetic, awareness, rumour queue, precedence, config."""

from __future__ import annotations

import math

import pytest

from corrosion_py.swim import LAN, LOCAL, WAN, SwimConfig
from corrosion_py.swim.awareness import Awareness
from corrosion_py.swim.members import supersedes
from corrosion_py.swim.rumours import RumourQueue
from corrosion_py.swim.suspicion import Suspicion, suspicion_timeout
from corrosion_py.wire.swim import MemberState, NodeId, Rumour, rumour_size

A, S, D, L = MemberState


def _rumour(i: int, state: MemberState = A, inc: int = 0) -> Rumour:
    return Rumour(state, NodeId(bytes([i]) * 16, (f"10.0.0.{i}", 7946)), inc, bytes([i]) * 16)


@pytest.mark.parametrize(
    ("n", "low", "limit"),
    [(10, 4.0, 8), (100, 8.0, 12), (1000, 12.0, 16), (1, 4.0, 4)],
)
def test_lan_formulas_match_memberlist(n: int, low: float, limit: int) -> None:
    lo, hi = LAN.suspicion_timeouts(n)
    assert lo == pytest.approx(low)
    assert hi == pytest.approx(6 * low)
    assert LAN.retransmit_limit(n) == limit


def test_presets() -> None:
    assert (WAN.probe_interval, WAN.probe_timeout, WAN.suspicion_mult) == (5.0, 3.0, 6)
    assert (LOCAL.probe_interval, LOCAL.probe_timeout, LOCAL.suspicion_mult) == (0.2, 0.1, 3)
    assert LAN.max_packet_size == 1200
    with pytest.raises(ValueError):
        SwimConfig(probe_timeout=2.0)


def test_tiny_clusters_expect_no_confirmations() -> None:
    assert LAN.expected_confirmations(100) == 2
    assert LAN.expected_confirmations(4) == 2
    assert LAN.expected_confirmations(3) == 0  # n - 2 < K: use T_min directly


def test_suspicion_timeout_shrinks_logarithmically_to_min() -> None:
    assert suspicion_timeout(4, 24, 3, 0) == 24
    assert suspicion_timeout(4, 24, 3, 1) == pytest.approx(24 - 20 * math.log(2) / math.log(4))
    assert suspicion_timeout(4, 24, 3, 3) == pytest.approx(4)
    assert suspicion_timeout(4, 24, 0, 0) == 4


def test_confirmations_count_distinct_sources_except_the_accuser_up_to_k() -> None:
    s = Suspicion(start=10.0, accuser=b"a", k=2, low=4.0, high=24.0)
    assert s.deadline == 34.0
    assert not s.confirm(b"a")  # the accuser does not confirm itself
    assert s.confirm(b"b")
    assert not s.confirm(b"b")  # one vote per source
    assert s.confirm(b"c")
    assert s.deadline == pytest.approx(14.0)
    assert not s.confirm(b"d")  # beyond K
    assert s.confirmations == 2


def test_awareness_clamps_and_scales() -> None:
    a = Awareness(8)
    a.apply(-1)
    assert a.score == 0
    a.apply(3)
    assert a.scale(1.0) == 4.0
    a.apply(100)
    assert a.score == 7
    assert a.scale(1.0) == 8.0


def test_precedence_table() -> None:
    assert supersedes(A, 2, A, 1) and not supersedes(A, 1, A, 1)
    assert supersedes(A, 2, D, 1) and not supersedes(A, 1, D, 1)
    assert supersedes(S, 1, A, 1) and not supersedes(S, 0, A, 1)
    assert supersedes(S, 2, S, 1) and not supersedes(S, 1, S, 1)
    assert not supersedes(S, 5, D, 1)
    assert supersedes(D, 1, S, 1) and supersedes(L, 1, A, 1)
    assert not supersedes(D, 5, L, 1) and not supersedes(L, 5, D, 1)


def test_queue_invalidates_older_rumours_about_the_same_member() -> None:
    q = RumourQueue(10)
    q.push(_rumour(1, A, 0))
    q.push(_rumour(1, S, 0))
    assert len(q) == 1
    assert q.take(10_000, 5, 10) == [_rumour(1, S, 0)]


def test_queue_sends_fewest_transmissions_first_then_newest() -> None:
    q = RumourQueue(10)
    for i in range(1, 4):
        q.push(_rumour(i))
    assert q.take(10_000, 5, 1) == [_rumour(3)]
    assert q.take(10_000, 5, 1) == [_rumour(2)]
    q.push(_rumour(9, D))  # a dead rumour after a burst of alives goes out next
    assert q.take(10_000, 5, 1) == [_rumour(9, D)]
    assert q.take(10_000, 5, 1) == [_rumour(1)]


def test_queue_respects_the_budget_and_the_transmit_limit() -> None:
    q = RumourQueue(10)
    r1, r2 = _rumour(1), _rumour(2)
    q.push(r1)
    q.push(r2)
    assert q.take(rumour_size(r1), 2, 10) == [r2]  # r1 does not fit: it waits
    assert q.take(10_000, 2, 10) == [r1, r2]  # r2 is now spent (2 sends)
    assert q.take(10_000, 2, 10) == [r1]
    assert len(q) == 0


def test_queue_is_bounded_dropping_the_most_sent_oldest() -> None:
    q = RumourQueue(2)
    q.push(_rumour(1))
    q.take(10_000, 9, 1)
    q.push(_rumour(2))
    q.push(_rumour(3))
    assert len(q) == 2 and q.dropped == 1
    assert _rumour(1) not in q
