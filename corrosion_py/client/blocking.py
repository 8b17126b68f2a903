"""`CorrosionClient`: the blocking client (httpx), for the CLI and scripts. What a request
and a line mean is decided in `protocol` and `tracker`; this module only sends and waits."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Generic, Self, TypeVar

import httpx

from corrosion_py.aliases import Params
from corrosion_py.api_types import ApiStatement, Columns, Event, ExecResult, Notify, TableStats
from corrosion_py.client.base import DEFAULT_RESUME, ClientBase, SubscriptionInfo
from corrosion_py.client.errors import TransportError
from corrosion_py.client.protocol import (
    Address,
    Answer,
    QueryReader,
    Request,
    StreamReader,
    UpdatesReader,
    exec_result,
    health_request,
    health_result,
    query_request,
    table_stats_request,
    table_stats_result,
    transaction_request,
    transport_error,
    updates_request,
)
from corrosion_py.client.tracker import Resumable, ResumePolicy, SubscriptionTracker

__all__ = ["CorrosionClient", "QueryRows", "Subscription", "Updates"]

T = TypeVar("T")


class CorrosionClient(ClientBase):
    """A blocking client. ``address``: a URL, ``"host:port"`` or ``(host, port)``; ``token``:
    sent as ``Authorization: Bearer``; ``timeout``: seconds for connecting and for each read
    (None: no limit; streams always wait for lines without limit); ``resume``: how
    subscriptions reconnect; ``decode_blobs``: BLOB cells as ``bytes`` rather than lists of
    byte numbers (see `corrosion_py.api_types.values`); ``transport``: an httpx transport."""

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
        self, statements: ApiStatement | Iterable[ApiStatement], *, timeout: float | None = None
    ) -> ExecResult:
        """Run ``statements`` as one transaction (a lone string is one statement); raises
        `TransactionError` when refused, and nothing is written then. ``timeout``: seconds
        after which the server rolls the transaction back."""
        request = transaction_request("/v1/transactions", statements, timeout)
        return exec_result(self._call(request, timeout))

    def migrate(self, statements: ApiStatement | Iterable[ApiStatement]) -> ExecResult:
        """Apply schema statements (``POST /v1/migrations``); `TransactionError` when refused."""
        return exec_result(self._call(transaction_request("/v1/migrations", statements)))

    def query(self, sql: str, params: Params = (), *, timeout: float | None = None) -> QueryRows:
        """Run a read-only statement: an iterator of rows (tuples of cells) whose ``columns``
        are known at once. Close it (``with``) unless it is read to the end. Raises
        `QueryError` when refused, or from the iteration when the query fails mid-stream."""
        request = query_request(sql, params, timeout)
        rows = QueryRows(self, request, self._query_reader(request))
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
        sub = Subscription(self, self._tracker(sql, params, None, skip_rows, from_change))
        sub._start()
        return sub

    def attach(
        self, sub_id: str, *, from_change: int | None = None, skip_rows: bool = False
    ) -> Subscription:
        """Attach to the subscription ``sub_id`` (`SubscriptionGone` when it does not exist)."""
        sub = Subscription(self, self._tracker(None, (), sub_id, skip_rows, from_change))
        sub._start()
        return sub

    def updates(self, table: str) -> Updates:
        """An iterator of `Notify`: each write to a row of ``table``, by primary key."""
        request = updates_request(table)
        stream = Updates(self, request, self._updates_reader(request))
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


class _ReadStream(_Stream, Generic[T]):
    """A stream whose lines a `StreamReader` reads; it cannot be resumed."""

    def __init__(self, client: CorrosionClient, request: Request, reader: StreamReader[T]) -> None:
        super().__init__(client, request)
        self._reader = reader

    def _start(self) -> None:
        self._reader.opened(self._connect(self._request))

    def _advance(self) -> T | None:
        """The next item, None once the stream is over (it is closed then)."""
        while not self.closed:
            try:
                item = self._reader.feed(self._line())
            except httpx.TransportError as exc:
                self.close()
                raise transport_error(exc, self._url) from exc
            except BaseException:
                self.close()
                raise
            if self._reader.done:
                self.close()
            if item is not None:
                return item
        return None


class QueryRows(_ReadStream[Columns | tuple[Any, ...]]):
    """The rows of a query (tuples of cells); ``columns`` are its column names, ``time`` the
    server's time once the rows are over."""

    _reader: QueryReader

    def __init__(self, client: CorrosionClient, request: Request, reader: QueryReader) -> None:
        super().__init__(client, request, reader)
        self._pending: tuple[Any, ...] | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return self._reader.columns or ()

    @property
    def time(self) -> float | None:
        return self._reader.time

    def _start(self) -> None:
        super()._start()
        first = self._advance()
        if not isinstance(first, Columns):
            self._pending = first

    def __next__(self) -> tuple[Any, ...]:
        item = self._pending if self._pending is not None else self._advance()
        self._pending = None
        if item is None:
            raise StopIteration
        assert not isinstance(item, Columns)  # the reader refuses a second one
        return item


class Updates(_ReadStream[Notify]):
    """`Notify` events of ``/v1/updates/{table}``; ``id`` is the notifier's id. Ends when the
    server ends the stream; raises `SubscriptionError` for an error line."""

    _reader: UpdatesReader

    @property
    def id(self) -> str | None:
        return self._reader.id

    def __next__(self) -> Notify:
        note = self._advance()
        if note is None:
            raise StopIteration
        return note


class Subscription(SubscriptionInfo, _Stream):
    """A subscription's events (`Columns`, `Row`, `EndOfQuery`, `Change`), reconnecting after a
    drop so that change ids stay contiguous (rules in `corrosion_py.client.tracker`). ``id``
    and ``hash`` come from the ``corro-query-id`` / ``corro-query-hash`` headers."""

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
                    event = self.tracker.feed(self._line())
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
