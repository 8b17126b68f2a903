"""Connections to a node's database file: how each kind is opened, and the read-only ones that
serve reads, one per worker thread.

The writer is opened in WAL mode, so readers never block it nor it them; every connection
waits up to 5 s for a lock instead of failing at once. Readers are opened read-only and carry
the engine's SQL surface (``crsql_changes``, ``crsql_*`` functions) without creating anything.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from corrosion_py import crdt
from corrosion_py.store.guard import Guard


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the database at ``path``: the writer's (WAL) or a read-only one."""
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def open_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection with the engine's SQL surface, for reads of one's own (a sync
    session, the subscription worker): the caller closes it."""
    conn = connect(path, readonly=True)
    crdt.register(conn, create=False)
    return conn


class Readers:
    """One read-only connection per worker thread (made on the thread's first read), each under
    a guard of its own, since a user query may run on any of them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []  # one per thread that read: bounded by threads
        self._lock = threading.Lock()

    def get(self) -> tuple[sqlite3.Connection, Guard]:
        """This thread's connection and its guard."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_reader(self.path)
            guard = Guard()
            conn.set_authorizer(guard)
            self._local.conn, self._local.guard = conn, guard
            with self._lock:
                self._all.append(conn)
        return conn, self._local.guard

    def close(self) -> None:
        """Close every reader. Before the writer: the last connection to close removes the WAL,
        and a read-only one cannot (the -wal and -shm files would stay after a clean stop)."""
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
