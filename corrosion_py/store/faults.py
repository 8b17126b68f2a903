"""What the database file's failures mean for the node: which SQLite errors are faults of the
storage rather than of the statement, and the node's fault state (health reports it).

Rules:

- **Classification** by SQLite's primary result code, looked for along the exception's cause
  and context (a failed rollback can hide the error that caused it): ``SQLITE_FULL`` is
  ``disk_full``, ``SQLITE_IOERR`` ``io_error``, ``SQLITE_READONLY`` ``read_only`` (the three
  *transient* kinds), ``SQLITE_CORRUPT`` and ``SQLITE_NOTADB`` ``corrupt``. Anything else is
  the statement's own error (a constraint, a syntax error, an interrupt).
- **Transient faults** are set by a failed write and cleared by the next data write (a local
  transaction, an apply) that commits, not by a small routine one (the member list) that can
  fit where the data did not: nothing is written meanwhile (the transaction is rolled back),
  and whoever wrote retries or gives up (the apply queue retries with backoff, a local write
  fails with `StorageFault`).
- **Corruption is sticky**: once seen by a write, every later write is refused without touching
  the file, until the node is restarted on a restored database (``Store.open`` checks it).
- Each fault is logged once, when it starts (and once when a transient one clears), never per
  failed write; ``failures`` counts the writes it refused.

Thread-safe: writes run on worker threads, health reads from the event loop.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

import attrs

from corrosion_py.errors import StorageFault, describe_fault

log = logging.getLogger("corrosion_py.store")

SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_NOTADB = 26

_KINDS = {
    SQLITE_FULL: "disk_full",
    SQLITE_IOERR: "io_error",
    SQLITE_READONLY: "read_only",
    SQLITE_CORRUPT: "corrupt",
    SQLITE_NOTADB: "corrupt",
}


def classify(exc: BaseException) -> tuple[str, str] | None:
    """``(kind, SQLite's message)`` when ``exc`` (or what caused it) is a storage fault."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StorageFault):
            return current.kind, current.detail
        if isinstance(current, sqlite3.Error):
            code = getattr(current, "sqlite_errorcode", None)
            if code is not None and (code & 0xFF) in _KINDS:
                return _KINDS[code & 0xFF], str(current)
        current = current.__cause__ or current.__context__
    return None


@attrs.frozen
class Fault:
    """One fault in progress: its kind, since when (seconds since the epoch), SQLite's message,
    and how many writes failed or were refused because of it."""

    kind: str
    since: float
    detail: str
    failures: int = 1

    def describe(self, path: object) -> str:
        return describe_fault(self.kind, path, self.detail)


class FaultState:
    """The storage faults of one database file (see the module rules)."""

    def __init__(self, path: object) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._transient: Fault | None = None
        self._corrupt: Fault | None = None

    def current(self) -> list[Fault]:
        """The faults in progress, corruption first."""
        with self._lock:
            return [f for f in (self._corrupt, self._transient) if f is not None]

    @property
    def corrupt(self) -> bool:
        """Whether writes are stopped for good (until a restart on a restored database)."""
        return self._corrupt is not None

    def check_writable(self) -> None:
        """Refuse a write to a corrupt database (raises `StorageFault`; counted)."""
        with self._lock:
            fault = self._corrupt
            if fault is None:
                return
            self._corrupt = attrs.evolve(fault, failures=fault.failures + 1)
        raise StorageFault(fault.kind, self.path, fault.detail)

    def failed(self, exc: BaseException, now: float) -> StorageFault | None:
        """Record a write's failure; the `StorageFault` to raise instead when it is a storage
        fault, None when it is the statement's own error."""
        found = classify(exc)
        if found is None:
            return None
        kind, detail = found
        with self._lock:
            held = self._corrupt if kind == "corrupt" else self._transient
            if held is not None and held.kind == kind:
                fault = attrs.evolve(held, failures=held.failures + 1, detail=detail)
                new = False
            else:
                fault, new = Fault(kind, now, detail), True
            if kind == "corrupt":
                self._corrupt = fault
            else:
                self._transient = fault
        if new:
            log.error(
                "%s", fault.describe(self.path),
                extra={"fields": {"event": "storage_fault", "kind": kind}},
            )  # fmt: skip
        return StorageFault(kind, self.path, detail)

    def succeeded(self, now: float) -> None:
        """A write committed: a transient fault is over."""
        if self._transient is None:  # (the common case, without the lock)
            return
        with self._lock:
            fault, self._transient = self._transient, None
        if fault is not None:
            log.info(
                "writes to %s resumed after %.1f s (%s; %d writes failed meanwhile)",
                self.path, max(0.0, now - fault.since), fault.kind, fault.failures,
                extra={"fields": {"event": "storage_recovered", "kind": fault.kind}},
            )  # fmt: skip
