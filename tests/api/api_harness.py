"""A real agent serving its HTTP API on 127.0.0.1 (port 0) and an httpx client talking to it
over the socket (httpx's ASGI transport buffers a whole response, so a stream never yields)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from corrosion_py.agent import Agent, AgentConfig
from corrosion_py.api.limits import ApiConfig
from corrosion_py.api.server import serve_api
from corrosion_py.swim import LOCAL

SCHEMA = (
    "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT, b BLOB, n REAL);\n"
    "CREATE INDEX kv_v ON kv (v);\n"
    "CREATE TABLE other (id TEXT PRIMARY KEY NOT NULL, x INTEGER);\n"
)
HANG = 30.0  # seconds: only catches hangs


def node_config(tmp: Path, name: str = "n", **kw: Any) -> AgentConfig:
    schema = tmp / "schema.sql"
    if not schema.exists():
        schema.write_text(SCHEMA)
    base = AgentConfig(
        db_path=tmp / f"{name}.db",
        schema_paths=[schema],
        cluster_id=7,
        swim=LOCAL,
        sync_interval=(0.5, 1.0),
        save_members_interval=1.0,
        shutdown_timeout=3.0,
        api_addr=("127.0.0.1", 0),
    )
    return attrs.evolve(base, **kw)


def client_for(addr: tuple[str, int], token: str | None = None) -> httpx.AsyncClient:
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    return httpx.AsyncClient(
        base_url=f"http://{addr[0]}:{addr[1]}",
        headers=headers,
        timeout=httpx.Timeout(HANG),
    )


@contextlib.asynccontextmanager
async def api_node(
    tmp: Path, *, token: str | None = None, name: str = "n", **kw: Any
) -> AsyncIterator[tuple[Agent, httpx.AsyncClient]]:
    """An agent with its API (served by the agent itself) and a client for it."""
    async with Agent.open(node_config(tmp, name, api_token=token, **kw)) as agent:
        assert agent.api_addr is not None
        async with client_for(agent.api_addr, token) as client:
            yield agent, client


@contextlib.asynccontextmanager
async def api_with_config(
    tmp: Path, config: ApiConfig, *, token: str | None = None
) -> AsyncIterator[tuple[Agent, httpx.AsyncClient]]:
    """An agent without its own API, served here with a custom `ApiConfig` (small limits)."""
    await trio.Path(tmp).mkdir(parents=True, exist_ok=True)
    async with Agent.open(node_config(tmp, api_addr=None)) as agent, trio.open_nursery() as n:
        addr = await n.start(lambda task_status: serve_api(
            agent, ("127.0.0.1", 0), token, task_status=task_status, config=config
        ))  # fmt: skip
        async with client_for(addr, token) as client:
            yield agent, client
        n.cancel_scope.cancel()


class Lines:
    """NDJSON objects read one at a time from a streamed response. `close` disconnects and
    then drains httpx's nested line generators (each ends with a read error), so none is left
    for the garbage collector (trio warns about those, and warnings are errors here)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self) -> dict[str, Any]:
        while True:
            line = await anext(self._lines)
            if line:
                obj = json.loads(line)
                assert isinstance(obj, dict)
                return obj

    async def rest(self) -> list[dict[str, Any]]:
        """Every remaining object, up to the end of the stream."""
        return [json.loads(line) async for line in self._lines if line]

    async def close(self) -> None:
        await self.response.aclose()
        with contextlib.suppress(httpx.HTTPError, httpx.StreamError):
            async for _ in self._lines:
                pass


@contextlib.asynccontextmanager
async def stream(
    client: httpx.AsyncClient, method: str, url: str, **kw: Any
) -> AsyncIterator[Lines]:
    """A streamed request; on exit the client disconnects (if the stream is still open)."""
    async with client.stream(method, url, **kw) as response:
        lines = Lines(response)
        try:
            yield lines
        finally:
            await lines.close()


def ndjson(text: str) -> list[dict[str, Any]]:
    """Every line of an NDJSON body (each must be a JSON object)."""
    lines = [json.loads(line) for line in text.splitlines() if line]
    assert all(isinstance(obj, dict) for obj in lines)
    return lines


async def rows(agent: Agent, sql: str = "SELECT k, v, b, n FROM kv ORDER BY k") -> list[Any]:
    return await agent.store.query(sql)
