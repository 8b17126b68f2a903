"""Python clients for corrosion_py's (and Corrosion's) HTTP API: `CorrosionClient` (httpx,
blocking: the CLI and scripts) and `AsyncCorrosionClient` (httpx under trio or asyncio).

Both have the same methods. Request shapes, parsing, error mapping and the subscription resume
rules live in `corrosion_py.client.protocol` (no I/O), so the two differ only in how they wait.
Every refusal by the server raises a `ClientError` subclass carrying the status and the
server's message; a connection that fails raises `TransportError` naming the URL. See
docs/client.md.

    with CorrosionClient("127.0.0.1:8080") as c:
        c.transaction([("INSERT INTO kv VALUES (?, ?)", [1, b"\\x00"])])
        with c.query("SELECT k, v FROM kv") as rows:
            print(rows.columns, list(rows))
        with c.subscribe("SELECT k, v FROM kv") as sub:
            for event in sub:   # Columns, Row..., EndOfQuery, then Change... until closed
                ...
"""

from __future__ import annotations

import abc
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, Self

import anyio
import httpx

from corrosion_py.client.protocol import (
    JSON_HEADERS,
    Address,
    Answer,
    CannotResume,
    Change,
    ChangesTooOld,
    ClientError,
    Columns,
    EndOfQuery,
    Event,
    ExecResult,
    Notify,
    Params,
    QueryError,
    Request,
    ResubscribeRequired,
    Resumable,
    ResumeFailed,
    ResumePolicy,
    Row,
    Statement,
    StatementResult,
    SubscriptionError,
    SubscriptionGone,
    SubscriptionTracker,
    TableStats,
    TransactionError,
    TransportError,
    Unauthorized,
    Unhealthy,
    base_url,
    blob,
    decode_cells,
    exec_result,
    health_request,
    health_result,
    notify_line,
    query_line,
    query_request,
    refusal,
    table_stats_request,
    table_stats_result,
    transaction_request,
    transport_error,
)

__all__ = [
    "AsyncCorrosionClient",
    "AsyncQueryRows",
    "AsyncSubscription",
    "AsyncUpdates",
    "CannotResume",
    "Change",
    "ChangesTooOld",
    "ClientError",
    "Columns",
    "CorrosionClient",
    "EndOfQuery",
    "Event",
    "ExecResult",
    "Notify",
    "QueryError",
    "QueryRows",
    "ResubscribeRequired",
    "ResumeFailed",
    "ResumePolicy",
    "Row",
    "StatementResult",
    "Subscription",
    "SubscriptionError",
    "SubscriptionGone",
    "TableStats",
    "TransactionError",
    "TransportError",
    "Unauthorized",
    "Unhealthy",
    "Updates",
    "blob",
    "decode_cells",
]

DEFAULT_RESUME = ResumePolicy()


class _Base:
    """Settings and request building shared by both clients."""

    def __init__(
        self,
        address: Address,
        token: str | None,
        timeout: float | None,
        resume: ResumePolicy,
        decode_blobs: bool,
    ) -> None:
        self.base_url = base_url(address)
        self.timeout = timeout
        self.resume = resume
        self.decode_blobs = decode_blobs
        self._headers = {"authorization": f"Bearer {token}"} if token else {}

    def _build(
        self, http: httpx.Client | httpx.AsyncClient, request: Request, stream: bool = False,
        server_timeout: float | None = None,
    ) -> httpx.Request:  # fmt: skip
        """The httpx request: streams wait for lines without limit (httpx's read timeout is the
        gap between chunks, and an idle subscription is silent for long); a request with a
        server-side ``timeout`` waits at least that long for its answer."""
        timeout = httpx.Timeout(self.timeout)
        if stream:
            timeout = httpx.Timeout(self.timeout, read=None)
        elif server_timeout is not None and self.timeout is not None:
            timeout = httpx.Timeout(self.timeout, read=max(self.timeout, server_timeout + 5.0))
        return http.build_request(
            request.method,
            self.base_url + request.path,
            params=request.params,
            content=request.body,
            headers=JSON_HEADERS if request.body is not None else None,
            timeout=timeout,
        )

    def _tracker(
        self, sql: Statement | None, sub_id: str | None, skip_rows: bool, from_change: int | None
    ) -> SubscriptionTracker:
        return SubscriptionTracker(
            sql=sql, sub_id=sub_id, skip_rows=skip_rows, from_change=from_change,
            decode_blobs=self.decode_blobs,
        )  # fmt: skip


def _statement(sql: str, params: Params) -> Statement:
    return (sql, params) if params else sql


# -- blocking ----------------------------------------------------------------------------------


class CorrosionClient(_Base):
    """A blocking client. ``address``: a URL, ``"host:port"`` or ``(host, port)``; ``token``:
    sent as ``Authorization: Bearer``; ``timeout``: seconds for connecting and for each read
    (None: no limit; streams always wait for lines without limit); ``resume``: how
    subscriptions reconnect; ``decode_blobs``: BLOB cells as ``bytes`` rather than lists of
    byte numbers (see `corrosion_py.client.protocol`); ``transport``: an httpx transport."""

    def __init__(
        self,
        address: Address,
        *,
        token: str | None = None,
        timeout: float | None = 30.0,
        resume: ResumePolicy = DEFAULT_RESUME,
        decode_blobs: bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(address, token, timeout, resume, decode_blobs)
        self._http = httpx.Client(headers=self._headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, request: Request, server_timeout: float | None = None) -> Answer:
        built = self._build(self._http, request, server_timeout=server_timeout)
        try:
            response = self._http.send(built)
        except httpx.TransportError as exc:
            raise transport_error(exc, str(built.url)) from exc
        return Answer(response.status_code, response.headers, response.content, str(built.url))

    def _open(self, request: Request) -> tuple[httpx.Response | None, Answer]:
        """Send a streaming request: the open response when the answer is 200, else None and
        the whole answer."""
        built = self._build(self._http, request, stream=True)
        url = str(built.url)
        try:
            response = self._http.send(built, stream=True)
            if response.status_code == 200:
                return response, Answer(200, response.headers, b"", url)
            try:
                content = response.read()
            finally:
                response.close()
        except httpx.TransportError as exc:
            raise transport_error(exc, url) from exc
        return None, Answer(response.status_code, response.headers, content, url)

    def transaction(
        self, statements: Statement | Iterable[Statement], *, timeout: float | None = None
    ) -> ExecResult:
        """Run ``statements`` as one transaction (a lone string is one statement); raises
        `TransactionError` when refused, and nothing is written then. ``timeout``: seconds
        after which the server rolls the transaction back."""
        request = transaction_request("/v1/transactions", statements, timeout)
        return exec_result(self._call(request, timeout))

    def migrate(self, statements: Statement | Iterable[Statement]) -> ExecResult:
        """Apply schema statements (``POST /v1/migrations``); `TransactionError` when refused."""
        return exec_result(self._call(transaction_request("/v1/migrations", statements)))

    def query(self, sql: str, params: Params = (), *, timeout: float | None = None) -> QueryRows:
        """Run a read-only statement: an iterator of rows (tuples of cells) whose ``columns``
        are known at once. Close it (``with``) unless it is read to the end. Raises
        `QueryError` when refused, or from the iteration when the query fails mid-stream."""
        rows = QueryRows(self, query_request(sql, params, timeout))
        rows._start()
        return rows

    def subscribe(
        self,
        sql: str,
        params: Params = (),
        *,
        skip_rows: bool = False,
        from_change: int | None = None,
    ) -> Subscription:
        """Subscribe to ``sql``: an iterator of `Columns`, `Row`s and `EndOfQuery` (not with
        ``skip_rows``), then a `Change` for every difference, reconnecting on its own after a
        drop. With ``from_change``: only the changes after that id of an existing
        subscription."""
        sub = Subscription(self, self._tracker(_statement(sql, params), None, skip_rows,
                                               from_change))  # fmt: skip
        sub._start()
        return sub

    def attach(
        self, sub_id: str, *, from_change: int | None = None, skip_rows: bool = False
    ) -> Subscription:
        """Attach to the subscription ``sub_id`` (`SubscriptionGone` when it does not exist)."""
        sub = Subscription(self, self._tracker(None, sub_id, skip_rows, from_change))
        sub._start()
        return sub

    def updates(self, table: str) -> Updates:
        """An iterator of `Notify`: each write to a row of ``table``, by primary key."""
        stream = Updates(self, Request("POST", f"/v1/updates/{table}", {}, None))
        stream._start()
        return stream

    def health(
        self,
        *,
        gaps: int | None = None,
        p99_lag: float | None = None,
        max_queue: int | None = None,
        queue_size: int | None = None,
        failure_status: int | None = None,
    ) -> dict[str, Any]:
        """The node's health (``gaps``, ``members``, ``p99_lag``, ``queue_size``) when it is
        within the thresholds given; `Unhealthy` (with ``details``) otherwise."""
        request = health_request(gaps, p99_lag, max_queue, queue_size, failure_status)
        return health_result(self._call(request))

    def table_stats(self, tables: Sequence[str]) -> TableStats:
        """``(total_row_count, invalid_tables)``: rows of the tables that exist, and the names
        that are not tables."""
        return table_stats_result(self._call(table_stats_request(tables)))


class _Stream:
    """A streaming answer read line by line; closed at its end, on error, or by ``close``."""

    def __init__(self, client: CorrosionClient, request: Request) -> None:
        self._client = client
        self._request = request
        self._url = client.base_url + request.path
        self._response: httpx.Response | None = None
        self._lines: Iterator[str] | None = None
        self.closed = False

    def _connect(self, request: Request) -> Answer:
        response, answer = self._client._open(request)
        if response is not None:
            self._response, self._lines = response, response.iter_lines()
        return answer

    def _line(self) -> str | None:
        """The next non-empty line, None at the end of the stream; httpx errors propagate."""
        assert self._lines is not None
        return next((line for line in self._lines if line.strip()), None)

    def _disconnect(self) -> None:
        lines, response = self._lines, self._response
        self._response = self._lines = None
        if lines is not None:
            lines.close()  # type: ignore[attr-defined]
        if response is not None:
            response.close()

    def close(self) -> None:
        self.closed = True
        self._disconnect()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Self:
        return self


class QueryRows(_Stream):
    """The rows of a query (tuples of cells); ``columns`` are its column names, ``time`` the
    server's time once the rows are over."""

    def __init__(self, client: CorrosionClient, request: Request) -> None:
        super().__init__(client, request)
        self.columns: tuple[str, ...] = ()
        self.time: float | None = None
        self._pending: tuple[Any, ...] | None = None

    def _start(self) -> None:
        answer = self._connect(self._request)
        if self._response is None:
            raise refusal(answer.status, answer.content, answer.url, QueryError)
        first = self._read()
        if isinstance(first, Columns):
            self.columns = first.names
        else:
            self._pending = first

    def _read(self) -> tuple[Any, ...] | Columns | None:
        while not self.closed:
            try:
                line = self._line()
                if line is None:
                    raise QueryError("the stream ended before the end of the rows", 200, self._url)
                item = query_line(line, self._url, self._client.decode_blobs)
            except httpx.TransportError as exc:
                self.close()
                raise transport_error(exc, self._url) from exc
            except BaseException:
                self.close()
                raise
            if isinstance(item, EndOfQuery):
                self.time = item.time
                self.close()
            elif item is not None:
                return item
        return None

    def __next__(self) -> tuple[Any, ...]:
        item: tuple[Any, ...] | Columns | None = self._pending
        self._pending = None
        if item is None:
            item = self._read()
        if item is None:
            raise StopIteration
        if isinstance(item, Columns):
            self.close()
            raise QueryError("a second columns line in the stream", 200, self._url)
        return item


class Updates(_Stream):
    """`Notify` events of ``/v1/updates/{table}``; ``id`` is the notifier's id. Ends when the
    server ends the stream; raises `SubscriptionError` for an error line."""

    id: str | None = None

    def _start(self) -> None:
        answer = self._connect(self._request)
        if self._response is None:
            raise refusal(answer.status, answer.content, answer.url, SubscriptionError)
        self.id = answer.headers.get("corro-query-id")

    def __next__(self) -> Notify:
        while not self.closed:
            try:
                line = self._line()
                note = notify_line(line, self._url, self._client.decode_blobs) if line else None
            except httpx.TransportError as exc:
                self.close()
                raise transport_error(exc, self._url) from exc
            except BaseException:
                self.close()
                raise
            if line is None:
                self.close()
            elif note is not None:
                return note
        raise StopIteration


class _SubscriptionInfo:
    tracker: SubscriptionTracker

    @property
    def id(self) -> str | None:
        """The subscription's id (``corro-query-id``), once the request was answered."""
        return self.tracker.id

    @property
    def hash(self) -> str | None:
        """The hash of its SQL (``corro-query-hash``)."""
        return self.tracker.hash

    @property
    def columns(self) -> tuple[str, ...] | None:
        """The column names, once the `Columns` event was read (never with ``skip_rows``)."""
        return self.tracker.columns

    @property
    def last_change_id(self) -> int | None:
        """The newest change id passed on (or the initial rows' `EndOfQuery` one): where the
        stream resumes from."""
        return self.tracker.last_change_id


class Subscription(_SubscriptionInfo, _Stream):
    """A subscription's events (`Columns`, `Row`, `EndOfQuery`, `Change`), reconnecting after a
    drop so that change ids stay contiguous (rules in `SubscriptionTracker`). ``id`` and
    ``hash`` come from the ``corro-query-id`` / ``corro-query-hash`` headers."""

    def __init__(self, client: CorrosionClient, tracker: SubscriptionTracker) -> None:
        super().__init__(client, tracker.first_request())
        self.tracker = tracker
        self.reconnects = 0
        """How many times the stream was re-established."""
        self._cause: BaseException | None = None

    def _start(self) -> None:
        self._attempt(self._request, resuming=False)

    def _attempt(self, request: Request, resuming: bool) -> None:
        answer = self._connect(request)
        try:
            self.tracker.accept(answer, resuming=resuming)
        except BaseException:
            self._disconnect()
            raise

    def _reconnect(self) -> None:
        policy, cause = self._client.resume, self._cause
        for attempt in range(policy.attempts):
            time.sleep(policy.delay(attempt))
            try:
                self._attempt(self.tracker.resume_request(), resuming=True)
            except (TransportError, Resumable) as exc:
                cause = exc
                continue
            self.reconnects += 1
            return
        raise self.tracker.resume_failed(policy, cause) from cause

    def __next__(self) -> Event:
        while not self.closed:
            try:
                if self._response is None:
                    self._reconnect()
                try:
                    line = self._line()
                    event = self.tracker.feed(line)
                except (httpx.TransportError, Resumable) as exc:
                    self._disconnect()
                    self._cause = exc
                    continue
            except BaseException:
                self.close()
                raise
            if event is not None:
                return event
        raise StopIteration


# -- async -------------------------------------------------------------------------------------


class AsyncCorrosionClient(_Base):
    """`CorrosionClient` for async code (trio, or asyncio): the same methods, awaited; the
    streams are async iterators, sent on ``async with`` (or the first ``async for`` step)."""

    def __init__(
        self,
        address: Address,
        *,
        token: str | None = None,
        timeout: float | None = 30.0,
        resume: ResumePolicy = DEFAULT_RESUME,
        decode_blobs: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(address, token, timeout, resume, decode_blobs)
        self._http = httpx.AsyncClient(headers=self._headers, timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(self, request: Request, server_timeout: float | None = None) -> Answer:
        built = self._build(self._http, request, server_timeout=server_timeout)
        try:
            response = await self._http.send(built)
        except httpx.TransportError as exc:
            raise transport_error(exc, str(built.url)) from exc
        return Answer(response.status_code, response.headers, response.content, str(built.url))

    async def _open(self, request: Request) -> tuple[httpx.Response | None, Answer]:
        built = self._build(self._http, request, stream=True)
        url = str(built.url)
        try:
            response = await self._http.send(built, stream=True)
            if response.status_code == 200:
                return response, Answer(200, response.headers, b"", url)
            try:
                content = await response.aread()
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            raise transport_error(exc, url) from exc
        return None, Answer(response.status_code, response.headers, content, url)

    async def transaction(
        self,
        statements: Statement | Iterable[Statement],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (the server's bound, sent as ?timeout=)
    ) -> ExecResult:
        """See `CorrosionClient.transaction`."""
        request = transaction_request("/v1/transactions", statements, timeout)
        return exec_result(await self._call(request, timeout))

    async def migrate(self, statements: Statement | Iterable[Statement]) -> ExecResult:
        """See `CorrosionClient.migrate`."""
        return exec_result(await self._call(transaction_request("/v1/migrations", statements)))

    def query(
        self, sql: str, params: Params = (), *, timeout: float | None = None
    ) -> AsyncQueryRows:
        """See `CorrosionClient.query`; ``columns`` are known once the stream is entered."""
        return AsyncQueryRows(self, query_request(sql, params, timeout))

    def subscribe(
        self,
        sql: str,
        params: Params = (),
        *,
        skip_rows: bool = False,
        from_change: int | None = None,
    ) -> AsyncSubscription:
        """See `CorrosionClient.subscribe`; ``id`` and ``hash`` are known once entered."""
        tracker = self._tracker(_statement(sql, params), None, skip_rows, from_change)
        return AsyncSubscription(self, tracker)

    def attach(
        self, sub_id: str, *, from_change: int | None = None, skip_rows: bool = False
    ) -> AsyncSubscription:
        """See `CorrosionClient.attach`."""
        return AsyncSubscription(self, self._tracker(None, sub_id, skip_rows, from_change))

    def updates(self, table: str) -> AsyncUpdates:
        """See `CorrosionClient.updates`."""
        return AsyncUpdates(self, Request("POST", f"/v1/updates/{table}", {}, None))

    async def health(
        self,
        *,
        gaps: int | None = None,
        p99_lag: float | None = None,
        max_queue: int | None = None,
        queue_size: int | None = None,
        failure_status: int | None = None,
    ) -> dict[str, Any]:
        """See `CorrosionClient.health`."""
        request = health_request(gaps, p99_lag, max_queue, queue_size, failure_status)
        return health_result(await self._call(request))

    async def table_stats(self, tables: Sequence[str]) -> TableStats:
        """See `CorrosionClient.table_stats`."""
        return table_stats_result(await self._call(table_stats_request(tables)))


class _AsyncStream(abc.ABC):
    """`_Stream` for async code; started by ``async with`` or the first ``async for`` step."""

    def __init__(self, client: AsyncCorrosionClient, request: Request) -> None:
        self._client = client
        self._request = request
        self._url = client.base_url + request.path
        self._response: httpx.Response | None = None
        self._lines: AsyncIterator[str] | None = None
        self.started = False
        self.closed = False

    @abc.abstractmethod
    async def _start(self) -> None:
        """Send the request and read the stream's head (each kind of stream its own)."""

    async def start(self) -> Self:
        """Send the request (once); what ``async with`` does."""
        if not self.started:
            self.started = True
            try:
                await self._start()
            except BaseException:
                await self.aclose()
                raise
        return self

    async def _connect(self, request: Request) -> Answer:
        response, answer = await self._client._open(request)
        if response is not None:
            self._response, self._lines = response, response.aiter_lines()
        return answer

    async def _line(self) -> str | None:
        assert self._lines is not None
        async for line in self._lines:
            if line.strip():
                return line
        return None

    async def _disconnect(self) -> None:
        lines, response = self._lines, self._response
        self._response = self._lines = None
        with anyio.move_on_after(5, shield=True):
            if response is not None:
                await response.aclose()
            if lines is not None:
                await _run_out(lines)

    async def aclose(self) -> None:
        self.closed = True
        await self._disconnect()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self


async def _run_out(lines: AsyncIterator[str]) -> None:
    """Run a line iterator of a closed response to its end. httpx's iterators are nested async
    generators: ``aclose()`` would finalize only the outermost, and trio warns about each inner
    one when it is collected. Once the response is closed the next read fails, and that error
    ends every level; the lines still buffered on the way are dropped."""
    for _ in range(1_000_000):
        try:
            await lines.__anext__()
        except Exception:
            return


class AsyncQueryRows(_AsyncStream):
    """See `QueryRows`."""

    def __init__(self, client: AsyncCorrosionClient, request: Request) -> None:
        super().__init__(client, request)
        self.columns: tuple[str, ...] = ()
        self.time: float | None = None
        self._pending: tuple[Any, ...] | None = None

    async def _start(self) -> None:
        answer = await self._connect(self._request)
        if self._response is None:
            raise refusal(answer.status, answer.content, answer.url, QueryError)
        first = await self._read()
        if isinstance(first, Columns):
            self.columns = first.names
        else:
            self._pending = first

    async def _read(self) -> tuple[Any, ...] | Columns | None:
        while not self.closed:
            try:
                line = await self._line()
                if line is None:
                    raise QueryError("the stream ended before the end of the rows", 200, self._url)
                item = query_line(line, self._url, self._client.decode_blobs)
            except httpx.TransportError as exc:
                await self.aclose()
                raise transport_error(exc, self._url) from exc
            except BaseException:
                await self.aclose()
                raise
            if isinstance(item, EndOfQuery):
                self.time = item.time
                await self.aclose()
            elif item is not None:
                return item
        return None

    async def __anext__(self) -> tuple[Any, ...]:
        await self.start()
        item: tuple[Any, ...] | Columns | None = self._pending
        self._pending = None
        if item is None:
            item = await self._read()
        if item is None:
            raise StopAsyncIteration
        if isinstance(item, Columns):
            await self.aclose()
            raise QueryError("a second columns line in the stream", 200, self._url)
        return item


class AsyncUpdates(_AsyncStream):
    """See `Updates`."""

    id: str | None = None

    async def _start(self) -> None:
        answer = await self._connect(self._request)
        if self._response is None:
            raise refusal(answer.status, answer.content, answer.url, SubscriptionError)
        self.id = answer.headers.get("corro-query-id")

    async def __anext__(self) -> Notify:
        await self.start()
        while not self.closed:
            try:
                line = await self._line()
                note = notify_line(line, self._url, self._client.decode_blobs) if line else None
            except httpx.TransportError as exc:
                await self.aclose()
                raise transport_error(exc, self._url) from exc
            except BaseException:
                await self.aclose()
                raise
            if line is None:
                await self.aclose()
            elif note is not None:
                return note
        raise StopAsyncIteration


class AsyncSubscription(_SubscriptionInfo, _AsyncStream):
    """See `Subscription`."""

    def __init__(self, client: AsyncCorrosionClient, tracker: SubscriptionTracker) -> None:
        super().__init__(client, tracker.first_request())
        self.tracker = tracker
        self.reconnects = 0
        self._cause: BaseException | None = None

    async def _start(self) -> None:
        await self._attempt(self._request, resuming=False)

    async def _attempt(self, request: Request, resuming: bool) -> None:
        answer = await self._connect(request)
        try:
            self.tracker.accept(answer, resuming=resuming)
        except BaseException:
            await self._disconnect()
            raise

    async def _reconnect(self) -> None:
        policy, cause = self._client.resume, self._cause
        for attempt in range(policy.attempts):
            await anyio.sleep(policy.delay(attempt))
            try:
                await self._attempt(self.tracker.resume_request(), resuming=True)
            except (TransportError, Resumable) as exc:
                cause = exc
                continue
            self.reconnects += 1
            return
        raise self.tracker.resume_failed(policy, cause) from cause

    async def __anext__(self) -> Event:
        await self.start()
        while not self.closed:
            try:
                if self._response is None:
                    await self._reconnect()
                try:
                    line = await self._line()
                    event = self.tracker.feed(line)
                except (httpx.TransportError, Resumable) as exc:
                    await self._disconnect()
                    self._cause = exc
                    continue
            except anyio.get_cancelled_exc_class() as exc:
                # a cancelled read (a timeout around it) leaves httpx's line iterator dead: drop
                # the connection but not the subscription; the next step resumes
                await self._disconnect()
                self._cause = Resumable(f"a read was cancelled ({type(exc).__name__})")
                raise
            except BaseException:
                await self.aclose()
                raise
            if event is not None:
                return event
        raise StopAsyncIteration
