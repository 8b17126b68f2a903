"""Full disks for tests: a disk a test can fill (the class behind the ``small_disk`` fixture
of tests/conftest.py), and a database that may not grow (`limit_growth`)."""

from __future__ import annotations

import errno
from pathlib import Path

from corrosion_py.store.store import Store


class SmallDisk:
    """A small tmpfs of its own (``path``): ``fill`` takes every free byte with a filler file
    (a real full disk: writes fail with ENOSPC), ``free`` gives the space back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        with open(self.filler, "ab", buffering=0) as f:
            try:
                while True:  # small unbuffered chunks, so no byte is left over
                    f.write(b"\0" * 4096)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


def limit_growth(store: Store, pages: int | None) -> None:
    """Inject SQLITE_FULL without root: the store's writer may not grow the file past ``pages``
    (None lifts it). Reaches into the store's writer: a test-only fault, as real as SQLite's own
    limit."""
    with store._writer.lock:
        store._writer.conn.execute(f"PRAGMA max_page_count = {pages or 1_073_741_823}")
