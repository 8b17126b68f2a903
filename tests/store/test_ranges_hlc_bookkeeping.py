"""The store's small pure pieces: range sets, the hybrid logical clock, bookkeeping."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corrosion_py.replication.booked import BookedVersions
from corrosion_py.replication.hlc import HLC, ClockDriftError, ns_from_ntp64, ntp64_from_ns
from corrosion_py.replication.ranges import RangeSet

ranges = st.lists(
    st.tuples(st.integers(0, 60), st.integers(0, 8)).map(lambda t: (t[0], t[0] + t[1])),
    max_size=12,
)


@given(adds=ranges, removes=ranges)
def test_rangeset_matches_a_plain_set(
    adds: list[tuple[int, int]], removes: list[tuple[int, int]]
) -> None:
    rs, model = RangeSet(), set()
    for s, e in adds:
        rs.add(s, e)
        model |= set(range(s, e + 1))
    for s, e in removes:
        rs.remove(s, e)
        model -= set(range(s, e + 1))
    listed = list(rs)
    assert {v for s, e in listed for v in range(s, e + 1)} == model
    # disjoint, sorted, never adjacent
    assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(listed))
    assert all(rs.contains(v) == (v in model) for v in range(0, 80))
    missing = {v for s, e in rs.missing(0, 70) for v in range(s, e + 1)}
    assert missing == set(range(0, 71)) - model
    assert rs.covers(3, 5) == all(v in model for v in (3, 4, 5))


def test_hlc_is_monotonic_and_follows_peers() -> None:
    clock = HLC(max_drift_ns=300_000_000)
    now = 1_700_000_000 * 10**9
    a = clock.now(now)
    b = clock.now(now)  # same physical time: still strictly increasing
    assert b > a
    clock.update(ntp64_from_ns(now + 100_000_000), now)  # 100 ms ahead: accepted
    assert clock.now(now) > ntp64_from_ns(now + 100_000_000)
    with pytest.raises(ClockDriftError):
        clock.update(ntp64_from_ns(now + 10**9), now)  # 1 s ahead: refused
    assert abs(ns_from_ntp64(ntp64_from_ns(now)) - now) < 2


def test_bookkeeping_gaps_and_partials() -> None:
    b = BookedVersions()
    b.record(1, 2)
    b.record(5, 5)
    assert list(b.gaps) == [(3, 4)] and b.max == 5
    assert b.knows(2) and not b.knows(3) and b.knows(5)
    b.record(3, 3)
    assert list(b.gaps) == [(4, 4)]
    p = b.record_partial(8, (0, 2), last_seq=5, ts=7)
    assert list(b.gaps) == [(4, 4), (6, 7)] and b.max == 8
    assert not b.knows(8) and b.knows_seqs(8, (1, 2)) and not b.knows_seqs(8, (2, 3))
    assert p.missing() == [(3, 5)] and not p.complete()
    b.record_partial(8, (3, 5), last_seq=5, ts=7)
    assert b.partials[8].complete()
    b.record(8, 8)
    assert 8 not in b.partials and b.knows(8)
    assert b.knows_range(1, 3) and not b.knows_range(1, 4)
