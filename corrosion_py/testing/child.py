"""Both sides of a child process that speaks JSON lines: `emit` (the child writes one JSON object
per line on stdout) and `Child` (the parent starts it, reads those lines on a thread of its own,
writes commands on its stdin, and stops it by its own PID).

Whoever starts a child stops it: `Child.kill` and `Child.stop` signal the PID they started and
reap it (its pipes closed, the reading thread joined), so no process and no thread outlives the
test or benchmark that made it.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import IO, Any


def emit(**fields: Any) -> None:
    """The child's side: one JSON line on stdout, flushed at once."""
    print(json.dumps(fields), flush=True)


class Child:
    """One child process. With ``stdout=None`` its JSON lines are read into a queue (each
    stamped with our monotonic time as ``"seen"`` when ``stamp``); otherwise its output goes
    to the file given (a log) and is not read here. With ``commands`` its stdin is a pipe
    that `send` writes to."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        commands: bool = False,
        stdout: IO[bytes] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stamp: bool = False,
    ) -> None:
        self._stamp = stamp
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        """The JSON lines read so far and not yet taken."""
        self.proc = subprocess.Popen(
            list(args),
            stdin=subprocess.PIPE if commands else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout is None else stdout,
            stderr=None if stdout is None else stdout,
            text=stdout is None,
            env=None if env is None else dict(env),
            cwd=cwd,
        )
        self._reader: threading.Thread | None = None
        if stdout is None:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            if self._stamp:
                event["seen"] = time.monotonic()
            self.lines.put(event)

    def next_line(self, timeout: float) -> dict[str, Any]:
        """The next JSON line (`queue.Empty` when none comes within ``timeout`` seconds)."""
        return self.lines.get(timeout=max(0.0, timeout))

    def lines_until(self, timeout: float) -> Iterator[dict[str, Any]]:
        """JSON lines as they come, until ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                yield self.lines.get(timeout=left)
            except queue.Empty:
                return

    def expect(self, event: str, timeout: float = 60.0) -> dict[str, Any]:
        """The first line, which must be ``{"event": event, ...}`` (the child is ready)."""
        try:
            hello = self.next_line(timeout)
        except queue.Empty:
            raise RuntimeError(f"no {event!r} line within {timeout:g} s") from None
        if hello.get("event") != event:
            raise RuntimeError(f"expected {event!r}, got {hello}")
        return hello

    def send(self, command: Mapping[str, Any]) -> None:
        """One command as a JSON line on the child's stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def end_input(self, timeout: float) -> None:
        """Close the child's stdin (the end of its commands) and wait up to ``timeout`` seconds
        for it to exit on its own."""
        if self.proc.stdin is not None and self.running():
            with suppress(OSError):
                self.proc.stdin.close()
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)

    def kill(self) -> None:
        """``kill -9`` by PID (no clean shutdown), then reap."""
        if self.running():
            os.kill(self.proc.pid, signal.SIGKILL)
        self._reap()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig`` and wait for the exit (SIGKILL after ``timeout`` seconds, then
        `subprocess.TimeoutExpired` is raised); reap; the exit status."""
        if self.running():
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        self._reap()
        return self.proc.returncode

    def _reap(self) -> None:
        self.proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=10)  # the pipe reached EOF
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with suppress(BrokenPipeError):
                    pipe.close()

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used (Linux /proc)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
