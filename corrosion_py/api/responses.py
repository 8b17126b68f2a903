"""JSON and NDJSON responses, shaped as Corrosion's.

A response is sent by ``await response.respond(send, receive, closing)``: ``send`` and
``receive`` are the request's ASGI callables, ``closing`` is set when the server shuts down.

- `JsonResponse` (`json_response`, `error_response`): a body known at once; ``error_response``
  is ``{"error": message, "code": code, ...}`` with a status, the body of every refusal
  (`corrosion_py.api_types.problems`).
- `NdjsonResponse`: a chunked ``application/x-ndjson`` stream from an async iterable of encoded
  chunks (each one or more complete lines); `ndjson_response` builds one from JSON-able dicts,
  one line each (the subscription endpoints use it). The stream ends, and the iterable is
  closed (``aclose``) so its ``finally`` blocks run, when it is exhausted, when the client
  disconnects, when the server shuts down (``closing`` is set), or at ``deadline`` (then
  ``timeout_message`` is sent as a last ``{"error": ...}`` line if the client still reads).
  A stream cut short (disconnect, shutdown, a client too slow for the deadline) ends without
  the final chunk, so the client can tell it apart from a complete one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import trio

from corrosion_py.api.asgi import ClientDisconnect, Headers, Receive, Send
from corrosion_py.api_types import Problem, problem_json

__all__ = [
    "JsonResponse",
    "NdjsonResponse",
    "Response",
    "dumps",
    "error_response",
    "json_response",
    "ndjson_line",
    "ndjson_response",
]

JSON = b"application/json"
NDJSON = b"application/x-ndjson"
TIMEOUT_GRACE = 1.0  # seconds a last error line may take to send once the deadline passed


def dumps(obj: Any) -> str:
    """Compact JSON, UTF-8 as is, no NaN."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def ndjson_line(obj: Any) -> bytes:
    """One NDJSON line (JSON and a newline), encoded."""
    return (dumps(obj) + "\n").encode()


def _headers(media_type: bytes, extra: Mapping[str, str] | None) -> Headers:
    headers = [(b"content-type", media_type)]
    if extra:
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
    return headers


class Response:
    """What a route's handler returns: a status and headers, and how to send the body."""

    status: int
    headers: Headers

    async def respond(self, send: Send, receive: Receive, closing: trio.Event) -> None:
        raise NotImplementedError


class JsonResponse(Response):
    """A JSON body known at once: one ``send`` of the head and one of the body (our server
    writes both at once)."""

    def __init__(self, body: bytes, status: int, headers: Headers) -> None:
        self.body = body
        self.status = status
        self.headers = headers

    async def respond(self, send: Send, receive: Receive, closing: trio.Event) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


def json_response(
    content: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> JsonResponse:
    body = dumps(content).encode()
    return JsonResponse(
        body, status, [(b"content-length", b"%d" % len(body)), *_headers(JSON, headers)]
    )


def error_response(
    status: int, problem: Problem, headers: Mapping[str, str] | None = None
) -> JsonResponse:
    """``problem``'s JSON with ``status``: how every endpoint refuses a request."""
    return json_response(problem_json(problem), status, headers)


class NdjsonResponse(Response):
    """A chunked NDJSON stream; see the module docstring for when and how it ends."""

    def __init__(
        self,
        chunks: AsyncIterable[bytes],
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
        timeout_message: str = "the stream timed out",
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.chunks = chunks
        self.status = status
        self.headers = _headers(NDJSON, headers)
        self.deadline = deadline
        """trio time at which the stream ends (None: no limit)."""
        self.timeout_message = timeout_message
        self.on_close = on_close
        """Awaited (shielded) once the stream is over however it ended, even if the iterable
        was never started: where a producer releases what it holds."""

    async def respond(self, send: Send, receive: Receive, closing: trio.Event) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status,
                        "headers": self.headers})  # fmt: skip
            # the head goes out now: a client sees the status before the first line
            await send({"type": "http.response.body", "body": b"", "more_body": True})
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
                nursery.start_soon(_cancel_on_event, closing, nursery.cancel_scope)
                try:
                    if await self._stream(send):
                        await send({"type": "http.response.body", "body": b"", "more_body": False})
                except ClientDisconnect:
                    pass  # nobody left to send to
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                try:
                    aclose = getattr(self.chunks, "aclose", None)
                    if aclose is not None:
                        await aclose()
                finally:
                    if self.on_close is not None:
                        await self.on_close()

    async def _stream(self, send: Send) -> bool:
        """Send every chunk; False when the deadline cut the stream and the last line could not
        be sent either."""
        deadline = self.deadline if self.deadline is not None else float("inf")
        with trio.move_on_at(deadline):
            async for chunk in self.chunks:
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            return True
        line = ndjson_line({"error": self.timeout_message})
        with trio.move_on_after(TIMEOUT_GRACE):
            await send({"type": "http.response.body", "body": line, "more_body": True})
            return True
        return False


async def _cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def _cancel_on_event(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def ndjson_response(
    items: AsyncIterator[Mapping[str, Any]],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    deadline: float | None = None,
    on_close: Callable[[], Awaitable[None]] | None = None,
) -> NdjsonResponse:
    """A stream of JSON-able dicts, one NDJSON line (and one chunk) each. ``items`` is closed
    (``aclose``, if it has one) when the stream ends however it ends, then ``on_close`` runs."""

    async def close() -> None:
        try:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            if on_close is not None:
                await on_close()

    return NdjsonResponse(
        _encoded(items),
        status=status,
        headers=headers,
        deadline=deadline,
        on_close=close,
    )


async def _encoded(items: AsyncIterator[Mapping[str, Any]]) -> AsyncIterator[bytes]:
    async for item in items:
        yield ndjson_line(item)
