"""Agents as OS processes (`python -m corrosion_py.testing.agent_node`), for multi-process tests and
benchmarks. Whoever starts them stops them: `agent_cluster` kills its own processes by PID on
exit, whatever happened inside.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from corrosion_py.testing.child import Child


class AgentProcess:
    """One agent process: start, send commands, read answers, stop, restart on the same DB."""

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
        self.child: Child | None = None
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
        self.actor = ""
        self._next_id = 0
        self.start()

    @property
    def proc(self) -> subprocess.Popen[str] | None:
        """The running process (None once stopped)."""
        return self.child.proc if self.child is not None else None

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None else None

    def start(self) -> None:
        """Start (or restart, on the same database and gossip address)."""
        args = [*self.args, "--gossip", self.gossip]
        if self.bootstrap:
            args += ["--bootstrap", *self.bootstrap]
        self.child = Child(args, commands=True)
        try:
            hello = self.child.expect("ready")
        except BaseException:
            self.kill()  # a process that never got ready is not left behind
            raise
        self.gossip, self.actor = str(hello["gossip"]), str(hello["actor"])
        self.api = hello.get("api")

    def request(self, timeout: float = 30.0, **command: Any) -> dict[str, Any]:
        """Send one command and wait for its answer."""
        assert self.child is not None
        self._next_id += 1
        self.child.send({"id": self._next_id, **command})
        deadline = time.monotonic() + timeout
        while True:
            reply = self.child.next_line(deadline - time.monotonic())
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
        return self.child is not None and self.child.running()

    def kill(self) -> None:
        """``kill -9``: no leave, no flush."""
        if self.child is not None:
            self.child.kill()
            self.child = None

    def stop(self, timeout: float = 20.0, *, end_input: bool = False) -> int | None:
        """A clean stop: SIGTERM (or, with ``end_input``, first the end of its commands on
        stdin, and SIGTERM only if it still runs after ``timeout``), SIGKILL if it does not stop
        within ``timeout``. The exit status (None if it was not running)."""
        if self.child is None:
            return None
        child, self.child = self.child, None
        if end_input:
            child.end_input(timeout)
        with suppress(subprocess.TimeoutExpired):
            child.stop(signal.SIGTERM, timeout)
        return child.proc.returncode

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
