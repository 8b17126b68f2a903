"""The starlette application of the HTTP API: every route, JSON errors, auth and limits.

Routes: ``POST /v1/transactions``, ``POST /v1/queries``, ``GET /v1/health``,
``POST /v1/table_stats``, ``POST /v1/migrations`` (admin), and the subscription routes of
`corrosion_py.api.subscriptions`. Every refusal is JSON ``{"error": message, "code": code}``:
404 for an unknown path, 405 for a wrong method (with ``Allow``), 400 for bad input, 401 without
the token, 503 over a concurrency limit, 500 for a bug (logged; no traceback in the body).
``app.state.closing`` is set at shutdown; open streams end when it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from corrosion_py.api import health, maintenance, queries, subscriptions, transactions
from corrosion_py.api.errors import ApiError
from corrosion_py.api.limits import ApiConfig
from corrosion_py.api.middleware import AuthMiddleware, ErrorMiddleware, LimitMiddleware
from corrosion_py.api.responses import error_response
from corrosion_py.api_types import ErrorCode, Problem

if TYPE_CHECKING:
    from corrosion_py.agent import Agent


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        code, message = ErrorCode.NOT_FOUND, f"not found: no route for {request.url.path}"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        code = ErrorCode.METHOD_NOT_ALLOWED
        message = f"method {request.method} not allowed on {request.url.path} (allowed: {allowed})"
    else:
        code = ErrorCode.BAD_REQUEST if exc.status_code < 500 else ErrorCode.INTERNAL
        message = exc.detail
    return error_response(exc.status_code, Problem(code, message), exc.headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.problem())


STREAMS = ("/v1/subscriptions", "/v1/subscriptions/{id}", "/v1/updates/{table}")
"""Routes whose responses are long-lived listener streams (their own concurrency limit)."""


def create_app(agent: Agent, token: str | None, config: ApiConfig | None = None) -> Starlette:
    """The API of ``agent``; with ``token``, every request needs ``Authorization: Bearer``."""
    config = config or ApiConfig()
    routes = [
        *transactions.routes(agent, config),
        *queries.routes(agent, config),
        *health.routes(agent, config),
        *maintenance.routes(agent, config),
        *subscriptions.routes(agent, config),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(ErrorMiddleware),
            Middleware(AuthMiddleware, token=token),
            Middleware(
                LimitMiddleware,
                routes=routes,
                total=config.max_concurrency,
                per_route=config.max_concurrency_per_route,
                route_limits={path: config.max_listeners_per_route for path in STREAMS},
            ),
        ],
        exception_handlers={HTTPException: _http_error, ApiError: _api_error},
    )
    app.state.closing = trio.Event()
    app.state.config = config
    return app
