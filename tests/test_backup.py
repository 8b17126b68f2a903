"""Backup and restore (corrosion_py/backup.py): a consistent online copy without node identity,
and a restore that only runs on a stopped node, swaps atomically, and gives the node an actor id
that can never re-issue a version peers hold. Real agents on 127.0.0.1 in one trio run."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
import trio
import trio.lowlevel

from corrosion_py import backup as backup_mod
from corrosion_py import crdt
from corrosion_py.addr import Addr
from corrosion_py.agent import Agent, AgentConfig
from corrosion_py.backup import MARKER_KEY, BackupError, backup, restore
from corrosion_py.errors import CorrosionError
from corrosion_py.store.lock import DatabaseInUse
from corrosion_py.store.store import Store
from corrosion_py.swim import LOCAL
from corrosion_py.wire.messages import Changeset

SCHEMA = (
    "CREATE TABLE accounts (id INTEGER PRIMARY KEY NOT NULL, balance INTEGER NOT NULL DEFAULT 0);\n"
    "CREATE TABLE ledger (id INTEGER PRIMARY KEY NOT NULL, account INTEGER, amount INTEGER, "
    "note TEXT);\n"
)
OPEN_ACCOUNTS = ("INSERT INTO accounts (id) VALUES (0), (1), (2)", ())


def entry(n: int) -> list[tuple[str, list[object]]]:
    """One transaction that changes both tables together: a ledger row and its account."""
    return [
        ("INSERT INTO ledger VALUES (?, ?, ?, ?)", [n, n % 3, n + 1, "x" * 200]),
        ("UPDATE accounts SET balance = balance + ? WHERE id = ?", [n + 1, n % 3]),
    ]


def schema_file(tmp: Path) -> Path:
    path = tmp / "schema.sql"
    if not path.exists():
        path.write_text(SCHEMA)
    return path


def config(tmp: Path, name: str, bootstrap: tuple[Addr, ...] = ()) -> AgentConfig:
    return AgentConfig(
        db_path=tmp / f"{name}.db",
        schema_paths=[schema_file(tmp)],
        bootstrap=bootstrap,
        cluster_id=7,
        swim=LOCAL,
        sync_interval=(0.3, 0.6),
        save_members_interval=0.5,
        shutdown_timeout=3.0,
    )


def table_rows(conn: sqlite3.Connection) -> tuple[list[tuple[object, ...]], ...]:
    return (
        conn.execute("SELECT * FROM accounts ORDER BY id").fetchall(),
        conn.execute("SELECT * FROM ledger ORDER BY id").fetchall(),
    )


async def wait_for(cond: Callable[[], object], seconds: float = 20.0) -> None:
    """Poll a sync or async condition; the bound only catches hangs."""
    with trio.fail_after(seconds):
        while True:
            value = cond()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return
            await trio.sleep(0.05)


async def converged(agents: list[Agent]) -> bool:
    tables = [await a.store.read(table_rows) for a in agents]
    states = [a.store.sync_state() for a in agents]
    heads = [s.heads for s in states]
    return (
        all(t == tables[0] for t in tables)
        and all(h == heads[0] for h in heads)
        and not any(s.need or s.partial_need for s in states)
    )


def consistent(conn: sqlite3.Connection) -> int:
    """Every account's balance is the sum of its ledger rows, and the ledger ids are 0..n-1 (no
    transaction was copied in part); returns n."""
    accounts, ledger = table_rows(conn)
    ids = [row[0] for row in ledger]
    assert ids == list(range(len(ids)))
    for account, balance in accounts:
        assert balance == sum(row[2] for row in ledger if row[1] == account)  # type: ignore[misc]
    return len(ids)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(exc: pytest.ExceptionInfo[BaseException], name: object) -> None:
    assert isinstance(exc.value, CorrosionError)
    assert "\n" not in str(exc.value) and str(name) in str(exc.value)


# -- backup -------------------------------------------------------------------------------------


async def test_backup_under_writes_is_consistent_and_carries_no_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backup_mod, "STEP_PAGES", 8)  # many steps, so writes land between them
    dest = tmp_path / "backup.db"
    async with Agent.open(config(tmp_path, "a")) as a:
        source = a.actor_id
        await a.transaction([OPEN_ACCOUNTS])
        for n in range(0, 1500, 100):  # some volume first: 1500 entries, 15 transactions
            await a.transaction(
                [
                    (
                        "WITH RECURSIVE c(n) AS (SELECT ? UNION ALL SELECT n + 1 FROM c "
                        "WHERE n < ?) INSERT INTO ledger SELECT n, n % 3, n + 1, "
                        "printf('%.200c', 'x') FROM c",
                        [n, n + 99],
                    ),
                    (
                        "UPDATE accounts SET balance = balance + (SELECT sum(amount) FROM ledger "
                        "WHERE id BETWEEN ? AND ? AND account = accounts.id)",
                        [n, n + 99],
                    ),
                ]
            )
        written = 1500
        steps: list[tuple[int, int]] = []

        def progress(done: int, total: int) -> None:
            steps.append((done, total))
            time.sleep(0.002)  # a slow disk: the copy takes a while

        async def writer(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            nonlocal written
            task_status.started()
            while True:
                await a.transaction(entry(written))
                written += 1
                await trio.lowlevel.checkpoint()

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(writer)
                await wait_for(lambda: written > 1510)
                before = written
                await trio.to_thread.run_sync(backup, a.config.db_path, dest, progress)
                after = written
                await wait_for(lambda: written > after + 5)
                nursery.cancel_scope.cancel()
        assert after > before  # the node kept writing while the copy ran
        assert len(steps) > 10 and steps[-1][0] == steps[-1][1]

        raw = sqlite3.connect(dest)
        try:
            assert (
                raw.execute("SELECT ordinal FROM crsql_site_id WHERE ordinal = 0").fetchone()
                is None
            )
            marker = raw.execute("SELECT value FROM __corro_state WHERE key = ?", [MARKER_KEY])
            assert uuid.UUID(json.loads(marker.fetchone()[0])["source_actor_id"]).bytes == source
            assert raw.execute("SELECT count(*) FROM __corro_members").fetchone() == (0,)
            assert raw.execute("PRAGMA journal_mode").fetchone() == ("delete",)
            n = consistent(raw)
        finally:
            raw.close()
        assert before <= n <= after + 1  # a snapshot taken while the backup ran
        source_ledger = await a.store.query("SELECT * FROM ledger WHERE id < ? ORDER BY id", [n])
        versions = 1 + 15 + (n - 1500)  # accounts, the bulk, then one per entry
        source_changes = await a.store.read(
            lambda c: [
                ch for ch in crdt.changes(c, site_id=source, max_version=versions)
                if ch.table == "ledger"
            ]
        )  # fmt: skip

    copy = Store.open(dest)
    try:
        assert copy.actor_id != source
        assert copy.load_members() == []
        booked = copy.bookie_snapshot()[source]
        assert (booked.max, list(booked.gaps), booked.partials) == (versions, [], {})
        state = copy.sync_state()
        assert state.heads == {source: versions} and not state.need and not state.partial_need
        reader = copy.reader()
        assert reader.execute("SELECT * FROM ledger ORDER BY id").fetchall() == source_ledger
        changes = crdt.changes(reader)
        assert changes and {ch.site_id for ch in changes} == {source}
        assert [ch for ch in changes if ch.table == "ledger"] == source_changes
        assert copy.transaction_sync(entry(n)).version == 1  # the copy's own, new actor
    finally:
        copy.close()


def test_backup_never_modifies_the_source_nor_overwrites(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with Store.open(db, schema_paths=[schema_file(tmp_path)]) as store:
        store.transaction_sync([OPEN_ACCOUNTS, *entry(0)])
    before = digest(db)
    steps: list[tuple[int, int]] = []
    backup(db, tmp_path / "b1.db", lambda done, total: steps.append((done, total)))
    assert digest(db) == before
    wal = tmp_path / "a.db-wal"  # SQLite may leave an empty WAL behind a read-only connection
    assert not wal.exists() or wal.stat().st_size == 0
    assert steps and steps[-1][0] == steps[-1][1] > 0

    dest = tmp_path / "exists.db"
    dest.write_bytes(b"precious")
    with pytest.raises(BackupError, match="already exists") as exc:
        backup(db, dest)
    one_line(exc, dest)
    assert dest.read_bytes() == b"precious"
    with pytest.raises(BackupError) as exc:
        backup(tmp_path / "missing.db", tmp_path / "b2.db")
    one_line(exc, tmp_path / "missing.db")
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(BackupError, match="not a corrosion_py database") as exc:
        backup(plain, tmp_path / "b3.db")
    one_line(exc, plain)
    with pytest.raises(BackupError, match="does not exist"):
        backup(db, tmp_path / "no" / "such" / "dir.db")
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert leftovers == []  # failed attempts leave no temporary files behind


# -- restore ------------------------------------------------------------------------------------


async def test_restore_into_a_stopped_node_then_rejoin(tmp_path: Path) -> None:
    """Keep, default and explicit ids on the same node path; each time the restored node
    rejoins, converges with no gaps, and its new writes replicate."""
    bk = tmp_path / "a-backup.db"
    b_cfg = config(tmp_path, "b")
    subs = b_cfg.db_path.with_name("b.db.subs.db")
    async with Agent.open(config(tmp_path, "a")) as a:
        b_cfg = attrs.evolve(b_cfg, bootstrap=(a.gossip_addr,))
        async with Agent.open(b_cfg) as b:
            old_b = b.actor_id
            await wait_for(lambda: len(a.alive_members()) == 1 and len(b.alive_members()) == 1)
            await a.transaction([OPEN_ACCOUNTS])
            for n in range(10):
                await (a if n % 2 else b).transaction(entry(n))
            await wait_for(lambda: converged([a, b]))
            await trio.to_thread.run_sync(backup, a.config.db_path, bk)
            for n in range(10, 16):  # after the backup, on both nodes
                await (a if n % 2 else b).transaction(entry(n))
            await wait_for(lambda: converged([a, b]))
            b_head = b.store.sync_state().heads[old_b]
            assert b_head == 8  # 5 entries before the backup, 3 after

            # refused while b runs, and nothing is touched
            backup_digest = digest(bk)
            subs.touch()
            with pytest.raises(DatabaseInUse, match=r"b\.db"):
                restore(bk, b_cfg.db_path)
            assert subs.exists() and digest(bk) == backup_digest
            assert len(await b.store.query("SELECT * FROM ledger")) == 16

        # 1. keep the actor id: its 3 versions newer than the backup come from the old file
        assert restore(bk, b_cfg.db_path, keep_actor_id=True) == old_b
        assert not subs.exists() and digest(bk) == backup_digest
        async with Agent.open(b_cfg) as b2:
            assert b2.actor_id == old_b and b2.membership.core.incarnation >= 1
            assert b2.store.sync_state().heads[old_b] == b_head
            ids = [r[0] for r in await b2.store.query("SELECT id FROM ledger ORDER BY id")]
            assert ids[10:13] == [10, 12, 14]  # b's own, from the old file, before any sync
            result = await b2.transaction(entry(16))
            assert result.version == b_head + 1  # never a version peers already hold
            await wait_for(lambda: converged([a, b2]))
            assert a.store.sync_state().heads[old_b] == b_head + 1

        # 2. the default: a new actor id; the old one's versions come back from a by sync
        new = restore(bk, b_cfg.db_path)
        assert new not in (old_b, a.actor_id)
        async with Agent.open(b_cfg) as b3:
            assert b3.actor_id == new
            await wait_for(lambda: converged([a, b3]))
            assert (await b3.transaction(entry(17))).version == 1
            await wait_for(lambda: converged([a, b3]))

        # 3. a given actor id
        given = uuid.uuid4().bytes
        assert restore(bk, b_cfg.db_path, actor_id=given) == given
        async with Agent.open(b_cfg) as b4:
            assert b4.actor_id == given
            await b4.transaction(entry(18))
            await wait_for(lambda: converged([a, b4]))
            state = a.store.sync_state()
            assert {old_b, new, given, a.actor_id} <= set(state.heads)
            ids = [r[0] for r in await a.store.query("SELECT id FROM ledger ORDER BY id")]
            assert ids == list(range(19))  # (balances are per-column LWW across writers)


def _entry_changesets(tmp: Path, bk: Path) -> tuple[bytes, list[Changeset], Path]:
    """A node with 8 versions, backed up after the 5th; returns its actor and changesets."""
    db = tmp / "a.db"
    changesets = []
    with Store.open(db, schema_paths=[schema_file(tmp)]) as a:
        actor = a.actor_id
        for n in range(8):
            stmts = [OPEN_ACCOUNTS, *entry(n)] if n == 0 else entry(n)
            cs = a.transaction_sync(stmts).changeset
            assert cs is not None
            changesets.append(cs)
            if n == 4:
                backup(db, bk)
    return actor, changesets, db


def test_an_id_whose_versions_are_lost_is_refused(tmp_path: Path) -> None:
    bk = tmp_path / "bk.db"
    actor, changesets, a_db = _entry_changesets(tmp_path, bk)
    c_db = tmp_path / "c.db"
    with Store.open(c_db, schema_paths=[schema_file(tmp_path)]) as c:
        c.apply_sync([changesets[i] for i in (0, 1, 2, 3, 4, 7)])  # 6 and 7 missing
        assert list(c.bookie_snapshot()[actor].gaps) == [(6, 7)]
    before = digest(c_db)
    with pytest.raises(BackupError, match=r"versions 6\.\.7") as exc:
        restore(bk, c_db, actor_id=actor)
    one_line(exc, bk)
    assert digest(c_db) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    with Store.open(c_db) as c:
        c.apply_sync([changesets[5], changesets[6]])
    steps: list[tuple[int, int]] = []
    assert restore(bk, c_db, actor_id=actor, progress=lambda *s: steps.append(s)) == actor
    assert steps and steps[-1][0] == steps[-1][1] > 0
    with Store.open(c_db) as c, Store.open(a_db) as a:
        assert c.actor_id == actor
        assert table_rows(c.reader()) == table_rows(a.reader())
        assert c.bookie_snapshot()[actor].max == 8 and not c.sync_state().need
        assert c.transaction_sync(entry(8)).version == 9


def test_keep_carries_own_versions_across_a_schema_change(tmp_path: Path) -> None:
    """The node's own versions newer than the backup touch a table and a column the backup's
    schema lacks: the old database's schema is applied first, then they are carried over."""
    db, bk = tmp_path / "n.db", tmp_path / "bk.db"
    with Store.open(db, schema_paths=[schema_file(tmp_path)]) as node:
        actor = node.actor_id
        node.transaction_sync([OPEN_ACCOUNTS, *entry(0)])
        node.save_members_sync([])
    backup(db, bk)
    v2 = tmp_path / "v2.sql"
    v2.write_text(
        SCHEMA.replace("DEFAULT 0)", "DEFAULT 0, owner TEXT)")
        + "CREATE TABLE notes (id INTEGER PRIMARY KEY NOT NULL, body TEXT);\n"
    )
    with Store.open(db, schema_paths=[v2]) as node:
        node.transaction_sync([("UPDATE accounts SET owner = 'ann' WHERE id = 1", ())])
        node.transaction_sync([("INSERT INTO notes VALUES (1, 'hello')", ())])
        expected = node.reader().execute("SELECT * FROM accounts ORDER BY id").fetchall()
    assert restore(bk, db, keep_actor_id=True) == actor
    with Store.open(db, schema_paths=[v2]) as node:
        assert node.actor_id == actor
        assert node.reader().execute("SELECT * FROM accounts ORDER BY id").fetchall() == expected
        assert node.reader().execute("SELECT * FROM notes").fetchall() == [(1, "hello")]
        assert node.transaction_sync(entry(1)).version == 4


def test_bad_input_is_refused_naming_the_file(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with Store.open(db, schema_paths=[schema_file(tmp_path)]) as store:
        store.transaction_sync([OPEN_ACCOUNTS])
    bk = tmp_path / "bk.db"
    backup(db, bk)
    target = tmp_path / "t.db"

    with pytest.raises(BackupError, match="no such backup") as exc:
        restore(tmp_path / "missing.db", target)
    one_line(exc, tmp_path / "missing.db")
    with pytest.raises(BackupError, match="not a corrosion_py backup") as exc:
        restore(db, target)  # a node database, not a backup
    one_line(exc, db)
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(8192))
    with pytest.raises(BackupError, match="not a corrosion_py backup") as exc:
        restore(junk, target)
    one_line(exc, junk)
    with pytest.raises(BackupError, match="16 bytes"):
        restore(bk, target, actor_id=b"\x01" * 15)
    with pytest.raises(BackupError, match="not both"):
        restore(bk, target, actor_id=b"\x01" * 16, keep_actor_id=True)
    with pytest.raises(BackupError, match="no actor id to keep") as exc:
        restore(bk, target, keep_actor_id=True)
    one_line(exc, target)
    assert not target.exists()

    # a backup opened as a node stays a backup until that node writes
    opened = tmp_path / "opened.db"
    backup(db, opened)
    Store.open(opened).close()
    assert len(restore(opened, target)) == 16
    with Store.open(opened) as store:
        store.transaction_sync(entry(0))
    with pytest.raises(BackupError, match="a node wrote") as exc:
        restore(opened, target)
    one_line(exc, opened)
