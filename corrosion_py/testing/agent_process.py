"""Agents as OS processes (`python -m corrosion_py.testing.agent_node`), for multi-process tests and
benchmarks. Whoever starts them stops them: `agent_cluster` kills its own processes by PID on
exit, whatever happened inside.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any


class AgentProcess:
    """One agent process: start, send commands, read answers, kill, restart on the same DB."""

    def __init__(
        self,
        db: Path,
        schema: Path,
        *,
        bootstrap: Sequence[str] = (),
        gossip: str = "127.0.0.1:0",
        preset: str = "local",
        loss: float = 0.0,
        sync_interval: tuple[float, float] = (0.5, 2.0),
        cluster_id: int = 0,
        api: str | None = None,
        keyring_file: Path | None = None,
    ) -> None:
        self.db = db
        self.args = [
            sys.executable, "-m", "corrosion_py.testing.agent_node", "--db", str(db),
            "--schema", str(schema), "--preset", preset, "--loss", str(loss),
            "--cluster-id", str(cluster_id),
            "--sync-interval", str(sync_interval[0]), str(sync_interval[1]),
        ]  # fmt: skip
        if api is not None:
            self.args += ["--api", api]
        if keyring_file is not None:
            self.args += ["--keyring-file", str(keyring_file)]
        self.api: str | None = None
        """The HTTP API's bound HOST:PORT once started (when ``api`` was given)."""
        self.bootstrap = list(bootstrap)
        self.gossip = gossip
        self.proc: subprocess.Popen[str] | None = None
        self.actor = ""
        self.start()

    def start(self) -> None:
        """Start (or restart, on the same database and gossip address)."""
        args = [*self.args, "--gossip", self.gossip]
        if self.bootstrap:
            args += ["--bootstrap", *self.bootstrap]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        self._next_id = 0
        hello = self._lines.get(timeout=60)
        if hello.get("event") != "ready":
            raise RuntimeError(f"agent did not start: {hello}")
        self.gossip, self.actor = str(hello["gossip"]), str(hello["actor"])
        self.api = hello.get("api")

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._lines.put(json.loads(line))

    def request(self, timeout: float = 30.0, **command: Any) -> dict[str, Any]:
        """Send one command and wait for its answer."""
        assert self.proc is not None and self.proc.stdin is not None
        self._next_id += 1
        self.proc.stdin.write(json.dumps({"id": self._next_id, **command}) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            reply = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if reply.get("id") == self._next_id:
                return reply

    def write(self, statements: list[Any]) -> int | None:
        """Run a transaction; its version."""
        reply = self.request(tx=statements)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        version = reply["version"]
        return int(version) if version is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """``kill -9``: no leave, no flush."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self._reap()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM and wait for the clean shutdown; SIGKILL if it does not come."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        if self.proc is None:
            return
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with suppress(BrokenPipeError):
                    pipe.close()
        self.proc = None

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Read the agent's database directly (a read-only connection of our own)."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()


@contextmanager
def agent_cluster(
    n: int, directory: Path, schema_sql: str, **options: Any
) -> Iterator[list[AgentProcess]]:
    """n agent processes on 127.0.0.1, each with its own database in ``directory``, all joining
    through the first. Every process is killed on exit."""
    schema = directory / "schema.sql"
    schema.write_text(schema_sql)
    agents: list[AgentProcess] = []
    try:
        agents.append(AgentProcess(directory / "n0.db", schema, **options))
        for i in range(1, n):
            agents.append(
                AgentProcess(
                    directory / f"n{i}.db", schema, bootstrap=[agents[0].gossip], **options
                )
            )
        yield agents
    finally:
        for agent in agents:
            agent.kill()


def converged(agents: Sequence[AgentProcess], sql: str) -> bool:
    """Whether every running agent has the same rows for ``sql`` and no bookkeeping gaps."""
    live = [a for a in agents if a.running()]
    tables = [a.rows(sql) for a in live]
    if any(t != tables[0] for t in tables):
        return False
    return all(
        (s := a.request(state=True))["gaps"] == 0 and s["partials"] == 0 and s["queue"] == 0
        for a in live
    )


def wait_converged(agents: Sequence[AgentProcess], sql: str, timeout: float) -> float:
    """Seconds until ``converged``; raises TimeoutError with what differs."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if converged(agents, sql):
            return time.monotonic() - start
        time.sleep(0.2)
    counts = [len(a.rows(sql)) if a.running() else None for a in agents]
    raise TimeoutError(f"not converged after {timeout:g}s; rows per agent: {counts}")
