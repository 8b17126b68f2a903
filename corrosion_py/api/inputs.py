"""Reading what a request carries: its JSON body (bounded) and typed query parameters.

Every failure is a `BadRequest` (or `TooLarge`, 413, for a body over the limit) naming what is
wrong, raised before anything is touched.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

from corrosion_py.api.errors import BadRequest, TooLarge
from corrosion_py.api.routing import Request


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: Request, limit: int) -> Any:
    """The body parsed as JSON (NaN and Infinity refused); at most ``limit`` bytes are read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body too large (limit {limit} bytes)")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body too large (limit {limit} bytes)")
        parts.append(chunk)
    body = b"".join(parts)
    if not body.strip():
        raise BadRequest("the request body is empty: a JSON document is expected")
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError too
        raise BadRequest(f"malformed JSON: {exc}") from None


def float_param(request: Request, name: str) -> float | None:
    """A non-negative finite number from the query string (None when absent)."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise BadRequest(f"query parameter {name!r} must be a number >= 0, got {raw!r}")
    return value


def int_param(request: Request, name: str, low: int = 0, high: int = 2**63 - 1) -> int | None:
    """An integer in low..=high from the query string (None when absent)."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"query parameter {name!r} must be in {low}..{high}, got {raw!r}")
    return value


def timeout_param(request: Request, default: float | None) -> float | None:
    """``?timeout=<seconds>``: ``default`` when absent; 0 means no limit (None)."""
    value = float_param(request, "timeout")
    if value is None:
        return default
    return value or None
