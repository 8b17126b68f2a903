"""The demo and the examples run as they are, as a new user would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from corrosion_py import __version__
from corrosion_py.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_demo_converges_and_exits_zero() -> None:
    done = run("-m", "corrosion_py", "demo")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "converged after" in out and "('m-ord-2', 'api', 'ord', 'fdaa::3'," in out
    assert "m-ord-1" not in out.split("every node now holds:")[1]  # the delete reached all
    assert "declared it dead" in out and "all nodes stopped cleanly." in out


def test_two_replicas_example() -> None:
    done = run("examples/two_replicas.py")
    assert done.returncode == 0, done.stderr
    assert "a: [('m1', 'api', 'ord')]" in done.stdout


def test_cli_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output
