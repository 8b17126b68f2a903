"""What a subscriber receives (the NDJSON lines of Corrosion's subscription and updates
streams), and the errors that end a subscription stream."""

from __future__ import annotations

from typing import Any

import attrs

from corrosion_py.errors import CorrosionError


@attrs.frozen
class Columns:
    names: tuple[str, ...]


@attrs.frozen
class Row:
    """A row of the initial result; ``rowid`` is stable for the subscription's lifetime."""

    rowid: int
    cells: tuple[Any, ...]


@attrs.frozen
class EndOfQuery:
    """End of the initial rows; ``change_id`` is the last change they include."""

    time: float
    change_id: int


@attrs.frozen
class Change:
    """A difference of the result: ``kind`` is "insert", "update" or "delete" (cells are the
    full row, for a delete its last value); ids are contiguous per subscription."""

    kind: str
    rowid: int
    cells: tuple[Any, ...]
    change_id: int


@attrs.frozen
class Notify:
    """A row of a table was written ("update", also for inserts) or deleted ("delete")."""

    kind: str
    pk: tuple[Any, ...]


Event = Columns | Row | EndOfQuery | Change


class SubscriptionError(CorrosionError):
    """A subscription request that cannot be served (HTTP 400)."""


class NoSuchSubscription(SubscriptionError):
    """No live subscription with that id (404) or for that SQL (``from`` given: 400)."""


class ChangesTooOld(SubscriptionError):
    """The changes after the requested id are no longer kept; the client must start over."""

    def __init__(self, oldest: int) -> None:
        super().__init__(f"subscription already deleted older changes, min change id: {oldest}")
        self.oldest = oldest


class SubscriberLagged(SubscriptionError):
    """This listener fell further behind than its buffer allows and was disconnected."""

    def __init__(self, last: int) -> None:
        super().__init__(
            f"subscriber fell too far behind and was disconnected; resume with from={last}"
        )
        self.last = last


class SubscriptionClosed(SubscriptionError):
    """The subscription ended (its query failed, e.g. after a schema change, or the agent is
    stopping)."""
