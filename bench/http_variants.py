"""HTTP servers that answer a tiny ``POST /v1/transactions`` (a JSON body in, a small JSON body
out), each run as its own process by `api_bench` so that its CPU time can be read from
``/proc/PID/stat``: ``python bench/http_variants.py NAME`` prints ``HOST:PORT`` and serves until
terminated.

The variants separate what a request costs: the server (hypercorn, a minimal h11 loop on trio
without ASGI, timeouts or limits, or the API's own server), the framework around the handler (a
bare ASGI callable, our API application), and the route itself (our application runs its real
``/v1/transactions`` route on an agent whose ``transaction`` does no SQLite).
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

import h11
import trio

from corrosion_py.api.app import create_app
from corrosion_py.store.local import TxResult

Asgi = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
ANSWER = {"results": [{"rows_affected": 1, "time": 0.0}], "time": 0.0, "version": 1}


class StubAgent:
    """The one facade method `/v1/transactions` calls, without the store: what is left of a
    request is the HTTP layer and the route's own parsing and shaping."""

    actor_id = bytes(range(16))

    async def transaction(self, statements: Any, *, timeout: float | None = None) -> TxResult:  # noqa: ASYNC109
        return TxResult([1] * len(statements), 1, None, 0.0, [0.0] * len(statements))


def our_app() -> Asgi:
    return cast(Asgi, create_app(cast(Any, StubAgent()), None))


def with_lifespan(app: Asgi) -> Asgi:
    """``app`` answering hypercorn's lifespan scope (our server has none)."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    return wrapped


async def bare_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The least an ASGI application can do for this request: read the body, parse it, answer."""
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    answer = json.dumps({**ANSWER, "n": len(json.loads(body))}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


# -- hypercorn -------------------------------------------------------------------------------------


async def on_hypercorn(app: Asgi, task_status: trio.TaskStatus[str]) -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.keep_alive_max_requests = 10**9
    async with trio.open_nursery() as nursery:
        [url] = await nursery.start(
            lambda task_status: serve(
                cast(Any, with_lifespan(app)), config, task_status=task_status
            )
        )
        task_status.started(url.removeprefix("http://"))


# -- a minimal h11 server ------------------------------------------------------------------------

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
Handler = Callable[[h11.Request, bytes], Awaitable[Answer]]


async def h11_bare(request: h11.Request, body: bytes) -> Answer:
    answer = json.dumps({**ANSWER, "n": len(json.loads(body))}).encode()
    return 200, [(b"content-type", b"application/json")], answer


def h11_asgi(app: Asgi) -> Handler:
    """One request through an ASGI app, the body given at once and the answer collected."""

    async def handle(request: h11.Request, body: bytes) -> Answer:
        target = request.target
        path, _, query = target.partition(b"?")
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": request.method.decode(), "scheme": "http", "path": path.decode(),
            "raw_path": path, "query_string": query, "root_path": "",
            "headers": list(request.headers), "client": None, "server": None,
        }  # fmt: skip
        sent = False
        status = 500
        headers: list[tuple[bytes, bytes]] = []
        parts: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await trio.sleep_forever()
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status, headers = message["status"], list(message.get("headers", []))
            else:
                parts.append(message.get("body", b""))

        await app(scope, receive, send)
        return status, [h for h in headers if h[0].lower() != b"content-length"], b"".join(parts)

    return handle


async def on_h11(handler: Handler, task_status: trio.TaskStatus[str]) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    host, port = listeners[0].socket.getsockname()[:2]

    async def connection(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        body: list[bytes] = []
        request: h11.Request | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                if not data:
                    return
            elif isinstance(event, h11.Request):
                request, body = event, []
            elif isinstance(event, h11.Data):
                body.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                status, headers, answer = await handler(request, b"".join(body))
                headers.append((b"content-length", b"%d" % len(answer)))
                out = conn.send(h11.Response(status_code=status, headers=headers))
                out += conn.send(h11.Data(data=answer)) + conn.send(h11.EndOfMessage())
                await stream.send_all(out)
                conn.start_next_cycle()
            else:
                return

    task_status.started(f"{host}:{port}")
    await trio.serve_listeners(connection, listeners)


# -- ours ----------------------------------------------------------------------------------------


async def on_ours(app: Asgi, task_status: trio.TaskStatus[str]) -> None:
    # imported here: a baseline checkout run for its hypercorn variant may have no such server
    from corrosion_py.api.http_server import HttpServer
    from corrosion_py.api.limits import ApiConfig

    sock = socket.create_server(("127.0.0.1", 0))
    server = HttpServer(app, ApiConfig())
    host, port = sock.getsockname()[:2]
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, sock)
        task_status.started(f"{host}:{port}")


VARIANTS: dict[str, Callable[[trio.TaskStatus[str]], Awaitable[None]]] = {
    "hypercorn+app": lambda task_status: on_hypercorn(our_app(), task_status),
    "hypercorn+bare": lambda task_status: on_hypercorn(bare_asgi, task_status),
    "h11+bare": lambda task_status: on_h11(h11_bare, task_status),
    "h11+app": lambda task_status: on_h11(h11_asgi(our_app()), task_status),
    "ours+bare": lambda task_status: on_ours(bare_asgi, task_status),
    "ours+app": lambda task_status: on_ours(our_app(), task_status),
}


async def main(name: str) -> None:
    async with trio.open_nursery() as nursery:
        addr = await nursery.start(VARIANTS[name])
        print(addr, flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
