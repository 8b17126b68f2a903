"""The seam between the HTTP server (`corrosion_py.api.http_server`) and the API application
(`corrosion_py.api.app`): ASGI 3's HTTP scope and messages, as plain dicts.

Any ASGI server can run the application, and the server can run any ASGI application; the
server answers only ``http`` scopes (no lifespan: the runner starts and stops the agent).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


class ClientDisconnect(OSError):
    """The client went away: raised by the server's ``send`` once the connection is broken, and
    by the application when ``receive`` says ``http.disconnect`` before the body was read.
    Nobody is left to answer, so it is not an error to log."""
