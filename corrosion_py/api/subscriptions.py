"""The subscription endpoints (reference/corrosion.md §2.3-2.5): ``POST /v1/subscriptions``,
``GET /v1/subscriptions/{id}`` and ``POST /v1/updates/{table}``, NDJSON streams over
`corrosion_py.subs`.

What can be refused is refused before the stream starts (400/404 with ``{"error": ...}``): bad
SQL, an unknown id, a ``from`` with no subscription or older than the kept changes. Once
streaming, a listener that falls too far behind gets a last ``{"error": ...}`` line naming the
``from`` to resume with, and the stream ends.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from corrosion_py.api.errors import ApiError, BadRequest
from corrosion_py.api.responses import error_response, ndjson_response
from corrosion_py.api.statements import parse_statement, row_json
from corrosion_py.subs import (
    Change,
    ChangesTooOld,
    Columns,
    EndOfQuery,
    Event,
    NoSuchSubscription,
    Row,
    Subscription,
    SubscriptionError,
)

if TYPE_CHECKING:
    from corrosion_py.agent import Agent


def event_json(event: Event) -> dict[str, Any]:
    """One NDJSON line of a subscription, in Corrosion's shapes."""
    if isinstance(event, Columns):
        return {"columns": list(event.names)}
    if isinstance(event, Row):
        return {"row": [event.rowid, row_json(event.cells)]}
    if isinstance(event, EndOfQuery):
        return {"eoq": {"time": event.time, "change_id": event.change_id}}
    assert isinstance(event, Change)
    return {"change": [event.kind, event.rowid, row_json(event.cells), event.change_id]}


def _query_params(request: Request) -> tuple[int | None, bool]:
    raw_from = request.query_params.get("from")
    from_change = None
    if raw_from is not None:
        try:
            from_change = int(raw_from)
        except ValueError:
            raise BadRequest(f"`from` must be a change id (an integer), not {raw_from!r}") from None
        if from_change < 0:
            raise BadRequest("`from` must not be negative")
    raw_skip = request.query_params.get("skip_rows", "false").lower()
    if raw_skip not in ("true", "false", "1", "0", ""):
        raise BadRequest(f"`skip_rows` must be true or false, not {raw_skip!r}")
    return from_change, raw_skip in ("true", "1")


async def _body(request: Request) -> object:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


def _headers(sub: Subscription) -> Mapping[str, str]:
    return {"corro-query-id": sub.id, "corro-query-hash": sub.hash}


def _stream(sub: Subscription, from_change: int | None, skip_rows: bool) -> Response:
    if from_change:
        if from_change > sub.change_id:
            raise BadRequest(
                f"from={from_change} is ahead of the subscription's last change id {sub.change_id}"
            )
        if sub.matcher.changes_after(from_change) is None:
            raise BadRequest(str(ChangesTooOld(sub.matcher.oldest_kept)))

    async def lines() -> AsyncIterator[dict[str, Any]]:
        try:
            async with sub.attach(from_change=from_change, skip_rows=skip_rows) as events:
                async for event in events:
                    yield event_json(event)
        except SubscriptionError as exc:  # lagged, closed, or too old by now
            yield {"error": str(exc)}

    return ndjson_response(lines(), headers=_headers(sub))


def routes(agent: Agent) -> list[BaseRoute]:
    """The subscription routes of ``agent``."""

    async def subscribe(request: Request) -> Response:
        from_change, skip_rows = _query_params(request)
        sql, params = parse_statement(await _body(request))
        try:
            sub, _ = await agent.subs.subscribe(sql, params, existing_only=from_change is not None)
        except NoSuchSubscription as exc:
            return error_response(400, str(exc))
        except SubscriptionError as exc:
            return error_response(400, str(exc))
        return _stream(sub, from_change, skip_rows)

    async def attach(request: Request) -> Response:
        from_change, skip_rows = _query_params(request)
        sub_id = request.path_params["id"]
        sub = agent.subs.get(sub_id)
        if sub is None:
            return error_response(404, f"could not find subscription with id {sub_id}")
        return _stream(sub, from_change, skip_rows)

    async def updates(request: Request) -> Response:
        table = request.path_params["table"]
        if not await agent.subs.is_table(table):
            raise ApiError(f"table {table!r} is not a replicated table", 400)

        async def lines() -> AsyncIterator[dict[str, Any]]:
            try:
                async with agent.subs.updates(table) as notes:
                    async for note in notes:
                        yield {"notify": [note.kind, row_json(note.pk)]}
            except SubscriptionError as exc:
                yield {"error": str(exc)}

        notifier = uuid.uuid5(uuid.NAMESPACE_URL, "corrosion-py:updates:" + table)
        return ndjson_response(lines(), headers={"corro-query-id": str(notifier)})

    return [
        Route("/v1/subscriptions", subscribe, methods=["POST"]),
        Route("/v1/subscriptions/{id}", attach, methods=["GET"]),
        Route("/v1/updates/{table}", updates, methods=["POST"]),
    ]
