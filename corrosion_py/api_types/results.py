"""The answers of ``/v1/transactions`` (and ``/v1/migrations``) and ``/v1/table_stats``::

    {"results":[{"rows_affected":1,"time":2.7e-05}],"time":0.0003,"version":12,
     "actor_id":"6e0b5d4f0f8d4c3e9a1f2b3c4d5e6f70"}
    {"results":[{"error":"…"}],"time":0.0017,"version":null,"actor_id":"6e0b…",
     "error":"…","code":"bad_request"}
    {"total_row_count":4,"invalid_tables":["nope"]}

A refused transaction keeps Corrosion's shape (the message as the only result) and adds the
message again as a top-level ``error`` beside its ``code``, so it reads like every other
refusal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import attrs

from corrosion_py.api_types.problems import Problem, problem_json

__all__ = [
    "ExecResult",
    "StatementResult",
    "TableStats",
    "exec_error_json",
    "exec_from_json",
    "exec_json",
    "table_stats_from_json",
    "table_stats_json",
]


@attrs.frozen
class StatementResult:
    rows_affected: int
    time: float
    """Seconds the statement took."""


@attrs.frozen
class ExecResult:
    """The answer to a transaction or a migration."""

    results: tuple[StatementResult, ...]
    time: float
    version: int | None
    """The new version of the node's actor; None when nothing replicated changed."""
    actor_id: str
    """The node's site id, 32 hex digits."""
    schema: dict[str, Any] | None = None
    """For a migration, what it changed (``created_tables``, ``added_columns``,
    ``created_indexes``), when the server says."""


class TableStats(NamedTuple):
    total_row_count: int
    invalid_tables: list[str]


def exec_json(result: ExecResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "results": [{"rows_affected": r.rows_affected, "time": r.time} for r in result.results],
        "time": result.time,
        "version": result.version,
        "actor_id": result.actor_id,
    }
    if result.schema is not None:
        out["schema"] = result.schema
    return out


def exec_error_json(problem: Problem, *, actor_id: str, time: float = 0.0) -> dict[str, Any]:
    """A refused or failed transaction: nothing was written."""
    return {
        "results": [{"error": problem.message}],
        "time": time,
        "version": None,
        "actor_id": actor_id,
        **problem_json(problem),
    }


def exec_from_json(body: object) -> ExecResult:
    """`ValueError` when ``body`` is not an answer of this shape."""
    if not isinstance(body, Mapping):
        raise ValueError("not a transaction's answer")
    try:
        version, schema = body.get("version"), body.get("schema")
        return ExecResult(
            results=tuple(
                StatementResult(int(r.get("rows_affected", 0)), float(r.get("time", 0.0)))
                for r in body["results"]
            ),
            time=float(body["time"]),
            version=None if version is None else int(version),
            actor_id=str(body.get("actor_id", "")),
            schema=dict(schema) if isinstance(schema, Mapping) else None,
        )
    except (TypeError, KeyError, ValueError, AttributeError):
        raise ValueError("not a transaction's answer") from None


def table_stats_json(stats: TableStats) -> dict[str, Any]:
    return {"total_row_count": stats.total_row_count, "invalid_tables": list(stats.invalid_tables)}


def table_stats_from_json(body: object) -> TableStats:
    """`ValueError` when ``body`` is not an answer of this shape."""
    if not isinstance(body, Mapping):
        raise ValueError("not a table_stats answer")
    try:
        return TableStats(int(body["total_row_count"]), [str(t) for t in body["invalid_tables"]])
    except (TypeError, KeyError, ValueError):
        raise ValueError("not a table_stats answer") from None
