"""One client connection of the HTTP server: HTTP/1.1 requests in turn, each handed to an ASGI
application, with h11 for the protocol and a trio socket stream for the bytes.

Theory of operation. The connection's one task reads a request head through h11, builds the
ASGI scope and runs the application in that same task: a request costs no task, no cancel scope
and no timer. The body that came with the head is handed over by the first ``receive``; the rest
is read as the application asks for it, so a slow application slows the client (TCP
backpressure). ``send`` holds the response head until the first body message (an empty one
flushes it): a body complete in that message goes out in one write, with its
``content-length``; a longer one is chunked, one write per message, each waiting until the
socket takes it (a slow reader slows the stream).
Once the body is read, ``receive`` waits for the client to go away: that is how a stream learns
of a disconnect.

Rules:

- **Deadlines, not timers.** ``deadline`` is when the server (`HttpServer`, one check per tick)
  cancels the connection: ``keep_alive_timeout`` after a cycle starts while no byte of a request
  has come; ``read_timeout`` after a request's first byte until it is whole (head and body, so a
  client that trickles bytes gets no more); ``send_timeout`` for each write; none while the
  application works or a stream waits for its next line.
- **Bounded memory.** A head over ``max_header_bytes`` is refused (431); a read takes at most
  64 KiB; while a response runs, bytes pipelined behind its request are read only up to 64 KiB
  (the rest waits in the kernel); a body the application did not read is drained and dropped,
  at most 1 MiB, before the connection is kept.
- **Hostile input.** Malformed HTTP (h11 is strict: bad framing, bad characters, conflicting
  lengths; we also refuse a request with both Content-Length and Transfer-Encoding, and other
  versions than HTTP/1.1 and 1.0) is answered
  with a JSON 4xx and the connection is closed; a protocol error in a body the application is
  reading ends its ``receive`` with ``http.disconnect`` first.
- **Ends that tell.** A response the application left unfinished (a stream cut short by a
  disconnect, a deadline or shutdown) closes the connection without the final chunk, so the
  client can tell it from a complete one; an application that answered nothing gets a 500.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import time
from typing import Any
from urllib.parse import unquote

import h11
import trio

from corrosion_py.api.asgi import App, ClientDisconnect, Headers, Message, Scope
from corrosion_py.api.limits import ApiConfig
from corrosion_py.api_types import ErrorCode, Problem, problem_json

log = logging.getLogger("corrosion_py.api.http")

READ_SIZE = 64 * 1024
MAX_PIPELINED = 64 * 1024
"""Bytes read ahead behind a request while its response runs."""
MAX_DRAIN = 1024 * 1024
"""Body bytes read and dropped after a response that did not need them."""
LINGER = 1.0
"""Seconds an error answer is given to reach the client before the socket is closed."""

ASGI = {"version": "3.0", "spec_version": "2.3"}
DISCONNECT: Message = {"type": "http.disconnect"}
_date: tuple[int, bytes] = (0, b"")


def _http_date() -> bytes:
    """The ``date`` header's value, formatted once per second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, email.utils.formatdate(now, usegmt=True).encode())
    return _date[1]


class HttpConnection:
    """Serve one accepted connection (`serve`); the server sets ``stopping`` at shutdown and
    cancels ``scope`` when ``deadline`` has passed."""

    def __init__(self, stream: trio.SocketStream, app: App, config: ApiConfig) -> None:
        self.stream = stream
        self.app = app
        self.config = config
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=config.max_header_bytes)
        self.scope = trio.CancelScope()
        self.deadline = math.inf
        """trio time at which the server cancels ``scope`` (inf: none)."""
        self.idle = True
        """No byte of a request has come since the last response: closed at once at shutdown."""
        self.stopping = False
        """Set by the server at shutdown: the response in flight is the last."""
        self.timed_out = False
        self.client = _address(stream.socket.getpeername())
        self.server = _address(stream.socket.getsockname())
        self._eof = False
        """The client closed its side (or the socket broke): nothing more will be read."""
        self._broken = False
        """A write failed: nothing more can be sent."""
        self._reset_request(b"")

    def _reset_request(self, method: bytes) -> None:
        self._method = method
        self._body: bytes | None = None
        """The body read with the head, until the first ``receive`` hands it over."""
        self._body_done = False
        self._head: tuple[int, Headers] | None = None
        self._started = False
        self._complete = False
        self._protocol_error: h11.RemoteProtocolError | None = None
        self._watch: trio.CancelScope | None = None
        """The scope of a ``receive`` waiting for a disconnect, cancelled once the response is
        complete."""

    def expire(self) -> None:
        """The deadline passed: close the connection, whatever it was doing."""
        self.timed_out = True
        self.scope.cancel()

    async def serve(self) -> None:
        """Serve requests until the client leaves, a deadline passes, shutdown or an error;
        then close the socket."""
        try:
            linger = False
            with self.scope:
                try:
                    while await self._cycle():
                        pass
                    linger = self.h11.their_state is h11.SEND_BODY and not self._eof
                except h11.RemoteProtocolError as exc:
                    problem = Problem(ErrorCode.BAD_REQUEST, f"malformed HTTP: {exc}")
                    linger = await self._refuse(exc.error_status_hint, problem)
                except (trio.BrokenResourceError, trio.ClosedResourceError, ClientDisconnect):
                    pass  # the client went away
                if linger:
                    await self._linger()
        finally:
            self.stream.socket.close()

    # -- one request --------------------------------------------------------------------------

    async def _cycle(self) -> bool:
        """Read one request, run the application on it; whether the connection may go on."""
        self.idle = True
        self.deadline = trio.current_time() + self.config.keep_alive_timeout
        event = self.h11.next_event()
        while event is h11.NEED_DATA:
            await self._read()
            event = self.h11.next_event()
        if type(event) is not h11.Request:
            return False  # ConnectionClosed: the client left between requests
        if event.http_version not in (b"1.1", b"1.0"):
            raise h11.RemoteProtocolError("only HTTP/1.1 and 1.0 are served", 505)
        headers = list(event.headers)
        if _two_framings(headers):
            raise h11.RemoteProtocolError("both Content-Length and Transfer-Encoding")
        if self.idle:  # a request that was already read: its time starts now
            self.idle = False
            self.deadline = trio.current_time() + self.config.read_timeout
        self._reset_request(event.method)
        self._body = self._buffered_body()
        if self._body_done:
            self.deadline = math.inf
        try:
            await self.app(self._scope(event, headers), self._receive, self._send)
        except ClientDisconnect:
            pass
        except Exception:
            log.exception("error in the application for %s", event.target.decode("latin-1"))
        if self._protocol_error is not None:
            raise self._protocol_error
        if not self._complete:
            if not self._started and not self._broken:
                message = "internal error: the application sent no response"
                await self._refuse(500, Problem(ErrorCode.INTERNAL, message))
            return False
        return await self._keep_alive()

    def _buffered_body(self) -> bytes:
        """The body events h11 can give without reading the socket (a small request's whole
        body came with its head)."""
        parts = []
        while True:
            event = self.h11.next_event()
            if type(event) is h11.Data:
                parts.append(event.data)
            elif type(event) is h11.EndOfMessage:
                self._body_done = True
                break
            else:
                break  # NEED_DATA
        return b"".join(parts)

    async def _keep_alive(self) -> bool:
        """After a complete response: whether the connection can take the next request
        (draining a body the application left unread)."""
        if self.stopping or self.h11.our_state is not h11.DONE:
            return False  # MUST_CLOSE: we said ``connection: close``
        if self.h11.their_state is h11.SEND_BODY and not await self._drain():
            return False
        if self.h11.their_state is not h11.DONE:
            return False
        self.h11.start_next_cycle()
        return True

    async def _drain(self) -> bool:
        """Read and drop the rest of the request body, up to `MAX_DRAIN` bytes."""
        if self.deadline == math.inf:
            self.deadline = trio.current_time() + self.config.read_timeout
        dropped = 0
        while dropped <= MAX_DRAIN and not self._eof:
            event = self.h11.next_event()
            if type(event) is h11.Data:
                dropped += len(event.data)
            elif type(event) is h11.EndOfMessage:
                self.deadline = math.inf
                return True
            elif event is h11.NEED_DATA:
                await self._read()
            else:
                return False
        return False

    def _scope(self, request: h11.Request, headers: Headers) -> Scope:
        path, _, query = request.target.partition(b"?")
        return {
            "type": "http", "asgi": ASGI, "http_version": request.http_version.decode(),
            "method": request.method.decode(), "scheme": "http",
            "path": unquote(path.decode("latin-1")), "raw_path": path, "query_string": query,
            "root_path": "", "headers": headers, "client": self.client,
            "server": self.server,
        }  # fmt: skip

    # -- bytes in ------------------------------------------------------------------------------

    async def _read(self) -> None:
        """Feed h11 one read of the socket (EOF when the client closed or the socket broke)."""
        try:
            data = await self.stream.receive_some(READ_SIZE)
        except trio.BrokenResourceError:
            data = b""
        if not data:
            self._eof = True
        elif self.idle:  # the first byte of a request: it has read_timeout to arrive whole
            self.idle = False
            self.deadline = trio.current_time() + self.config.read_timeout
        self.h11.receive_data(data)

    async def _receive(self) -> Message:
        """ASGI ``receive``: the body, then (once the client leaves or the response is
        complete) ``http.disconnect``."""
        if self._body is not None:
            body, self._body = self._body, None
            if body or self._body_done:
                return {"type": "http.request", "body": body, "more_body": not self._body_done}
        if not self._body_done:
            return await self._more_body()
        return await self._wait_for_disconnect()

    async def _more_body(self) -> Message:
        if self._eof or self._protocol_error is not None:
            return DISCONNECT
        if self.h11.they_are_waiting_for_100_continue:
            response = h11.InformationalResponse(status_code=100, headers=[])
            await self._write(self.h11.send(response) or b"")
        try:
            while True:
                event = self.h11.next_event()
                if type(event) is h11.Data:
                    return {"type": "http.request", "body": event.data, "more_body": True}
                if type(event) is h11.EndOfMessage:
                    self._body_done = True
                    self.deadline = math.inf
                    return {"type": "http.request", "body": b"", "more_body": False}
                if event is not h11.NEED_DATA or self._eof:
                    return DISCONNECT
                await self._read()
        except h11.RemoteProtocolError as exc:
            if not self._eof:  # a client that left mid-body is a disconnect, not an error
                self._protocol_error = exc
            return DISCONNECT

    async def _wait_for_disconnect(self) -> Message:
        """Read until the client closes (what is pipelined meanwhile is kept for later, up to
        `MAX_PIPELINED` bytes) or the response is complete."""
        if self._complete or self._eof or self._broken:
            return DISCONNECT
        with trio.CancelScope() as self._watch:
            while not self._eof:
                if len(self.h11.trailing_data[0]) >= MAX_PIPELINED:
                    await trio.sleep_forever()  # until the response is complete
                await self._read()
        return DISCONNECT

    # -- bytes out -----------------------------------------------------------------------------

    async def _send(self, message: Message) -> None:
        """ASGI ``send``: `ClientDisconnect` once the connection is broken."""
        if self._broken:
            raise ClientDisconnect("the client went away")
        kind = message["type"]
        if kind == "http.response.start":
            if self._head is not None:
                raise RuntimeError("the response has already started")
            self._head = (message["status"], list(message.get("headers", ())))
            return
        if kind != "http.response.body" or self._head is None or self._complete:
            raise RuntimeError(f"unexpected ASGI message {kind!r} at this point of the response")
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        out = []
        if not self._started:
            self._started = True
            out.append(self._response_head(body, more))
        if body and self._method != b"HEAD":
            out.append(self.h11.send(h11.Data(data=body)) or b"")
        if not more:
            out.append(self.h11.send(h11.EndOfMessage()) or b"")
            self._complete = True
        await self._write(b"".join(out))
        if self._complete and self._watch is not None:
            self._watch.cancel()

    def _response_head(self, body: bytes, more: bool) -> bytes:
        assert self._head is not None
        status, headers = self._head
        if not more and all(name.lower() != b"content-length" for name, _ in headers):
            headers.append((b"content-length", b"%d" % len(body)))
        if self.stopping or self.h11.they_are_waiting_for_100_continue:
            # the last response; or one to a body never asked for, which the client may now
            # never send: the connection cannot be reused
            headers.append((b"connection", b"close"))
        headers.append((b"date", _http_date()))
        return self.h11.send(h11.Response(status_code=status, headers=headers)) or b""

    async def _write(self, data: bytes) -> None:
        """Send ``data``, within ``send_timeout``."""
        previous = self.deadline
        self.deadline = trio.current_time() + self.config.send_timeout
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._broken = True
            raise ClientDisconnect("the client went away") from None
        finally:
            self.deadline = previous

    async def _refuse(self, status: int, problem: Problem) -> bool:
        """Answer ``status`` with a JSON error and ``connection: close`` when a response can
        still be sent; whether one was."""
        if self._eof or self._broken or self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return False
        body = json.dumps(problem_json(problem)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
        ]
        try:
            data = self.h11.send(h11.Response(status_code=status, headers=headers)) or b""
            data += (self.h11.send(h11.Data(data=body)) or b"") + (
                self.h11.send(h11.EndOfMessage()) or b""
            )
            await self._write(data)
        except (h11.LocalProtocolError, ClientDisconnect):
            return False
        return True

    async def _linger(self) -> None:
        """Close our side, then read and drop what the client still sends for a moment, so
        that it reads our answer rather than a reset."""
        self.deadline = math.inf
        with trio.move_on_after(LINGER):
            try:
                await self.stream.send_eof()
                dropped = 0
                while dropped < MAX_DRAIN:
                    data = await self.stream.receive_some(READ_SIZE)
                    if not data:
                        break
                    dropped += len(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass


def _two_framings(headers: Headers) -> bool:
    """A request framed twice: h11 would follow Transfer-Encoding, a proxy in front might have
    followed Content-Length (request smuggling), so it is refused."""
    names = {name for name, _ in headers}
    return b"content-length" in names and b"transfer-encoding" in names


def _address(sockaddr: Any) -> tuple[str, int] | None:
    """An ASGI ``client``/``server`` pair from a socket address (IPv4 or IPv6)."""
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        return str(sockaddr[0]), int(sockaddr[1])
    return None
