"""Hypothesis strategies for wire messages (valid ones: every field within the wire rules,
every clock at most MAX_CLOCK, every change of a changeset belonging to it)."""

from __future__ import annotations

import attrs
from hypothesis import strategies as st

from corrosion_py.aliases import Range
from corrosion_py.crdt import Change
from corrosion_py.crdt.limits import MAX_CLOCK
from corrosion_py.wire import (
    REJECTION_REASONS,
    Changeset,
    EmptyChangeset,
    Message,
    Need,
    NeedFull,
    NeedPartial,
    SyncClock,
    SyncDone,
    SyncRejection,
    SyncRequest,
    SyncStart,
    SyncState,
)

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
U64_MAX = 2**64 - 1


def _ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Small values mostly, with the bounds and the whole range explored too."""
    edges = {lo, lo + 1, 23, 24, 255, 256, 65535, 65536, 2**32, hi - 1, hi}
    return st.one_of(
        st.integers(lo, min(hi, lo + 30)),
        st.sampled_from(sorted(v for v in edges if lo <= v <= hi)),
        st.integers(lo, hi),
    )


actors = st.binary(min_size=16, max_size=16)
versions = _ints(1, MAX_CLOCK)
seqs = _ints(0, MAX_CLOCK)
timestamps = _ints(0, U64_MAX)
cluster_ids = st.one_of(st.sampled_from([0, 1, 65535]), st.integers(0, 65535))

sql_values = st.one_of(
    st.none(),
    st.sampled_from([I64_MIN, I64_MIN + 1, -1, 0, 1, I64_MAX, -0.0, 0.0]),
    st.integers(I64_MIN, I64_MAX),
    st.floats(allow_nan=False),
    st.text(),
    st.sampled_from(["", "é", "机器", "🦀", "\x00", "a\u200db"]),
    st.binary(),
)


def ranges(lo: int, hi: int = MAX_CLOCK) -> st.SearchStrategy[Range]:
    return st.tuples(_ints(lo, hi), _ints(lo, hi)).map(lambda t: (min(t), max(t)))


changes = st.builds(
    Change,
    table=st.text(max_size=12),
    pk=st.binary(max_size=24),
    cid=st.one_of(st.just("-1"), st.text(max_size=12)),
    val=sql_values,
    col_version=_ints(0, MAX_CLOCK),
    db_version=_ints(0, MAX_CLOCK),
    site_id=actors,
    cl=_ints(1, MAX_CLOCK),
    seq=seqs,
)


@st.composite
def changesets(draw: st.DrawFn, max_changes: int = 8) -> Changeset:
    start, end = draw(ranges(0))
    last_seq = draw(st.one_of(st.just(end), _ints(end, MAX_CLOCK)))
    actor, version = draw(actors), draw(versions)
    rows = [
        attrs.evolve(ch, site_id=actor, db_version=version, seq=draw(st.integers(start, end)))
        for ch in draw(st.lists(changes, max_size=max_changes))
    ]
    return Changeset(
        actor_id=actor,
        version=version,
        changes=tuple(rows),
        seqs=(start, end),
        last_seq=last_seq,
        ts=draw(timestamps),
    )


empty_changesets = st.builds(EmptyChangeset, actors, ranges(1), timestamps)

sync_states = st.builds(
    SyncState,
    actor_id=actors,
    heads=st.dictionaries(actors, _ints(0, MAX_CLOCK), max_size=4),
    need=st.dictionaries(actors, st.lists(ranges(1), max_size=3).map(tuple), max_size=3),
    partial_need=st.dictionaries(
        actors,
        st.dictionaries(versions, st.lists(ranges(0), max_size=3).map(tuple), max_size=3),
        max_size=3,
    ),
)

needs: st.SearchStrategy[Need] = st.one_of(
    st.builds(NeedFull, ranges(1)),
    st.builds(NeedPartial, versions, st.lists(ranges(0), max_size=3).map(tuple)),
)

sync_requests = st.builds(
    SyncRequest,
    st.lists(st.tuples(actors, st.lists(needs, max_size=4).map(tuple)), max_size=4).map(tuple),
)

messages: st.SearchStrategy[Message] = st.one_of(
    changesets(),
    empty_changesets,
    sync_states,
    sync_requests,
    st.builds(SyncStart, actors),
    st.builds(SyncClock, timestamps),
    st.builds(SyncRejection, st.sampled_from(REJECTION_REASONS)),
    st.just(SyncDone()),
)
