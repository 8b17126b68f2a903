"""Site identity through the engine's API (`corrosion_py.crdt.site`): the id a new database
gets, versions raised and never lowered, and the local site moved away (a backup) or onto a
chosen id (a restore), with clock rows following and nothing written by hand."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from corrosion_py import crdt
from corrosion_py.crdt import site

SCHEMA = "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT)"
A = bytes(range(16))
B = bytes(range(16, 32))
C = bytes(range(32, 48))


def open_db(path: Path, site_id: bytes | None = None) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    crdt.init(conn, site_id=site_id)
    conn.execute(SCHEMA)
    crdt.as_crr(conn, "kv")
    return conn


def write(conn: sqlite3.Connection, k: int, v: str) -> int | None:
    with crdt.transaction(conn) as tx:
        conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (k, v))
    return tx.version


def clock_sites(conn: sqlite3.Connection) -> list[tuple[int, str, int]]:
    """(site ordinal, column, seq) of every clock row, sorted."""
    return sorted(conn.execute('SELECT site_id, col_name, seq FROM "kv__crsql_clock"'))


def test_a_new_database_gets_the_given_site_id_and_an_old_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    conn = open_db(tmp_path / "a.db", A)
    assert crdt.site_id(conn) == A == crdt.local_site(conn)
    conn.close()
    again = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    assert crdt.init(again, site_id=B) == A  # persisted: the given id is for new databases
    with pytest.raises(ValueError, match="16 bytes"):
        crdt.init(sqlite3.connect(":memory:"), site_id=b"short")


def test_without_a_given_id_a_random_uuid4_is_drawn(tmp_path: Path) -> None:
    one = crdt.init(sqlite3.connect(tmp_path / "one.db", isolation_level=None))
    two = crdt.init(sqlite3.connect(tmp_path / "two.db", isolation_level=None))
    assert one != two
    assert uuid.UUID(bytes=one).version == 4 and len(one) == 16


def test_record_versions_raises_and_never_lowers(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "a.db", A)
    conn.execute("BEGIN")
    crdt.record_versions(conn, {B: 7, C: 3})
    crdt.record_versions(conn, {B: 5})  # lower: nothing changes
    conn.execute("COMMIT")
    assert crdt.site_versions(conn) == {A: 0, B: 7, C: 3}
    conn.execute("BEGIN")
    crdt.record_versions(conn, {C: 9})
    conn.execute("ROLLBACK")  # inside the caller's transaction: rolled back with it
    assert crdt.site_versions(conn)[C] == 3


def test_detach_makes_the_local_site_remote_and_its_rows_follow(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "a.db", A)
    write(conn, 1, "x")
    write(conn, 2, "y")
    before = crdt.changes(conn)
    # a column change whose row's sentinel has not arrived: a provisional sentinel, this
    # node's own bookkeeping at the local ordinal
    crdt.merge(conn, [crdt.Change("kv", crdt.pack_pk([9]), "v", "z", 1, 4, B, 3, 0)])
    assert (0, "-1", -1) in clock_sites(conn)

    assert crdt.detach_local_site(conn) == A
    assert crdt.local_site(conn) is None
    ordinal = conn.execute("SELECT ordinal FROM crsql_site_id WHERE site_id = ?", (A,))
    (new,) = ordinal.fetchone()
    assert new > 0
    assert [r for r in clock_sites(conn) if r[0] == 0] == [(0, "-1", -1)]  # only the sentinel
    assert crdt.site_versions(conn)[A] == 2
    assert crdt.detach_local_site(conn) is None  # nothing left to detach
    # the next use of the engine gives the database a new identity; A's changes read back
    # the same, now as a remote site's
    assert [c for c in crdt.changes(conn) if c.site_id == A] == before
    assert crdt.local_site(conn) not in (None, A)


def test_move_onto_a_known_site_takes_its_rows_and_resumes_after_the_floor(
    tmp_path: Path,
) -> None:
    origin = open_db(tmp_path / "origin.db", A)
    write(origin, 1, "x")
    write(origin, 2, "y")
    copy = open_db(tmp_path / "copy.db", B)
    crdt.merge(copy, crdt.changes(origin))
    assert crdt.site_versions(copy)[B] == 0  # B never wrote

    crdt.move_local_site(copy, A, resume_after=5)
    assert crdt.local_site(copy) == A and crdt.site_id(copy) == A  # cached state dropped
    assert B not in crdt.site_versions(copy)  # an id that never wrote is forgotten
    assert {s for s, _, _ in clock_sites(copy)} == {0}  # A's rows are the local site's
    assert conn_ids(copy) == [(A, 0)]
    assert write(copy, 3, "z") == 6  # resumes after the floor, never reusing a version
    assert crdt.changes(copy, site_id=A, min_version=6) == crdt.changes(copy, min_version=6)


def test_move_away_from_a_site_that_wrote_keeps_its_rows_as_a_remote_sites(
    tmp_path: Path,
) -> None:
    conn = open_db(tmp_path / "a.db", A)
    write(conn, 1, "x")
    before = crdt.changes(conn)
    crdt.move_local_site(conn, C)
    assert crdt.local_site(conn) == C
    assert crdt.changes(conn, site_id=A) == before  # no row changed hands
    assert crdt.site_versions(conn) == {A: 1, C: 0}
    assert write(conn, 2, "y") == 1 and crdt.db_version(conn) == 1
    with pytest.raises(ValueError, match="16 bytes"):
        crdt.move_local_site(conn, b"short")


def test_many_moved_rows_rebuild_the_clock_indexes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(site, "REBUILD_INDEXES_ABOVE", 2)  # the bulk path, on a small table
    conn = open_db(tmp_path / "a.db", A)
    for k in range(5):
        write(conn, k, "v")
    indexes = index_sql(conn)
    assert indexes  # the clock table has indexes to rebuild
    crdt.detach_local_site(conn)
    assert index_sql(conn) == indexes
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert {s for s, _, _ in clock_sites(conn)} == {1}


def conn_ids(conn: sqlite3.Connection) -> list[tuple[bytes, int]]:
    return [(bytes(s), o) for s, o in conn.execute("SELECT site_id, ordinal FROM crsql_site_id")]


def index_sql(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'kv__crsql_clock' "
        "AND sql IS NOT NULL ORDER BY name"
    )
    return [r[0] for r in rows]
