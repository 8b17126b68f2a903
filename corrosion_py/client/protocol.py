"""What the blocking and the async client share, with no I/O: building each request, reading
each answer, and reading the lines of query and ``/v1/updates`` streams (subscriptions:
`corrosion_py.client.tracker`). The two clients differ only in how they wait.

Shapes and values are the API's vocabulary (`corrosion_py.api_types`). Refusals become typed
errors by their HTTP status and the server's error code, never by the message text. Every
request asks for codes in stream error lines too (``corro-error-codes: 1``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias, TypeVar

import attrs

from corrosion_py.aliases import Params
from corrosion_py.api_types import (
    ERROR_CODES_HEADER,
    QUERY_ID_HEADER,
    ApiStatement,
    Columns,
    EndOfQuery,
    ErrorCode,
    ExecResult,
    Line,
    MalformedLine,
    Notify,
    Problem,
    Row,
    TableStats,
    exec_from_json,
    parse_line,
    problem_from_json,
    statement_json,
    statements_json,
    table_stats_from_json,
)
from corrosion_py.client.errors import (
    ClientError,
    QueryError,
    SubscriptionError,
    TransactionError,
    TransportError,
    Unauthorized,
    Unhealthy,
)

JSON_HEADERS = {"content-type": "application/json"}
Address: TypeAlias = str | tuple[str, int]


def base_url(address: Address) -> str:
    """``http://host:port`` from a URL, ``"host:port"`` or ``(host, port)``."""
    if isinstance(address, tuple):
        host, port = address
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"
    url = address if "://" in address else "http://" + address
    return url.rstrip("/")


def headers(token: str | None) -> dict[str, str]:
    """The headers of every request: codes in stream error lines, and the token if any."""
    out = {ERROR_CODES_HEADER: "1"}
    if token:
        out["authorization"] = f"Bearer {token}"
    return out


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


def transport_error(exc: Exception, url: str) -> TransportError:
    """An httpx transport failure as our `TransportError`, naming the URL."""
    detail = str(exc) or type(exc).__name__
    return TransportError(f"cannot talk to {url}: {detail}", None, url)


# -- requests ----------------------------------------------------------------------------------


@attrs.frozen
class Request:
    method: str
    path: str
    params: dict[str, str]
    body: bytes | None


def transaction_request(
    path: str, statements: ApiStatement | Iterable[ApiStatement], timeout: float | None = None
) -> Request:
    return Request("POST", path, query_string(timeout=timeout), dumps(statements_json(statements)))


def query_request(sql: str, params: Params, timeout: float | None) -> Request:
    statement = statement_json((sql, params)) if params else sql
    return Request("POST", "/v1/queries", query_string(timeout=timeout), dumps(statement))


def updates_request(table: str) -> Request:
    return Request("POST", f"/v1/updates/{table}", {}, None)


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


# -- answers -----------------------------------------------------------------------------------


@attrs.frozen
class Answer:
    """A whole answer (for a stream: its status and headers; the body only when refused)."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    url: str


def body_json(content: bytes) -> Any:
    """The body as JSON; None when it is not (nesting too deep to parse included)."""
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return None


def problem_of(answer: Answer) -> Problem:
    """What a refusal says: the server's problem (code and fields when it sent them), else the
    first failed statement's error (Corrosion's transactions), else the body's text."""
    body = body_json(answer.content)
    problem = problem_from_json(body)
    if problem is not None:
        return problem
    if isinstance(body, dict) and isinstance(body.get("results"), list):
        for result in body["results"]:
            if isinstance(result, dict) and isinstance(result.get("error"), str):
                return Problem(None, result["error"])
    text = answer.content.decode(errors="replace").strip()
    return Problem(None, text[:500] or f"HTTP {answer.status}")


def refusal(answer: Answer, kind: type[ClientError] = ClientError) -> ClientError:
    """The exception for a non-2xx answer: 401 is `Unauthorized` whatever the endpoint."""
    problem = problem_of(answer)
    status, url, code = answer.status, answer.url, problem.code
    if status == 401 or code == ErrorCode.UNAUTHORIZED:
        return Unauthorized(problem.message, status, url, code=code)
    if kind is TransactionError:
        body = body_json(answer.content)
        results = body.get("results") if isinstance(body, dict) else None
        entries = [r for r in results if isinstance(r, dict)] if isinstance(results, list) else []
        return TransactionError(problem.message, status, url, entries, code=code)
    return kind(problem.message, status, url, code=code)


def exec_result(answer: Answer) -> ExecResult:
    if answer.status != 200:
        raise refusal(answer, TransactionError)
    try:
        return exec_from_json(body_json(answer.content))
    except ValueError:
        raise unexpected(answer) from None


def health_result(answer: Answer) -> dict[str, Any]:
    body = body_json(answer.content)
    details = body.get("response") if isinstance(body, dict) else None
    if answer.status == 200 and isinstance(details, dict):
        return details
    if answer.status == 401:
        raise refusal(answer)
    problem = problem_of(answer)
    message = problem.message
    if isinstance(details, dict) and "error" not in body:
        message = "unhealthy"
    raise Unhealthy(message, answer.status, answer.url, details, code=problem.code)


def table_stats_result(answer: Answer) -> TableStats:
    if answer.status != 200:
        raise refusal(answer)
    try:
        return table_stats_from_json(body_json(answer.content))
    except ValueError:
        raise unexpected(answer) from None


def unexpected(answer: Answer) -> ClientError:
    return ClientError(f"unexpected answer: {answer.content[:200]!r}", answer.status, answer.url)


def read_line(line: str, url: str, kind: type[ClientError], decode_blobs: bool) -> Line | None:
    """One line of a stream (`parse_line`), a malformed one raising ``kind``."""
    try:
        return parse_line(line, decode_blobs=decode_blobs)
    except MalformedLine as exc:
        raise kind(str(exc), 200, url) from None


# -- streams -----------------------------------------------------------------------------------

T_co = TypeVar("T_co", covariant=True)


class StreamReader(Protocol[T_co]):
    """What a stream's lines mean; a client feeds it each line it reads."""

    done: bool
    """The stream is complete: the client closes it."""

    def opened(self, answer: Answer) -> None:
        """Check the answer's status (raising its refusal) and headers."""

    def feed(self, line: str | None) -> T_co | None:
        """The item a line brings (None: nothing to pass on); ``None`` is the stream's end."""


class QueryReader:
    """The lines of a ``/v1/queries`` answer: `Columns`, then each row's cells (a tuple), until
    the end of the rows (``done``, with the server's ``time``). An ``error`` line, a second
    ``columns`` line or a stream that ends early raise `QueryError`."""

    def __init__(self, url: str, decode_blobs: bool) -> None:
        self.url = url
        self.decode_blobs = decode_blobs
        self.columns: tuple[str, ...] | None = None
        self.time: float | None = None
        self.done = False

    def opened(self, answer: Answer) -> None:
        if answer.status != 200:
            raise refusal(answer, QueryError)

    def feed(self, line: str | None) -> Columns | tuple[Any, ...] | None:
        """The `Columns` or the row a line brings (None for the end of the rows, or a kind of
        line this version does not know)."""
        if line is None:
            raise QueryError("the stream ended before the end of the rows", 200, self.url)
        item = read_line(line, self.url, QueryError, self.decode_blobs)
        if isinstance(item, Row):
            return item.cells
        if isinstance(item, Columns):
            if self.columns is not None:
                raise QueryError("a second columns line in the stream", 200, self.url)
            self.columns = item.names
            return item
        if isinstance(item, EndOfQuery):
            self.time = item.time
            self.done = True
        elif isinstance(item, Problem):
            raise QueryError(item.message, 200, self.url, code=item.code)
        return None


class UpdatesReader:
    """The lines of a ``/v1/updates/{table}`` answer: `Notify` events until the server ends
    the stream (``done``); an ``error`` line raises `SubscriptionError`. ``id`` is the
    notifier's (``corro-query-id``)."""

    def __init__(self, url: str, decode_blobs: bool) -> None:
        self.url = url
        self.decode_blobs = decode_blobs
        self.id: str | None = None
        self.done = False

    def opened(self, answer: Answer) -> None:
        if answer.status != 200:
            raise refusal(answer, SubscriptionError)
        self.id = answer.headers.get(QUERY_ID_HEADER)

    def feed(self, line: str | None) -> Notify | None:
        if line is None:
            self.done = True
            return None
        item = read_line(line, self.url, SubscriptionError, self.decode_blobs)
        if isinstance(item, Problem):
            raise SubscriptionError(item.message, 200, self.url, code=item.code)
        return item if isinstance(item, Notify) else None
