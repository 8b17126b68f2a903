"""Harness of the CLI tests: `corrosion agent` as a real process (config written by the test,
JSON logs in a file, stopped by its own pid), the `corrosion` command run as a subprocess, and
an in-process agent (in a thread of its own) for `CliRunner` tests."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import trio

from corrosion_py.agent import AgentConfig
from corrosion_py.runner import NodeConfig, open_node
from corrosion_py.swim import LOCAL
from corrosion_py.testing.child import Child

HANG = 60.0  # seconds: only catches hangs
SCHEMA = "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT);\n"
ROOT = Path(__file__).resolve().parents[2]
PLAIN_START = re.compile(
    r"agent started: actor (?P<actor_id>\w+), gossip (?P<gossip_addr>\S+), "
    r"api (?P<api_addr>\S+), admin (?P<admin_path>\S+)\n"
)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without our variables (the test's settings are in its files)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORROSION_")}
    return {**env, **extra}


@contextlib.contextmanager
def short_dir() -> Iterator[Path]:
    """A directory with a short path (a Unix socket path holds at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="cx", dir="/tmp"))
    try:
        yield path
    finally:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


def write_config(
    directory: Path,
    *,
    bootstrap: Sequence[str] = (),
    log_format: str = "json",
    token: str | None = None,
    name: str = "corrosion.toml",
) -> Path:
    """A node's config in ``directory`` (schema.sql beside it, written when missing); gossip and
    API on port 0."""
    schema = directory / "schema.sql"
    if not schema.exists():
        schema.write_text(SCHEMA)
    boot = ", ".join(json.dumps(b) for b in bootstrap)
    authz = f'\n[api.authz]\nbearer-token = "{token}"\n' if token else ""
    path = directory / name
    path.write_text(
        f'[db]\npath = "node.db"\nschema_paths = ["schema.sql"]\n\n'
        f'[gossip]\naddr = "127.0.0.1:0"\nbootstrap = [{boot}]\npreset = "local"\n\n'
        f'[api]\naddr = "127.0.0.1:0"\n{authz}\n'
        f'[admin]\npath = "admin.sock"\n\n'
        f'[log]\nformat = "{log_format}"\nlevel = "info"\n\n'
        "[perf]\nmin_sync_backoff = 0.3\nmax_sync_backoff = 1.0\n"
    )
    return path


def corrosion(
    *args: str, config: Path | None = None, stdin: str | None = None, timeout: float = HANG
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m corrosion_py [-c config] args...`` to its end."""
    cmd = [sys.executable, "-m", "corrosion_py"]
    if config is not None:
        cmd += ["-c", str(config)]
    return subprocess.run(
        [*cmd, *args], input=stdin, capture_output=True, text=True, timeout=timeout,
        env=clean_env(), cwd=ROOT,
    )  # fmt: skip


class AgentRun:
    """`corrosion -c CONFIG agent` as a process; ``started`` holds its start line's fields
    (JSON logs) once it runs."""

    def __init__(self, config: Path, *, wait: bool = True) -> None:
        self.config = config
        self.log_path = config.with_suffix(".log")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed by stop/kill)
        self.child = Child(
            [sys.executable, "-m", "corrosion_py", "-c", str(config), "agent"],
            stdout=self._log, env=clean_env(), cwd=ROOT,
        )  # fmt: skip
        self.started: dict[str, Any] = {}
        if wait:
            try:
                self.wait_started()
            except BaseException:
                self.kill()  # an agent that never started is not left behind
                raise

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def api(self) -> str:
        return str(self.started["api_addr"])

    @property
    def gossip(self) -> str:
        return str(self.started["gossip_addr"])

    @property
    def admin(self) -> str:
        return str(self.started["admin_path"])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events

    def wait_started(self, timeout: float = HANG) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.log_events():
                if event.get("event") == "started":
                    self.started = event
                    return event
            found = PLAIN_START.search(self.log_text())  # plaintext logs
            if found:
                self.started = {**found.groupdict(), "pid": self.child.pid}
                return self.started
            if not self.child.running():
                code = self.child.proc.returncode
                raise RuntimeError(f"agent exited with {code}: {self.log_text()}")
            time.sleep(0.05)
        raise TimeoutError(f"agent did not start: {self.log_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit status (SIGKILL after ``timeout``)."""
        try:
            return self.child.stop(sig, timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        self.child.kill()
        self._log.close()


@contextlib.contextmanager
def agents(*configs: Path) -> Iterator[list[AgentRun]]:
    """Agent processes for ``configs``, each started after the previous one; every one is
    killed by its pid on exit."""
    runs: list[AgentRun] = []
    try:
        for config in configs:
            runs.append(AgentRun(config))
        yield runs
    finally:
        for run in runs:
            run.kill()


def poll(cond: Any, timeout: float = HANG, interval: float = 0.1) -> Any:
    """Call ``cond`` until it returns something true (that value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met after {timeout} s")
        time.sleep(interval)


Ready = tuple[str, trio.lowlevel.TrioToken, trio.CancelScope]


class ThreadAgent:
    """An agent with its HTTP API and admin socket, run by trio in a thread of its own (so that
    `CliRunner` runs in the main thread)."""

    def __init__(self, directory: Path, token: str | None = None) -> None:
        schema = directory / "schema.sql"
        if not schema.exists():
            schema.write_text(SCHEMA)
        self.directory = directory
        self.db_path = directory / "node.db"
        self.admin_path = directory / "admin.sock"
        agent = AgentConfig(
            db_path=self.db_path, schema_paths=[schema], swim=LOCAL, shutdown_timeout=3.0
        )
        self.config = NodeConfig(
            agent, api_addr=("127.0.0.1", 0), api_token=token, admin_path=self.admin_path
        )
        self.api = ""
        self._ready: queue.Queue[Ready | BaseException] = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:
            self._ready.put(exc)

    async def _main(self) -> None:
        with trio.CancelScope() as scope:
            async with open_node(self.config) as node:
                assert node.api_addr is not None
                host, port = node.api_addr
                self._ready.put((f"{host}:{port}", trio.lowlevel.current_trio_token(), scope))
                await trio.sleep_forever()

    def __enter__(self) -> ThreadAgent:
        self._thread.start()
        ready = self._ready.get(timeout=HANG)
        if isinstance(ready, BaseException):
            raise ready
        self.api, self._token, self._scope = ready
        return self

    def __exit__(self, *exc: object) -> None:
        trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self._thread.join(timeout=HANG)
        assert not self._thread.is_alive()
        if not self._ready.empty():
            raise self._ready.get()  # type: ignore[misc]
