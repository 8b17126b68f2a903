"""Checks a node's database file before it is opened: a node refuses a file it cannot trust
rather than starting on it (and failing later, mid-apply) or replacing it.

Rules:

- **No file** is a new node. A ``-wal`` without its database is refused: SQLite would replay
  the old log into a new file.
- **An empty file** is refused: SQLite would silently make it a new database, and the node a
  new actor with none of its history, while peers still hold versions of the old one.
- **Not SQLite** (the 16-byte header is not SQLite's) or **truncated** (not a whole number of
  pages, or shorter than its header says while no write-ahead log is beside it) is refused.
- **Corrupt**: ``PRAGMA quick_check`` (every page and b-tree, not the index contents) must say
  ``ok``. It is bounded by ``timeout`` seconds through a progress handler; a check that does not
  finish is a refusal too, whose message says how to skip it (a huge file on a slow disk).
- Every refusal is one `UnusableDatabase` line naming the file, what is wrong and what to do;
  nothing is written before the checks pass.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from corrosion_py.errors import UnusableDatabase
from corrosion_py.store.faults import classify

SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_SIZE = 100
SQLITE_INTERRUPT = 9
RESTORE = (
    "restore it from a backup (`corrosion restore BACKUP`), or move it away to start a new node"
)
SKIP = (
    "set [db] integrity_check_timeout higher, or skip the check with [db] skip_integrity_check "
    "= true (`corrosion agent --skip-integrity-check`)"
)


def check_file(path: Path) -> None:
    """Refuse a file at ``path`` that cannot be a database (raises `UnusableDatabase`)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise UnusableDatabase(
                path,
                f"the file is missing but its write-ahead log {wal} is there; restore the "
                "database from a backup (`corrosion restore BACKUP`), or remove the log to "
                "start a new node",
            ) from None
        return
    if not path.is_file():
        raise UnusableDatabase(path, "it is not a regular file")
    if size == 0:
        raise UnusableDatabase(path, f"the file is empty (0 bytes); {RESTORE}")
    with open(path, "rb") as f:
        header = f.read(HEADER_SIZE)
    if not header.startswith(SQLITE_MAGIC):
        raise UnusableDatabase(path, f"it is not a SQLite database; {RESTORE}")
    page_size = int.from_bytes(header[16:18], "big") if len(header) == HEADER_SIZE else 0
    page_size = 65_536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1) or size % page_size:
        raise UnusableDatabase(
            path, f"it is truncated ({size} bytes, not a whole number of pages); {RESTORE}"
        )
    pages = int.from_bytes(header[28:32], "big")
    header_valid = pages > 0 and header[24:28] == header[92:96]
    wal = path.with_name(path.name + "-wal")
    if header_valid and pages * page_size > size and not (wal.exists() and wal.stat().st_size):
        # (with a log beside it, a checkpoint cut short is finished by SQLite, not truncation)
        raise UnusableDatabase(
            path,
            f"it is truncated ({size} bytes, its header says {pages * page_size}); {RESTORE}",
        )


def quick_check(conn: sqlite3.Connection, path: Path, timeout: float) -> None:
    """Run ``PRAGMA quick_check`` on ``conn`` for at most ``timeout`` seconds; refuse the file
    unless it says ``ok`` (raises `UnusableDatabase`)."""
    deadline = time.monotonic() + timeout
    conn.set_progress_handler(lambda: time.monotonic() >= deadline, 10_000)
    try:
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check") if row[0] != "ok"]
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorcode", None) == SQLITE_INTERRUPT:
            raise UnusableDatabase(
                path, f"the integrity check did not finish in {timeout:g} s; {SKIP}"
            ) from exc
        raise UnusableDatabase(path, refusal(exc)) from exc
    finally:
        conn.set_progress_handler(None, 0)
    if problems:
        first = " ".join(problems[0].split())  # one line: SQLite's report spans several
        more = f" and {len(problems) - 1} more problems" if len(problems) > 1 else ""
        raise UnusableDatabase(path, f"it is corrupt (quick_check: {first}{more}); {RESTORE}")


def refusal(exc: sqlite3.Error) -> str:
    """Why SQLite's ``exc`` while opening a database makes it unusable, with what to do."""
    found = classify(exc)
    if found is not None and found[0] == "corrupt":
        return f"it is corrupt ({exc}); {RESTORE}"
    return f"{exc}"
