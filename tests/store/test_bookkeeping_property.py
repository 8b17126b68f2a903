"""Property tests of the bookkeeping with adversarial ranges (values up to 2**53 - 1, ranges
billions of versions wide): RangeSet, BookedVersions and compute_needs give the results of a
simple model, and their size follows the number of ranges, never the number of versions.

The model of a set of integers is coordinate-compressed: every boundary the operations use cuts
the number line into elementary intervals, each either wholly in or wholly out of the set, so a
plain Python set of interval indices models sets of any width exactly."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from corrosion_py.aliases import Range
from corrosion_py.crdt.limits import MAX_CLOCK
from corrosion_py.replication.booked import MAX_VERSION_JUMP, BookedVersions
from corrosion_py.replication.needs import compute_needs
from corrosion_py.replication.ranges import RangeSet
from corrosion_py.wire.messages import NeedFull, NeedPartial, SyncState

# values that make ranges adversarial: tiny, around the jump allowance, near the limit, random
values = st.one_of(
    st.integers(1, 40),
    st.sampled_from([MAX_VERSION_JUMP - 1, MAX_VERSION_JUMP, MAX_VERSION_JUMP + 1]),
    st.integers(MAX_CLOCK - 40, MAX_CLOCK),
    st.integers(1, MAX_CLOCK),
)
ranges = st.tuples(values, values).map(lambda t: (min(t), max(t)))


class Model:
    """A set of integers over the elementary intervals cut by ``boundaries``."""

    def __init__(self, points: Iterable[int]) -> None:
        self.cuts = sorted({0, MAX_CLOCK + 2, *points})
        self.members: set[int] = set()

    def _indices(self, start: int, end: int) -> range:
        return range(bisect.bisect_left(self.cuts, start), bisect.bisect_left(self.cuts, end + 1))

    def add(self, start: int, end: int) -> None:
        self.members.update(self._indices(start, end))

    def remove(self, start: int, end: int) -> None:
        self.members.difference_update(self._indices(start, end))

    def contains(self, value: int) -> bool:
        return bisect.bisect_right(self.cuts, value) - 1 in self.members

    def ranges(self) -> list[Range]:
        out: list[Range] = []
        for i in sorted(self.members):
            start, end = self.cuts[i], self.cuts[i + 1] - 1
            if out and out[-1][1] + 1 == start:
                out[-1] = (out[-1][0], end)
            else:
                out.append((start, end))
        return out


def cuts_of(rs: Iterable[Range]) -> list[int]:
    return [p for s, e in rs for p in (s, e + 1)]


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), ranges), max_size=30))
def test_rangeset_equals_the_model_and_stays_small(ops: list[tuple[bool, Range]]) -> None:
    rs, model = RangeSet(), Model(cuts_of(r for _, r in ops))
    for add, (start, end) in ops:
        (rs.add if add else rs.remove)(start, end)
        (model.add if add else model.remove)(start, end)
    assert list(rs) == model.ranges()
    assert len(rs) <= len(ops)  # O(operations), whatever their widths
    assert rs.count() == sum(e - s + 1 for s, e in model.ranges())
    for probe in model.cuts[1:-1]:
        for v in (probe - 1, probe):
            if 0 <= v <= MAX_CLOCK:
                assert rs.contains(v) == model.contains(v)
    built = RangeSet.from_ranges([r for add, r in ops if add])
    union = Model(cuts_of(r for _, r in ops))
    for add, r in ops:
        if add:
            union.add(*r)
    assert list(built) == union.ranges()


# -- BookedVersions -------------------------------------------------------------------------------

booked_ops = st.lists(
    st.one_of(
        st.tuples(st.just("record"), ranges),
        st.tuples(st.just("partial"), values.map(lambda v: (v, v))),
        st.tuples(st.just("forget"), st.integers(0, 10).map(lambda i: (i, i))),
    ),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(ops=booked_ops)
def test_booked_versions_equal_the_model(ops: list[tuple[str, Range]]) -> None:
    booked = BookedVersions()
    points = [*cuts_of(r for _, r in ops), 1]
    known, partial_model = Model(points), Model(points)
    top = 0
    for op, (start, end) in ops:
        if op == "record":
            booked.record(start, end)
            known.add(start, end)
            partial_model.remove(start, end)
            top = max(top, end)
        elif op == "partial":
            booked.record_partial(start, (0, 0), 5, 0)
            partial_model.add(start, start)
            top = max(top, start)
        else:  # forget the i-th partial version, if there is one
            versions = list(booked.partials)
            if start < len(versions):
                version = versions[start]
                booked.forget_partial(version)
                partial_model.remove(version, version)
                known.remove(version, version)
    assert booked.max == top
    assert sorted(booked.partials) == [
        s for s, e in partial_model.ranges() for s in range(s, e + 1)
    ]
    gaps = Model(points)
    if top:
        gaps.add(1, top)
    for s, e in known.ranges():
        gaps.remove(s, e)
    for s, e in partial_model.ranges():
        gaps.remove(s, e)
    assert list(booked.gaps) == gaps.ranges()
    assert len(booked.gaps) <= len(ops) + 1  # O(operations)
    for probe in set(points):
        for v in (probe - 1, probe):
            if 1 <= v <= MAX_CLOCK:
                expected = v <= top and known.contains(v) and not partial_model.contains(v)
                assert booked.knows(v) == expected


# -- compute_needs --------------------------------------------------------------------------------

ME, PEER, A, B = (bytes([i]) * 16 for i in range(1, 5))
small_ranges = st.lists(
    st.tuples(st.integers(1, 40), st.integers(0, 5)).map(lambda t: (t[0], t[0] + t[1])),
    max_size=5,
)


def gap_list(rs: list[Range], head: int) -> tuple[Range, ...]:
    out = RangeSet.from_ranges((s, min(e, head - 1)) for s, e in rs if s < head)
    return tuple(out)


@st.composite
def states(draw: st.DrawFn, actor: bytes, big: bool) -> SyncState:
    heads, need, partial = {}, {}, {}
    for who in (A, B, ME):
        head = draw(values if big else st.integers(0, 40))
        if head:
            heads[who] = head
            gaps = gap_list(draw(st.lists(ranges, max_size=4) if big else small_ranges), head)
            if gaps:
                need[who] = gaps
            versions = [v for v in draw(st.lists(st.integers(1, 40), max_size=3)) if v < head]
            held = RangeSet(gaps)
            per = {v: ((1, 2),) for v in versions if not held.contains(v)}
            if per:
                partial[who] = per
    return SyncState(actor, heads, need, partial)


@settings(max_examples=300, deadline=None)
@given(ours=states(ME, big=False), theirs=states(PEER, big=False))
def test_compute_needs_equals_the_model(ours: SyncState, theirs: SyncState) -> None:
    needs = compute_needs(ours, theirs)
    assert ME not in needs
    for actor in (A, B):
        their_head = theirs.heads.get(actor, 0)
        our_head = ours.heads.get(actor, 0)
        lacking = {v for s, e in theirs.need.get(actor, ()) for v in range(s, e + 1)}
        lacking |= set(theirs.partial_need.get(actor, {}))
        our_gaps = {v for s, e in ours.need.get(actor, ()) for v in range(s, e + 1)}
        wanted = {
            v
            for v in range(1, their_head + 1)
            if v not in lacking and (v in our_gaps or v > our_head)
        }
        full = [n.versions for n in needs.get(actor, []) if isinstance(n, NeedFull)]
        got = [v for s, e in full for v in range(s, e + 1)]
        assert sorted(got) == sorted(wanted) and len(got) == len(set(got))
        assert full == sorted(full, reverse=True)  # newest first
        partial = {n.version for n in needs.get(actor, []) if isinstance(n, NeedPartial)}
        # a peer holding the version whole is asked for our missing seqs; one holding it in
        # part lacks the same seqs (1..2) as we do in these states, so it is asked nothing
        expected = {
            v for v in ours.partial_need.get(actor, {}) if v <= their_head and v not in lacking
        }
        assert partial == expected


@settings(max_examples=300, deadline=None)
@given(ours=states(ME, big=True), theirs=states(PEER, big=True))
def test_compute_needs_from_adversarial_states_stays_small(
    ours: SyncState, theirs: SyncState
) -> None:
    """Heads and ranges up to 2**53 - 1: every need stays within our ceiling, and there are
    O(ranges) of them (each our gap or the part past our head, cut by the peer's ranges)."""
    needs = compute_needs(ours, theirs)
    assert ME not in needs
    for actor, actor_needs in needs.items():
        ceiling = ours.heads.get(actor, 0) + MAX_VERSION_JUMP
        full = [n.versions for n in actor_needs if isinstance(n, NeedFull)]
        assert all(1 <= s <= e <= ceiling for s, e in full)
        assert all(a[0] > b[1] for a, b in itertools.pairwise(full))  # disjoint, newest first
        inputs = (
            len(ours.need.get(actor, ()))
            + 1
            + len(theirs.need.get(actor, ()))
            + len(theirs.partial_need.get(actor, {}))
        )
        assert len(full) <= 2 * inputs
