"""Every clock the engine accepts or produces stays at most MAX_CLOCK (2**53 - 1): a remote change
above it is refused before anything is written, a local write that would bump a clock past it
fails with a clear error and changes nothing, and a version above it is never committed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import attrs
import pytest

from corrosion_py import crdt
from corrosion_py.crdt.limits import CLOCK_LIMIT_MESSAGE, MAX_CLOCK
from corrosion_py.errors import ClockLimitError, MalformedChangeError

OTHER = bytes(range(16))


def open_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    crdt.init(conn)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT)")
    crdt.as_crr(conn, "t")
    return conn


def remote_change(**fields: object) -> crdt.Change:
    base = crdt.Change("t", crdt.pack_pk([1]), "v", "remote", 1, 1, OTHER, 1, 0)
    return attrs.evolve(base, **fields)


def snapshot(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    return [
        *conn.execute("SELECT * FROM t ORDER BY id"),
        *conn.execute("SELECT * FROM t__crsql_clock ORDER BY key, col_name"),
        *conn.execute("SELECT * FROM crsql_db_versions ORDER BY site_id"),
    ]


@pytest.mark.parametrize(
    "field", ["col_version", "db_version", "cl", "seq"], ids=lambda f: f"{f} above the limit"
)
@pytest.mark.parametrize("value", [MAX_CLOCK + 1, 2**63 - 1])
def test_a_remote_clock_above_the_limit_is_refused_and_writes_nothing(
    tmp_path: Path, field: str, value: int
) -> None:
    conn = open_db(tmp_path / "a.db")
    crdt.merge(conn, [remote_change()])
    before = snapshot(conn)
    with pytest.raises(MalformedChangeError, match=field):
        forged = [remote_change(val="forged", col_version=2), remote_change(**{field: value})]
        crdt.merge(conn, forged)
    assert snapshot(conn) == before


def test_a_remote_clock_at_the_limit_is_accepted(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "a.db")
    change = remote_change(col_version=MAX_CLOCK, db_version=MAX_CLOCK, cl=1, seq=MAX_CLOCK)
    assert crdt.merge(conn, [change]) == 1
    assert conn.execute("SELECT v FROM t").fetchall() == [("remote",)]


def test_a_local_write_past_the_limit_fails_clearly_and_the_row_recovers_by_delete(
    tmp_path: Path,
) -> None:
    """A cell whose clock a peer pushed to the limit cannot be bumped: the update fails with the
    engine's message (not "cannot store REAL value"), nothing changes; deleting the row resets
    its column clocks, so a re-insert works again."""
    conn = open_db(tmp_path / "a.db")
    crdt.merge(conn, [remote_change(col_version=MAX_CLOCK)])
    before = snapshot(conn)
    with pytest.raises(sqlite3.IntegrityError) as caught, crdt.transaction(conn):
        conn.execute("UPDATE t SET v = 'local' WHERE id = 1")
    assert str(caught.value) == f"corrosion_py: {CLOCK_LIMIT_MESSAGE}"
    assert str(MAX_CLOCK) in CLOCK_LIMIT_MESSAGE
    assert snapshot(conn) == before
    with crdt.transaction(conn):
        conn.execute("DELETE FROM t WHERE id = 1")
    with crdt.transaction(conn):
        conn.execute("INSERT INTO t VALUES (1, 'again')")
    assert conn.execute("SELECT v FROM t").fetchall() == [("again",)]
    clocks = conn.execute("SELECT max(col_version) FROM t__crsql_clock").fetchone()[0]
    assert clocks <= MAX_CLOCK


def test_a_causal_length_at_the_limit_refuses_the_delete(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "a.db")
    sentinel = remote_change(cid="-1", val=None, col_version=MAX_CLOCK, cl=MAX_CLOCK)
    crdt.merge(conn, [sentinel, remote_change(cl=MAX_CLOCK)])
    before = snapshot(conn)
    with pytest.raises(sqlite3.IntegrityError, match="reached its limit"), crdt.transaction(conn):
        conn.execute("DELETE FROM t WHERE id = 1")
    assert snapshot(conn) == before


def test_a_version_above_the_limit_is_never_committed(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "a.db")
    with crdt.transaction(conn):
        conn.execute("INSERT INTO t VALUES (1, 'a')")
    before = snapshot(conn)
    with pytest.raises(ClockLimitError, match="above the limit"), crdt.transaction(conn):
        conn.execute("SELECT crsql_next_db_version(?)", (MAX_CLOCK + 1,))
        conn.execute("INSERT INTO t VALUES (2, 'b')")
    assert snapshot(conn) == before
    assert crdt.db_version(conn) == 1
    with crdt.transaction(conn) as tx:  # the database still writes
        conn.execute("INSERT INTO t VALUES (3, 'c')")
    assert tx.version == 2


def test_a_version_at_the_limit_is_the_last_one(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "a.db")
    with crdt.transaction(conn) as tx:
        conn.execute("SELECT crsql_next_db_version(?)", (MAX_CLOCK,))
        conn.execute("INSERT INTO t VALUES (1, 'a')")
    assert tx.version == MAX_CLOCK
    with pytest.raises(ClockLimitError), crdt.transaction(conn):
        conn.execute("INSERT INTO t VALUES (2, 'b')")
    assert conn.execute("SELECT id FROM t").fetchall() == [(1,)]
