"""Errors the HTTP API answers with a status code and a ``{"error": message}`` body.

Handlers raise them; the app's exception handler turns them into JSON (responses.py). Anything
else that escapes a handler is a bug: logged, and answered 500 without its traceback
(middleware.py).
"""

from __future__ import annotations


class ApiError(Exception):
    """A request the API refuses, with the HTTP status to answer and a message for the client."""

    status: int = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(ApiError):
    """The client's request is wrong (malformed JSON, wrong body shape, bad parameter, bad SQL):
    400, and nothing was changed."""

    status = 400


class Unavailable(ApiError):
    """The node is busy (a concurrency limit is reached): 503, try again later."""

    status = 503
