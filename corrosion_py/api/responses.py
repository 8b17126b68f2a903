"""JSON and NDJSON responses, shaped as Corrosion's HTTP API shapes them.

- `error_response`: ``{"error": message}`` with a status, the body of every refusal.
- `NdjsonResponse`: a chunked ``application/x-ndjson`` stream from an async iterable of encoded
  chunks (each one or more complete lines); `ndjson_response` builds one from JSON-able dicts,
  one line each (the subscription endpoints use it). The stream ends, and the iterable is
  closed (``aclose``) so its ``finally`` blocks run, when it is exhausted, when the client
  disconnects, when the server shuts down (``app.state.closing`` is set), or at ``deadline``
  (then ``timeout_message`` is sent as a last ``{"error": ...}`` line if the client still reads).
  A stream cut short (disconnect, shutdown, a client too slow for the deadline) ends without
  the final chunk, so the client can tell it apart from a complete one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import trio
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

__all__ = [
    "NdjsonResponse",
    "dumps",
    "error_response",
    "json_response",
    "ndjson_line",
    "ndjson_response",
]

log = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"
TIMEOUT_GRACE = 1.0  # seconds a last error line may take to send once the deadline passed


def dumps(obj: Any) -> str:
    """Compact JSON, UTF-8 as is, no NaN (what starlette's JSONResponse writes too)."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def ndjson_line(obj: Any) -> bytes:
    """One NDJSON line (JSON and a newline), encoded."""
    return (dumps(obj) + "\n").encode()


def json_response(
    content: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(content, status_code=status, headers=headers)


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """``{"error": message}`` with ``status``: how every endpoint refuses a request."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class NdjsonResponse(Response):
    """A chunked NDJSON stream; see the module docstring for when and how it ends."""

    media_type = NDJSON

    def __init__(
        self,
        chunks: AsyncIterable[bytes],
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
        timeout_message: str = "the stream timed out",
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.chunks = chunks
        self.status_code = status_code
        self.background = None
        self.deadline = deadline
        """trio time at which the stream ends (None: no limit)."""
        self.timeout_message = timeout_message
        self.on_close = on_close
        """Awaited (shielded) once the stream is over however it ended, even if the iterable
        was never started: where a producer releases what it holds."""
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code,
                 "headers": self.raw_headers}
            )  # fmt: skip
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
                closing = getattr(getattr(scope.get("app"), "state", None), "closing", None)
                if isinstance(closing, trio.Event):
                    nursery.start_soon(_cancel_on_event, closing, nursery.cancel_scope)
                complete = await self._stream(send)
                if complete:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
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
    status_code: int = 200,
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
        status_code=status_code,
        headers=headers,
        deadline=deadline,
        on_close=close,
    )


async def _encoded(items: AsyncIterator[Mapping[str, Any]]) -> AsyncIterator[bytes]:
    async for item in items:
        yield ndjson_line(item)
