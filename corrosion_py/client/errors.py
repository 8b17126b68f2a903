"""Every error the clients raise. Each carries the HTTP status, the server's message and its
``code`` (an `ErrorCode` value, None when the server sent none), so a caller can tell kinds
apart without reading messages, as the clients themselves do."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "CannotResume",
    "ChangesTooOld",
    "ClientError",
    "QueryError",
    "ResubscribeRequired",
    "ResumeFailed",
    "SubscriptionError",
    "SubscriptionGone",
    "TransactionError",
    "TransportError",
    "Unauthorized",
    "Unhealthy",
]


class ClientError(Exception):
    """Base of every error the client raises: ``status`` is the HTTP status (None when no answer
    was received), ``message`` the server's ``error`` text (or ours), ``code`` the server's
    error code, ``url`` the request's."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        url: str | None = None,
        *,
        code: str | None = None,
    ) -> None:
        where = f" ({status} from {url})" if status is not None else f" ({url})" if url else ""
        super().__init__(message + where)
        self.message = message
        self.status = status
        self.url = url
        self.code = code


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
        *,
        code: str | None = None,
    ) -> None:
        super().__init__(message, status, url, code=code)
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
        *,
        code: str | None = None,
    ) -> None:
        super().__init__(message, status, url, code=code)
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
    oldest it still has (None when the server did not say)."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        url: str | None = None,
        *,
        code: str | None = None,
        min_change_id: int | None = None,
    ) -> None:
        super().__init__(message, status, url, code=code)
        self.min_change_id = min_change_id


class CannotResume(ResubscribeRequired):
    """The stream dropped where no resume point is known (during the initial rows, or before the
    first change of a ``skip_rows`` subscription), or the server's ids were not contiguous."""
