"""The one base of the test launchers (`corrosion_py.testing.child`), on real child processes:
JSON lines read, commands sent, and every process stopped and reaped by its own PID."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corrosion_py.testing.child import Child

# A child that says it is ready, echoes each command line with "echo": true, and says goodbye
# at the end of its input.
ECHO = """
import json, sys
from corrosion_py.testing.child import emit
emit(event="ready")
for line in sys.stdin:
    emit(echo=True, **json.loads(line))
emit(event="bye")
"""
# A child that ignores SIGTERM, so only SIGKILL stops it.
STUBBORN = """
import signal, time
from corrosion_py.testing.child import emit
signal.signal(signal.SIGTERM, signal.SIG_IGN)
emit(event="ready")
time.sleep(60)
"""


def test_lines_commands_and_the_end_of_input() -> None:
    child = Child([sys.executable, "-c", ECHO], commands=True, stamp=True)
    try:
        hello = child.expect("ready", timeout=30)
        assert isinstance(hello["seen"], float)  # stamped with our monotonic time
        child.send({"id": 1, "x": [1, 2]})
        reply = child.next_line(30)
        assert reply.pop("seen") >= hello["seen"]
        assert reply == {"id": 1, "x": [1, 2], "echo": True}
        child.end_input(timeout=30)
        assert not child.running() and child.proc.returncode == 0
        assert [e["event"] for e in child.lines_until(5)] == ["bye"]
    finally:
        child.kill()
    assert child.proc.stdout is not None and child.proc.stdout.closed


def test_an_unexpected_first_line_or_none_is_an_error() -> None:
    child = Child([sys.executable, "-c", ECHO], commands=True)
    try:
        with pytest.raises(RuntimeError, match="expected 'listening'"):
            child.expect("listening", timeout=30)
    finally:
        child.kill()
    silent = Child([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(RuntimeError, match="no 'ready' line"):
            silent.expect("ready", timeout=0.2)
        with pytest.raises(queue.Empty):
            silent.next_line(0.05)
    finally:
        silent.kill()
    assert silent.proc.returncode == -signal.SIGKILL


def test_stop_escalates_to_sigkill_by_pid_and_reaps() -> None:
    child = Child([sys.executable, "-c", STUBBORN])
    child.expect("ready", timeout=30)
    with pytest.raises(subprocess.TimeoutExpired):
        child.stop(signal.SIGTERM, timeout=0.5)
    assert not child.running() and child.proc.returncode == -signal.SIGKILL
    assert child.stop() == -signal.SIGKILL  # stopping a stopped child only reports its status


def test_a_child_writing_to_a_log_file(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    code = "import time; print('to the log', flush=True); time.sleep(60)"
    with open(log, "wb") as out:
        child = Child([sys.executable, "-c", code], stdout=out)
        try:
            deadline = time.monotonic() + 30
            while "to the log" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert child.stop(signal.SIGTERM, timeout=30) == -signal.SIGTERM
        finally:
            child.kill()
    assert "to the log" in log.read_text()
    assert child.lines.empty()  # output that goes to a file is not read here
