"""``POST /v1/table_stats`` and the admin ``POST /v1/migrations``.

``table_stats``: ``{"tables": ["sandwiches", "nope"]}`` → ``{"total_row_count": 4,
"invalid_tables": ["nope"]}``: the rows of the named tables that are replicated tables (CRRs)
of the schema, each counted once; every other name is listed as invalid, once, in the order
given.

``migrations`` (Corrosion v0.x's, removed from Corrosion v1; kept here as an admin endpoint):
the body is a JSON array of schema statements (``CREATE TABLE``, ``CREATE INDEX``), applied on
top of the schema recorded in the database by the schema files' additive rules
(``Agent.migrate``), in one transaction. A refused statement is answered 400 with the rule's
message and nothing changes. The answer has the transactions' shape, with every result
``{"rows_affected": 0, "time": 0.0}`` (the statements are applied as one plan, so only the
total ``time`` is measured) and a ``"schema"`` key saying what changed.
The statements are recorded with the source ``<api>``; add them to the schema files too, or a
restart with those files refuses to drop what they lack.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from corrosion_py.agent import SchemaError
from corrosion_py.api.errors import ApiError, BadRequest
from corrosion_py.api.inputs import read_json
from corrosion_py.api.limits import ApiConfig
from corrosion_py.api.responses import Response, json_response
from corrosion_py.api.routing import Request, Route
from corrosion_py.api.transactions import exec_error, exec_response
from corrosion_py.api_types import ErrorCode, Problem, StatementResult, table_stats_json

if TYPE_CHECKING:
    from corrosion_py.agent import Agent


def _tables(body: object) -> list[str]:
    if not isinstance(body, dict) or "tables" not in body:
        raise BadRequest('the body must be an object {"tables": [names...]}')
    unknown = sorted(set(body) - {"tables"})
    if unknown:
        raise BadRequest(f'unknown key {unknown[0]!r}: the body is {{"tables": [names...]}}')
    tables = body["tables"]
    if not isinstance(tables, list) or not all(isinstance(t, str) for t in tables):
        raise BadRequest('"tables" must be an array of table names (strings)')
    return tables


def _schema_statements(body: object) -> list[str]:
    if not isinstance(body, list) or not all(isinstance(s, str) for s in body):
        raise BadRequest("the body must be a JSON array of schema statements (strings)")
    if not body:
        raise BadRequest("at least 1 statement is required")
    return body


def routes(agent: Agent, config: ApiConfig) -> list[Route]:
    async def table_stats(request: Request) -> Response:
        tables = _tables(await read_json(request, config.max_body_bytes))
        stats = await agent.table_stats(tables)
        return json_response(table_stats_json(stats))

    async def migrations(request: Request) -> Response:
        started = time.perf_counter()
        try:
            statements = _schema_statements(await read_json(request, config.max_body_bytes))
        except ApiError as exc:
            return exec_error(agent, exc.status, exc.problem())
        try:
            result = await agent.migrate(statements)
        except SchemaError as exc:
            problem = Problem(ErrorCode.BAD_REQUEST, str(exc))
            return exec_error(agent, 400, problem, time.perf_counter() - started)
        schema = {
            "created_tables": list(result.created_tables),
            "added_columns": [list(tc) for tc in result.added_columns],
            "created_indexes": list(result.created_indexes),
        }
        results = [StatementResult(0, 0.0) for _ in statements]
        return exec_response(agent, results, time.perf_counter() - started, None, schema)

    return [
        Route("/v1/table_stats", table_stats, methods=["POST"]),
        Route("/v1/migrations", migrations, methods=["POST"]),
    ]
