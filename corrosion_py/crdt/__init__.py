"""The CRR engine: cr-sqlite-compatible CRDT tables on any stdlib ``sqlite3`` connection.

Every cell of a CRR carries a logical clock, so concurrent writes on different replicas merge to
the same result everywhere (per-column last-writer-wins by col_version, causal-length deletes).
Semantics follow cr-sqlite 0.16; the deliberate differences are listed in docs/crdt.md. This
package imports no trio and does no I/O besides the connection it is given.

    crdt.init(conn, site_id=my_id)        # engine tables, returns the site id
    crdt.as_crr(conn, "machines")         # make a table a CRR
    with crdt.transaction(conn) as tx:    # local writes: one new version
        conn.execute("INSERT INTO machines ...")
    crdt.merge(other, crdt.changes(conn)) # replicate
"""

from __future__ import annotations

import sqlite3

from corrosion_py.crdt import site
from corrosion_py.crdt.change_rows import Change, changes, top_versions, version_sizes
from corrosion_py.crdt.crr import alter, as_crr, as_table
from corrosion_py.crdt.merger import MergeResult, merge, merge_changes
from corrosion_py.crdt.pk import compare, pack_pk, unpack_pk
from corrosion_py.crdt.site import local_site, random_site_id, record_versions, site_versions
from corrosion_py.crdt.sql import register
from corrosion_py.crdt.state import conn_state, forget_state, local_version
from corrosion_py.crdt.tables import is_crr
from corrosion_py.crdt.tx import Transaction, transaction

__all__ = [
    "Change",
    "MergeResult",
    "Transaction",
    "alter",
    "as_crr",
    "as_table",
    "changes",
    "compare",
    "db_version",
    "detach_local_site",
    "init",
    "is_crr",
    "local_site",
    "merge",
    "merge_changes",
    "move_local_site",
    "pack_pk",
    "random_site_id",
    "record_versions",
    "refresh",
    "register",
    "site_id",
    "site_versions",
    "top_versions",
    "transaction",
    "unpack_pk",
    "version_sizes",
]


def init(conn: sqlite3.Connection, site_id: bytes | None = None) -> bytes:
    """Create the engine's tables if needed and return this database's site id (persisted).

    A database without a site id gets ``site_id`` (16 bytes; `random_site_id` when None); one
    that has an id keeps it. Whoever needs reproducible ids (a simulator) passes its own."""
    if site_id is not None and len(site_id) != 16:
        raise ValueError("a site id is 16 bytes")
    return conn_state(conn, site_id).site_id


def site_id(conn: sqlite3.Connection) -> bytes:
    """This database's site id: 16 bytes, shaped as a UUID v4."""
    return conn_state(conn).site_id


def refresh(conn: sqlite3.Connection) -> None:
    """Forget the cached shapes of this connection's CRRs and its cached site ordinals. The
    shapes follow PRAGMA schema_version, which a rolled-back schema change moves back, and an
    ordinal cached during a rolled-back transaction names a row that is gone: call this after
    rolling back a transaction outside the engine's own brackets."""
    st = conn_state(conn)
    st.schema_version = -1
    st.ordinals.clear()
    st.sites.clear()


def db_version(conn: sqlite3.Connection) -> int:
    """The local site's last committed db_version (0 on a fresh database)."""
    return local_version(conn, conn_state(conn).site_id)


def detach_local_site(conn: sqlite3.Connection) -> bytes | None:
    """Make the local site an ordinary remote one and return its id (None if the database had
    none): a copy of a database that names no node (a backup). See `site.detach_local_site`."""
    try:
        return site.detach_local_site(conn)
    finally:
        forget_state(conn)


def move_local_site(conn: sqlite3.Connection, site_id: bytes, *, resume_after: int = 0) -> None:
    """Make ``site_id`` the local site, its next version above ``resume_after`` (a restore that
    chooses the node's identity). See `site.move_local_site`."""
    try:
        site.move_local_site(conn, site_id, resume_after=resume_after)
    finally:
        forget_state(conn)
