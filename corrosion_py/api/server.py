"""Serving the API with hypercorn's trio worker inside the agent's nursery.

`serve_api` binds (port 0 picks a free one; a refused bind is a plain `OSError`, raised before
anything starts), reports the real address through ``task_status.started``, and serves until
cancelled. Cancelling hypercorn's ``serve`` directly raises lifespan errors
(``ClosedResourceError``), so the server runs in a shielded scope and a sibling task turns the
cancellation into hypercorn's graceful shutdown: streams are ended at once
(``app.state.closing``), idle connections closed, requests in flight get ``graceful_timeout``
seconds, then the lifespan completes and the cancellation goes on. ``keep_alive_max_requests``
is unbounded (hypercorn's trio worker, closing a kept-alive connection at its default limit of
1,000 requests, may log a spurious ``BusyResourceError``), the access log is off, and trio's
socket streams set TCP_NODELAY.
"""

from __future__ import annotations

import logging
import socket
from functools import partial
from typing import TYPE_CHECKING, cast

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.typing import ASGIFramework
from hypercorn.utils import wrap_app

from corrosion_py.addr import Addr
from corrosion_py.api.app import create_app
from corrosion_py.api.limits import ApiConfig

if TYPE_CHECKING:
    from corrosion_py.agent import Agent

log = logging.getLogger("corrosion_py.api.server")


def _bind(addr: Addr) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def hypercorn_config(addr: Addr, config: ApiConfig) -> HypercornConfig:
    cfg = HypercornConfig()
    cfg.bind = [_bind(addr)]
    cfg.accesslog = None
    cfg.errorlog = logging.getLogger("corrosion_py.api.hypercorn")
    cfg.keep_alive_max_requests = 10**9
    cfg.graceful_timeout = config.graceful_timeout
    return cfg


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
    closing: trio.Event = app.state.closing
    stop = trio.Event()

    async def stop_when_cancelled() -> None:
        try:
            await trio.sleep_forever()
        finally:
            closing.set()
            stop.set()

    hconfig = hypercorn_config(addr, config)
    sock = await _listen(addr, hconfig.backlog)
    sockets = Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[])
    try:
        host, port = sock.getsockname()[:2]
        async with trio.open_nursery() as outer:
            outer.start_soon(stop_when_cancelled)
            with trio.CancelScope(shield=True):
                async with trio.open_nursery() as inner:
                    serve = partial(
                        worker_serve,
                        wrap_app(cast(ASGIFramework, app), hconfig.wsgi_max_body_size, "asgi"),
                        hconfig,
                        sockets=sockets,
                        shutdown_trigger=stop.wait,
                    )
                    await inner.start(serve)
                    log.info("HTTP API listening on %s", _bind((host, port)))
                    task_status.started((host, port))
            outer.cancel_scope.cancel()
    finally:
        sock.close()


async def _listen(addr: Addr, backlog: int) -> socket.socket:
    """A listening TCP socket on ``addr``. Made here rather than by hypercorn's ``serve()``: a
    refused bind is then a plain `OSError` raised before anything starts (not one inside nested
    nursery groups), and the socket is closed (hypercorn leaks it)."""
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
