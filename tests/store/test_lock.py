"""One running node per database: the lock file is exclusive, names its holder and is released
when the holder stops (or dies: the kernel drops flock locks with the process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from corrosion_py.store.lock import DatabaseInUse, hold, holder


def test_the_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    db = tmp_path / "n.db"
    assert holder(db) is None
    with hold(db):
        assert holder(db) == os.getpid()
        with pytest.raises(DatabaseInUse, match=f"pid {os.getpid()}"), hold(db):
            pass
    assert holder(db) is None
    with hold(db):  # free again
        pass


def test_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    db = tmp_path / "n.db"
    code = (
        "import sys, time; from pathlib import Path; from corrosion_py.store.lock import hold\n"
        f"with hold(Path({str(db)!r})):\n    print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        assert holder(db) == proc.pid
        proc.kill()
        proc.wait(timeout=30)
        assert holder(db) is None
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
