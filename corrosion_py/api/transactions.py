"""``POST /v1/transactions[?timeout=secs]``: statements as one local transaction.

All statements run through ``Agent.transaction`` (one atomic SQLite transaction, one version of
this actor, broadcast to peers). The answer is Corrosion's ``ExecResponse``::

    {"results": [{"rows_affected": 1, "time": 2.7e-05}, ...], "time": 0.0003,
     "version": 12, "actor_id": "6e0b5d4f0f8d4c3e9a1f2b3c4d5e6f70"}

``version`` is null when nothing replicated changed. A statement that fails rolls everything
back and is answered **400** (Corrosion says 500, but the fault is the client's SQL) in the same
shape with ``{"error": message}`` as the only result, ``version`` null, and the message again as
a top-level ``"error"`` beside its ``"code"`` (``bad_request``), as every refusal has them. Every
other refusal of this route (malformed JSON, wrong shapes, an empty list) has that shape too; a
write the node's storage refused (a full disk, a corrupt database: ``StorageFault``) is answered
**503** in that shape (``storage_fault``). The shapes are `corrosion_py.api_types.results`.

Every transaction is interrupted and rolled back once the node's ``sql_tx_timeout`` has passed
since it was submitted (waiting for the writer included); ``timeout`` can only shorten that (0:
the node's bound alone). Statements may only be INSERT, REPLACE, UPDATE, DELETE, SELECT, VALUES
or WITH (the store's rule: transaction control, ATTACH and schema changes are refused; schema
changes go through ``/v1/migrations``), and the node's rules for user SQL apply (internal
tables, engine functions, UTF-8 text: ``Agent.transaction``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import trio

from corrosion_py.api.errors import ApiError
from corrosion_py.api.inputs import read_json, timeout_param
from corrosion_py.api.limits import ApiConfig
from corrosion_py.api.responses import Response, json_response
from corrosion_py.api.routing import Request, Route
from corrosion_py.api.statements import parse_statements
from corrosion_py.api_types import (
    ErrorCode,
    ExecResult,
    Problem,
    StatementResult,
    exec_error_json,
    exec_json,
)
from corrosion_py.errors import StatementError, StorageFault

if TYPE_CHECKING:
    from corrosion_py.agent import Agent


def exec_error(agent: Agent, status: int, problem: Problem, elapsed: float = 0.0) -> Response:
    """A refused or failed ``ExecResponse``: nothing was written."""
    return json_response(
        exec_error_json(problem, actor_id=agent.actor_id.hex(), time=elapsed), status
    )


def exec_response(
    agent: Agent,
    results: list[StatementResult],
    elapsed: float,
    version: int | None,
    schema: dict[str, Any] | None = None,
) -> Response:
    result = ExecResult(tuple(results), elapsed, version, agent.actor_id.hex(), schema)
    return json_response(exec_json(result))


def routes(agent: Agent, config: ApiConfig) -> list[Route]:
    async def transactions(request: Request) -> Response:
        started = time.perf_counter()
        try:
            timeout = timeout_param(request, None)
            statements = parse_statements(await read_json(request, config.max_body_bytes))
        except ApiError as exc:
            return exec_error(agent, exc.status, exc.problem())
        try:
            # shielded: once submitted, the write commits and is broadcast even if the client
            # goes away (a cancelled submit could otherwise commit later, unannounced)
            with trio.CancelScope(shield=True):
                result = await agent.transaction(statements, timeout=timeout)
        except StatementError as exc:
            problem = Problem(ErrorCode.BAD_REQUEST, str(exc))
            return exec_error(agent, 400, problem, time.perf_counter() - started)
        except StorageFault as exc:  # the node's disk or file, not the request: nothing written
            problem = Problem(ErrorCode.STORAGE_FAULT, str(exc))
            return exec_error(agent, 503, problem, time.perf_counter() - started)
        results = [
            StatementResult(max(0, n), t)
            for n, t in zip(result.rows_affected, result.times, strict=True)
        ]
        return exec_response(agent, results, time.perf_counter() - started, result.version)

    return [Route("/v1/transactions", transactions, methods=["POST"])]
