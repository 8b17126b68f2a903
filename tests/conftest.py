"""Test-wide settings. Under CI (CI=true) hypothesis is derandomized, so a CI run is
reproducible and cannot fail on a search path no developer ran; locally it explores. The
``small_disk`` fixture gives a test a real disk it can fill."""

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from disk_faults import SmallDisk
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """An 8 MiB tmpfs mounted under ``tmp_path`` for the test (unmounted after it, in every
    case). Mounting needs root (CI runs as root); elsewhere the test is skipped with the reason,
    and the tests that inject SQLITE_FULL through ``PRAGMA max_page_count`` cover the same path."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (max_page_count tests inject the same fault)")
    path = tmp_path / "small-disk"
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); max_page_count tests "
                    "inject the same fault")  # fmt: skip
    try:
        yield SmallDisk(path)
    finally:
        if subprocess.run(["umount", str(path)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False)
