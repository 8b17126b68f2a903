"""The subscription endpoints, Corrosion's: ``POST /v1/subscriptions``,
``GET /v1/subscriptions/{id}`` and ``POST /v1/updates/{table}``, NDJSON streams over
`corrosion_py.subs` in the lines of `corrosion_py.api_types.events`.

What can be refused is refused before the stream starts (400/404 with ``{"error": ...,
"code": ...}``): bad SQL, an unknown id (``no_such_subscription``), a ``from`` with no
subscription (the same) or older than the kept changes (``changes_too_old`` with
``min_change_id``). Once streaming, a listener that falls too far behind gets a last
``{"error": ...}`` line naming the ``from`` to resume with, and the stream ends; so does every
stream when the agent stops or the subscription's query fails. Those lines carry their code and
fields (``subscriber_lagged`` with ``resume_from``, ``shutting_down``, ``subscription_failed``)
only when the request asked with ``corro-error-codes: 1``, as an extra key would break
Corrosion's own client.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from corrosion_py.agent import Subscription, SubscriptionError
from corrosion_py.api.errors import BadRequest
from corrosion_py.api.inputs import read_json
from corrosion_py.api.limits import ApiConfig
from corrosion_py.api.responses import (
    NdjsonResponse,
    Response,
    error_response,
    ndjson_line,
    ndjson_response,
)
from corrosion_py.api.routing import Request, Route
from corrosion_py.api.statements import parse_statement
from corrosion_py.api_types import (
    ERROR_CODES_HEADER,
    QUERY_HASH_HEADER,
    QUERY_ID_HEADER,
    Change,
    ErrorCode,
    Event,
    Problem,
    event_json,
    problem_json,
)

if TYPE_CHECKING:
    from corrosion_py.agent import Agent


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
    return {QUERY_ID_HEADER: sub.id, QUERY_HASH_HEADER: sub.hash}


def _wants_codes(request: Request) -> bool:
    """Whether the stream's error lines may carry their code and fields."""
    return request.headers.get(ERROR_CODES_HEADER) == "1"


def _refusal(exc: SubscriptionError) -> Response:
    return error_response(400, exc.problem())


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
    lines: _Lines, sub: Subscription, from_change: int | None, skip_rows: bool, codes: bool
) -> Response:
    """Attach before answering (so no change committed after the 200 is missed), then stream
    what is queued for this listener in one chunk at a time."""
    stack = AsyncExitStack()
    try:
        batches = await stack.enter_async_context(
            sub.attach_batches(from_change=from_change, skip_rows=skip_rows)
        )
    except SubscriptionError as exc:
        return _refusal(exc)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for batch in batches:
                yield b"".join(lines.encode(sub.id, event) for event in batch)
        except SubscriptionError as exc:  # lagged or closed
            yield ndjson_line(problem_json(exc.problem(), with_code=codes))

    return NdjsonResponse(chunks(), headers=_headers(sub), on_close=stack.aclose)


def routes(agent: Agent, config: ApiConfig) -> list[Route]:
    """The subscription routes of ``agent``."""

    lines = _Lines()

    async def subscribe(request: Request) -> Response:
        from_change, skip_rows = _query_params(request)
        sql, params = parse_statement(await read_json(request, config.max_body_bytes))
        try:
            sub = await agent.subscription(sql, params, existing_only=from_change is not None)
        except SubscriptionError as exc:
            return _refusal(exc)
        # Corrosion: on an existing subscription, from=0 behaves like no from
        return await _stream(lines, sub, from_change or None, skip_rows, _wants_codes(request))

    async def attach(request: Request) -> Response:
        from_change, skip_rows = _query_params(request)
        sub_id = request.path_params["id"]
        sub = agent.get_subscription(sub_id)
        if sub is None:
            missing = f"could not find subscription with id {sub_id}"
            return error_response(404, Problem(ErrorCode.NO_SUCH_SUBSCRIPTION, missing))
        return await _stream(lines, sub, from_change, skip_rows, _wants_codes(request))

    async def updates(request: Request) -> Response:
        table = request.path_params["table"]
        codes = _wants_codes(request)
        stack = AsyncExitStack()
        try:
            notes = await stack.enter_async_context(agent.table_updates(table))
        except SubscriptionError as exc:
            return _refusal(exc)

        async def notifications() -> AsyncIterator[dict[str, Any]]:
            try:
                async for note in notes:
                    yield event_json(note)
            except SubscriptionError as exc:
                yield problem_json(exc.problem(), with_code=codes)

        notifier = uuid.uuid5(uuid.NAMESPACE_URL, "corrosion-py:updates:" + table)
        return ndjson_response(
            notifications(), headers={QUERY_ID_HEADER: str(notifier)}, on_close=stack.aclose
        )

    return [
        Route("/v1/subscriptions", subscribe, methods=["POST"]),
        Route("/v1/subscriptions/{id}", attach, methods=["GET"]),
        Route("/v1/updates/{table}", updates, methods=["POST"]),
    ]
