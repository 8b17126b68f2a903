"""`AsyncCorrosionClient`: the client for async code (httpx's async client, under trio or
asyncio). The same methods as `CorrosionClient`, awaited; the streams are async iterators,
sent on ``async with`` (or the first ``async for`` step). What a request and a line mean is
decided in `protocol` and `tracker`; this module only sends and waits."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Generic, Self, TypeVar

import anyio
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

__all__ = ["AsyncCorrosionClient", "AsyncQueryRows", "AsyncSubscription", "AsyncUpdates"]

T = TypeVar("T")


class AsyncCorrosionClient(ClientBase):
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
        statements: ApiStatement | Iterable[ApiStatement],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (the server's bound, sent as ?timeout=)
    ) -> ExecResult:
        """See `CorrosionClient.transaction`."""
        request = transaction_request("/v1/transactions", statements, timeout)
        return exec_result(await self._call(request, timeout))

    async def migrate(self, statements: ApiStatement | Iterable[ApiStatement]) -> ExecResult:
        """See `CorrosionClient.migrate`."""
        return exec_result(await self._call(transaction_request("/v1/migrations", statements)))

    def query(
        self, sql: str, params: Params = (), *, timeout: float | None = None
    ) -> AsyncQueryRows:
        """See `CorrosionClient.query`; ``columns`` are known once the stream is entered."""
        request = query_request(sql, params, timeout)
        return AsyncQueryRows(self, request, self._query_reader(request))

    def subscribe(
        self,
        sql: str,
        params: Params = (),
        *,
        skip_rows: bool = False,
        from_change: int | None = None,
    ) -> AsyncSubscription:
        """See `CorrosionClient.subscribe`; ``id`` and ``hash`` are known once entered."""
        return AsyncSubscription(self, self._tracker(sql, params, None, skip_rows, from_change))

    def attach(
        self, sub_id: str, *, from_change: int | None = None, skip_rows: bool = False
    ) -> AsyncSubscription:
        """See `CorrosionClient.attach`."""
        return AsyncSubscription(self, self._tracker(None, (), sub_id, skip_rows, from_change))

    def updates(self, table: str) -> AsyncUpdates:
        """See `CorrosionClient.updates`."""
        request = updates_request(table)
        return AsyncUpdates(self, request, self._updates_reader(request))

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
    """A streaming answer read line by line; started by ``async with`` or the first
    ``async for`` step; closed at its end, on error, or by ``aclose``."""

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


class _AsyncReadStream(_AsyncStream, Generic[T]):
    """A stream whose lines a `StreamReader` reads; it cannot be resumed."""

    def __init__(
        self, client: AsyncCorrosionClient, request: Request, reader: StreamReader[T]
    ) -> None:
        super().__init__(client, request)
        self._reader = reader

    async def _start(self) -> None:
        self._reader.opened(await self._connect(self._request))

    async def _advance(self) -> T | None:
        """The next item, None once the stream is over (it is closed then)."""
        await self.start()
        while not self.closed:
            try:
                item = self._reader.feed(await self._line())
            except httpx.TransportError as exc:
                await self.aclose()
                raise transport_error(exc, self._url) from exc
            except BaseException:
                await self.aclose()
                raise
            if self._reader.done:
                await self.aclose()
            if item is not None:
                return item
        return None


class AsyncQueryRows(_AsyncReadStream[Columns | tuple[Any, ...]]):
    """See `QueryRows`."""

    _reader: QueryReader

    def __init__(self, client: AsyncCorrosionClient, request: Request, reader: QueryReader) -> None:
        super().__init__(client, request, reader)
        self._pending: tuple[Any, ...] | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return self._reader.columns or ()

    @property
    def time(self) -> float | None:
        return self._reader.time

    async def _start(self) -> None:
        await super()._start()
        first = await self._advance()
        if not isinstance(first, Columns):
            self._pending = first

    async def __anext__(self) -> tuple[Any, ...]:
        await self.start()
        item = self._pending if self._pending is not None else await self._advance()
        self._pending = None
        if item is None:
            raise StopAsyncIteration
        assert not isinstance(item, Columns)  # the reader refuses a second one
        return item


class AsyncUpdates(_AsyncReadStream[Notify]):
    """See `Updates`."""

    _reader: UpdatesReader

    @property
    def id(self) -> str | None:
        return self._reader.id

    async def __anext__(self) -> Notify:
        note = await self._advance()
        if note is None:
            raise StopAsyncIteration
        return note


class AsyncSubscription(SubscriptionInfo, _AsyncStream):
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
                    event = self.tracker.feed(await self._line())
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
