"""The admin socket (corrosion_py.admin): Corrosion's framing and answers, bad input answered
with an Error and never fatal, and the socket file's life (stale file replaced, a live agent
not displaced, the file removed on exit)."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from cli_harness import SCHEMA, short_dir

from corrosion_py.admin import (
    MAX_COMMAND,
    AdminError,
    AdminSocketInUse,
    AgentNotRunning,
    admin_request,
    check_admin_path,
    encode_frame,
    serve_admin,
)
from corrosion_py.agent import Agent, AgentConfig
from corrosion_py.swim import LOCAL


@asynccontextmanager
async def admin_agent(directory: Path) -> AsyncIterator[tuple[Agent, Path]]:
    schema = directory / "schema.sql"
    schema.write_text(SCHEMA)
    config = AgentConfig(
        db_path=directory / "n.db", schema_paths=[schema], swim=LOCAL, shutdown_timeout=2.0
    )
    path = directory / "admin.sock"
    async with Agent.open(config) as agent, trio.open_nursery() as nursery:
        assert await nursery.start(serve_admin, agent, path) == path
        yield agent, path
        nursery.cancel_scope.cancel()


async def request(path: Path, command: Any) -> list[Any]:
    return await trio.to_thread.run_sync(lambda: admin_request(path, command))


async def raw(path: Path, data: bytes, *, close_write: bool = False) -> list[Any]:
    """Send raw bytes; the frames answered until the server closes or says Success/Error."""
    stream = await trio.open_unix_socket(str(path))
    answers: list[Any] = []
    async with stream:
        await stream.send_all(data)
        if close_write:
            await stream.send_eof()
        buffer = b""
        with trio.fail_after(10):
            while True:
                chunk = await stream.receive_some()
                if not chunk:
                    return answers
                buffer += chunk
                while len(buffer) >= 4:
                    (n,) = struct.unpack(">I", buffer[:4])
                    if len(buffer) < 4 + n:
                        break
                    answers.append(json.loads(buffer[4 : 4 + n]))
                    buffer = buffer[4 + n :]
                    if answers[-1] == "Success" or "Error" in answers[-1]:
                        return answers


async def test_commands_answer_in_corrosions_shapes() -> None:
    with short_dir() as directory:
        async with admin_agent(directory) as (agent, path):
            (pong,) = await request(path, "Ping")
            assert pong["actor_id"] == agent.actor_id.hex() and pong["api_addr"] is None
            (me,) = await request(path, {"Cluster": "Members"})
            assert me == {
                "actor_id": agent.actor_id.hex(), "addr": f"127.0.0.1:{agent.gossip_addr[1]}",
                "state": "alive", "incarnation": 0, "last_seen": None, "this_node": True,
            }  # fmt: skip
            await agent.transaction(["INSERT INTO kv VALUES (1, 'a')"])
            (state,) = await request(path, {"Sync": "Generate"})
            assert state == {
                "actor_id": agent.actor_id.hex(), "heads": {agent.actor_id.hex(): 1},
                "need": {}, "partial_need": {},
            }  # fmt: skip
            assert await request(path, {"Subs": "List"}) == []
            async with agent.subscribe("SELECT k FROM kv"):
                (sub,) = await request(path, {"Subs": "List"})
                assert sub["sql"] == "SELECT k FROM kv" and sub["listeners"] == 1
            (reloaded,) = await request(path, "Reload")
            assert reloaded["changed"] is False
            # the wire: {"Json": value} frames, then "Success"
            frames = await raw(path, encode_frame({"Cluster": "Members"}))
            assert frames == [{"Json": me}, "Success"]


async def test_bad_input_is_answered_with_an_error_and_the_agent_carries_on() -> None:
    with short_dir() as directory:
        async with admin_agent(directory) as (_, path):
            unknown = await raw(path, encode_frame({"Cluster": "Explode"}))
            assert unknown[0]["Error"]["msg"].startswith('unknown command {"Cluster": "Explode"}')
            body = b"{not json"
            bad_json = await raw(path, struct.pack(">I", len(body)) + body)
            assert "not JSON" in bad_json[0]["Error"]["msg"]
            huge = await raw(path, struct.pack(">I", MAX_COMMAND + 1))
            assert "exceeds the limit" in huge[0]["Error"]["msg"]
            short = await raw(path, struct.pack(">I", 100) + b"{}", close_write=True)
            assert "truncated frame" in short[0]["Error"]["msg"]
            assert await raw(path, b"\x00\x00", close_write=True) == [
                {"Error": {"msg": "truncated frame header"}}
            ]
            # two commands on one connection, then a client that hangs up mid-answer
            both = await raw(path, encode_frame("Ping") + encode_frame("Nope"))
            assert "Json" in both[0] and both[1] == "Success"
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(path))
                s.sendall(encode_frame({"Sync": "Generate"}))
            with pytest.raises(AdminError, match="unknown command"):
                await request(path, "Nope")
            assert (await request(path, "Ping"))[0]["pid"] > 0


async def test_socket_file_life() -> None:
    with short_dir() as directory:
        path = directory / "admin.sock"
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(path))
        stale.close()  # a socket file nobody listens on: what a killed agent leaves
        with pytest.raises(AgentNotRunning, match=f"no agent is running at {path}"):
            admin_request(path, "Ping")
        async with admin_agent(directory) as (agent, served):
            assert served == path
            with pytest.raises(AdminSocketInUse, match=r"an agent \(pid \d+\) already answers"):
                await trio.to_thread.run_sync(check_admin_path, path)
            with pytest.raises(AdminSocketInUse):
                await serve_admin(agent, path)
            assert (await request(path, "Ping"))[0]["actor_id"] == agent.actor_id.hex()
        assert not path.exists()  # removed on exit

        path.write_text("not a socket")
        with pytest.raises(AdminError, match="exists and is not a socket"):
            check_admin_path(path)
        with pytest.raises(AdminError, match="too long for a Unix socket"):
            check_admin_path(directory / ("x" * 120))
