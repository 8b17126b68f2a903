"""Per-connection engine state and the SQL functions the triggers call.

The stdlib ``sqlite3`` module has no commit or rollback hooks and its connections cannot be weakly
referenced, so the engine keeps what cr-sqlite keeps per connection (the pending db_version, the
seq counter, the sync bit) in a small object that the registered SQL functions close over, and
brackets every write itself (`tx.py`, `merge.py`). The committed local version is read from the
database at the start of each engine transaction, never cached across transactions, so several
connections (or processes) on one file stay correct (cr-sqlite caches it per connection, and a
second connection on the same file then reuses versions).

The triggers claim versions and seqs through ``crsql_internal_*`` functions of their own, apart
from cr-sqlite's public ``crsql_next_db_version`` and ``crsql_increment_and_get_seq``. A SQL
function cannot tell a trigger from top-level SQL, so these refuse every call made while no
local engine transaction is open (the only time the triggers record), and take no argument
that could move a version: a stray call outside a transaction changes nothing, and one inside
can only claim what that transaction's own writes would. (The node's API also refuses them by
an authorizer, which does know who calls: `corrosion_py.store.guard`.)
"""

from __future__ import annotations

import itertools
import sqlite3

import attrs

from corrosion_py.crdt.pk import pack_columns
from corrosion_py.crdt.site import random_site_id, setup_transaction
from corrosion_py.crdt.tables import (
    TRIGGERS_VERSION,
    TableInfo,
    check_compatible,
    crr_names,
    drop_triggers_ddl,
    introspect,
    triggers_ddl,
)
from corrosion_py.errors import TransactionError

CRSQLITE_VERSION = 160300
MAX_COLUMNS = 32767  # SQLite's hard upper bound on the columns of a table
_uids = itertools.count(1)

ENGINE_DDL = [
    "CREATE TABLE IF NOT EXISTS crsql_site_id (site_id BLOB NOT NULL, ordinal INTEGER PRIMARY KEY)",
    "CREATE UNIQUE INDEX IF NOT EXISTS crsql_site_id_site_id ON crsql_site_id (site_id)",
    'CREATE TABLE IF NOT EXISTS crsql_master ("key" TEXT PRIMARY KEY, "value" ANY)',
    "CREATE TABLE IF NOT EXISTS crsql_tracked_peers (site_id BLOB NOT NULL, "
    "version INTEGER NOT NULL, seq INTEGER DEFAULT 0, tag INTEGER, event INTEGER, "
    "PRIMARY KEY (site_id, tag, event)) STRICT",
    # Max db_version seen per site; the local site's row is this database's committed version.
    "CREATE TABLE IF NOT EXISTS crsql_db_versions "
    "(site_id BLOB NOT NULL PRIMARY KEY, db_version INTEGER NOT NULL) STRICT",
]


@attrs.define(eq=False)
class ConnState:
    """What the engine remembers about one connection between statements."""

    uid: int
    site_id: bytes
    depth: int = 0  # > 0 while an engine transaction or merge is open
    sync_bit: int = 0  # 1 while a merge writes to base tables, so the triggers stand aside
    committed: int = 0  # local db_version when the current transaction began
    pending: int | None = None  # version claimed by the current transaction's first clock write
    seq: int = 0
    rows_impacted: int = 0
    ordinals: dict[bytes, int] = attrs.Factory(dict)
    sites: dict[int, bytes] = attrs.Factory(dict)
    schema_version: int = -1
    tables: dict[str, TableInfo] = attrs.Factory(dict)
    has_view: bool = False  # `register` made a crsql_changes view on this connection

    # -- cr-sqlite's public functions ------------------------------------------------------
    def next_db_version(self, merge_version: int | None = None) -> int:
        ret = max(self.committed + 1, self.pending or 0, merge_version or 0)
        self.pending = ret
        return ret

    def increment_and_get_seq(self) -> int:
        s = self.seq
        self.seq += 1
        return s

    # -- the functions the triggers call ---------------------------------------------------
    def sync_bit_fn(self) -> int | None:
        return self.sync_bit if self.depth else None

    def _recording(self) -> None:
        """Refuse a call made while no local write can be recorded: the triggers only call
        while a local engine transaction is open, so any other call is top-level SQL."""
        if self.depth == 0 or self.sync_bit:
            raise TransactionError(
                "crsql_internal_* functions are called only by the engine's triggers, "
                "inside crdt.transaction()"
            )

    def trigger_next_db_version(self) -> int:
        """This transaction's version (claimed by its first recorded write). No argument: a
        caller cannot push it past the next version."""
        self._recording()
        return self.next_db_version()

    def trigger_next_seq(self) -> int:
        self._recording()
        return self.increment_and_get_seq()

    def trigger_reserve_seq(self, n: int) -> int:
        """Take ``n`` consecutive seqs at once (one per column of a row); return the first."""
        self._recording()
        if not isinstance(n, int) or not 1 <= n <= MAX_COLUMNS:
            raise TransactionError(f"a row has 1..{MAX_COLUMNS} columns, not {n!r}")
        s = self.seq
        self.seq += n
        return s

    # -- transaction brackets ----------------------------------------------------------------
    def begin(self, conn: sqlite3.Connection) -> None:
        self.committed = local_version(conn, self.site_id)
        self.pending = None
        self.seq = 0

    def forget(self) -> None:
        """After a rollback: nothing pending, and cached ordinals may name rolled-back rows."""
        self.pending = None
        self.seq = 0
        self.ordinals.clear()
        self.sites.clear()

    # -- caches ------------------------------------------------------------------------------
    def crrs(self, conn: sqlite3.Connection) -> dict[str, TableInfo]:
        """Every CRR's shape, in creation order; re-read whenever the schema changed."""
        version = conn.execute("PRAGMA schema_version").fetchone()[0]
        if version != self.schema_version:
            self.tables = {t: check_compatible(conn, t) for t in crr_names(conn)}
            self.schema_version = version
        return self.tables

    def ordinal(self, conn: sqlite3.Connection, site: bytes) -> int:
        """The site's ordinal, allocating one for a site seen for the first time."""
        if site == self.site_id:
            return 0
        got = self.ordinals.get(site)
        if got is None:
            row = conn.execute(
                "SELECT ordinal FROM crsql_site_id WHERE site_id = ?", (site,)
            ).fetchone()
            if row is None:
                got = conn.execute(
                    "INSERT INTO crsql_site_id (site_id) VALUES (?)", (site,)
                ).lastrowid
                assert got is not None
            else:
                got = row[0]
            self.ordinals[site] = got
            self.sites[got] = site
        return got

    def site_of(self, conn: sqlite3.Connection, ordinal: int) -> bytes:
        if ordinal == 0:
            return self.site_id
        got = self.sites.get(ordinal)
        if got is None:
            row = conn.execute(
                "SELECT site_id FROM crsql_site_id WHERE ordinal = ?", (ordinal,)
            ).fetchone()
            got = bytes(row[0]) if row else b""
            self.sites[ordinal] = got
        return got


def local_version(conn: sqlite3.Connection, site: bytes) -> int:
    row = conn.execute(
        "SELECT db_version FROM crsql_db_versions WHERE site_id = ?", (site,)
    ).fetchone()
    return int(row[0]) if row else 0


_states: dict[int, ConnState] = {}
# Connections verified recently, held strongly so their ids cannot be reused while listed: a hit
# here is the same object, so the check query can be skipped. Bounded; oldest evicted first.
_recent: dict[int, sqlite3.Connection] = {}
_RECENT_MAX = 16


def _owned(conn: sqlite3.Connection, st: ConnState) -> bool:
    try:
        return bool(conn.execute("SELECT crsql_internal_state_id()").fetchone()[0] == st.uid)
    except sqlite3.OperationalError:
        return False


def has_engine_tables(conn: sqlite3.Connection) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'crsql_db_versions'"
        ).fetchone()
        is not None
    )


def ensure_engine_tables(conn: sqlite3.Connection, new_site: bytes | None = None) -> bytes:
    """Create the engine's tables if missing; return the persisted local site id. A database
    without one gets ``new_site`` (a random one when None)."""
    row = None
    if has_engine_tables(conn):
        row = conn.execute("SELECT site_id FROM crsql_site_id WHERE ordinal = 0").fetchone()
    if row is not None:
        return bytes(row[0])
    with setup_transaction(conn):
        for ddl in ENGINE_DDL:
            conn.execute(ddl)
        row = conn.execute("SELECT site_id FROM crsql_site_id WHERE ordinal = 0").fetchone()
        site = bytes(row[0]) if row else (new_site or random_site_id())
        if row is None:
            conn.execute("INSERT INTO crsql_site_id (site_id, ordinal) VALUES (?, 0)", (site,))
        conn.execute(
            "INSERT OR IGNORE INTO crsql_master (key, value) VALUES ('crsqlite_version', ?), "
            "(?, ?)",
            (CRSQLITE_VERSION, _TRIGGERS_KEY, TRIGGERS_VERSION),
        )
        conn.execute(
            "INSERT OR IGNORE INTO crsql_db_versions (site_id, db_version) VALUES (?, 0)",
            (site,),
        )
    return site


_TRIGGERS_KEY = "corrosion_py.triggers_version"


def upgrade_triggers(conn: sqlite3.Connection) -> None:
    """Recreate every CRR's triggers if the database was made by an engine with older ones."""
    row = conn.execute("SELECT value FROM crsql_master WHERE key = ?", (_TRIGGERS_KEY,)).fetchone()
    if row is not None and row[0] == TRIGGERS_VERSION:
        return
    with setup_transaction(conn):
        for table in crr_names(conn):
            for ddl in drop_triggers_ddl(table) + triggers_ddl(introspect(conn, table)):
                conn.execute(ddl)
        conn.execute(
            "INSERT INTO crsql_master (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (_TRIGGERS_KEY, TRIGGERS_VERSION),
        )


def conn_state(conn: sqlite3.Connection, new_site: bytes | None = None) -> ConnState:
    """The engine state of this connection, creating tables (a new database's site id is
    ``new_site``, or random) and registering functions once."""
    st = _states.get(id(conn))
    if st is not None and (_recent.get(id(conn)) is conn or _owned(conn, st)):
        _remember(conn)
        return st
    site = ensure_engine_tables(conn, new_site)
    st = ConnState(uid=next(_uids), site_id=site)
    conn.create_function("crsql_internal_state_id", 0, lambda: st.uid)
    conn.create_function("crsql_internal_sync_bit", 0, st.sync_bit_fn)
    conn.create_function("crsql_internal_next_db_version", 0, st.trigger_next_db_version)
    conn.create_function("crsql_internal_next_seq", 0, st.trigger_next_seq)
    conn.create_function("crsql_internal_reserve_seq", 1, st.trigger_reserve_seq)
    conn.create_function("crsql_next_db_version", 0, st.next_db_version)
    conn.create_function("crsql_next_db_version", 1, st.next_db_version)
    conn.create_function("crsql_increment_and_get_seq", 0, st.increment_and_get_seq)
    conn.create_function("crsql_get_seq", 0, lambda: st.seq)
    conn.create_function("crsql_internal_pack", -1, pack_columns, deterministic=True)
    upgrade_triggers(conn)
    _states[id(conn)] = st
    _remember(conn)
    return st


def forget_state(conn: sqlite3.Connection) -> None:
    """Drop this connection's engine state (its local site moved): the next use reads it anew."""
    _states.pop(id(conn), None)
    _recent.pop(id(conn), None)


def _remember(conn: sqlite3.Connection) -> None:
    if id(conn) not in _recent:
        if len(_recent) >= _RECENT_MAX:
            del _recent[next(iter(_recent))]
        _recent[id(conn)] = conn
