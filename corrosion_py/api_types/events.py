"""What a query, subscription or ``/v1/updates`` stream carries: its headers, its events, and
their NDJSON lines (Corrosion's shapes, one JSON object with one key per line)::

    {"columns":["id","region"]}                 Columns
    {"row":[1,["m1","ams"]]}                    Row: rowid, cells
    {"eoq":{"time":0.0001,"change_id":0}}       EndOfQuery (no change_id for a plain query)
    {"change":["update",1,["m1","iad"],1]}      Change: kind, rowid, cells, change_id
    {"notify":["delete",["m1"]]}                Notify (``/v1/updates``): kind, primary key
    {"error":"…"}                               the stream ends (`Problem`)

The server and the clients use these very classes, so an event read through the HTTP client
is equal to, and of the same type as, the one the agent hands an embedded subscriber. Cells
are Python values; on the wire a BLOB is an array of byte numbers (`values`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeAlias

import attrs

from corrosion_py.api_types.problems import Problem, problem_from_json
from corrosion_py.api_types.values import decode_cells, row_json

__all__ = [
    "QUERY_HASH_HEADER",
    "QUERY_ID_HEADER",
    "Change",
    "Columns",
    "EndOfQuery",
    "Event",
    "Line",
    "MalformedLine",
    "Notify",
    "Row",
    "event_from_json",
    "event_json",
    "parse_line",
]

QUERY_ID_HEADER = "corro-query-id"
"""Response header: the subscription's id (for ``/v1/updates``, the table's notifier id)."""
QUERY_HASH_HEADER = "corro-query-hash"
"""Response header: the hash of a subscription's SQL."""


@attrs.frozen
class Columns:
    """The column names of the result, first line of a query or subscription."""

    names: tuple[str, ...]


@attrs.frozen
class Row:
    """A row of the initial result. In a subscription ``rowid`` is stable for its lifetime and
    names the row in later `Change` events; in a plain query it counts the rows from 1."""

    rowid: int
    cells: tuple[Any, ...]


@attrs.frozen
class EndOfQuery:
    """The initial rows are over: ``time`` is the seconds they took; ``change_id`` the last
    change they include (None for a plain query)."""

    time: float
    change_id: int | None = None


@attrs.frozen
class Change:
    """A difference of a subscription's result: ``kind`` is "insert", "update" or "delete";
    cells are the whole row (for a delete its last value); change ids are contiguous per
    subscription."""

    kind: str
    rowid: int
    cells: tuple[Any, ...]
    change_id: int


@attrs.frozen
class Notify:
    """A row of the table was written ("update", inserts too) or deleted ("delete"); ``pk`` are
    its primary key values in key order."""

    kind: str
    pk: tuple[Any, ...]


Event: TypeAlias = Columns | Row | EndOfQuery | Change
"""What a subscription yields."""
Line: TypeAlias = Event | Notify | Problem
"""What one line of a stream decodes to."""


class MalformedLine(ValueError):
    """A line that is not one of the shapes above (the message quotes it)."""


def event_json(event: Event | Notify) -> dict[str, Any]:
    """The JSON object of one line."""
    if isinstance(event, Columns):
        return {"columns": list(event.names)}
    if isinstance(event, Row):
        return {"row": [event.rowid, row_json(event.cells)]}
    if isinstance(event, EndOfQuery):
        if event.change_id is None:
            return {"eoq": {"time": event.time}}
        return {"eoq": {"time": event.time, "change_id": event.change_id}}
    if isinstance(event, Change):
        return {"change": [event.kind, event.rowid, row_json(event.cells), event.change_id]}
    return {"notify": [event.kind, row_json(event.pk)]}


def parse_line(line: str | bytes, *, decode_blobs: bool = True) -> Line | None:
    """One NDJSON line (`event_from_json`); `MalformedLine` when it is not JSON (or nests too
    deep to parse)."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        raise MalformedLine(f"malformed line in the stream: {_quote(line)}") from None
    return event_from_json(obj, decode_blobs=decode_blobs, line=line)


def event_from_json(
    obj: object, *, decode_blobs: bool = True, line: str | bytes | None = None
) -> Line | None:
    """The event (or `Problem`) of one line's JSON object; None for a kind of line this
    version does not know (newer servers may add some). BLOB cells become ``bytes`` unless
    ``decode_blobs`` is false. `MalformedLine` (quoting ``line``, else ``obj``) when the line
    is not one object with one key (an error line may have more), or its value has the wrong
    shape."""
    if isinstance(obj, dict) and len(obj) == 1 and "error" not in obj:
        [(key, value)] = obj.items()
        try:
            return _event(key, value, decode_blobs)
        except (TypeError, ValueError):
            raise MalformedLine(f"malformed {key!r} line: {_shown(obj, line)}") from None
    problem = problem_from_json(obj)
    if problem is not None:
        return problem
    if isinstance(obj, Mapping) and obj.keys() == {"error"}:  # an error that is not text
        return Problem(None, json.dumps(obj["error"], default=repr))
    raise MalformedLine(f"unexpected line in the stream: {_shown(obj, line)}")


def _event(key: str, value: Any, decode_blobs: bool) -> Line | None:
    if key == "change":
        kind, rowid, cells, change_id = value
        return Change(_str(kind), _int(rowid), _cells(cells, decode_blobs), _int(change_id))
    if key == "row":
        rowid, cells = value
        return Row(_int(rowid), _cells(cells, decode_blobs))
    if key == "columns":
        if not isinstance(value, list):
            raise TypeError("columns")
        return Columns(tuple(_str(name) for name in value))
    if key == "eoq":
        if not isinstance(value, Mapping):
            raise TypeError("eoq")
        change_id = value.get("change_id")
        time = _float(value.get("time", 0.0))
        return EndOfQuery(time, None if change_id is None else _int(change_id))
    if key == "notify":
        kind, pk = value
        return Notify(_str(kind), _cells(pk, decode_blobs))
    return None


# exact types (``bool`` is not an integer here): what json.loads makes of a well-formed line


def _int(value: object) -> int:
    if type(value) is not int:
        raise TypeError("an integer")
    return value


def _float(value: object) -> float:
    if type(value) is not float and type(value) is not int:
        raise TypeError("a number")
    return float(value)


def _str(value: object) -> str:
    if type(value) is not str:
        raise TypeError("a string")
    return value


def _cells(value: object, decode_blobs: bool) -> tuple[Any, ...]:
    if type(value) is not list:
        raise TypeError("cells")
    return decode_cells(value) if decode_blobs else tuple(value)


def _shown(obj: object, line: str | bytes | None) -> str:
    return _quote(line if line is not None else json.dumps(obj, default=repr))


def _quote(line: str | bytes) -> str:
    return repr(line[:200])
