"""The runner (`corrosion_py.runner`): the agent, its HTTP API and its admin socket in one
nursery, on real sockets (UDP and TCP on 127.0.0.1, a Unix socket) and real SQLite files. A
start it must refuse is refused before the agent opens anything; a start error is raised as
itself; on exit every socket is closed and the database released."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import trio

from corrosion_py.admin import AdminSocketInUse, admin_request
from corrosion_py.agent import AgentConfig
from corrosion_py.runner import NodeConfig, open_node
from corrosion_py.store import lock
from corrosion_py.store.lock import DatabaseInUse
from corrosion_py.swim import LOCAL

SCHEMA = "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT);\n"
HANG = 30.0  # seconds: only catches hangs


@contextmanager
def short_dir() -> Iterator[Path]:
    """A directory whose paths fit a Unix socket's 107 bytes (pytest's tmp_path may not)."""
    with tempfile.TemporaryDirectory(prefix="corro-run-", dir="/tmp") as name:
        yield Path(name)


def node_config(directory: Path, name: str = "n", **kw: object) -> NodeConfig:
    schema = directory / "schema.sql"
    if not schema.exists():
        schema.write_text(SCHEMA)
    agent = AgentConfig(
        db_path=directory / f"{name}.db", schema_paths=[schema], swim=LOCAL, shutdown_timeout=3.0
    )
    return NodeConfig(agent, **kw)  # type: ignore[arg-type]


async def ping(path: Path) -> dict[str, object]:
    answers = await trio.to_thread.run_sync(admin_request, path, "Ping")
    assert isinstance(answers[0], dict)
    return answers[0]


async def test_a_node_serves_its_api_and_admin_socket_then_closes_them() -> None:
    with short_dir() as directory, trio.fail_after(HANG):
        admin = directory / "admin.sock"
        config = node_config(directory, api_addr=("127.0.0.1", 0), admin_path=admin)
        async with open_node(config) as node:
            assert node.api_addr is not None and node.admin_path == admin
            host, port = node.api_addr
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as http:
                r = await http.post("/v1/transactions", json=["INSERT INTO kv VALUES (1, 'a')"])
                assert r.status_code == 200 and r.json()["version"] == 1
            pong = await ping(admin)
            assert pong["api_addr"] == f"127.0.0.1:{port}"  # what the CLI connects to
            assert pong["actor_id"] == node.agent.actor_id.hex() and pong["pid"] == os.getpid()
            assert await node.agent.query("SELECT v FROM kv") == [("a",)]
        assert not admin.exists()
        assert lock.holder(config.agent.db_path) is None
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as http:
                await http.get("/v1/health")


async def test_a_node_without_api_or_admin_socket_serves_neither(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with open_node(node_config(tmp_path)) as node:
            assert node.api_addr is None and node.admin_path is None
            assert (await node.agent.transaction(["INSERT INTO kv VALUES (1, 'a')"])).version == 1


async def test_a_busy_database_or_admin_socket_is_refused_before_the_agent_starts() -> None:
    with short_dir() as directory, trio.fail_after(HANG):
        admin = directory / "admin.sock"
        first = node_config(directory, admin_path=admin)
        async with open_node(first) as node:
            again = node_config(directory, admin_path=directory / "other.sock")
            with pytest.raises(
                DatabaseInUse, match=rf"a node is running on .*n\.db \(pid {os.getpid()}\)"
            ):
                async with open_node(again):
                    pass
            other_db = node_config(directory, "other", admin_path=admin)
            with pytest.raises(AdminSocketInUse, match="already answers on the admin socket"):
                async with open_node(other_db):
                    pass
            # neither created a database, a lock or a socket
            assert sorted(p.name for p in directory.glob("other*")) == []
            assert (await ping(admin))["actor_id"] == node.agent.actor_id.hex()  # still the first


async def test_a_start_error_is_raised_as_itself_and_releases_the_database(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken, trio.fail_after(HANG):
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = node_config(tmp_path, api_addr=taken.getsockname())
        with pytest.raises(OSError) as info:
            async with open_node(config):
                pytest.fail("the node started on a port in use")
        assert not isinstance(info.value, BaseExceptionGroup)
        assert lock.holder(config.agent.db_path) is None
        async with open_node(node_config(tmp_path)) as node:  # the database opens again
            assert node.agent.actor_id
