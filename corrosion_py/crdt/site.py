"""Site identity: which site is this database's own, and the version each site reached.

cr-sqlite's layout: ``crsql_site_id`` gives every site id (16 bytes, shaped as a UUID v4) an
ordinal, the local site's being 0, and clock rows name their site by ordinal;
``crsql_db_versions`` holds the highest version seen of each site, the local site's being the
database's committed version. Nothing outside the engine writes these tables: the node's
bookkeeping raises versions with `record_versions`, and a backup and a restore move the local
site with `detach_local_site` and `move_local_site`.

The engine draws no randomness for a node: a new database gets the site id its caller gives
(`crdt.init`), and `random_site_id` is only the default when none is given.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from corrosion_py.crdt.tables import clock_table, crr_names, q

REBUILD_INDEXES_ABOVE = 10_000
"""Clock rows of one table moved to another site at once above which its indexes are dropped
and rebuilt (a sort) instead of updated entry by entry: 0.46 s instead of 1.24 s for 300k."""

# Provisional sentinels (seq -1) are bookkeeping of the node holding the file, not changes of
# any site: they stay with the local site when it moves.
_NOT_PROVISIONAL = "AND NOT (col_name = '-1' AND seq < 0)"


def random_site_id() -> bytes:
    """A new site id: 16 random bytes shaped as an RFC 4122 version 4 UUID, like cr-sqlite's."""
    return uuid.uuid4().bytes


def local_site(conn: sqlite3.Connection) -> bytes | None:
    """The local site id (ordinal 0), None when the database has none (a backup). Reads only:
    works on a database the engine never opened, read-only included."""
    row = conn.execute("SELECT site_id FROM crsql_site_id WHERE ordinal = 0").fetchone()
    return None if row is None else bytes(row[0])


def site_versions(conn: sqlite3.Connection) -> dict[bytes, int]:
    """The highest version seen of every site (the local one's: the committed version)."""
    rows = conn.execute("SELECT site_id, db_version FROM crsql_db_versions")
    return {bytes(site): int(version) for site, version in rows}


def record_versions(conn: sqlite3.Connection, versions: Mapping[bytes, int]) -> None:
    """Each site of ``versions`` has reached at least that version (a lower one changes
    nothing), inside the caller's transaction."""
    conn.executemany(
        "INSERT INTO crsql_db_versions (site_id, db_version) VALUES (?, ?) "
        "ON CONFLICT (site_id) DO UPDATE SET db_version = max(db_version, excluded.db_version)",
        versions.items(),
    )


def detach_local_site(conn: sqlite3.Connection) -> bytes | None:
    """Make the local site an ordinary remote one (a new ordinal, its clock rows following,
    provisional sentinels kept at the local ordinal), in one transaction of its own or the
    caller's; return its id (None if there was none). The database then has no identity: the
    next use of the engine on it (`crdt.init`, a transaction, a read of changes) gives it one."""
    site = local_site(conn)
    if site is None:
        return None
    with setup_transaction(conn):
        conn.execute("DELETE FROM crsql_site_id WHERE ordinal = 0")
        ordinal = conn.execute("INSERT INTO crsql_site_id (site_id) VALUES (?)", (site,)).lastrowid
        assert ordinal is not None
        _move_rows(conn, 0, ordinal, _NOT_PROVISIONAL)
    return site


def move_local_site(conn: sqlite3.Connection, site_id: bytes, *, resume_after: int = 0) -> None:
    """Make ``site_id`` the local site, its next version ``resume_after + 1`` or later, in one
    transaction of its own or the caller's.

    A local site that never committed a version is forgotten; one that did becomes a remote
    site (`detach_local_site`), so no row changes hands. When the database knows ``site_id``
    as a remote site, its clock rows become the local site's."""
    if len(site_id) != 16:
        raise ValueError("a site id is 16 bytes")
    with setup_transaction(conn):
        old = local_site(conn)
        if old is not None and old != site_id:
            if site_versions(conn).get(old, 0) > 0:
                detach_local_site(conn)
            else:
                conn.execute("DELETE FROM crsql_site_id WHERE ordinal = 0")
                conn.execute("DELETE FROM crsql_db_versions WHERE site_id = ?", (old,))
        row = conn.execute(
            "SELECT ordinal FROM crsql_site_id WHERE site_id = ?", (site_id,)
        ).fetchone()
        if row is not None and row[0] != 0:
            _move_rows(conn, row[0], 0)
            conn.execute("DELETE FROM crsql_site_id WHERE ordinal = ?", (row[0],))
        if row is None or row[0] != 0:
            conn.execute("INSERT INTO crsql_site_id (site_id, ordinal) VALUES (?, 0)", (site_id,))
        record_versions(conn, {site_id: resume_after})


def _move_rows(conn: sqlite3.Connection, old: int, new: int, extra: str = "") -> None:
    """Rewrite every clock row's site ordinal ``old`` to ``new`` (many rows of a table: with
    its indexes dropped and rebuilt)."""
    for table in crr_names(conn):
        clock = q(clock_table(table))
        where = f"WHERE site_id = {int(old)} {extra}"
        (count,) = conn.execute(f"SELECT count(*) FROM {clock} {where}").fetchone()
        if not count:
            continue
        indexes = []
        if count > REBUILD_INDEXES_ABOVE:
            indexes = conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                "AND sql IS NOT NULL",
                (clock_table(table),),
            ).fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {q(name)}")
        conn.execute(f"UPDATE {clock} SET site_id = {int(new)} {where}")
        for _, sql in indexes:
            conn.execute(sql)


@contextmanager
def setup_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """The engine's own writes outside a local transaction (setting up its tables, moving the
    local site): a transaction of their own, or inside the caller's; rolled back on error."""
    own_tx = not conn.in_transaction
    if own_tx:
        conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if own_tx:
            conn.execute("ROLLBACK")
        raise
    if own_tx:
        conn.execute("COMMIT")
