"""Write brackets: every write to a CRR happens inside one, so versions are claimed per transaction.

A bracket opens ``BEGIN IMMEDIATE`` when the connection has no transaction, or a savepoint inside
the caller's; the outermost engine bracket records the claimed version in ``crsql_db_versions``
in the same SQLite transaction as the data, so data, clocks and versions commit together or
not at all. A version above ``MAX_CLOCK`` is never committed: the bracket fails with
``ClockLimitError`` and rolls back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import attrs

from corrosion_py.crdt.limits import MAX_CLOCK
from corrosion_py.crdt.site import record_versions
from corrosion_py.crdt.state import ConnState, conn_state
from corrosion_py.errors import ClockLimitError


@attrs.define
class Transaction:
    """Result of `crdt.transaction`: the version the transaction got, or None if it changed
    nothing replicated (known once the ``with`` block has exited)."""

    version: int | None = None


@contextmanager
def write_scope(conn: sqlite3.Connection, st: ConnState, *, sync: bool) -> Iterator[None]:
    """Open (or nest into) a transaction in which CRR writes are allowed.

    ``sync`` turns the recording triggers off, as merges need. On an exception everything the
    scope wrote is rolled back and the engine state is restored.
    """
    nested = st.depth > 0
    own = not conn.in_transaction
    conn.execute("BEGIN IMMEDIATE" if own else "SAVEPOINT crdt_scope")
    if nested:
        saved = (st.pending, st.seq)
    else:
        st.begin(conn)
    saved_sync = st.sync_bit
    st.sync_bit = 1 if sync else 0
    st.depth += 1
    try:
        yield
        if not nested and st.pending is not None:
            if st.pending > MAX_CLOCK:  # crsql_next_db_version(n), or a version at the limit
                raise ClockLimitError(
                    f"version {st.pending} is above the limit {MAX_CLOCK}: transaction rolled back"
                )
            record_versions(conn, {st.site_id: st.pending})
    except BaseException:
        st.depth -= 1
        st.sync_bit = saved_sync
        try:
            # a full disk or an I/O error can make SQLite roll the whole transaction back
            # itself: then there is nothing left to roll back (and no savepoint)
            if conn.in_transaction:
                if own:
                    conn.execute("ROLLBACK")
                else:
                    conn.execute("ROLLBACK TO crdt_scope")
                    conn.execute("RELEASE crdt_scope")
        finally:
            st.ordinals.clear()
            st.sites.clear()
            st.schema_version = -1  # a rolled-back DDL moves PRAGMA schema_version back
            if nested:
                st.pending, st.seq = saved
            else:
                st.forget()
        raise
    st.depth -= 1
    st.sync_bit = saved_sync
    conn.execute("COMMIT" if own else "RELEASE crdt_scope")
    if not nested:
        st.committed = st.pending if st.pending is not None else st.committed
        st.pending = None
        st.seq = 0


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[Transaction]:
    """Run local writes as one transaction of the local site: one new db_version for all of it.

    Commits on success (or releases into the caller's open transaction); rolls back on any
    exception and re-raises it.
    """
    st = conn_state(conn)
    tx = Transaction()
    outer = st.depth == 0
    with write_scope(conn, st, sync=False):
        yield tx
        if outer:
            tx.version = st.pending
    if not outer:
        tx.version = st.pending
