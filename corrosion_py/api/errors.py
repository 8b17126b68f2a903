"""Errors the HTTP API answers with a status code and a ``{"error": message, "code": code}``
body (`corrosion_py.api_types.problems`).

Handlers raise them; the app's exception handler turns them into JSON (responses.py). Anything
else that escapes a handler is a bug: logged, and answered 500 without its traceback
(middleware.py).
"""

from __future__ import annotations

from corrosion_py.api_types import ErrorCode, Problem


class ApiError(Exception):
    """A request the API refuses, with the HTTP status to answer, its kind and a message for
    the client."""

    status: int = 400
    code: ErrorCode = ErrorCode.BAD_REQUEST

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def problem(self) -> Problem:
        return Problem(self.code, self.message)


class BadRequest(ApiError):
    """The client's request is wrong (malformed JSON, wrong body shape, bad parameter, bad SQL):
    400, and nothing was changed."""

    status = 400


class TooLarge(ApiError):
    """The request body is over the limit: 413."""

    status = 413
    code = ErrorCode.TOO_LARGE


class Unavailable(ApiError):
    """The node is busy (a concurrency limit is reached): 503, try again later."""

    status = 503
    code = ErrorCode.OVERLOADED
