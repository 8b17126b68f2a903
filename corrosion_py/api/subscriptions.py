"""The subscription endpoints (Corrosion's, docs/api.md): ``POST /v1/subscriptions``,
``GET /v1/subscriptions/{id}`` and ``POST /v1/updates/{table}``, NDJSON streams over
`corrosion_py.subs`.

What can be refused is refused before the stream starts (400/404 with ``{"error": ...}``): bad
SQL, an unknown id, a ``from`` with no subscription or older than the kept changes. Once
streaming, a listener that falls too far behind gets a last ``{"error": ...}`` line naming the
``from`` to resume with, and the stream ends.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from corrosion_py.api.errors import BadRequest
from corrosion_py.api.inputs import read_json
from corrosion_py.api.limits import ApiConfig
from corrosion_py.api.responses import NdjsonResponse, error_response, ndjson_line, ndjson_response
from corrosion_py.api.statements import parse_statement, row_json
from corrosion_py.subs import (
    Change,
    Columns,
    EndOfQuery,
    Event,
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


def _headers(sub: Subscription) -> Mapping[str, str]:
    return {"corro-query-id": sub.id, "corro-query-hash": sub.hash}


class _Lines:
    """Encoded change lines shared by every listener of a subscription: a change fanned out to
    many clients is encoded once (bounded: the oldest lines are forgotten)."""

    def __init__(self, size: int = 65_536) -> None:
        self.size = size
        self._lines: OrderedDict[tuple[str, int], bytes] = OrderedDict()

    def encode(self, sub_id: str, event: Event) -> bytes:
        if not isinstance(event, Change):
            return ndjson_line(event_json(event))
        key = (sub_id, event.change_id)
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = ndjson_line(event_json(event))
            if len(self._lines) > self.size:
                self._lines.popitem(last=False)
        return line


async def _stream(
    lines: _Lines, sub: Subscription, from_change: int | None, skip_rows: bool
) -> Response:
    """Attach before answering (so no change committed after the 200 is missed), then stream
    what is queued for this listener in one chunk at a time."""
    stack = AsyncExitStack()
    try:
        batches = await stack.enter_async_context(
            sub.attach_batches(from_change=from_change, skip_rows=skip_rows)
        )
    except SubscriptionError as exc:
        return error_response(400, str(exc))

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for batch in batches:
                yield b"".join(lines.encode(sub.id, event) for event in batch)
        except SubscriptionError as exc:  # lagged or closed
            yield ndjson_line({"error": str(exc)})

    return NdjsonResponse(chunks(), headers=_headers(sub), on_close=stack.aclose)


def routes(agent: Agent, config: ApiConfig) -> list[BaseRoute]:
    """The subscription routes of ``agent``."""

    lines = _Lines()

    async def subscribe(request: Request) -> Response:
        from_change, skip_rows = _query_params(request)
        sql, params = parse_statement(await read_json(request, config.max_body_bytes))
        try:
            sub, _ = await agent.subs.subscribe(sql, params, existing_only=from_change is not None)
        except SubscriptionError as exc:
            return error_response(400, str(exc))
        # Corrosion: on an existing subscription, from=0 behaves like no from
        return await _stream(lines, sub, from_change or None, skip_rows)

    async def attach(request: Request) -> Response:
        from_change, skip_rows = _query_params(request)
        sub_id = request.path_params["id"]
        sub = agent.subs.get(sub_id)
        if sub is None:
            return error_response(404, f"could not find subscription with id {sub_id}")
        return await _stream(lines, sub, from_change, skip_rows)

    async def updates(request: Request) -> Response:
        table = request.path_params["table"]
        stack = AsyncExitStack()
        try:
            notes = await stack.enter_async_context(agent.subs.updates(table))
        except SubscriptionError as exc:
            return error_response(400, str(exc))

        async def notifications() -> AsyncIterator[dict[str, Any]]:
            try:
                async for note in notes:
                    yield {"notify": [note.kind, row_json(note.pk)]}
            except SubscriptionError as exc:
                yield {"error": str(exc)}

        notifier = uuid.uuid5(uuid.NAMESPACE_URL, "corrosion-py:updates:" + table)
        return ndjson_response(
            notifications(), headers={"corro-query-id": str(notifier)}, on_close=stack.aclose
        )

    return [
        Route("/v1/subscriptions", subscribe, methods=["POST"]),
        Route("/v1/subscriptions/{id}", attach, methods=["GET"]),
        Route("/v1/updates/{table}", updates, methods=["POST"]),
    ]
