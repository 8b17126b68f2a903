"""The writer connection and the bracket every write transaction runs in.

One connection writes, used by one thread at a time under `Writer.lock`, which is held only
around a SQLite transaction (never across a network await). A storage fault (a full disk, an
I/O error, a read-only or corrupt file: `store.faults`) rolls the transaction back and is
raised as `StorageFault` instead of SQLite's error; the node's fault state records it for
health, and a corrupt file refuses every later write.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from corrosion_py import crdt
from corrosion_py.store.faults import FaultState, classify
from corrosion_py.store.guard import Guard


class Writer:
    """The node's one writing connection, its lock, its guard and the node's fault state."""

    def __init__(self, path: Path, conn: sqlite3.Connection, clock: Callable[[], int]) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.faults = FaultState(path)
        self.guard = Guard()
        conn.set_authorizer(self.guard)
        self._clock = clock  # ns since the epoch: when a fault began or ended

    @contextmanager
    def writing(self, *, clears: bool = True) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock, for one write transaction. Refused at once while the
        file is corrupt. On any error the transaction is rolled back (SQLite may have done it
        already); a storage fault is recorded and raised as `StorageFault`. A block that ends
        normally ends a transient fault (it committed), unless ``clears`` is False: a small
        routine write can fit in a nearly full disk (or in the log's old space) where the
        changes that failed still cannot."""
        with self.lock:
            self.faults.check_writable()
            conn = self.conn
            try:
                yield conn
            except BaseException as exc:
                try:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                except sqlite3.Error:
                    if classify(exc) is None:
                        raise
                finally:
                    crdt.refresh(conn)  # the engine may have cached rows that were rolled back
                fault = self.faults.failed(exc, self._clock() / 1e9)
                if fault is not None:
                    raise fault from exc
                raise
            if clears:
                self.faults.succeeded(self._clock() / 1e9)

    def close(self) -> None:
        with self.lock:
            self.conn.close()
