"""Errors as the API reports them: a message for people and a code for programs.

Every refusal is a JSON body ``{"error": message, "code": code}`` (plus the fields of its kind),
and every stream may end with such an error line. Corrosion's clients read only ``error`` and
ignore the keys they do not know in a body, so the code costs them nothing there. In an NDJSON
line they would not: Corrosion's Rust client reads a line as an enum with exactly one key, and
an extra key turns its error event into a parse error. So a stream's error lines carry the code
only when the request asked for it with the ``corro-error-codes: 1`` header (our clients always
do); without it they are Corrosion's ``{"error": message}``.

A client decides what to do from the code and the structured fields, never from the message:
the message is for people and may change. A server that sends no code (Corrosion itself) leaves
only the HTTP status to go by.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import attrs

__all__ = ["ERROR_CODES_HEADER", "ErrorCode", "Problem", "problem_from_json", "problem_json"]

ERROR_CODES_HEADER = "corro-error-codes"
"""Request header: ``1`` asks for codes in the error lines of a stream too."""


class ErrorCode(StrEnum):
    """What kind of error it is, which says what the caller can do about it."""

    BAD_REQUEST = "bad_request"
    """400: the request, one of its statements or parameters is wrong; nothing was changed."""
    UNAUTHORIZED = "unauthorized"
    """401: the bearer token is missing or wrong."""
    NOT_FOUND = "not_found"
    """404: no route for the path."""
    METHOD_NOT_ALLOWED = "method_not_allowed"
    """405: the route exists, not with this method."""
    TOO_LARGE = "too_large"
    """413: the request body is over the limit."""
    OVERLOADED = "overloaded"
    """503: a concurrency limit is reached; retry later."""
    STORAGE_FAULT = "storage_fault"
    """503: the node's disk or database file refused the write (full, I/O error, corrupt);
    nothing was written; health says more."""
    INTERNAL = "internal"
    """500: a bug on the server (it logged it)."""
    NO_LAG_INFO = "no_lag_info"
    """Health: a ``p99_lag`` bound was asked for but no remote change was applied yet."""
    NO_SUCH_SUBSCRIPTION = "no_such_subscription"
    """No live subscription with that id (404), or for that SQL when ``from`` was given (400):
    subscribe again."""
    CHANGES_TOO_OLD = "changes_too_old"
    """The changes after the requested id are no longer kept (``min_change_id``: the oldest
    still kept): subscribe again from scratch."""
    SUBSCRIBER_LAGGED = "subscriber_lagged"
    """This listener fell too far behind and was disconnected; a subscription resumes with
    ``from=`` its last change id (``resume_from``)."""
    SHUTTING_DOWN = "shutting_down"
    """The agent is stopping: the stream ended, the subscription lives on once it is back."""
    SUBSCRIPTION_FAILED = "subscription_failed"
    """The subscription ended for good: its query stopped working (a schema change) or its
    storage failed."""


@attrs.frozen
class Problem:
    """One error as the API reports it. ``code`` is None when the server sent none."""

    code: str | None
    message: str
    min_change_id: int | None = None
    """With `ErrorCode.CHANGES_TOO_OLD`: the oldest change id still kept."""
    resume_from: int | None = None
    """With `ErrorCode.SUBSCRIBER_LAGGED` on a subscription: the last change id sent."""


_FIELDS = ("min_change_id", "resume_from")


def problem_json(problem: Problem, *, with_code: bool = True) -> dict[str, Any]:
    """The JSON of ``problem``: ``{"error": message}``, and with ``with_code`` its code and
    fields (a stream line without the request's ``corro-error-codes: 1``: only the message)."""
    out: dict[str, Any] = {"error": problem.message}
    if with_code and problem.code is not None:
        out["code"] = str(problem.code)
        for field in _FIELDS:
            value = getattr(problem, field)
            if value is not None:
                out[field] = value
    return out


def problem_from_json(obj: object) -> Problem | None:
    """The problem an error body or line reports; None when ``obj`` is not one (no string
    ``error``). A code this client does not know is kept as text; a field of the wrong type is
    dropped."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("error"), str):
        return None
    code = obj.get("code")
    fields = {f: _count(obj.get(f)) for f in _FIELDS}
    return Problem(_code(code) if isinstance(code, str) else None, obj["error"], **fields)


def _code(text: str) -> str:
    try:
        return ErrorCode(text)
    except ValueError:
        return text


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
