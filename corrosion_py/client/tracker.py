"""Where a subscription stands, and what to ask for after its stream drops, so that the caller
sees every change id exactly once, in order (no I/O: both clients drive it).

Resume rules (``last`` = the highest change id passed on, or the initial rows' EndOfQuery
change id):

- ``last`` ≥ 1: ``GET /v1/subscriptions/{id}?from=<last>``; changes ≤ ``last`` are dropped, a
  gap raises `CannotResume`.
- ``last`` = 0 (initial rows seen, no change yet; the server cannot replay "from 0"): re-attach
  without ``from``; the resent rows are swallowed if their EndOfQuery is still at change 0
  (nothing changed), else `CannotResume`.
- during the initial rows: start them again if no row was passed on yet, else `CannotResume`;
  with ``skip_rows`` and no change seen yet: `CannotResume`.

What ends a stream is decided by the server's error code: a listener that lagged
(``subscriber_lagged``) or an agent that stops (``shutting_down``) is resumed; changes no longer
kept (``changes_too_old``) and a subscription that no longer exists (``no_such_subscription``,
or a 404) need a new subscription; anything else is a `SubscriptionError`.
"""

from __future__ import annotations

import attrs

from corrosion_py.api_types import (
    QUERY_HASH_HEADER,
    QUERY_ID_HEADER,
    ApiStatement,
    Change,
    Columns,
    EndOfQuery,
    ErrorCode,
    Event,
    Problem,
    Row,
    statement_json,
)
from corrosion_py.client.errors import (
    CannotResume,
    ChangesTooOld,
    ResumeFailed,
    SubscriptionError,
    SubscriptionGone,
)
from corrosion_py.client.protocol import (
    Answer,
    Request,
    dumps,
    problem_of,
    query_string,
    read_line,
    refusal,
)

__all__ = ["Resumable", "ResumePolicy", "SubscriptionTracker"]

RESUMABLE = frozenset({ErrorCode.SUBSCRIBER_LAGGED, ErrorCode.SHUTTING_DOWN})
"""Codes of stream error lines after which a reconnection carries on."""


class Resumable(Exception):
    """The stream ended in a way a reconnection can repair (internal)."""


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


class SubscriptionTracker:
    """One subscription's position and resume rules (see the module docstring)."""

    def __init__(
        self,
        *,
        sql: ApiStatement | None,
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
            sub_id = answer.headers.get(QUERY_ID_HEADER)
            if resuming and self.id is not None and sub_id not in (None, self.id):
                raise CannotResume(f"re-attached to {sub_id} instead of {self.id}", status, url)
            self.id = sub_id or self.id
            self.hash = answer.headers.get(QUERY_HASH_HEADER, self.hash)
            return
        problem = problem_of(answer)
        code = problem.code
        if status == 401 or code == ErrorCode.UNAUTHORIZED:
            raise refusal(answer)
        if status == 404 or code == ErrorCode.NO_SUCH_SUBSCRIPTION:
            raise SubscriptionGone(problem.message, status, url, code=code)
        if code == ErrorCode.CHANGES_TOO_OLD:
            raise _too_old(problem, status, url)
        if resuming and status >= 500:
            raise Resumable(f"{problem.message} ({status} from {url})")
        if resuming:
            raise CannotResume(problem.message, status, url, code=code)
        raise SubscriptionError(problem.message, status, url, code=code)

    def resume_failed(self, policy: ResumePolicy, cause: BaseException | None) -> ResumeFailed:
        return ResumeFailed(
            f"subscription {self.id} could not reconnect ({policy.attempts} attempts): {cause}",
            self.id,
            self.last_change_id,
        )

    def feed(self, line: str | None) -> Event | None:
        """One line of the stream (None: the stream ended): the event to pass on, or None for a
        duplicate. Raises `Resumable` when a reconnection can carry on (the stream ended, or an
        error line's code says so), typed errors otherwise."""
        if line is None:
            raise Resumable("the server ended the stream")
        item = read_line(line, self._url, SubscriptionError, self.decode_blobs)
        if isinstance(item, Change):
            return self._change(item)
        if isinstance(item, Row):
            if self._swallow_rows:
                return None
            self._rows_passed = True
            return item
        if isinstance(item, Columns):
            if self._swallow_rows or self.columns is not None:
                return None  # resent after a re-attach
            self.columns = item.names
            return item
        if isinstance(item, EndOfQuery):
            return self._end_of_rows(item)
        if isinstance(item, Problem):
            raise self._ended(item)
        return None  # a notification or a kind of line this version does not know

    def _end_of_rows(self, eoq: EndOfQuery) -> EndOfQuery | None:
        if self._swallow_rows:
            if eoq.change_id:
                raise CannotResume(
                    f"subscription {self.id} changed ({eoq.change_id} changes) before its "
                    "first change was seen and cannot be replayed from change 0",
                    200,
                    self._url,
                )
            self._swallow_rows = False
            return None
        self.rows_done = True
        self.last_change_id = eoq.change_id
        return eoq

    def _ended(self, problem: Problem) -> Exception:
        if problem.code == ErrorCode.CHANGES_TOO_OLD:
            return _too_old(problem, 200, self._url)
        if problem.code in RESUMABLE:
            return Resumable(problem.message)
        return SubscriptionError(problem.message, 200, self._url, code=problem.code)

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


def _too_old(problem: Problem, status: int, url: str) -> ChangesTooOld:
    return ChangesTooOld(
        problem.message, status, url, code=problem.code, min_change_id=problem.min_change_id
    )
