"""The API's own HTTP/1.1 server (`corrosion_py.api.http_server`), on a real socket with small
ASGI applications and a raw client that sends exactly the bytes it is given: keep-alive and
pipelining, framing (chunked bodies, HEAD, 100-continue, unread bodies), and what an attacker
tries (malformed requests, huge heads, slowloris heads and bodies, a client that never reads, a
flood of connections, a flood of pipelined bytes), disconnects and the graceful stop."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from api_harness import node_config

from corrosion_py.api.asgi import Receive, Scope, Send
from corrosion_py.api.http_connection import MAX_PIPELINED, READ_SIZE
from corrosion_py.api.http_server import HttpServer
from corrosion_py.api.limits import ApiConfig
from corrosion_py.runner import NodeConfig, open_node

HANG = 30.0  # seconds: only catches hangs
FAST = {"keep_alive_timeout": 30.0, "read_timeout": 30.0, "graceful_timeout": 0.5}


class Echo:
    """Reads the whole body, answers it back as JSON with the request's method, path and
    query; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        answer = {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode(),
            "body": body.decode("latin-1"),
        }
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})


class Stream:
    """Answers with an endless chunked stream of ``chunk`` until the client leaves (or the
    server cuts it); records how it ended."""

    def __init__(self, chunk: bytes = b"line\n", pause: float = 0.01) -> None:
        self.chunk, self.pause = chunk, pause
        self.disconnected = trio.Event()
        self.ended = trio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await receive()  # the (empty) body
            await send({"type": "http.response.start", "status": 200, "headers": []})
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    self.disconnected.set()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                while True:
                    await send(
                        {"type": "http.response.body", "body": self.chunk, "more_body": True}
                    )
                    await trio.sleep(self.pause)
        finally:
            self.ended.set()


@attrs.frozen
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class Raw:
    """A client that sends bytes as given and parses responses itself."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def more(self) -> bool:
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            data = b""
        self.buffer += data
        return bool(data)

    async def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not await self.more():
                raise EOFError(f"closed before {marker!r}; got {self.buffer[:200]!r}")
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    async def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not await self.more():
                raise EOFError("closed mid-body")
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    async def head(self) -> tuple[int, dict[str, str]]:
        lines = (await self._until(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(lines[0].split()[1]), headers

    async def chunk(self) -> bytes:
        """One chunk of a chunked body (b"" for the last)."""
        size = int((await self._until(b"\r\n")).split(b";")[0], 16)
        data = await self._exactly(size)
        await self._exactly(2)
        return data

    async def response(self, head_only: bool = False) -> Reply:
        status, headers = await self.head()
        if head_only:
            return Reply(status, headers, b"")
        if headers.get("transfer-encoding") == "chunked":
            parts = []
            while part := await self.chunk():
                parts.append(part)
            return Reply(status, headers, b"".join(parts))
        return Reply(status, headers, await self._exactly(int(headers["content-length"])))

    async def until_closed(self) -> bytes:
        """What the server still sends before it closes the connection."""
        while await self.more():
            pass
        rest, self.buffer = self.buffer, b""
        return rest


@contextlib.asynccontextmanager
async def running(
    app: Any, host: str = "127.0.0.1", **limits: Any
) -> AsyncIterator[tuple[HttpServer, tuple[str, int]]]:
    config = ApiConfig(**{**FAST, **limits})
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, 0), family=family)
    server = HttpServer(app, config)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, sock)
            try:
                yield server, sock.getsockname()[:2]
            finally:
                server.stop()
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def connect(addr: tuple[str, int]) -> AsyncIterator[Raw]:
    async with await trio.open_tcp_stream(*addr) as stream:
        yield Raw(stream)


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "host: t", f"content-length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


# -- the ordinary cases --------------------------------------------------------------------------


async def test_keep_alive_and_pipelined_requests_are_answered_in_order() -> None:
    app = Echo()
    with trio.fail_after(HANG):
        async with running(app) as (server, addr), connect(addr) as client:
            await client.send(b"".join(post(f"/p/{i}?n={i}", b"x" * i) for i in range(3)))
            for i in range(3):
                reply = await client.response()
                assert reply.status == 200 and "connection" not in reply.headers
                assert json.loads(reply.body) == {
                    "method": "POST", "path": f"/p/{i}", "query": f"n={i}", "body": "x" * i,
                }  # fmt: skip
            await client.send(b"GET /again%20decoded HTTP/1.1\r\nhost: t\r\n\r\n")
            assert json.loads((await client.response()).body)["path"] == "/again decoded"
            assert app.calls == 4 and server.stats["connections"] == 1


async def test_chunked_bodies_head_requests_and_100_continue() -> None:
    with trio.fail_after(HANG):
        async with running(Echo()) as (_, addr), connect(addr) as client:
            await client.send(b"POST /c HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n")
            for part in (b"5\r\nhello\r\n", b"1;ext=1\r\n \r\n", b"5\r\nworld\r\n", b"0\r\n\r\n"):
                await client.send(part)
                await trio.sleep(0.01)
            assert json.loads((await client.response()).body)["body"] == "hello world"

            await client.send(b"HEAD /h HTTP/1.1\r\nhost: t\r\n\r\n")
            reply = await client.response(head_only=True)
            assert reply.status == 200 and int(reply.headers["content-length"]) > 0
            # no body followed the head: the next response starts right after it
            await client.send(post("/after-head", b""))
            assert json.loads((await client.response()).body)["path"] == "/after-head"

            await client.send(post("/e", b"", "expect: 100-continue").replace(
                b"content-length: 0", b"content-length: 4"))  # fmt: skip
            status, _ = await client.head()
            assert status == 100  # asked for the body: only then does the client send it
            await client.send(b"body")
            assert json.loads((await client.response()).body)["body"] == "body"


async def test_an_unread_body_is_drained_to_keep_the_connection_or_it_is_closed() -> None:
    async def early(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 413, "headers": []})
        await send({"type": "http.response.body", "body": b"too large"})

    with trio.fail_after(HANG):
        async with running(early) as (_, addr):
            async with connect(addr) as client:
                await client.send(post("/x", b"y" * 300_000))
                assert (await client.response()).body == b"too large"
                await client.send(post("/x", b""))  # the same connection goes on
                assert (await client.response()).status == 413
            async with connect(addr) as client:  # the body was never asked for: none is awaited
                await client.send(post("/x", b"", "expect: 100-continue").replace(
                    b"content-length: 0", b"content-length: 5000"))  # fmt: skip
                reply = await client.response()
                assert reply.status == 413 and reply.headers["connection"] == "close"
                with trio.fail_after(10):  # well before read_timeout (30 s)
                    assert await client.until_closed() == b""
            async with connect(addr) as client, trio.open_nursery() as nursery:

                async def flood() -> None:
                    with contextlib.suppress(trio.BrokenResourceError):
                        await client.send(post("/x", b"z" * 8_000_000))

                nursery.start_soon(flood)
                reply = await client.response()
                assert reply.status == 413 and reply.body == b"too large"
                assert (
                    await client.until_closed() == b""
                )  # past 1 MiB of drain: closed, answer intact


async def test_http_1_0_clients_get_no_chunks_and_no_keep_alive() -> None:
    with trio.fail_after(HANG):
        async with running(Echo()) as (_, addr), connect(addr) as client:
            await client.send(b"POST /ten HTTP/1.0\r\ncontent-length: 2\r\n\r\nhi")
            reply = await client.response()
            assert json.loads(reply.body)["body"] == "hi"
            assert reply.headers["connection"] == "close"
            assert await client.until_closed() == b""
        async with running(Stream()) as (_, addr), connect(addr) as client:
            await client.send(b"POST /stream HTTP/1.0\r\n\r\n")
            status, headers = await client.head()
            assert status == 200 and "transfer-encoding" not in headers
            assert headers["connection"] == "close"
            while len(client.buffer) < 20:  # the body is the lines themselves, unframed
                await client.more()
            assert client.buffer.startswith(b"line\nline\n")


async def test_the_api_on_ipv6_loopback(tmp_path: Path) -> None:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    with trio.fail_after(HANG):
        async with running(Echo(), host="::1") as (_, addr), connect(addr) as client:
            await client.send(post("/six", b"6"))
            assert json.loads((await client.response()).body)["body"] == "6"
        config = NodeConfig(node_config(tmp_path), api_addr=("::1", 0))
        async with open_node(config) as node:
            assert node.api_addr is not None
            host, port = node.api_addr
            assert host == "::1"
            async with httpx.AsyncClient(base_url=f"http://[::1]:{port}") as api:
                r = await api.post("/v1/transactions", json=["INSERT INTO kv (k) VALUES (6)"])
                assert r.status_code == 200 and r.json()["version"] == 1


# -- what an attacker sends ----------------------------------------------------------------------

SMUGGLED = (
    b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n"
    b"0\r\n\r\n"
)
MALFORMED = [
    (b"GARBAGE\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # TLS on the plain port
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
    (b"GET /\x00 HTTP/1.1\r\nhost: t\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nhost: t\r\nno colon here\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: abc\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello", 400),
    (SMUGGLED, 400),
    (b"POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: gzip\r\n\r\n", 501),
    (b"GET / HTTP/9.9\r\nhost: t\r\n\r\n", 505),
]


@pytest.mark.parametrize(("request_bytes", "status"), MALFORMED)
async def test_malformed_requests_get_a_json_error_and_the_connection_closes(
    request_bytes: bytes, status: int
) -> None:
    app = Echo()
    with trio.fail_after(HANG):
        async with running(app) as (_, addr), connect(addr) as client:
            await client.send(request_bytes)
            reply = await client.response()
            assert reply.status == status
            assert reply.headers["connection"] == "close"
            problem = json.loads(reply.body)
            assert problem["code"] == "bad_request"
            assert problem["error"].startswith("malformed HTTP: ")
            assert await client.until_closed() == b""
    assert app.calls == 0


async def test_a_malformed_body_ends_the_apps_receive_and_is_answered_400(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Echo()
    with trio.fail_after(HANG), caplog.at_level(logging.WARNING):
        async with running(app) as (_, addr), connect(addr) as client:
            await client.send(b"POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n")
            await client.send(b"5\r\nhello\r\n")
            await trio.sleep(0.05)  # the app is reading the body by now
            await client.send(b"zz-not-hex\r\n")
            reply = await client.response()
            assert reply.status == 400 and json.loads(reply.body)["code"] == "bad_request"
            assert await client.until_closed() == b""
    assert app.calls == 1
    assert [r.getMessage() for r in caplog.records] == []


async def test_a_head_over_the_limit_is_431_before_it_is_all_read() -> None:
    app = Echo()
    with trio.fail_after(HANG):
        async with (
            running(app, max_header_bytes=16 * 1024) as (_, addr),
            connect(addr) as client,
            trio.open_nursery() as nursery,
        ):
            sent = 0

            async def endless_header() -> None:
                nonlocal sent
                await client.send(b"GET / HTTP/1.1\r\nhost: t\r\nx-big: ")
                with contextlib.suppress(trio.BrokenResourceError):
                    while sent < 50_000_000:
                        await client.send(b"a" * 65536)
                        sent += 65536

            nursery.start_soon(endless_header)
            reply = await client.response()
            assert reply.status == 431 and json.loads(reply.body)["code"] == "bad_request"
            assert await client.until_closed() == b""
            assert sent < 50_000_000  # refused long before the client was done
    assert app.calls == 0


async def test_slowloris_heads_and_bodies_hold_a_connection_for_read_timeout_at_most() -> None:
    app = Echo()
    with trio.fail_after(HANG):
        async with running(app, read_timeout=0.5) as (server, addr):
            for opening, trickle in [
                (b"GET / HTTP/1.1\r\nhost: t\r\n", b"x-slow: 1\r\n"),  # a head that never ends
                (post("/", b"").replace(b"length: 0", b"length: 1000"), b"b"),  # a body
            ]:
                async with connect(addr) as client:
                    await client.send(opening)
                    sent = 0
                    with contextlib.suppress(trio.BrokenResourceError):
                        while sent < 100:  # 100 pieces at 0.1 s: 10 s if never cut
                            await client.send(trickle)
                            sent += 1
                            await trio.sleep(0.1)
                    assert sent < 100
                    assert await client.until_closed() == b""
            assert server.stats["timed_out"] == 2
    assert app.calls == 1  # the second one's head was whole: its body never was


async def test_idle_connections_close_after_keep_alive_timeout() -> None:
    with trio.fail_after(HANG):
        async with running(Echo(), keep_alive_timeout=0.3) as (server, addr):
            async with connect(addr) as silent:  # never sends a byte
                assert await silent.until_closed() == b""
            async with connect(addr) as client:
                await client.send(post("/", b"1"))
                assert (await client.response()).status == 200
                assert await client.until_closed() == b""  # idle after its answer
            assert server.stats["timed_out"] == 2


async def test_a_client_that_stops_reading_is_dropped_after_send_timeout() -> None:
    app = Stream(chunk=b"x" * 65536, pause=0)
    with trio.fail_after(HANG):
        async with running(app, send_timeout=0.5) as (server, addr), connect(addr) as client:
            await client.send(post("/stream", b""))
            status, _ = await client.head()
            assert status == 200
            await app.ended.wait()  # never read again: the server cut the stream
            assert server.stats["timed_out"] == 1
            assert not app.disconnected.is_set()  # cut by the deadline, not by the client


async def test_a_flood_of_connections_is_refused_past_the_limit() -> None:
    with trio.fail_after(HANG):
        async with running(Echo(), max_connections=2) as (server, addr):
            async with connect(addr) as first, connect(addr) as second:
                await first.send(post("/", b""))
                await second.send(post("/", b""))
                assert (await first.response()).status == (await second.response()).status == 200
                for _ in range(5):
                    async with connect(addr) as extra:
                        reply = await extra.response()
                        assert reply.status == 503
                        assert json.loads(reply.body)["code"] == "overloaded"
                        assert await extra.until_closed() == b""
            while server.connections:  # noqa: ASYNC110 (both closed by their clients)
                await trio.sleep(0.01)
            async with connect(addr) as again:
                await again.send(post("/", b""))
                assert (await again.response()).status == 200
            assert server.stats["refused"] == 5


async def test_pipelined_floods_are_read_only_as_fast_as_they_are_served() -> None:
    """The server holds at most one read of what is pipelined behind a request, and 64 KiB
    behind a stream; the rest waits in the client's socket."""
    with trio.fail_after(HANG):
        async with running(Echo()) as (server, addr), connect(addr) as client:
            n = 3000
            requests = b"".join(post(f"/{i}", b"", "x-pad: " + "p" * 1000) for i in range(n))
            peak = 0
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.send, requests)
                for i in range(n):
                    for connection in server.connections:
                        peak = max(peak, len(connection.h11.trailing_data[0]))
                    reply = await client.response()
                    assert json.loads(reply.body)["path"] == f"/{i}"
            assert peak <= 2 * READ_SIZE

        app = Stream()
        async with running(app) as (server, addr), connect(addr) as client:
            await client.send(post("/stream", b""))
            await client.head()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    client.send, b"".join(post("/", b"q" * 1000) for _ in range(2000))
                )
                for _ in range(100):
                    await client.chunk()  # the stream goes on
                [connection] = server.connections
                assert len(connection.h11.trailing_data[0]) <= MAX_PIPELINED + READ_SIZE
                nursery.cancel_scope.cancel()


async def test_out_of_file_descriptors_pauses_accepting_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_accept = trio.SocketListener.accept
    failures = 3

    async def starved_accept(self: trio.SocketListener) -> trio.SocketStream:
        nonlocal failures
        if failures:
            failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return await real_accept(self)

    monkeypatch.setattr(trio.SocketListener, "accept", starved_accept)
    with trio.fail_after(HANG), caplog.at_level(logging.WARNING):
        async with running(Echo()) as (server, addr), connect(addr) as client:
            await client.send(post("/", b"after"))
            assert json.loads((await client.response()).body)["body"] == "after"
            assert server.stats["accept_paused"] == 3
    assert [r.getMessage() for r in caplog.records] == [
        "cannot accept HTTP connections (Too many open files): pausing"
    ]


# -- the application's side ----------------------------------------------------------------------


async def test_a_stream_learns_that_its_client_left() -> None:
    app = Stream()
    with trio.fail_after(HANG):
        async with running(app) as (_, addr):
            async with connect(addr) as client:
                await client.send(post("/stream", b""))
                status, headers = await client.head()
                assert status == 200 and headers["transfer-encoding"] == "chunked"
                assert await client.chunk() == b"line\n"
            await app.disconnected.wait()
            await app.ended.wait()


async def test_an_app_that_fails_or_answers_nothing_gets_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/raise":
            raise RuntimeError("secret internals")

    with trio.fail_after(HANG), caplog.at_level(logging.ERROR):
        async with running(broken) as (_, addr):
            for path in ("/raise", "/nothing"):
                async with connect(addr) as client:
                    await client.send(post(path, b""))
                    reply = await client.response()
                    assert reply.status == 500 and b"secret" not in reply.body
                    assert json.loads(reply.body)["code"] == "internal"
                    assert await client.until_closed() == b""
    assert [r.exc_info is not None for r in caplog.records] == [True]


async def test_graceful_stop() -> None:
    """Idle connections close at once, ``closing`` is set for streams, a request in flight
    finishes with ``connection: close``, one that takes too long is cut; then serve returns."""

    with_app = 0
    both_with_app = trio.Event()

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal with_app
        await receive()
        with_app += 1
        if with_app == 2:
            both_with_app.set()
        await trio.sleep(0.2 if scope["path"] == "/slow" else 60)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    config = ApiConfig(graceful_timeout=1.0)
    sock = socket.create_server(("127.0.0.1", 0))
    addr = sock.getsockname()
    server = HttpServer(slow, config)
    with trio.fail_after(HANG):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, sock)
            async with (
                connect(addr) as idle,
                connect(addr) as busy,
                connect(addr) as stuck,
            ):
                await busy.send(post("/slow", b""))
                await stuck.send(post("/stuck", b""))
                await both_with_app.wait()
                while len(server.connections) < 3:  # noqa: ASYNC110 (the idle one accepted)
                    await trio.sleep(0.01)
                server.stop()
                assert server.closing.is_set()
                assert await idle.until_closed() == b""
                reply = await busy.response()
                assert reply.body == b"done" and reply.headers["connection"] == "close"
                assert await busy.until_closed() == b""
                assert await stuck.until_closed() == b""  # cut after graceful_timeout
            with pytest.raises(OSError):  # stopped accepting: the socket is closed
                await trio.open_tcp_stream(*addr)
