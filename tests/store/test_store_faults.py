"""Storage faults under a store: a really full disk (a small tmpfs) or an injected SQLITE_FULL
(``PRAGMA max_page_count``), and a page corrupted under a running store. A fault rolls the
write back and raises `StorageFault`, writes nothing half, resumes once space is back, and a
corrupt file stops writes for good while reads of healthy tables go on."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
import trio
from disk_faults import SmallDisk, limit_growth

from corrosion_py import crdt
from corrosion_py.errors import StorageFault
from corrosion_py.store.store import ApplyInterrupted, Store
from corrosion_py.wire import Changeset

SCHEMA = (
    "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT);\n"
    "CREATE TABLE other (id INTEGER PRIMARY KEY NOT NULL, x TEXT);\n"
    "CREATE TABLE wide (k INTEGER PRIMARY KEY NOT NULL, v TEXT);\n"
    + "".join(f"CREATE INDEX wide_{i} ON wide (v, k);\n" for i in range(6))
)
BIG = 40_000  # bytes per value: a few of them outgrow the write-ahead log


def open_store(directory: Path, name: str) -> Store:
    schema = directory / "schema.sql"
    if not schema.exists():
        schema.write_text(SCHEMA)
    return Store.open(directory / f"{name}.db", schema_paths=[schema])


def keys(store: Store, table: str = "kv") -> list[int]:
    return [r[0] for r in store.reader().execute(f"SELECT rowid FROM {table} ORDER BY 1")]


def insert(k: int, size: int = 10) -> tuple[str, list[object]]:
    return ("INSERT INTO kv VALUES (?, ?)", [k, "x" * size])


def corrupt_root_page(path: Path, table: str) -> None:
    """Overwrite the header of ``table``'s root page in the file under a running store, then
    commit something from another connection so every connection drops its page cache and
    reads the damaged page from disk next time."""
    side = sqlite3.connect(path, isolation_level=None)
    try:
        busy = side.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        assert busy == 0  # every page is in the main file now
        root = side.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,))
        page = root.fetchone()[0]
        size = side.execute("PRAGMA page_size").fetchone()[0]
        with open(path, "r+b") as f:
            f.seek((page - 1) * size)
            f.write(b"\xde\xad\xbe\xef" * 16)
        side.execute("PRAGMA user_version = 1")
    finally:
        side.close()


def test_a_full_disk_fails_local_writes_cleanly_and_they_resume(small_disk: SmallDisk) -> None:
    store = open_store(small_disk.path, "node")
    try:
        assert store.transaction_sync([insert(1)]).version == 1
        small_disk.fill()
        for attempt in range(3):
            with pytest.raises(StorageFault) as caught:
                store.transaction_sync([insert(10 + attempt, BIG * 10)])
            assert caught.value.kind == "disk_full" and caught.value.transient
            assert str(caught.value).startswith(
                f"write failed: the disk is full at {store.path} (database or disk is full)"
            )
        [fault] = store.faults.current()
        assert (fault.kind, fault.failures) == ("disk_full", 3)
        assert keys(store) == [1]  # nothing half-written
        small_disk.free()
        assert store.transaction_sync([insert(2, BIG)]).version == 2  # no version was burned
        assert store.faults.current() == []
        assert keys(store) == [1, 2]
    finally:
        store.close()


async def test_a_full_disk_fails_every_transaction_of_a_group_commit(
    small_disk: SmallDisk,
) -> None:
    """Transactions committed together share one SQLite transaction: when the disk fails it,
    every one of them gets the error, none is acknowledged and lost."""
    store = open_store(small_disk.path, "node")
    try:
        small_disk.fill()
        outcomes: list[object] = []

        async def write(k: int) -> None:
            try:
                outcomes.append(await store.transaction([insert(k, BIG)]))
            except StorageFault as exc:
                outcomes.append(exc)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for k in range(20):
                    nursery.start_soon(write, k)
        assert len(outcomes) == 20 and all(isinstance(o, StorageFault) for o in outcomes)
        assert keys(store) == [] and all(b.max == 0 for b in store.bookie_snapshot().values())
        small_disk.free()
        assert (await store.transaction([insert(99)])).version == 1
    finally:
        store.close()


def test_an_injected_full_database_behaves_the_same(tmp_path: Path) -> None:
    """The same fault without root: SQLite's max_page_count makes any growth fail with
    SQLITE_FULL at the statement (a tmpfs makes it fail at the commit)."""
    store = open_store(tmp_path, "node")
    try:
        store.transaction_sync([insert(1)])
        limit_growth(store, store.reader().execute("PRAGMA page_count").fetchone()[0])
        with pytest.raises(StorageFault) as caught:
            store.transaction_sync([insert(2, BIG)])
        assert caught.value.kind == "disk_full"
        assert keys(store) == [1] and [f.kind for f in store.faults.current()] == ["disk_full"]
        limit_growth(store, None)
        assert store.transaction_sync([insert(2, BIG)]).version == 2
        assert store.faults.current() == []
    finally:
        store.close()


def peer_versions(tmp: Path, count: int) -> tuple[Store, list[Changeset]]:
    peer = open_store(tmp, "peer")
    sets = []
    for k in range(count):
        changeset = peer.transaction_sync([insert(k, BIG)]).changeset
        assert changeset is not None
        sets.append(changeset)
    return peer, sets


def changes_of(store: Store, site: bytes) -> list[tuple[object, ...]]:
    return sorted(
        (c.table, c.pk, c.cid, c.val, c.col_version, c.db_version, c.site_id, c.cl, c.seq)
        for c in crdt.changes(store.reader())
        if c.site_id == site
    )


@pytest.mark.parametrize("fault", ["tmpfs", "max_page_count"])
def test_an_apply_stopped_by_a_full_disk_is_retried_whole_and_right(
    tmp_path: Path, fault: str, request: pytest.FixtureRequest
) -> None:
    """The first changesets ever seen from a peer fail to commit: nothing of them stays
    (bookkeeping, rows, the peer's site ordinal), and once space is back the same changesets
    apply with the peer's clocks exactly as the peer holds them."""
    peer, sets = peer_versions(tmp_path, 12)
    if fault == "tmpfs":
        disk: SmallDisk = request.getfixturevalue("small_disk")
        node = open_store(disk.path, "node")
        disk.fill()
    else:
        node = open_store(tmp_path, "node")
        limit_growth(node, node.reader().execute("PRAGMA page_count").fetchone()[0])
    try:
        with pytest.raises(ApplyInterrupted) as caught:
            node.apply_sync(sets)
        stopped = caught.value
        assert stopped.transient and stopped.kind == "disk_full"
        assert stopped.done.applied == [] and stopped.rest == sets
        assert keys(node) == [] and peer.actor_id not in node.bookie_snapshot()
        if fault == "tmpfs":
            disk.free()
        else:
            limit_growth(node, None)
        result = node.apply_sync(stopped.rest)
        assert len(result.applied) == 12 and keys(node) == list(range(12))
        assert changes_of(node, peer.actor_id) == changes_of(peer, peer.actor_id)
        assert node.faults.current() == []
    finally:
        node.close()
        peer.close()


def test_a_full_disk_never_quarantines_a_changeset(tmp_path: Path) -> None:
    """A merge that fails for want of space is the disk's fault, not the changeset's: it must
    not be set aside as unappliable (quarantined changesets only come back after a schema
    change). Here merging needs seven copies of the value (the row and six indexes) and
    quarantining one, so only the merge fails."""
    peer = open_store(tmp_path, "peer")
    node = open_store(tmp_path, "node")
    try:
        changeset = peer.transaction_sync(
            [("INSERT INTO wide VALUES (1, ?)", ["w" * BIG])]
        ).changeset
        assert changeset is not None
        pages = node.reader().execute("PRAGMA page_count").fetchone()[0]
        limit_growth(node, pages + 3 * BIG // 4096)  # room for 3 copies, not 7
        with pytest.raises(ApplyInterrupted):
            node.apply_sync([changeset])
        assert node.quarantine() == []
        limit_growth(node, None)
        assert node.apply_sync([changeset]).applied == [(peer.actor_id, 1)]
    finally:
        node.close()
        peer.close()


def test_a_corrupt_page_stops_writes_for_good_and_reads_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(tmp_path, "node")
    peer, sets = peer_versions(tmp_path, 2)
    try:
        store.transaction_sync([insert(1), ("INSERT INTO other VALUES (1, 'kept')", [])])
        corrupt_root_page(store.path, "kv")
        with caplog.at_level(logging.ERROR, logger="corrosion_py.store"):
            with pytest.raises(StorageFault) as caught:
                store.transaction_sync([insert(2)])
            assert caught.value.kind == "corrupt" and not caught.value.transient
            # writes stay stopped, even to a healthy table, without touching the file
            with pytest.raises(StorageFault, match="is corrupt"):
                store.transaction_sync([("INSERT INTO other VALUES (2, 'no')", [])])
            with pytest.raises(ApplyInterrupted) as stopped:
                store.apply_sync(sets)
            assert stopped.value.rest == sets and not stopped.value.transient
        lines = [r.getMessage() for r in caplog.records if r.name == "corrosion_py.store"]
        assert lines == [
            f"the database {store.path} is corrupt (database disk image is malformed); writes "
            "are stopped: stop the node and restore the database from a backup "
            "(`corrosion restore BACKUP`)"
        ]
        [fault] = store.faults.current()
        assert fault.kind == "corrupt" and fault.failures == 3
        assert store.reader().execute("SELECT id, x FROM other").fetchall() == [(1, "kept")]
    finally:
        store.close()
        peer.close()
