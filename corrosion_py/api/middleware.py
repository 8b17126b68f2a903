"""Pure ASGI middleware around the routes, outermost first:

1. `ErrorMiddleware`: an exception no handler answered is logged with its traceback and
   answered 500 ``{"error": "internal error: <type>", "code": "internal"}`` (no traceback in
   the body); if the response had started, the connection is left to end. (Starlette's own
   error middleware would re-raise to the server, which logs it again.) A `StorageFault` (a
   full disk, a corrupt database: the store has logged it) is answered 503 with its message
   instead (code ``storage_fault``).
2. `AuthMiddleware`: with a token configured, every request needs
   ``Authorization: Bearer <token>`` (compared in constant time), else 401.
3. `LimitMiddleware`: requests in progress are counted per route template and overall; over
   either limit the request is answered 503 at once. A stream counts until it ends. Requests
   for no route (404) are not counted.

Pure ASGI rather than starlette's ``BaseHTTPMiddleware``, which buffers and detaches streams.
"""

from __future__ import annotations

import hmac
import logging
from collections import Counter
from collections.abc import Mapping, Sequence

from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corrosion_py.api.responses import error_response
from corrosion_py.api_types import ErrorCode, Problem
from corrosion_py.errors import StorageFault

log = logging.getLogger("corrosion_py.api")


class ErrorMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:
            return  # the client left while sending its body: nobody to answer
        except StorageFault as exc:
            if not started:
                problem = Problem(ErrorCode.STORAGE_FAULT, str(exc))
                await error_response(503, problem)(scope, receive, send)
        except Exception as exc:
            log.exception("error in %s %s", scope.get("method"), scope.get("path"))
            if not started:
                problem = Problem(ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}")
                response = error_response(500, problem)
                await response(scope, receive, send)


class AuthMiddleware:
    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.expected = None if token is None else f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.expected is not None:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                message = (
                    "missing bearer token (Authorization: Bearer <token>)"
                    if not given
                    else "invalid bearer token"
                )
                problem = Problem(ErrorCode.UNAUTHORIZED, message)
                response = error_response(401, problem, {"www-authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class LimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        routes: Sequence[BaseRoute],
        total: int,
        per_route: int,
        route_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.routes = routes
        self.total_limit = total
        self.per_route_limit = per_route
        self.route_limits = dict(route_limits or {})
        """Routes with their own limit (by path), instead of ``per_route``."""
        self.total = 0
        self.per_route: Counter[str] = Counter()

    def _route_key(self, scope: Scope) -> str | None:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:  # FULL, or PARTIAL (a wrong method: 405, counted)
                return str(getattr(route, "path", repr(route)))
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = self._route_key(scope)
        if key is None:
            await self.app(scope, receive, send)
            return
        route_limit = self.route_limits.get(key, self.per_route_limit)
        if self.total >= self.total_limit or self.per_route[key] >= route_limit:
            limit = (
                f"{self.total_limit} requests in all"
                if self.total >= self.total_limit
                else f"{route_limit} requests on {key}"
            )
            problem = Problem(
                ErrorCode.OVERLOADED, f"too many requests in progress ({limit}): retry"
            )
            response = error_response(503, problem)
            await response(scope, receive, send)
            return
        self.total += 1
        self.per_route[key] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.total -= 1
            self.per_route[key] -= 1
