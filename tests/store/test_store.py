"""The node store against real SQLite files: local transactions, changesets and their pieces,
applying remote changes (buffering, cleared versions, quarantine), bookkeeping that survives a
reopen, and sync state, needs and serving."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from corrosion_py.errors import StatementError
from corrosion_py.replication import chunking
from corrosion_py.store.store import Store
from corrosion_py.wire.messages import Changeset, EmptyChangeset, NeedFull

SCHEMA = """
CREATE TABLE machines (
    id TEXT PRIMARY KEY NOT NULL,
    app TEXT NOT NULL DEFAULT '',
    region TEXT,
    state TEXT NOT NULL DEFAULT 'created'
);
CREATE TABLE apps (name TEXT PRIMARY KEY NOT NULL, org TEXT);
"""


@pytest.fixture
def schema(tmp_path: Path) -> Path:
    path = tmp_path / "schema.sql"
    path.write_text(SCHEMA)
    return path


@pytest.fixture
def open_store(tmp_path: Path, schema: Path):  # type: ignore[no-untyped-def]
    opened: list[Store] = []

    def make(name: str, **kwargs: object) -> Store:
        store = Store.open(tmp_path / f"{name}.db", schema_paths=[schema], **kwargs)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def rows(store: Store) -> list[tuple[object, ...]]:
    return store.read_sync(
        lambda c: (
            c.execute("SELECT * FROM machines ORDER BY id").fetchall()
            + c.execute("SELECT * FROM apps ORDER BY name").fetchall()
        )
    )


def test_local_transaction_result(open_store) -> None:  # type: ignore[no-untyped-def]
    a = open_store("a")
    res = a.transaction_sync(
        [
            ("INSERT INTO machines (id, app, region) VALUES (?, ?, ?)", ["m1", "web", "ams"]),
            ("INSERT INTO apps VALUES (:name, :org)", {"name": "web", "org": "fly"}),
            "UPDATE machines SET state = 'started'",
        ]
    )
    assert res.rows_affected == [1, 1, 1]
    assert res.version == 1
    cs = res.changeset
    assert cs is not None and cs.complete and cs.actor_id == a.actor_id and cs.version == 1
    assert {c.cid for c in cs.changes} == {"app", "region", "state", "org"}
    assert cs.last_seq == max(c.seq for c in cs.changes) and cs.ts > 0
    # a transaction that changes nothing replicated has no version
    noop = a.transaction_sync(["UPDATE machines SET state = 'started'"])
    assert noop.version is None and noop.changeset is None and noop.rows_affected == [1]


def test_rows_affected_counts_with_statements_and_not_triggers(open_store) -> None:  # type: ignore[no-untyped-def]
    a = open_store("a")
    res = a.transaction_sync(
        [
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20) "
            "INSERT INTO machines (id, app) SELECT 'm' || x, 'web' FROM c",
            "SELECT count(*) FROM machines",
            "WITH q AS (SELECT 1) SELECT * FROM q",
            "UPDATE machines SET region = 'ams' WHERE app = 'web'",
        ]
    )
    assert res.rows_affected == [20, 0, 0, 20]


def test_failing_statement_rolls_back_everything(open_store) -> None:  # type: ignore[no-untyped-def]
    a = open_store("a")
    with pytest.raises(StatementError) as info:
        a.transaction_sync(
            [
                "INSERT INTO machines (id) VALUES ('m1')",
                "INSERT INTO nope VALUES (1)",
            ]
        )
    assert info.value.index == 1 and "nope" in str(info.value)
    assert rows(a) == []
    assert a.transaction_sync(["INSERT INTO machines (id) VALUES ('m1')"]).version == 1


def test_pieces_in_any_order_with_duplicates(open_store) -> None:  # type: ignore[no-untyped-def]
    a, b = open_store("a"), open_store("b")
    stmts = [
        ("INSERT INTO machines (id, app) VALUES (?, ?)", [f"m{i}", "x" * 40]) for i in range(30)
    ]
    cs = a.transaction_sync(stmts).changeset
    assert cs is not None
    pieces = list(chunking.pieces(cs, budget=500)) * 2
    random.Random(7).shuffle(pieces)
    first, rest = pieces[: len(pieces) // 4], pieces[len(pieces) // 4 :]
    res = b.apply_sync(first)
    assert res.buffered > 0
    assert rows(b) == []  # nothing merged until every seq arrived
    assert cs.version in b.bookie_snapshot()[a.actor_id].partials
    b.apply_sync(rest)
    assert rows(b) == rows(a)
    assert (
        b.bookie_snapshot()[a.actor_id].knows(cs.version)
        and not b.bookie_snapshot()[a.actor_id].partials
    )
    assert (
        b.read_sync(
            lambda c: c.execute("SELECT count(*) FROM __corro_buffered_changes").fetchone()[0]
        )
        == 0
    )


def test_bookkeeping_survives_reopen(tmp_path: Path, open_store, schema: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = open_store("a"), open_store("b")
    sets = [
        a.transaction_sync([("INSERT INTO apps VALUES (?, 'o')", [f"app{i}"])]).changeset
        for i in range(5)
    ]
    big = a.transaction_sync(
        [("INSERT INTO machines (id, app) VALUES (?, ?)", [f"m{i}", "x" * 60]) for i in range(20)]
    ).changeset
    assert big is not None and all(sets)
    b.apply_sync([sets[0], sets[3]])  # type: ignore[list-item]
    pieces = list(chunking.pieces(big, budget=400))
    b.apply_sync(pieces[:2])
    booked = b.bookie_snapshot()[a.actor_id]
    assert list(booked.gaps) == [(2, 3), (5, 5)] and big.version in booked.partials
    b.close()
    again = Store.open(tmp_path / "b.db", schema_paths=[schema])
    try:
        reloaded = again.bookie_snapshot()[a.actor_id]
        assert list(reloaded.gaps) == list(booked.gaps)
        assert list(reloaded.partials[big.version].seqs) == list(booked.partials[big.version].seqs)
        again.apply_sync([*pieces[2:], sets[1], sets[2], sets[4]])  # type: ignore[list-item]
        assert rows(again) == rows(a)
        assert (
            not again.bookie_snapshot()[a.actor_id].gaps
            and not again.bookie_snapshot()[a.actor_id].partials
        )
    finally:
        again.close()


def test_own_changes_are_refused_and_known_ones_skipped(open_store) -> None:  # type: ignore[no-untyped-def]
    a, b = open_store("a"), open_store("b")
    cs = a.transaction_sync(["INSERT INTO apps VALUES ('x', 'o')"]).changeset
    assert cs is not None
    assert a.apply_sync([cs]).rejected == {"own_actor": 1}
    first = b.apply_sync([cs, cs])
    assert first.applied == [(a.actor_id, 1)] and first.skipped == 1
    assert [c.cid for c in first.impactful] == ["org"]
    assert b.apply_sync([cs]).skipped == 1


def test_empty_changesets_advance_bookkeeping(open_store) -> None:  # type: ignore[no-untyped-def]
    a, b = open_store("a"), open_store("b")
    res = b.apply_sync([EmptyChangeset(a.actor_id, (1, 4), 0)])
    assert res.cleared == [(a.actor_id, (1, 4))]
    assert b.bookie_snapshot()[a.actor_id].max == 4 and not b.bookie_snapshot()[a.actor_id].gaps


def test_quarantine_and_retry_after_schema_change(tmp_path: Path, open_store) -> None:  # type: ignore[no-untyped-def]
    a, b = open_store("a"), open_store("b")
    extra = tmp_path / "extra.sql"
    extra.write_text("CREATE TABLE regions (code TEXT PRIMARY KEY NOT NULL, name TEXT);")
    a.apply_schema_sync([tmp_path / "schema.sql", extra])
    bad = a.transaction_sync(["INSERT INTO regions VALUES ('ams', 'Amsterdam')"]).changeset
    good = a.transaction_sync(["INSERT INTO apps VALUES ('x', 'o')"]).changeset
    assert bad is not None and good is not None
    res = b.apply_sync([bad, good])  # b does not have the regions table yet
    assert [q.version for q in res.quarantined] == [1] and "regions" in res.quarantined[0].reason
    assert res.applied == [(a.actor_id, 2)]
    assert b.quarantined_total == 1 and [q[1] for q in b.quarantine()] == [1]
    assert not b.bookie_snapshot()[a.actor_id].knows(1) and b.bookie_snapshot()[a.actor_id].knows(2)
    b.apply_schema_sync([tmp_path / "schema.sql", extra])  # retries the quarantine
    assert b.quarantine() == []
    assert b.read_sync(lambda c: c.execute("SELECT * FROM regions").fetchall()) == [
        ("ams", "Amsterdam")
    ]
    assert b.bookie_snapshot()[a.actor_id].knows(1)


def test_sync_fills_gaps_and_reports_cleared_versions(open_store) -> None:  # type: ignore[no-untyped-def]
    a, b = open_store("a"), open_store("b")
    for i in range(6):
        a.transaction_sync([("INSERT OR REPLACE INTO apps VALUES ('same', ?)", [f"o{i}"])])
    a.transaction_sync([("INSERT INTO machines (id) VALUES (?)", ["m1"])])
    needs = b.needs_from(a.sync_state())
    assert needs == {a.actor_id: [NeedFull((1, 7))]}
    served = list(a.serve_sync(needs))
    # versions 1..5 were overwritten by version 6: one empty range, newest first
    assert [type(s).__name__ for s in served] == ["Changeset", "Changeset", "EmptyChangeset"]
    assert isinstance(served[2], EmptyChangeset) and served[2].versions == (1, 5)
    assert isinstance(served[0], Changeset) and served[0].version == 7
    b.apply_sync(served)
    assert rows(b) == rows(a)
    assert b.needs_from(a.sync_state()) == {}
    assert not b.bookie_snapshot()[a.actor_id].gaps and b.bookie_snapshot()[a.actor_id].max == 7


def test_large_versions_are_served_in_pages(open_store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from corrosion_py.store import serve

    monkeypatch.setattr(serve, "SERVE_PAGE", 7)  # pages of 7 seqs instead of 2,000
    a, b = open_store("a"), open_store("b")
    a.transaction_sync(
        [
            ("INSERT INTO machines (id, app, region) VALUES (?, ?, ?)", [f"m{i}", "web", "ams"])
            for i in range(30)
        ]
    )
    a.transaction_sync(["INSERT INTO apps VALUES ('web', 'o')"])
    served = list(a.serve_sync(b.needs_from(a.sync_state())))
    big = [s for s in served if isinstance(s, Changeset) and s.version == 1]
    assert len(big) >= 90 // 7 and all(len(s.changes) <= 7 for s in big)
    assert big[0].seqs[0] == 0 and big[-1].seqs[1] == big[0].last_seq
    b.apply_sync(served)
    assert rows(b) == rows(a)
    assert not b.bookie_snapshot()[a.actor_id].partials and not b.bookie_snapshot()[a.actor_id].gaps


def test_members_are_persisted(tmp_path: Path, open_store, schema: Path) -> None:  # type: ignore[no-untyped-def]
    from corrosion_py.store.members import MemberRecord

    a = open_store("a")
    one = MemberRecord(b"\x01" * 16, "127.0.0.1:7001", "alive", 3, 10)
    two = MemberRecord(b"\x02" * 16, "127.0.0.1:7002", "suspect", 1, 11)
    a.save_members_sync([one, two])
    a.save_members_sync([MemberRecord(b"\x02" * 16, "127.0.0.1:7002", "dead", 1, 12)])
    a.close()
    again = Store.open(tmp_path / "a.db", schema_paths=[schema])
    try:
        assert again.load_members() == [
            one,
            MemberRecord(b"\x02" * 16, "127.0.0.1:7002", "dead", 1, 12),
        ]
    finally:
        again.close()
