"""Serving the API inside the agent's nursery, on our HTTP/1.1 server
(`corrosion_py.api.http_server`).

`serve_api` binds (port 0 picks a free one; IPv4 or IPv6; a refused bind is a plain `OSError`,
raised before anything starts), reports the real address through ``task_status.started``, and
serves until cancelled. The cancellation is turned into the server's graceful stop: the server
runs in a shielded scope and a sibling task, cancelled with the caller, calls `HttpServer.stop`
(streams end at once, idle connections close, requests in flight get ``graceful_timeout``
seconds); once the server has stopped, the cancellation goes on.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

import trio

from corrosion_py.addr import Addr
from corrosion_py.api.app import create_app
from corrosion_py.api.http_server import HttpServer
from corrosion_py.api.limits import ApiConfig

if TYPE_CHECKING:
    from corrosion_py.agent import Agent

log = logging.getLogger("corrosion_py.api.server")

BACKLOG = 1024


def _bind(addr: Addr) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve_api(
    agent: Agent,
    addr: tuple[str, int],
    token: str | None,
    *,
    task_status: trio.TaskStatus[Addr] = trio.TASK_STATUS_IGNORED,
    config: ApiConfig | None = None,
) -> None:
    """Serve ``agent``'s HTTP API on ``addr`` until cancelled; ``task_status.started`` gets the
    bound (host, port)."""
    config = config or ApiConfig()
    app = create_app(agent, token, config)
    server = HttpServer(app, config, closing=app.closing)

    async def stop_when_cancelled() -> None:
        try:
            await trio.sleep_forever()
        finally:
            server.stop()

    sock = await _listen(addr, BACKLOG)
    try:
        host, port = sock.getsockname()[:2]
        async with trio.open_nursery() as outer:
            outer.start_soon(stop_when_cancelled)
            with trio.CancelScope(shield=True):
                async with trio.open_nursery() as inner:
                    await inner.start(server.serve, sock)
                    log.info("HTTP API listening on %s", _bind((host, port)))
                    task_status.started((host, port))
            outer.cancel_scope.cancel()
    finally:
        sock.close()


async def _listen(addr: Addr, backlog: int) -> socket.socket:
    """A listening TCP socket on ``addr``: a refused bind is a plain `OSError` raised before
    anything starts."""
    host, port = addr
    family, type_, proto, _, sockaddr = (
        await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    )[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock
