"""The store's bounds on what a remote changeset may claim, against real SQLite files: a node's
own actor, version jumps, changesets whose rows are not theirs, partial versions, the
quarantine, the O(ranges) needs computed from a lying peer, and a server whose work follows
the versions that exist, never the width of a requested range."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from corrosion_py import crdt
from corrosion_py.crdt.limits import MAX_CLOCK
from corrosion_py.replication.booked import MAX_PARTIAL_VERSIONS, MAX_VERSION_JUMP
from corrosion_py.replication.needs import MAX_SESSION_NEEDS, Served, compute_needs
from corrosion_py.store import apply as apply_module
from corrosion_py.store.apply import MAX_QUARANTINE_ROWS
from corrosion_py.store.store import Store
from corrosion_py.wire.codec import decode, encode
from corrosion_py.wire.messages import Changeset, EmptyChangeset, NeedFull, NeedPartial, SyncState

SCHEMA = "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT);\n"
STRANGER = bytes([0xEE]) * 16

OpenStore = Callable[..., Store]


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[OpenStore]:
    (tmp_path / "schema.sql").write_text(SCHEMA)
    opened: list[Store] = []

    def make(name: str) -> Store:
        store = Store.open(tmp_path / f"{name}.db", schema_paths=[tmp_path / "schema.sql"])
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def write(store: Store, k: int, v: str = "x") -> Changeset:
    result = store.transaction_sync([("INSERT OR REPLACE INTO kv VALUES (?, ?)", [k, v])])
    assert result.changeset is not None
    return result.changeset


def forged(actor: bytes, version: int, k: int = 1, v: str = "forged") -> Changeset:
    """A one-change changeset of ``actor`` at ``version`` (consistent, as a member could send)."""
    change = crdt.Change("kv", crdt.pack_pk([k]), "v", v, 1, version, actor, 1, 0)
    return Changeset(actor, version, (change,), (0, 0), 0, 0)


def table(store: Store) -> list[tuple[object, ...]]:
    return store.reader().execute("SELECT k, v FROM kv ORDER BY k").fetchall()


def bookkeeping_rows(store: Store) -> list[tuple[object, ...]]:
    conn = store.reader()
    return [
        *conn.execute("SELECT site_id, db_version FROM crsql_db_versions ORDER BY site_id"),
        *conn.execute("SELECT * FROM __corro_bookkeeping_gaps ORDER BY actor_id, start"),
        *conn.execute("SELECT * FROM __corro_seq_bookkeeping ORDER BY site_id, db_version"),
    ]


# -- own actor and version jumps ----------------------------------------------------------------


def test_claims_about_our_own_actor_are_refused(open_store: OpenStore) -> None:
    """A forged empty range over our future versions would make every later write of ours
    look known; the node is the only authority on its own actor."""
    a = open_store("a")
    write(a, 1)
    before = bookkeeping_rows(a)
    result = a.apply_sync(
        [
            EmptyChangeset(a.actor_id, (2, MAX_CLOCK), 0),
            forged(a.actor_id, 2),
            Changeset(a.actor_id, 3, (), (0, 5), 9, 0),  # a piece
        ]
    )
    assert result.rejected == {"own_actor": 3}
    assert bookkeeping_rows(a) == before and table(a) == [(1, "x")]
    assert write(a, 2).version == 2  # the next write is ours as usual


def test_a_version_past_the_ceiling_is_refused_and_an_empty_range_cut(
    open_store: OpenStore,
) -> None:
    b = open_store("b")
    actor = bytes(range(16))
    result = b.apply_sync(
        [
            forged(actor, MAX_VERSION_JUMP + 1),
            EmptyChangeset(actor, (MAX_VERSION_JUMP + 1, 10**12), 0),
        ]
    )
    assert result.rejected == {"version_jump": 2}
    assert actor not in b.bookie_snapshot() and bookkeeping_rows(b) == [(b.actor_id, 0)]
    # a range reaching past the ceiling is believed up to the ceiling only
    result = b.apply_sync([EmptyChangeset(actor, (1, MAX_CLOCK), 0)])
    assert result.rejected == {"empty_clamped": 1}
    assert (
        b.bookie_snapshot()[actor].max == MAX_VERSION_JUMP and not b.bookie_snapshot()[actor].gaps
    )


def test_items_of_one_batch_cannot_lift_each_others_ceiling(open_store: OpenStore) -> None:
    b = open_store("b")
    actor = bytes(range(16))
    steps = [forged(actor, n * MAX_VERSION_JUMP, k=n) for n in range(1, 6)]
    result = b.apply_sync(steps)
    assert result.applied == [(actor, MAX_VERSION_JUMP)]
    assert result.rejected == {"version_jump": 4}
    assert b.bookie_snapshot()[actor].max == MAX_VERSION_JUMP
    assert list(b.bookie_snapshot()[actor].gaps) == [
        (1, MAX_VERSION_JUMP - 1)
    ]  # one range, not 99,999


def test_a_changeset_whose_rows_are_not_its_own_is_dropped_not_quarantined(
    open_store: OpenStore,
) -> None:
    b = open_store("b")
    actor = bytes(range(16))
    good = forged(actor, 1)
    other_version = attrs.evolve(good, changes=(attrs.evolve(good.changes[0], db_version=2),))
    other_site = attrs.evolve(good, changes=(attrs.evolve(good.changes[0], site_id=STRANGER),))
    result = b.apply_sync([other_version, other_site])
    assert result.rejected == {"inconsistent": 2}
    assert b.quarantine() == [] and table(b) == [] and actor not in b.bookie_snapshot()


# -- partial versions -----------------------------------------------------------------------------


def piece(actor: bytes, version: int, *, last_seq: int = 1, v: str = "p") -> Changeset:
    change = crdt.Change("kv", crdt.pack_pk([version]), "v", v, 1, version, actor, 1, 0)
    return Changeset(actor, version, (change,), (0, 0), last_seq, 0)


def buffered_versions(store: Store, actor: bytes) -> set[int]:
    return {
        v
        for (v,) in store.reader().execute(
            "SELECT DISTINCT db_version FROM __corro_buffered_changes WHERE site_id = ?", (actor,)
        )
    }


def test_partial_versions_per_actor_are_bounded_oldest_dropped(open_store: OpenStore) -> None:
    """Pieces that never complete (a claimed last_seq of 2**53 - 1) cannot pile up: past the
    bound the oldest partial version is dropped and becomes a gap, for sync to fetch whole."""
    b = open_store("b")
    actor = bytes(range(16))
    n = MAX_PARTIAL_VERSIONS + 10
    b.apply_sync([piece(actor, v, last_seq=MAX_CLOCK) for v in range(1, n + 1)])
    booked = b.bookie_snapshot()[actor]
    assert len(booked.partials) == MAX_PARTIAL_VERSIONS
    assert sorted(booked.partials) == list(range(11, n + 1))  # the first ten went
    assert list(booked.gaps) == [(1, 10)]
    assert buffered_versions(b, actor) == set(booked.partials)
    assert b.rejected["partial_evicted"] == 10
    # survives a reopen: the buffer and the bookkeeping agree
    path = b.path
    b.close()
    again = Store.open(path)
    try:
        assert len(again.bookie_snapshot()[actor].partials) == MAX_PARTIAL_VERSIONS
        assert list(again.bookie_snapshot()[actor].gaps) == [(1, 10)]
    finally:
        again.close()


def test_partial_bytes_per_actor_are_bounded(
    open_store: OpenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The byte budget (256 MiB per actor) made small, so the rule is exercised quickly: room is
    made by dropping the oldest partial versions; a version alone over budget is not kept."""
    monkeypatch.setattr(apply_module, "MAX_PARTIAL_BYTES", 10_000)
    b = open_store("b")
    actor = bytes(range(16))
    b.apply_sync([piece(actor, v, v="x" * 3_000) for v in range(1, 5)])  # ~3 KB each
    booked = b.bookie_snapshot()[actor]
    assert sorted(booked.partials) == [2, 3, 4] and booked.partial_bytes() <= 10_000
    assert b.rejected["partial_evicted"] == 1
    huge = piece(actor, 9, v="y" * 20_000)
    result = b.apply_sync([huge])
    assert result.rejected == {"partial_too_large": 1}
    assert 9 not in b.bookie_snapshot()[actor].partials and 9 not in buffered_versions(b, actor)


# -- quarantine ----------------------------------------------------------------------------------


def test_the_quarantine_keeps_at_most_its_bound_oldest_dropped(open_store: OpenStore) -> None:
    """Changesets for a table this node does not have fill the quarantine only up to its
    bound; the oldest are dropped and counted (they are still missing, so sync can bring them
    again after a schema change)."""
    b = open_store("b")
    actor = bytes(range(16))
    n = MAX_QUARANTINE_ROWS + 500
    items = []
    for version in range(1, n + 1):
        change = crdt.Change("nope", crdt.pack_pk([version]), "v", "x", 1, version, actor, 1, 0)
        items.append(Changeset(actor, version, (change,), (0, 0), 0, 0))
    for start in range(0, n, 500):
        b.apply_sync(items[start : start + 500])
    kept = [v for _, v, _ in b.quarantine()]
    assert len(kept) == MAX_QUARANTINE_ROWS
    assert kept == list(range(501, n + 1))
    assert b.quarantined_total == n and b.quarantine_dropped == 500
    assert b.bookie_snapshot().get(actor) is None or b.bookie_snapshot()[actor].max == 0


# -- needs and serving ---------------------------------------------------------------------------


def state(actor: bytes, heads: dict[bytes, int], need=None, partial=None) -> SyncState:  # type: ignore[no-untyped-def]
    return SyncState(actor, heads, need or {}, partial or {})


def test_needs_from_a_lying_peer_are_ranges_within_our_ceiling() -> None:
    me, peer, a, b = (bytes([i]) * 16 for i in range(1, 5))
    ours = state(me, {a: 10, me: 5}, need={a: ((3, 4),)})
    theirs = state(
        peer,
        {a: MAX_CLOCK, b: MAX_CLOCK, me: MAX_CLOCK},
        need={a: tuple((v, v) for v in range(100, 200_000, 2))},  # 99,950 single gaps
        partial={b: {v: ((0, 1),) for v in range(5, 1_000)}},
    )
    started = time.monotonic()
    needs = compute_needs(ours, theirs)
    assert time.monotonic() - started < 30  # O(ranges): no loop over 2**53 versions
    assert me not in needs  # never asked about ourselves
    for actor, actor_needs in needs.items():
        head = {a: 10, b: 0}[actor]
        for need in actor_needs:
            assert isinstance(need, NeedFull)
            assert need.versions[1] <= head + MAX_VERSION_JUMP
    # a: our gap 3..4, then 11..99 and the odd versions 101..100,009 the peer does not lack
    a_needs = [n.versions for n in needs[a] if isinstance(n, NeedFull)]
    assert a_needs[0] == (MAX_VERSION_JUMP + 9, MAX_VERSION_JUMP + 9)  # 100,010 is lacked
    assert a_needs[-2:] == [(11, 99), (3, 4)]
    assert len(needs[b]) == 2  # 1..4 and 1,000..100,000 around the partial versions 5..999


def test_serving_a_huge_range_costs_what_exists(open_store: OpenStore) -> None:
    """NeedFull(1, 2**53 - 1) against a node that knows an actor up to 300,000 (three versions
    with rows, the rest cleared): a handful of queries, not one per version or per window."""
    a, b = open_store("a"), open_store("b")
    for k in range(3):
        write(a, k)
    actor = a.actor_id
    clears = [EmptyChangeset(actor, (4, v), 0) for v in range(100_000, 300_001, 100_000)]
    for item in clears:
        b.apply_sync([item])
    b.apply_sync([Changeset(actor, v, tuple(crdt.changes(a.reader(), site_id=actor,
                  min_version=v, max_version=v)), (0, 0), 0, 0) for v in (1, 2, 3)])  # fmt: skip
    assert b.bookie_snapshot()[actor].max == 300_000 and not b.bookie_snapshot()[actor].gaps
    conn = b.reader()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        items = list(b.serve_sync({actor: [NeedFull((1, MAX_CLOCK))]}, conn))
    finally:
        conn.set_trace_callback(None)
    assert [type(i).__name__ for i in items] == ["EmptyChangeset", *["Changeset"] * 3]
    assert items[0] == EmptyChangeset(actor, (4, 300_000), 0)
    assert len(statements) < 20, statements


def test_a_session_is_served_each_version_once(open_store: OpenStore) -> None:
    a = open_store("a")
    for k in range(5):
        write(a, k)
    served = Served()
    needs = [NeedFull((1, MAX_CLOCK))] * 50 + [NeedPartial(3, ((0, 0),))] * 50
    items = list(a.serve_sync({STRANGER: [], a.actor_id: needs}, served=served))
    assert sorted(i.version for i in items if isinstance(i, Changeset)) == [1, 2, 3, 4, 5]
    assert list(a.serve_sync({a.actor_id: [NeedFull((2, 4))]}, served=served)) == []
    assert MAX_SESSION_NEEDS >= 1_024  # a client's whole round fits in one session


def test_bookkeeping_from_before_the_limits_is_advertised_within_them(
    open_store: OpenStore,
) -> None:
    """A database written before the limits may hold a version of 2**63 - 1 (the measured
    bug). Its sync state is cut at MAX_CLOCK, so peers still decode it and sync goes on."""
    a, b = open_store("a"), open_store("b")
    write(a, 1)
    junk = bytes(range(16))
    path = b.path
    b.close()
    conn = sqlite3.connect(path, isolation_level=None)
    with conn:
        conn.execute("INSERT INTO crsql_db_versions VALUES (?, ?)", (junk, 2**63 - 1))
        conn.execute(
            'INSERT INTO __corro_bookkeeping_gaps (actor_id, start, "end") VALUES (?, ?, ?)',
            (junk, 5, 2**63 - 2),
        )
    conn.close()
    old = Store.open(path)
    try:
        state = old.sync_state()
        assert state.heads[junk] == MAX_CLOCK and state.need[junk] == ((5, MAX_CLOCK),)
        assert decode(encode(state, cluster_id=0)) == state
        old.apply_sync(list(a.serve_sync(old.needs_from(a.sync_state()))))
        assert table(old) == [(1, "x")]
    finally:
        old.close()
