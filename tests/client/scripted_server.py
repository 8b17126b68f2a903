"""A real HTTP/1.1 server on 127.0.0.1 (port 0) that answers from a script, to show how the
clients react to answers a real agent would rarely give (any message text with a given error
code, a code-less Corrosion answer, malformed lines). Each request gets one answer and the
connection is closed after it; a streamed body has no length and ends with the connection, as
a stream the server ends does."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import attrs
import trio

MAX_HEAD = 64 * 1024


@attrs.frozen
class Seen:
    """A request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@attrs.frozen
class Reply:
    status: int = 200
    headers: dict[str, str] = attrs.field(factory=dict)
    body: bytes = b""
    stream: bool = False
    """No content-length: the body ends with the connection."""


def json_reply(status: int, obj: Any) -> Reply:
    return Reply(status, {"content-type": "application/json"}, json.dumps(obj).encode())


def lines_reply(lines: Sequence[object | str], headers: dict[str, str] | None = None) -> Reply:
    """An NDJSON stream of ``lines`` (objects as JSON, strings sent as they are)."""
    body = b"".join(
        (line if isinstance(line, str) else json.dumps(line)).encode() + b"\n" for line in lines
    )
    heads = {"content-type": "application/x-ndjson", **(headers or {})}
    return Reply(200, heads, body, stream=True)


class ScriptedServer:
    def __init__(self, script: Callable[[Seen], Reply]) -> None:
        self.script = script
        self.seen: list[Seen] = []
        self.addr: tuple[str, int] = ("127.0.0.1", 0)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.addr = listeners[0].socket.getsockname()[:2]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, conn: trio.SocketStream) -> None:
        async with conn:
            try:
                seen = await _read_request(conn)
            except (ValueError, trio.BrokenResourceError):
                return
            self.seen.append(seen)
            reply = self.script(seen)
            head = [f"HTTP/1.1 {reply.status} Scripted", "connection: close"]
            head += [f"{k}: {v}" for k, v in reply.headers.items()]
            if not reply.stream:
                head.append(f"content-length: {len(reply.body)}")
            data = ("\r\n".join(head) + "\r\n\r\n").encode() + reply.body
            with contextlib.suppress(trio.BrokenResourceError):
                await conn.send_all(data)


async def _read_request(conn: trio.SocketStream) -> Seen:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = await conn.receive_some()
        if not chunk or len(buffer) > MAX_HEAD:
            raise ValueError("no request")
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = await conn.receive_some()
        if not chunk:
            raise ValueError("truncated body")
        body += chunk
    url = urlsplit(target)
    return Seen(method, url.path, dict(parse_qsl(url.query)), headers, body)


@contextlib.asynccontextmanager
async def scripted(script: Callable[[Seen], Reply]) -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer(script)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        yield server
        nursery.cancel_scope.cancel()
