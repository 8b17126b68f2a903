"""The HTTP/1.1 server of the API: accepts connections on a listening socket and serves each
with an `HttpConnection`, in a nursery of its own, until `stop`.

Why our own: hypercorn's trio worker spent 260-350 µs of CPU per keep-alive request more than
a plain h11 loop (a task and cancel scopes per request, a socket write per h11 event;
``bench/api_bench.py`` section 5), about as much as the SQLite write behind it. This server
keeps what the API needs: keep-alive, pipelining, chunked streams with backpressure,
disconnects seen by the application, bounded heads and bodies, timeouts, a connection limit
and a graceful stop.

Rules:

- **Bounded.** At most ``max_connections`` connections; one more gets a canned 503 and is
  closed. While the process is out of file descriptors (or memory for a socket), accepting
  pauses for 100 ms at a time instead of spinning (one warning when it starts).
- **One timer for all.** Each connection carries a deadline (a float it updates itself); one task
  wakes every tick (a quarter of the shortest timeout, at most 1 s) and cancels the connections
  whose deadline has passed, so a request sets no trio timer of its own.
- **Graceful stop** (`stop`, synchronous, so a ``finally`` can call it): no new connection;
  ``closing`` is set (the application ends its streams at once); idle connections are closed;
  requests in flight get ``graceful_timeout`` seconds and answer with ``connection: close``;
  then what is left is cancelled and `serve` returns.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from collections import Counter

import trio

from corrosion_py.api.asgi import App
from corrosion_py.api.http_connection import HttpConnection
from corrosion_py.api.limits import ApiConfig

log = logging.getLogger("corrosion_py.api.http")

ACCEPT_PAUSE = 0.1
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_OVERLOADED_BODY = b'{"error":"too many connections to this node: retry later","code":"overloaded"}'
_OVERLOADED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_OVERLOADED_BODY), _OVERLOADED_BODY)
)


class HttpServer:
    """Serve ``app`` over HTTP/1.1 with ``config``'s bounds; ``closing`` is set at `stop`."""

    def __init__(self, app: App, config: ApiConfig, closing: trio.Event | None = None) -> None:
        self.app = app
        self.config = config
        self.closing = closing if closing is not None else trio.Event()
        self.connections: set[HttpConnection] = set()
        self.stats: Counter[str] = Counter()
        """``connections`` accepted, ``refused`` over the limit, ``timed_out``,
        ``accept_paused`` (pauses while out of file descriptors)."""
        self.stopping = False
        self._accepting = trio.CancelScope()
        self._drained = trio.Event()
        shortest = min(config.keep_alive_timeout, config.read_timeout, config.send_timeout)
        self.tick = min(1.0, shortest / 4)

    async def serve(
        self, sock: socket.socket, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve on the listening ``sock`` until `stop`, then stop gracefully and return. The
        socket is closed once accepting stops (new clients are refused by the kernel)."""
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._expire)
            task_status.started()
            with self._accepting:
                if not self.stopping:
                    await self._accept(listener, nursery)
            listener.socket.close()
            if self.connections:
                with trio.move_on_after(self.config.graceful_timeout):
                    await self._drained.wait()
            nursery.cancel_scope.cancel()

    def stop(self) -> None:
        """Begin the graceful stop (see the module's rules)."""
        self.stopping = True
        self.closing.set()
        self._accepting.cancel()
        for connection in self.connections:
            connection.stopping = True
            if connection.idle:
                connection.scope.cancel()
        if not self.connections:
            self._drained.set()

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        starved = False
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                if not starved:
                    log.warning("cannot accept HTTP connections (%s): pausing", exc.strerror)
                starved = True
                self.stats["accept_paused"] += 1
                await trio.sleep(ACCEPT_PAUSE)
                continue
            starved = False
            if len(self.connections) >= self.config.max_connections:
                self.stats["refused"] += 1
                await _refuse(stream)
                continue
            self.stats["connections"] += 1
            try:
                connection = HttpConnection(stream, self.app, self.config)
            except OSError:  # the client left before we looked at it (getpeername)
                stream.socket.close()
                continue
            self.connections.add(connection)
            nursery.start_soon(self._serve, connection)

    async def _serve(self, connection: HttpConnection) -> None:
        try:
            await connection.serve()
        finally:
            self.connections.discard(connection)
            if connection.timed_out:
                self.stats["timed_out"] += 1
            if self.stopping and not self.connections:
                self._drained.set()

    async def _expire(self) -> None:
        while True:
            await trio.sleep(self.tick)
            now = trio.current_time()
            for connection in self.connections:
                if connection.deadline <= now:
                    connection.expire()


async def _refuse(stream: trio.SocketStream) -> None:
    """Tell a connection over the limit why it is closed (a fresh socket takes these few bytes
    at once; a client that cannot gets nothing)."""
    with trio.move_on_after(ACCEPT_PAUSE):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(_OVERLOADED)
    stream.socket.close()
