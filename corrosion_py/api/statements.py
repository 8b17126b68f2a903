"""Statements and values as Corrosion's HTTP API spells them.

A statement is one of four JSON shapes::

    "SELECT 1"
    ["INSERT INTO t (id, v) VALUES (?, ?)", [1, "x"]]
    ["INSERT INTO t (id, v) VALUES (:id, :v)", {":id": 1, ":v": "x"}]
    {"query": "INSERT INTO t (id, v) VALUES (?, ?)", "params": [1, "x"], "named_params": null}

Parameter values: ``null`` → NULL, ``true``/``false`` → 1/0, integer → INTEGER (beyond 64 bits:
REAL, as Corrosion's parser does), float → REAL, string → TEXT, an array of byte numbers
(0..255) → BLOB, anything else (object, mixed array) → its compact JSON text. Named-parameter
keys carry their sigil as in Corrosion (``:id``, ``@id``, ``$id``); Python's sqlite3 wants the
bare name, so the sigil is dropped here (a key without one is accepted too).

Result cells go the other way (`corrosion_py.api_types.values.cell_json`): NULL, INTEGER, REAL,
TEXT as themselves, a BLOB as an array of byte numbers (Corrosion's encoding, no base64); REAL
infinities become null, as serde_json writes non-finite floats. `row_line` is that encoding's
fast path for the rows of a streamed query.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

from corrosion_py.aliases import Params, SqlValue
from corrosion_py.api.errors import BadRequest
from corrosion_py.api_types import row_json
from corrosion_py.api_types.values import SIGILS

__all__ = ["BadRequest", "Params", "bind_value", "parse_statement", "parse_statements", "row_line"]


I64_MIN, I64_MAX = -(2**63), 2**63 - 1
SHAPES = (
    'a statement is "sql", ["sql", [params]], ["sql", {"named": params}] or '
    '{"query": "sql", "params": [...], "named_params": {...}}'
)
_VERBOSE_KEYS = frozenset({"query", "params", "named_params"})


def bind_value(value: object) -> SqlValue:
    """A JSON parameter value as the SQLite value it binds to."""
    if value is None or isinstance(value, str | float):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if I64_MIN <= value <= I64_MAX:
            return value
        try:
            return float(value)
        except OverflowError:
            raise BadRequest(f"integer parameter out of range: {value}") from None
    if isinstance(value, list) and all(
        isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value
    ):
        return bytes(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _named(params: Mapping[str, object]) -> dict[str, SqlValue]:
    out: dict[str, SqlValue] = {}
    for key, value in params.items():
        name = key[1:] if key.startswith(SIGILS) else key
        if not name:
            raise BadRequest(f"empty named parameter {key!r}")
        if name in out:
            raise BadRequest(f"named parameter {name!r} is given twice (with different sigils)")
        out[name] = bind_value(value)
    return out


def _params(params: object, what: str) -> Params:
    if isinstance(params, list):
        return [bind_value(v) for v in params]
    if isinstance(params, dict):
        return _named(params)
    raise BadRequest(f"{what} must be an array or an object, not {_kind(params)}")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def parse_statement(obj: object) -> tuple[str, Params]:
    """One statement in any of the four shapes as (sql, params); `BadRequest` otherwise."""
    if isinstance(obj, str):
        return obj, ()
    if isinstance(obj, list):
        if len(obj) != 2 or not isinstance(obj[0], str):
            raise BadRequest(f"{SHAPES}; got an array of {len(obj)} items")
        return obj[0], _params(obj[1], "the parameters (second item)")
    if isinstance(obj, dict):
        unknown = sorted(set(obj) - _VERBOSE_KEYS)
        if unknown:
            raise BadRequest(f"unknown key {unknown[0]!r} in a statement object; {SHAPES}")
        sql = obj.get("query")
        if not isinstance(sql, str):
            raise BadRequest(f'"query" must be a string, not {_kind(sql)}')
        params, named = obj.get("params"), obj.get("named_params")
        if params is not None and named is not None:
            raise BadRequest('give "params" or "named_params", not both')
        if params is not None:
            if not isinstance(params, list):
                raise BadRequest(f'"params" must be an array, not {_kind(params)}')
            return sql, _params(params, '"params"')
        if named is not None:
            if not isinstance(named, dict):
                raise BadRequest(f'"named_params" must be an object, not {_kind(named)}')
            return sql, _named(named)
        return sql, ()
    raise BadRequest(f"{SHAPES}; got {_kind(obj)}")


def parse_statements(body: object) -> list[tuple[str, Params]]:
    """A JSON array of at least one statement; `BadRequest` naming the first wrong one."""
    if not isinstance(body, list):
        raise BadRequest(f"the body must be a JSON array of statements, not {_kind(body)}")
    if not body:
        raise BadRequest("at least 1 statement is required")
    out = []
    for index, obj in enumerate(body):
        try:
            out.append(parse_statement(obj))
        except BadRequest as exc:
            raise BadRequest(f"statement {index}: {exc.message}") from None
    return out


_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def row_line(n: int, row: Sequence[object]) -> bytes:
    """``{"row":[n,[cells]]}`` and a newline, encoded: the hot path of streamed queries, so a
    row of plain values (no BLOB, no non-finite REAL) is encoded in one call, without copies."""
    for value in row:
        kind = type(value)
        if kind is bytes or (kind is float and not math.isfinite(value)):  # type: ignore[arg-type]
            return _ENCODE({"row": [n, row_json(row)]}).encode() + b"\n"
    return b'{"row":[%d,%s]}\n' % (n, _ENCODE(row).encode())
