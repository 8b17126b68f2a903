"""What the sync and async HTTP clients share (`corrosion_py.client` is the facade): the
exceptions, the result and event types, request building, response parsing, and the
subscription tracker that decides what a reconnecting subscription asks for and which lines it
passes on. Nothing here does I/O, so both clients drive the same rules.

Formats are those of Corrosion's HTTP API (docs/api.md). Two decisions of ours:

- **BLOBs.** Parameters that are ``bytes``/``bytearray``/``memoryview`` are sent as arrays of
  byte numbers. Result cells that are JSON arrays are decoded to ``bytes`` by default: in
  Corrosion's value encoding an array is only ever a BLOB (TEXT, and JSON stored as TEXT, arrive
  as strings), so the decoding is unambiguous. ``decode_blobs=False`` keeps the raw lists;
  `decode_cells` / `blob` convert later.
- **Named parameters** are sent with their sigil (``:id``); a key given without one gets ``:``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import attrs

__all__ = [
    "CannotResume",
    "Change",
    "ChangesTooOld",
    "ClientError",
    "Columns",
    "EndOfQuery",
    "Event",
    "ExecResult",
    "Notify",
    "QueryError",
    "ResubscribeRequired",
    "ResumeFailed",
    "ResumePolicy",
    "Row",
    "StatementResult",
    "SubscriptionError",
    "SubscriptionGone",
    "TableStats",
    "TransactionError",
    "TransportError",
    "Unauthorized",
    "Unhealthy",
    "blob",
    "decode_cells",
]

# -- errors ------------------------------------------------------------------------------------


class ClientError(Exception):
    """Base of every error the client raises: ``status`` is the HTTP status (None when no answer
    was received), ``message`` the server's ``error`` text (or ours), ``url`` the request's."""

    def __init__(self, message: str, status: int | None = None, url: str | None = None) -> None:
        where = f" ({status} from {url})" if status is not None else f" ({url})" if url else ""
        super().__init__(message + where)
        self.message = message
        self.status = status
        self.url = url


class TransportError(ClientError):
    """The server could not be reached or the connection failed (refused, reset, timed out)."""


class Unauthorized(ClientError):
    """401: the bearer token is missing or wrong."""


class TransactionError(ClientError):
    """A transaction (or migration) was refused or failed: nothing was written. ``results`` holds
    the per-statement entries of the answer when it had any."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        url: str | None = None,
        results: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__(message, status, url)
        self.results = tuple(results)


class QueryError(ClientError):
    """A query was refused (400/500 before any row) or failed mid-stream (an ``error`` line,
    ``status`` 200 then)."""


class Unhealthy(ClientError):
    """``/v1/health`` answered that the node is not healthy; ``details`` is its ``response``
    object when it sent one."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        url: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, status, url)
        self.details = dict(details or {})


class SubscriptionError(ClientError):
    """A subscription (or ``/v1/updates`` stream) was refused or ended with an error."""


class ResumeFailed(SubscriptionError):
    """The connection of a subscription dropped and every reconnection attempt failed (the
    cause is chained). ``last_change_id`` is where a later `attach` can resume from."""

    def __init__(self, message: str, sub_id: str | None, last_change_id: int | None) -> None:
        super().__init__(message)
        self.sub_id = sub_id
        self.last_change_id = last_change_id


class ResubscribeRequired(SubscriptionError):
    """The subscription cannot continue where it stopped: subscribe again from scratch (a new
    snapshot of the rows)."""


class SubscriptionGone(ResubscribeRequired):
    """The subscription no longer exists on the server (404, or no subscription for a
    ``from``)."""


class ChangesTooOld(ResubscribeRequired):
    """The server no longer keeps the changes after the last one seen; ``min_change_id`` is the
    oldest it still has (None when the message did not say)."""

    def __init__(self, message: str, status: int | None = None, url: str | None = None) -> None:
        super().__init__(message, status, url)
        found = _MIN_CHANGE_ID.search(message)
        self.min_change_id = int(found.group(1)) if found else None


class CannotResume(ResubscribeRequired):
    """The stream dropped where no resume point is known (during the initial rows, or before the
    first change of a ``skip_rows`` subscription), or the server's ids were not contiguous."""


_MIN_CHANGE_ID = re.compile(r"min change id:?\s*(\d+)")

# -- values ------------------------------------------------------------------------------------

Param = Any
"""A parameter value: None, bool, int, float, str, bytes-like (a BLOB), or anything JSON (bound
as its JSON text by the server)."""
Params = Sequence[Param] | Mapping[str, Param]
Statement = str | tuple[str, Params] | Sequence[Any] | Mapping[str, Any]
"""``"sql"``, ``(sql, [params])``, ``(sql, {":name": value})``, or Corrosion's verbose
``{"query": sql, "params": [...], "named_params": {...}}`` passed as is."""


def param_json(value: Param) -> Any:
    """A parameter as the JSON value Corrosion binds: bytes-like → array of byte numbers."""
    if isinstance(value, bytes | bytearray | memoryview):
        return list(bytes(value))
    return value


def params_json(params: Params) -> list[Any] | dict[str, Any]:
    if isinstance(params, Mapping):
        return {
            (k if k[:1] in (":", "@", "$") else ":" + k): param_json(v) for k, v in params.items()
        }
    if isinstance(params, str | bytes):
        raise TypeError(f"parameters must be a sequence or a mapping, not {type(params).__name__}")
    return [param_json(v) for v in params]


def statement_json(statement: Statement) -> Any:
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


def statements_json(statements: Statement | Iterable[Statement]) -> list[Any]:
    """A list of statements (a lone SQL string counts as one)."""
    if isinstance(statements, str):
        return [statements]
    return [statement_json(s) for s in statements]


def blob(cell: Any) -> Any:
    """A result cell with a BLOB (an array of byte numbers) as ``bytes``; others unchanged."""
    if isinstance(cell, list) and all(isinstance(b, int) and 0 <= b <= 255 for b in cell):
        return bytes(cell)
    return cell


def decode_cells(cells: Iterable[Any]) -> tuple[Any, ...]:
    """Every BLOB cell of a row as ``bytes`` (see `blob`)."""
    return tuple(blob(c) for c in cells)


def dumps(obj: Any) -> bytes:
    text = json.dumps(obj, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        # a lone surrogate (a command-line argument that is not UTF-8): sent as a JSON escape,
        # so the server answers what is wrong with which statement or parameter
        return json.dumps(obj, allow_nan=False, separators=(",", ":")).encode()


def query_string(**params: Any) -> dict[str, str]:
    """Query parameters without the None ones; booleans as ``true``/``false``."""
    out = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


# -- results -----------------------------------------------------------------------------------


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


@attrs.frozen
class Columns:
    names: tuple[str, ...]


@attrs.frozen
class Row:
    """A row of a subscription's initial result; ``rowid`` is stable for the subscription's
    lifetime and names the row in later `Change` events."""

    rowid: int
    cells: tuple[Any, ...]


@attrs.frozen
class EndOfQuery:
    """The initial rows are over; ``change_id`` is the last change they include."""

    time: float
    change_id: int | None


@attrs.frozen
class Change:
    """``kind`` is "insert", "update" or "delete"; cells are the whole row (for a delete, its
    last value); change ids are contiguous per subscription."""

    kind: str
    rowid: int
    cells: tuple[Any, ...]
    change_id: int


@attrs.frozen
class Notify:
    """A row of the table was written ("update", inserts too) or deleted ("delete")."""

    kind: str
    pk: tuple[Any, ...]


Event = Columns | Row | EndOfQuery | Change


@attrs.frozen
class ResumePolicy:
    """How a subscription reconnects after its stream dropped: up to ``attempts`` tries in a
    row (0: never; the count starts again after a reconnection succeeds), the first at once,
    then after ``backoff`` seconds, growing by ``multiplier`` up to ``max_backoff``."""

    attempts: int = 8
    backoff: float = 0.1
    multiplier: float = 2.0
    max_backoff: float = 5.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt`` (0-based)."""
        if attempt == 0:
            return 0.0
        return float(min(self.max_backoff, self.backoff * self.multiplier ** (attempt - 1)))


# -- requests and answers ----------------------------------------------------------------------

JSON_HEADERS = {"content-type": "application/json"}
Address = str | tuple[str, int]


def base_url(address: Address) -> str:
    """``http://host:port`` from a URL, ``"host:port"`` or ``(host, port)``."""
    if isinstance(address, tuple):
        host, port = address
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"
    url = address if "://" in address else "http://" + address
    return url.rstrip("/")


def transport_error(exc: Exception, url: str) -> TransportError:
    """An httpx transport failure as our `TransportError`, naming the URL."""
    detail = str(exc) or type(exc).__name__
    return TransportError(f"cannot talk to {url}: {detail}", None, url)


@attrs.frozen
class Answer:
    """A whole answer (for a stream: its status and headers; the body only when refused)."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    url: str


@attrs.frozen
class Request:
    method: str
    path: str
    params: dict[str, str]
    body: bytes | None


def transaction_request(
    path: str, statements: Statement | Iterable[Statement], timeout: float | None = None
) -> Request:
    return Request("POST", path, query_string(timeout=timeout), dumps(statements_json(statements)))


def query_request(sql: str, params: Params, timeout: float | None) -> Request:
    statement = statement_json((sql, params)) if params else sql
    return Request("POST", "/v1/queries", query_string(timeout=timeout), dumps(statement))


def health_request(
    gaps: int | None,
    p99_lag: float | None,
    max_queue: int | None,
    queue_size: int | None,
    failure_status: int | None,
) -> Request:
    params = query_string(
        gaps=gaps,
        p99_lag=p99_lag,
        max_queue=max_queue,
        queue_size=queue_size,
        failure_status=failure_status,
    )
    return Request("GET", "/v1/health", params, None)


def table_stats_request(tables: Sequence[str]) -> Request:
    return Request("POST", "/v1/table_stats", {}, dumps({"tables": list(tables)}))


def exec_result(answer: Answer) -> ExecResult:
    if answer.status != 200:
        raise refusal(answer.status, answer.content, answer.url, TransactionError)
    return parse_exec(answer.content, answer.url)


def health_result(answer: Answer) -> dict[str, Any]:
    body = body_json(answer.content)
    details = body.get("response") if isinstance(body, dict) else None
    if answer.status == 200 and isinstance(details, dict):
        return details
    if answer.status == 401:
        raise refusal(answer.status, answer.content, answer.url)
    message = error_message(body, answer.content, answer.status)
    if isinstance(details, dict) and "error" not in body:
        message = "unhealthy"
    raise Unhealthy(message, answer.status, answer.url, details)


def table_stats_result(answer: Answer) -> TableStats:
    if answer.status != 200:
        raise refusal(answer.status, answer.content, answer.url)
    body = body_json(answer.content)
    try:
        return TableStats(int(body["total_row_count"]), [str(t) for t in body["invalid_tables"]])
    except (TypeError, KeyError, ValueError):
        raise ClientError(f"unexpected answer: {answer.content[:200]!r}", 200, answer.url) from None


def body_json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None


def error_message(body: Any, content: bytes, status: int) -> str:
    """The server's ``{"error": ...}`` text (or a transaction's first result error)."""
    if isinstance(body, dict):
        if isinstance(body.get("error"), str):
            return str(body["error"])
        for result in body.get("results") or ():
            if isinstance(result, dict) and isinstance(result.get("error"), str):
                return str(result["error"])
    text = content.decode(errors="replace").strip()
    return text[:500] or f"HTTP {status}"


def refusal(
    status: int, content: bytes, url: str, kind: type[ClientError] = ClientError
) -> ClientError:
    """The exception for a non-2xx answer: 401 is `Unauthorized` whatever the endpoint."""
    body = body_json(content)
    message = error_message(body, content, status)
    if status == 401:
        return Unauthorized(message, status, url)
    if kind is TransactionError:
        results = body.get("results") if isinstance(body, dict) else None
        return TransactionError(message, status, url, results if isinstance(results, list) else ())
    return kind(message, status, url)


def parse_exec(content: bytes, url: str) -> ExecResult:
    body = body_json(content)
    try:
        return ExecResult(
            results=tuple(
                StatementResult(int(r.get("rows_affected", 0)), float(r.get("time", 0.0)))
                for r in body["results"]
            ),
            time=float(body["time"]),
            version=None if body.get("version") is None else int(body["version"]),
            actor_id=str(body.get("actor_id", "")),
            schema=body["schema"] if isinstance(body.get("schema"), dict) else None,
        )
    except (TypeError, KeyError, ValueError, AttributeError):
        raise ClientError(f"unexpected answer: {content[:200]!r}", 200, url) from None


def parse_line(line: str, url: str, kind: type[ClientError]) -> tuple[str, Any]:
    """One NDJSON line as (key, value) of its single-key object."""
    try:
        obj = json.loads(line)
    except ValueError:
        raise kind(f"malformed line in the stream: {line[:200]!r}", 200, url) from None
    if not isinstance(obj, dict) or len(obj) != 1:
        raise kind(f"unexpected line in the stream: {line[:200]!r}", 200, url)
    [(key, value)] = obj.items()
    return key, value


def cells_of(value: Any, decode_blobs: bool) -> tuple[Any, ...]:
    cells = value if isinstance(value, list) else []
    return decode_cells(cells) if decode_blobs else tuple(cells)


def notify_line(line: str, url: str, decode_blobs: bool) -> Notify | None:
    """A line of ``/v1/updates/{table}``: a `Notify`, None for an unknown kind of line."""
    key, value = parse_line(line, url, SubscriptionError)
    if key == "error":
        raise SubscriptionError(str(value), 200, url)
    if key != "notify":
        return None
    try:
        kind, pk = value
        return Notify(str(kind), cells_of(pk, decode_blobs))
    except (TypeError, ValueError):
        raise SubscriptionError(f"malformed notify line: {line[:200]!r}", 200, url) from None


def query_line(
    line: str, url: str, decode_blobs: bool
) -> Columns | tuple[Any, ...] | EndOfQuery | None:
    """A line of ``/v1/queries``: `Columns`, a row (tuple of cells), `EndOfQuery`, or None for
    an unknown kind of line; an ``error`` line raises `QueryError`."""
    key, value = parse_line(line, url, QueryError)
    try:
        if key == "row":
            return cells_of(value[1], decode_blobs)
        if key == "columns":
            return Columns(tuple(str(n) for n in value))
        if key == "eoq":
            change_id = value.get("change_id")
            return EndOfQuery(
                float(value.get("time", 0.0)), None if change_id is None else int(change_id)
            )
    except (TypeError, ValueError, AttributeError, IndexError):
        raise QueryError(f"malformed {key!r} line: {line[:200]!r}", 200, url) from None
    if key == "error":
        raise QueryError(str(value), 200, url)
    return None


# -- subscriptions -----------------------------------------------------------------------------


class Resumable(Exception):
    """The stream ended in a way a reconnection can repair (internal)."""


_RESUMABLE_ERRORS = ("behind", "catch up", "stopping", "resume with")


class SubscriptionTracker:
    """Where a subscription stands, and what to ask for after a drop so that the caller sees
    every change id exactly once, in order.

    Resume rules (``last`` = the highest change id passed on, or the initial rows' EndOfQuery
    change id):

    - ``last`` ≥ 1: ``GET /v1/subscriptions/{id}?from=<last>``; changes ≤ ``last`` are dropped,
      a gap raises `CannotResume`.
    - ``last`` = 0 (initial rows seen, no change yet; the server cannot replay "from 0"):
      re-attach without ``from``; the resent rows are swallowed if their EndOfQuery is still at
      change 0 (nothing changed), else `CannotResume`.
    - during the initial rows: start them again if no row was passed on yet, else
      `CannotResume`; with ``skip_rows`` and no change seen yet: `CannotResume`.
    """

    def __init__(
        self,
        *,
        sql: Statement | None,
        sub_id: str | None,
        skip_rows: bool,
        from_change: int | None,
        decode_blobs: bool,
    ) -> None:
        self.sql = sql
        self.id = sub_id
        self.hash: str | None = None
        self.skip_rows = skip_rows
        self.from_change = from_change
        self.decode_blobs = decode_blobs
        self.columns: tuple[str, ...] | None = None
        resuming = bool(from_change)
        self.last_change_id: int | None = from_change if resuming else None
        self.rows_done = resuming or skip_rows
        self._rows_passed = False
        self._swallow_rows = False  # re-attached at change 0: the resent rows are duplicates
        self._url = ""

    def first_request(self) -> Request:
        params = query_string(skip_rows=self.skip_rows or None)
        if self.from_change is not None:
            params["from"] = str(self.from_change)
        if self.sql is not None:
            return Request("POST", "/v1/subscriptions", params, dumps(statement_json(self.sql)))
        assert self.id is not None
        return Request("GET", f"/v1/subscriptions/{self.id}", params, None)

    def resume_request(self) -> Request:
        """The request that continues the stream; `CannotResume` when there is none."""
        assert self.id is not None
        path = f"/v1/subscriptions/{self.id}"
        if self.rows_done and self.last_change_id:
            return Request("GET", path, {"from": str(self.last_change_id)}, None)
        if self.rows_done and self.last_change_id == 0:
            self._swallow_rows = True
            return Request("GET", path, {}, None)
        if not self.rows_done and not self._rows_passed:
            return Request("GET", path, {}, None)
        where = "during the initial rows" if not self.rows_done else "before its first change"
        raise CannotResume(f"subscription {self.id} dropped {where}: there is no resume point")

    def accept(self, answer: Answer, *, resuming: bool) -> None:
        """Check an answer's status and headers (its body only matters when refused)."""
        status, url = answer.status, answer.url
        self._url = url
        if status == 200:
            sub_id = answer.headers.get("corro-query-id")
            if resuming and self.id is not None and sub_id not in (None, self.id):
                raise CannotResume(f"re-attached to {sub_id} instead of {self.id}", status, url)
            self.id = sub_id or self.id
            self.hash = answer.headers.get("corro-query-hash", self.hash)
            return
        error = refusal(status, answer.content, url, SubscriptionError)
        if isinstance(error, Unauthorized):
            raise error
        if status == 404 or "no existing subscription" in error.message:
            raise SubscriptionGone(error.message, status, url)
        if "min change id" in error.message:
            raise ChangesTooOld(error.message, status, url)
        if resuming and status >= 500:
            raise Resumable(str(error))
        if resuming:
            raise CannotResume(error.message, status, url)
        raise error

    def resume_failed(self, policy: ResumePolicy, cause: BaseException | None) -> ResumeFailed:
        return ResumeFailed(
            f"subscription {self.id} could not reconnect ({policy.attempts} attempts): {cause}",
            self.id,
            self.last_change_id,
        )

    def feed(self, line: str | None) -> Event | None:
        """One line of the stream (None: the stream ended): the event to pass on, or None for a
        duplicate. Raises `Resumable` when a reconnection can carry on (the stream ended, or an
        error line says the subscriber lagged), typed errors otherwise."""
        if line is None:
            raise Resumable("the server ended the stream")
        key, value = parse_line(line, self._url, SubscriptionError)
        try:
            if key == "change":
                kind, rowid, cells, change_id = value
                return self._change(
                    Change(str(kind), int(rowid), self._cells(cells), int(change_id))
                )
            if key == "row":
                rowid, cells = value
                if self._swallow_rows:
                    return None
                self._rows_passed = True
                return Row(int(rowid), self._cells(cells))
            if key == "columns":
                names = tuple(str(n) for n in value)
                if self._swallow_rows or self.columns is not None:
                    return None  # resent after a re-attach
                self.columns = names
                return Columns(names)
            if key == "eoq":
                change_id = value.get("change_id")
                change_id = None if change_id is None else int(change_id)
                if self._swallow_rows:
                    if change_id:
                        raise CannotResume(
                            f"subscription {self.id} changed ({change_id} changes) before its "
                            "first change was seen and cannot be replayed from change 0",
                            200,
                            self._url,
                        )
                    self._swallow_rows = False
                    return None
                self.rows_done = True
                self.last_change_id = change_id
                return EndOfQuery(float(value.get("time", 0.0)), change_id)
        except (TypeError, ValueError, AttributeError):
            message = f"malformed {key!r} line: {line[:200]!r}"
            raise SubscriptionError(message, 200, self._url) from None
        if key == "error":
            message = str(value)
            if "min change id" in message:
                raise ChangesTooOld(message, 200, self._url)
            if any(marker in message for marker in _RESUMABLE_ERRORS):
                raise Resumable(message)
            raise SubscriptionError(message, 200, self._url)
        return None  # an unknown kind of line: skipped, as newer servers may add some

    def _cells(self, value: Any) -> tuple[Any, ...]:
        return cells_of(value, self.decode_blobs)

    def _change(self, change: Change) -> Change | None:
        if self._swallow_rows:
            raise SubscriptionError("a change arrived before the end of the resent rows")
        last = self.last_change_id
        if last is not None:
            if change.change_id <= last:
                return None
            if change.change_id != last + 1:
                raise CannotResume(
                    f"subscription {self.id}: change {change.change_id} follows {last}; "
                    f"{change.change_id - last - 1} are missing",
                    200,
                    self._url,
                )
        self.rows_done = True
        self.last_change_id = change.change_id
        return change
