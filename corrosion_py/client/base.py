"""What both clients share beyond the I/O-free rules: their settings, how they turn a `Request`
into an httpx request, and what a subscription stream tells about itself."""

from __future__ import annotations

import httpx

from corrosion_py.aliases import Params
from corrosion_py.api_types import ApiStatement
from corrosion_py.client.protocol import (
    JSON_HEADERS,
    Address,
    QueryReader,
    Request,
    UpdatesReader,
    base_url,
    headers,
)
from corrosion_py.client.tracker import ResumePolicy, SubscriptionTracker

DEFAULT_RESUME = ResumePolicy()


class ClientBase:
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
        self._headers = headers(token)

    def _build(
        self, http: httpx.Client | httpx.AsyncClient, request: Request, stream: bool = False,
        server_timeout: float | None = None,
    ) -> httpx.Request:  # fmt: skip
        """The httpx request: streams wait for their next line without limit (httpx's read
        timeout bounds the gap between chunks, which would end a quiet subscription); a request
        with a server-side ``timeout`` waits at least that long for its answer."""
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

    def _url(self, request: Request) -> str:
        return self.base_url + request.path

    def _query_reader(self, request: Request) -> QueryReader:
        return QueryReader(self._url(request), self.decode_blobs)

    def _updates_reader(self, request: Request) -> UpdatesReader:
        return UpdatesReader(self._url(request), self.decode_blobs)

    def _tracker(
        self, sql: str | None, params: Params, sub_id: str | None, skip_rows: bool,
        from_change: int | None,
    ) -> SubscriptionTracker:  # fmt: skip
        statement: ApiStatement | None = None if sql is None else (sql, params) if params else sql
        return SubscriptionTracker(
            sql=statement, sub_id=sub_id, skip_rows=skip_rows, from_change=from_change,
            decode_blobs=self.decode_blobs,
        )  # fmt: skip


class SubscriptionInfo:
    """What a subscription stream tells about itself (both clients)."""

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
