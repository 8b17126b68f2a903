"""Routes, and the request a route's handler reads.

A route is a path and the methods it takes; a path segment ``{name}`` matches one non-empty
segment (no ``/``), given to the handler in ``request.path_params``. Paths are matched as the
server decoded them (percent-escapes decoded). A route taking GET takes HEAD too (the server
sends no body). There is no redirect for a trailing slash: an unknown path is a 404.

`Request` reads only what a handler asks for: headers and query parameters are decoded on first
use, the body is streamed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from corrosion_py.api.asgi import ClientDisconnect, Receive, Scope

if TYPE_CHECKING:
    from corrosion_py.api.responses import Response


class Request:
    """One request, as a route's handler sees it."""

    __slots__ = ("_headers", "_query", "_receive", "path_params", "scope")

    def __init__(self, scope: Scope, receive: Receive, path_params: Mapping[str, str]) -> None:
        self.scope = scope
        self._receive = receive
        self.path_params = path_params
        self._headers: dict[str, str] | None = None
        self._query: dict[str, str] | None = None

    @property
    def method(self) -> str:
        return str(self.scope["method"])

    @property
    def path(self) -> str:
        return str(self.scope["path"])

    @property
    def headers(self) -> Mapping[str, str]:
        """Header names lower-case; of a header given twice, the first."""
        if self._headers is None:
            self._headers = {
                name.decode("latin-1"): value.decode("latin-1")
                for name, value in reversed(self.scope["headers"])
            }
        return self._headers

    @property
    def query_params(self) -> Mapping[str, str]:
        """Of a parameter given twice, the last."""
        if self._query is None:
            text = self.scope["query_string"].decode("latin-1")
            self._query = dict(parse_qsl(text, keep_blank_values=True))
        return self._query

    async def stream(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk as it arrives; `ClientDisconnect` if the client leaves
        first."""
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect("the client went away while sending its body")
            body = message.get("body", b"")
            if body:
                yield body
            if not message.get("more_body", False):
                return


Handler = Callable[[Request], Awaitable["Response"]]


class Route:
    """A path, its handler, and the methods it takes (``allowed``: HEAD too with GET)."""

    __slots__ = ("allowed", "handler", "path")

    def __init__(self, path: str, handler: Handler, methods: Sequence[str]) -> None:
        self.path = path
        self.handler = handler
        with_head = "GET" in methods and "HEAD" not in methods
        self.allowed: tuple[str, ...] = (*methods, "HEAD") if with_head else tuple(methods)


class Router:
    """Which route a path is, and its parameters."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self._exact = {r.path: r for r in routes if "{" not in r.path}
        self._templates = [(r.path.split("/"), r) for r in routes if "{" in r.path]

    def match(self, path: str) -> tuple[Route | None, dict[str, str]]:
        route = self._exact.get(path)
        if route is not None:
            return route, {}
        segments = path.split("/")
        for pattern, route in self._templates:
            params = _match_segments(pattern, segments)
            if params is not None:
                return route, params
        return None, {}


def _match_segments(pattern: list[str], segments: list[str]) -> dict[str, str] | None:
    if len(pattern) != len(segments):
        return None
    params = {}
    for want, got in zip(pattern, segments, strict=True):
        if want.startswith("{") and want.endswith("}"):
            if not got:
                return None
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params
