"""Values and statements as Corrosion's HTTP API spells them, in both directions.

- **Result cells**: NULL, INTEGER, REAL and TEXT as themselves; a BLOB as an array of byte
  numbers (Corrosion has no base64); a REAL infinity as null, as serde_json writes non-finite
  floats. Corrosion's values are NULL, integer, real, text or BLOB and only a BLOB is an array
  (TEXT, and JSON stored as TEXT, arrive as strings), so a reader can turn arrays back into
  ``bytes`` without ambiguity (`blob`, `decode_cells`).
- **Parameters**: ``bytes``-like values go as arrays of byte numbers, everything else as its
  JSON value. Named parameters carry their sigil (``:id``, ``@id``, ``$id``), as Corrosion
  passes keys to SQLite verbatim; a name given without one gets ``:``.
- **Statements**: ``"sql"``, ``["sql", [params]]``, ``["sql", {":name": value}]`` or the verbose
  ``{"query": sql, "params": [...], "named_params": {...}}`` object (passed as is).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

from corrosion_py.aliases import Params, Statement

__all__ = [
    "SIGILS",
    "ApiStatement",
    "blob",
    "cell_json",
    "decode_cells",
    "param_json",
    "params_json",
    "row_json",
    "statement_json",
    "statements_json",
]

ApiStatement: TypeAlias = Statement | Sequence[Any] | Mapping[str, Any]
"""A statement as a caller may give it: ``"sql"``, ``(sql, params)``, ``[sql, params]``, or
Corrosion's verbose ``{"query": ...}`` mapping."""

SIGILS = (":", "@", "$")
"""What a named parameter starts with."""


def cell_json(value: object) -> Any:
    """A result cell as JSON: BLOB → array of byte numbers; a non-finite REAL → null."""
    if isinstance(value, bytes | bytearray | memoryview):
        return list(bytes(value))
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def row_json(row: Iterable[object]) -> list[Any]:
    """Every cell of a result row as JSON (`cell_json`)."""
    return [cell_json(v) for v in row]


def blob(cell: Any) -> Any:
    """A result cell with a BLOB (an array of byte numbers) as ``bytes``; others unchanged."""
    if isinstance(cell, list) and all(
        isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in cell
    ):
        return bytes(cell)
    return cell


def decode_cells(cells: Iterable[Any]) -> tuple[Any, ...]:
    """Every BLOB cell of a row as ``bytes`` (see `blob`)."""
    return tuple(blob(c) for c in cells)


def param_json(value: Any) -> Any:
    """A parameter as the JSON value Corrosion binds: bytes-like → array of byte numbers."""
    if isinstance(value, bytes | bytearray | memoryview):
        return list(bytes(value))
    return value


def params_json(params: Params) -> list[Any] | dict[str, Any]:
    """Positional parameters as an array, named ones as an object keyed with their sigil."""
    if isinstance(params, Mapping):
        return {(k if k.startswith(SIGILS) else ":" + k): param_json(v) for k, v in params.items()}
    if isinstance(params, str | bytes):
        raise TypeError(f"parameters must be a sequence or a mapping, not {type(params).__name__}")
    return [param_json(v) for v in params]


def statement_json(statement: ApiStatement) -> Any:
    """One statement in Corrosion's JSON shapes."""
    if isinstance(statement, str):
        return statement
    if isinstance(statement, Mapping):
        return dict(statement)
    if isinstance(statement, Sequence) and len(statement) == 2 and isinstance(statement[0], str):
        return [statement[0], params_json(statement[1])]
    raise TypeError(
        'a statement is "sql", (sql, [params]), (sql, {":name": value}) or a '
        f'{{"query": ...}} mapping, not {statement!r}'
    )


def statements_json(statements: ApiStatement | Iterable[ApiStatement]) -> list[Any]:
    """A list of statements (a lone SQL string counts as one)."""
    if isinstance(statements, str):
        return [statements]
    return [statement_json(s) for s in statements]
