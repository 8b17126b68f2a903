"""Harness of the client tests: a real agent with its real HTTP API on 127.0.0.1 (port 0), and a
TCP proxy in front of it that a test can cut or take down, to make subscriptions lose their
connection."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import trio

from corrosion_py.addr import Addr
from corrosion_py.agent import Agent, AgentConfig
from corrosion_py.runner import NodeConfig, open_node
from corrosion_py.swim import LOCAL

SCHEMA = """\
CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v ANY, note TEXT);
CREATE TABLE pairs (a TEXT NOT NULL, b INTEGER NOT NULL, v TEXT, PRIMARY KEY (a, b));
"""
HANG = 30.0  # seconds: only catches hangs

T = TypeVar("T")

_SERVED: dict[Agent, Addr] = {}
"""Where each agent of `agent_api` serves its HTTP API, while it runs."""


@contextlib.asynccontextmanager
async def agent_api(
    tmp: Path, name: str = "a", api_token: str | None = None, **kw: Any
) -> AsyncIterator[Agent]:
    """An agent serving its HTTP API (run by the runner); ``api(agent)`` is where."""
    schema = tmp / "schema.sql"
    if not schema.exists():
        schema.write_text(SCHEMA)
    config = AgentConfig(
        db_path=tmp / f"{name}.db",
        schema_paths=[schema],
        swim=LOCAL,
        shutdown_timeout=3.0,
    )
    served = NodeConfig(attrs.evolve(config, **kw), api_addr=("127.0.0.1", 0), api_token=api_token)
    async with open_node(served) as node:
        assert node.api_addr is not None
        _SERVED[node.agent] = node.api_addr
        try:
            yield node.agent
        finally:
            del _SERVED[node.agent]


def api(agent: Agent) -> Addr:
    return _SERVED[agent]


class Proxy:
    """A TCP proxy to ``upstream``: ``cut()`` ends every connection going through it;
    ``up = False`` makes it close new connections at once (the server looks unreachable)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.addr: tuple[str, int] = ("127.0.0.1", 0)
        self.up = True
        self.connections = 0
        self._scopes: set[trio.CancelScope] = set()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.addr = listeners[0].socket.getsockname()[:2]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    def cut(self) -> None:
        for scope in list(self._scopes):
            scope.cancel()

    async def _handle(self, downstream: trio.SocketStream) -> None:
        async with downstream:
            if not self.up:
                return
            self.connections += 1
            with trio.CancelScope() as scope:
                self._scopes.add(scope)
                try:
                    upstream = await trio.open_tcp_stream(*self.upstream)
                    async with upstream, trio.open_nursery() as nursery:
                        nursery.start_soon(_pump, downstream, upstream, nursery.cancel_scope)
                        nursery.start_soon(_pump, upstream, downstream, nursery.cancel_scope)
                finally:
                    self._scopes.discard(scope)


async def _pump(src: trio.SocketStream, dst: trio.SocketStream, scope: trio.CancelScope) -> None:
    try:
        async for data in src:
            await dst.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()


@contextlib.asynccontextmanager
async def proxied(agent: Agent) -> AsyncIterator[Proxy]:
    proxy = Proxy(api(agent))
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        yield proxy
        nursery.cancel_scope.cancel()


async def wait_for(cond: Callable[[], object], seconds: float = HANG) -> None:
    """Poll ``cond`` (state of the agent, or of a reader task) until true."""
    with trio.fail_after(seconds):
        while not cond():  # noqa: ASYNC110 (polling state that has no event to wait on)
            await trio.sleep(0.02)


class SyncReader:
    """Runs a blocking loop in a worker thread, handing what it produces to the trio side."""

    def __init__(self) -> None:
        self.items: queue.Queue[Any] = queue.Queue()
        self.stop = threading.Event()

    async def get(self, seconds: float = HANG) -> Any:
        with trio.fail_after(seconds):
            while True:
                try:
                    return self.items.get_nowait()
                except queue.Empty:
                    await trio.sleep(0.01)


async def in_thread(fn: Callable[[], T]) -> T:
    return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)
