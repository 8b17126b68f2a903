"""``dev-cluster N``: N local agents, one process each, joined through the first, with a key
made for the cluster, until Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

import click

from corrosion_py.cli.errors import CliError
from corrosion_py.cli.interrupt import interruptible
from corrosion_py.cli.keys import write_new_keyring
from corrosion_py.cli.output import toml_str


def _free_port(held: list[Any]) -> int:
    """A port free for TCP and UDP on 127.0.0.1 (its sockets stay open in ``held`` until the
    caller closes them, so two calls never return the same port)."""
    import socket

    for _ in range(100):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", 0))
        port = int(tcp.getsockname()[1])
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(("127.0.0.1", port))
        except OSError:
            tcp.close()
            udp.close()
            continue
        held += [tcp, udp]
        return port
    raise CliError("no free port found on 127.0.0.1")


def _node_toml(directory: Path, schema: Sequence[Path], gossip: int, api: int,
               bootstrap: int | None, keys: Path) -> str:  # fmt: skip
    boot = f"[{toml_str(f'127.0.0.1:{bootstrap}')}]" if bootstrap is not None else "[]"
    schemas = ", ".join(toml_str(p) for p in schema)
    return (
        f"[db]\npath = {toml_str(directory / 'corrosion.db')}\nschema_paths = [{schemas}]\n\n"
        f'[gossip]\naddr = "127.0.0.1:{gossip}"\nbootstrap = {boot}\npreset = "local"\n'
        f"keyring_file = {toml_str(keys)}\n\n"
        f'[api]\naddr = "127.0.0.1:{api}"\n\n'
        f"[admin]\npath = {toml_str(directory / 'admin.sock')}\n\n"
        "[perf]\nmin_sync_backoff = 0.5\nmax_sync_backoff = 2.0\n"
    )


def _stop(procs: Sequence[Any], timeout: float = 15.0) -> None:
    """SIGTERM each process by its pid, then SIGKILL those still running after ``timeout``."""
    for proc in procs:
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:  # subprocess.TimeoutExpired
            with suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


@click.command("dev-cluster")
@click.argument("n", type=click.IntRange(min=1, max=64))
@click.option(
    "--schema",
    "schema",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Schema file or directory (repeat for several).",
)
@click.option("--base-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the nodes' files here (default: a temporary directory, removed "
                   "at the end).")  # fmt: skip
def dev_cluster(n: int, schema: tuple[Path, ...], base_dir: Path | None) -> None:
    """Run N local agents (one process each) joined through the first, until Ctrl-C.

    Each node gets a directory with its config, database, admin socket and log
    (``agent.log``); ports are picked free on 127.0.0.1. Gossip is encrypted with a key
    made for the cluster (``gossip.keys`` in the base directory)."""
    with interruptible():
        _dev_cluster(n, schema, base_dir)


def _dev_cluster(n: int, schema: Sequence[Path], base_dir: Path | None) -> None:
    import shutil
    import subprocess
    import tempfile

    from corrosion_py.admin import MAX_UNIX_PATH, AgentNotRunning, wait_for_agent

    base = (base_dir or Path(tempfile.mkdtemp(prefix="corrosion-dev-"))).absolute()
    schemas = [p.absolute() for p in schema]
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORROSION_")}
    try:
        held: list[Any] = []
        ports = [(_free_port(held), _free_port(held)) for _ in range(n)]
        for sock in held:
            sock.close()
        keyring = base / "gossip.keys"
        if not keyring.exists():  # a kept --base-dir keeps its key
            base.mkdir(parents=True, exist_ok=True)
            write_new_keyring(keyring)
        nodes = []
        for i, (gossip, api) in enumerate(ports, 1):
            directory = base / f"n{i}"
            directory.mkdir(parents=True, exist_ok=True)
            if len(os.fsencode(directory / "admin.sock")) > MAX_UNIX_PATH:
                raise CliError(f"{base} is too deep for Unix sockets; pick a shorter --base-dir")
            config = directory / "corrosion.toml"
            config.write_text(
                _node_toml(directory, schemas, gossip, api, ports[0][0] if i > 1 else None, keyring)
            )
            log_file = open(directory / "agent.log", "ab")  # noqa: SIM115 (closed in finally)
            logs.append(log_file)
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "corrosion_py", "-c", str(config), "agent"],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    env=env,
                    start_new_session=True,  # Ctrl-C reaches us only; we stop them in order
                )
            )
            nodes.append((f"n{i}", directory, gossip, api))
        for (name, directory, _, _), proc in zip(nodes, procs, strict=True):
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise CliError(
                        f"{name} exited with status {proc.returncode}: "
                        f"{_tail(directory / 'agent.log')}"
                    )
                try:
                    wait_for_agent(directory / "admin.sock", timeout=0.5)
                    break
                except AgentNotRunning:
                    if time.monotonic() > deadline:
                        raise CliError(f"{name} did not start within 60 s") from None
        for (name, directory, gossip, api), proc in zip(nodes, procs, strict=True):
            click.echo(
                f"{name}  pid {proc.pid}  api 127.0.0.1:{api}  gossip 127.0.0.1:{gossip}  "
                f"admin {directory / 'admin.sock'}"
            )
        first = nodes[0][1] / "corrosion.toml"
        click.echo(f"{n} node{'s' * (n != 1)} running in {base} (configs and logs: n*/).")
        click.echo(f'Try: corrosion -c {first} query "SELECT 1"')
        click.echo("Press Ctrl-C to stop.")
        warned: set[int] = set()
        try:
            while True:
                time.sleep(0.5)
                for (name, _, _, _), proc in zip(nodes, procs, strict=True):
                    if proc.poll() is not None and proc.pid not in warned:
                        warned.add(proc.pid)
                        click.echo(f"{name} exited with status {proc.returncode}", err=True)
        except KeyboardInterrupt:
            click.echo("stopping...")
    finally:
        with suppress(KeyboardInterrupt):
            _stop(procs)
        for opened in logs:
            opened.close()
        if base_dir is None:
            shutil.rmtree(base, ignore_errors=True)
    click.echo("all nodes stopped.")
