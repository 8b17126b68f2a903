"""A disk a test can fill: the class behind the ``small_disk`` fixture (tests/conftest.py)."""

from __future__ import annotations

import errno
from pathlib import Path


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
