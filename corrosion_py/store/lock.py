"""One running node per database: an advisory lock on ``<db>.lock`` held while an agent runs.

``flock`` locks are released by the kernel when the process dies (``kill -9`` included), so a
stale lock file never blocks a restart. The file holds the holder's pid, for messages such as
``restore``'s refusal.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from corrosion_py.errors import StoreError


class DatabaseInUse(StoreError):
    """Another process runs a node on this database."""


def lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock")


@contextlib.contextmanager
def hold(db_path: Path) -> Iterator[None]:
    """Hold the database's lock (raises `DatabaseInUse` when another process holds it)."""
    path = lock_path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(db_path, _pid(path)) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def holder(db_path: Path) -> int | None:
    """The pid of the process running a node on ``db_path``, or None when none does."""
    path = lock_path(db_path)
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _pid(path) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def refuse_if_held(db_path: Path) -> None:
    """Raise `DatabaseInUse` (as `hold` would) when another process runs a node on
    ``db_path``; for checks before a start, without taking the lock."""
    pid = holder(db_path)
    if pid is not None:
        raise _in_use(db_path, pid if pid > 0 else None)


def _in_use(db_path: Path, pid: int | None) -> DatabaseInUse:
    return DatabaseInUse(f"a node is running on {db_path} (pid {pid or 'unknown'}); stop it first")


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None
