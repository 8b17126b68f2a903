"""The HTTP API as one ASGI application: every route, JSON errors, auth and limits.

Routes: ``POST /v1/transactions``, ``POST /v1/queries``, ``GET /v1/health``,
``POST /v1/table_stats``, ``POST /v1/migrations`` (admin), and the subscription routes of
`corrosion_py.api.subscriptions`. Every refusal is JSON ``{"error": message, "code": code}``.

A request goes through these steps, in this order, in one call (no middleware chain: each layer
of one cost a few µs per request):

1. **Auth**: with a token configured, every request, even to an unknown path, needs
   ``Authorization: Bearer <token>`` (compared in constant time), else 401 with
   ``WWW-Authenticate: Bearer``.
2. **Route**: an unknown path is 404.
3. **Limits**: requests in progress are counted per route and overall; over either limit the
   request is answered 503 at once (never queued). A stream counts until it ends; a wrong
   method (405, with ``Allow``) counts too.
4. **Handler**: an `ApiError` it raises is answered with its status; a `StorageFault` (a full
   disk, a corrupt database: the store has logged it) 503 ``storage_fault``; a client that left
   gets nothing; anything else is a bug, logged with its traceback and answered 500
   ``{"error": "internal error: <type>", "code": "internal"}`` (no traceback in the body). A bug
   after a stream started is logged and the stream cut.

``Api.closing`` is set at shutdown; open streams end when it is.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from corrosion_py.api import health, maintenance, queries, subscriptions, transactions
from corrosion_py.api.asgi import ClientDisconnect, Receive, Scope, Send
from corrosion_py.api.errors import ApiError
from corrosion_py.api.limits import ApiConfig
from corrosion_py.api.responses import Response, error_response
from corrosion_py.api.routing import Request, Route, Router
from corrosion_py.api_types import ErrorCode, Problem
from corrosion_py.errors import StorageFault

if TYPE_CHECKING:
    from corrosion_py.agent import Agent

log = logging.getLogger("corrosion_py.api")

STREAMS = ("/v1/subscriptions", "/v1/subscriptions/{id}", "/v1/updates/{table}")
"""Routes whose responses are long-lived listener streams (their own concurrency limit)."""


class Api:
    """The API's ASGI application (``http`` scopes only: the runner owns the agent's life)."""

    def __init__(self, routes: Sequence[Route], token: str | None, config: ApiConfig) -> None:
        self.config = config
        self.closing = trio.Event()
        self.router = Router(routes)
        self._expected = None if token is None else f"Bearer {token}".encode()
        self._limits = {
            r.path: config.max_listeners_per_route
            if r.path in STREAMS
            else config.max_concurrency_per_route
            for r in routes
        }
        self._in_progress = 0
        self._per_route: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._expected is not None:
            refusal = self._check_token(scope["headers"])
            if refusal is not None:
                await self._refuse(send, receive, refusal)
                return
        path: str = scope["path"]
        route, params = self.router.match(path)
        if route is None:
            problem = Problem(ErrorCode.NOT_FOUND, f"not found: no route for {path}")
            await self._refuse(send, receive, error_response(404, problem))
            return
        over = self._over_limit(route.path)
        if over is not None:
            message = f"too many requests in progress ({over}): retry"
            problem = Problem(ErrorCode.OVERLOADED, message)
            await self._refuse(send, receive, error_response(503, problem))
            return
        self._in_progress += 1
        self._per_route[route.path] += 1
        try:
            await self._handle(route, Request(scope, receive, params), send, receive)
        finally:
            self._in_progress -= 1
            self._per_route[route.path] -= 1

    def _check_token(self, headers: Sequence[tuple[bytes, bytes]]) -> Response | None:
        """None when the request carries the token, else the 401 to answer."""
        assert self._expected is not None
        given = b""
        for name, value in headers:
            if name == b"authorization":
                given = value
        if hmac.compare_digest(given, self._expected):
            return None
        message = "invalid bearer token"
        if not given:
            message = "missing bearer token (Authorization: Bearer <token>)"
        problem = Problem(ErrorCode.UNAUTHORIZED, message)
        return error_response(401, problem, {"www-authenticate": "Bearer"})

    def _over_limit(self, key: str) -> str | None:
        """Which limit a new request on route ``key`` would pass, if any."""
        if self._in_progress >= self.config.max_concurrency:
            return f"{self.config.max_concurrency} requests in all"
        if self._per_route[key] >= self._limits[key]:
            return f"{self._limits[key]} requests on {key}"
        return None

    async def _handle(self, route: Route, request: Request, send: Send, receive: Receive) -> None:
        method = request.method
        if method not in route.allowed:
            allowed = ", ".join(route.allowed)
            problem = Problem(
                ErrorCode.METHOD_NOT_ALLOWED,
                f"method {method} not allowed on {request.path} (allowed: {allowed})",
            )
            await self._refuse(send, receive, error_response(405, problem, {"allow": allowed}))
            return
        try:
            response = await route.handler(request)
        except ApiError as exc:
            response = error_response(exc.status, exc.problem())
        except StorageFault as exc:
            response = error_response(503, Problem(ErrorCode.STORAGE_FAULT, str(exc)))
        except ClientDisconnect:
            return  # the client left while sending its body: nobody to answer
        except Exception as exc:
            log.exception("error in %s %s", method, request.path)
            problem = Problem(ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}")
            response = error_response(500, problem)
        try:
            await response.respond(send, receive, self.closing)
        except (ClientDisconnect, StorageFault):
            pass  # the client left, or the store (which logged it) failed mid-stream
        except Exception:
            log.exception("error while answering %s %s", method, request.path)

    async def _refuse(self, send: Send, receive: Receive, response: Response) -> None:
        with contextlib.suppress(ClientDisconnect):
            await response.respond(send, receive, self.closing)


def create_app(agent: Agent, token: str | None, config: ApiConfig | None = None) -> Api:
    """The API of ``agent``; with ``token``, every request needs ``Authorization: Bearer``."""
    config = config or ApiConfig()
    routes = [
        *transactions.routes(agent, config),
        *queries.routes(agent, config),
        *health.routes(agent, config),
        *maintenance.routes(agent, config),
        *subscriptions.routes(agent, config),
    ]
    return Api(routes, token, config)
