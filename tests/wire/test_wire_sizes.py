"""encoded_change_size and changeset_overhead add up to len(encode(changeset)), exactly."""

from __future__ import annotations

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_strategies import U64_MAX, actors, changes, changesets, cluster_ids

from corrosion_py import wire
from corrosion_py.crdt import Change
from corrosion_py.crdt.limits import MAX_CLOCK


def _overhead(cs: wire.Changeset, cluster_id: int, n: int | None = None) -> int:
    return wire.changeset_overhead(
        cluster_id=cluster_id,
        actor_id=cs.actor_id,
        version=cs.version,
        seqs=cs.seqs,
        last_seq=cs.last_seq,
        ts=cs.ts,
        n_changes=len(cs.changes) if n is None else n,
    )


@given(changesets(max_changes=20), cluster_ids)
def test_sizes_add_up_exactly(cs: wire.Changeset, cluster_id: int) -> None:
    total = _overhead(cs, cluster_id) + sum(wire.encoded_change_size(c) for c in cs.changes)
    assert len(wire.encode(cs, cluster_id=cluster_id)) == total
    assert _overhead(cs, cluster_id) <= wire.MAX_CHANGESET_OVERHEAD


@given(changesets(max_changes=4), changes)
def test_adding_a_change_adds_its_size(cs: wire.Changeset, ch: Change) -> None:
    ch = attrs.evolve(ch, site_id=cs.actor_id, db_version=cs.version, seq=cs.seqs[0])
    bigger = wire.Changeset(cs.actor_id, cs.version, (*cs.changes, ch), cs.seqs, cs.last_seq, cs.ts)
    before = len(wire.encode(cs, cluster_id=1))
    after = len(wire.encode(bigger, cluster_id=1))
    header_growth = _overhead(bigger, 1) - _overhead(cs, 1)
    assert after - before == wire.encoded_change_size(ch) + header_growth


@settings(max_examples=10, deadline=None)
@given(actors, st.sampled_from([23, 24, 255, 256, 1000]))
def test_changes_array_header_sizes(actor: bytes, n: int) -> None:
    ch = Change("t", b"", "c", None, 1, 1, actor, 1, 0)
    cs = wire.Changeset(actor, 1, (ch,) * n, (0, n - 1), n - 1, 0)
    assert len(wire.encode(cs, cluster_id=0)) == _overhead(cs, 0) + n * wire.encoded_change_size(ch)


def test_max_overhead_is_the_largest() -> None:
    worst = wire.Changeset(bytes(16), MAX_CLOCK, (), (MAX_CLOCK, MAX_CLOCK), MAX_CLOCK, U64_MAX)
    assert _overhead(worst, wire.MAX_CLUSTER_ID, 2**16 - 1) == wire.MAX_CHANGESET_OVERHEAD
    assert wire.MAX_CHANGESET_OVERHEAD == 72


def test_cutting_to_a_budget() -> None:
    """The store's use: fill pieces up to budget - MAX_CHANGESET_OVERHEAD; each piece fits."""
    actor = bytes(range(16))
    chs = [
        Change("t", bytes([1, 9, i % 256]), "c", "x" * (i % 97), 1, 7, actor, 1, i)
        for i in range(500)
    ]
    budget = 1024
    room = budget - wire.MAX_CHANGESET_OVERHEAD
    pieces: list[list[Change]] = [[]]
    used = 0
    for ch in chs:
        size = wire.encoded_change_size(ch)
        if pieces[-1] and used + size > room:
            pieces.append([])
            used = 0
        pieces[-1].append(ch)
        used += size
    for piece in pieces:
        cs = wire.Changeset(actor, 7, tuple(piece), (piece[0].seq, piece[-1].seq), 499, 2**40)
        assert len(wire.encode(cs, cluster_id=3)) <= budget
