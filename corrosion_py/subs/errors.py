"""Why a subscription cannot be served or a stream ended. Each error knows its kind
(`ErrorCode`) and how the API reports it (`problem`), so the HTTP layer maps none of them by
hand and a client can tell them apart without reading the message."""

from __future__ import annotations

from corrosion_py.api_types import ErrorCode, Problem
from corrosion_py.errors import CorrosionError


class SubscriptionError(CorrosionError):
    """A subscription request that cannot be served (HTTP 400)."""

    code: ErrorCode = ErrorCode.BAD_REQUEST

    def problem(self) -> Problem:
        """The error as the API reports it."""
        return Problem(self.code, str(self))


class NoSuchSubscription(SubscriptionError):
    """No live subscription with that id (404) or for that SQL (``from`` given: 400)."""

    code = ErrorCode.NO_SUCH_SUBSCRIPTION


class ChangesTooOld(SubscriptionError):
    """The changes after the requested id are no longer kept; the client must start over."""

    code = ErrorCode.CHANGES_TOO_OLD

    def __init__(self, oldest: int) -> None:
        super().__init__(f"subscription already deleted older changes, min change id: {oldest}")
        self.oldest = oldest

    def problem(self) -> Problem:
        return Problem(self.code, str(self), min_change_id=self.oldest)


class SubscriberLagged(SubscriptionError):
    """This listener fell further behind than its buffer allows and was disconnected."""

    code = ErrorCode.SUBSCRIBER_LAGGED

    def __init__(self, last: int) -> None:
        super().__init__(
            f"subscriber fell too far behind and was disconnected; resume with from={last}"
        )
        self.last = last

    def problem(self) -> Problem:
        return Problem(self.code, str(self), resume_from=self.last)


class SubscriptionClosed(SubscriptionError):
    """The subscription ended: its query failed (e.g. after a schema change), or, with
    `ErrorCode.SHUTTING_DOWN`, the agent is stopping; an updates listener that fell behind
    (`ErrorCode.SUBSCRIBER_LAGGED`)."""

    def __init__(self, reason: str, code: ErrorCode = ErrorCode.SUBSCRIPTION_FAILED) -> None:
        super().__init__(reason)
        self.code = code
