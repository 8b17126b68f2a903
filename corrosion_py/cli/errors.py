"""User errors of the `corrosion` command: what they print.

Every user error (bad configuration, refused SQL, no agent, a refused start) becomes one line
``Error: ...`` with a hint where one helps (`user_message`); anything it does not recognise is
a bug, and its traceback is left to show.
"""

from __future__ import annotations

import sys

import click

from corrosion_py.errors import CorrosionError, leaves

AGENT_HINT = "is an agent running there? Start one with `corrosion agent`, or pass --api-addr"
TOKEN_HINT = (
    "set [api.authz] bearer-token (or CORROSION_API_AUTHZ_BEARER_TOKEN) to the agent's token"
)


class CliError(click.ClickException):
    """A user error: printed as one ``Error: ...`` line, exit status 1."""


def user_message(exc: BaseException) -> str | None:
    """The line to print for a user error; None for anything else (a bug: let it show)."""
    inside = leaves(exc)
    if len(inside) > 1 or inside[0] is not exc:
        messages = [user_message(leaf) for leaf in inside]
        if all(m is not None for m in messages):
            return messages[0]
        return None
    if isinstance(exc, CliError):
        return exc.format_message()
    # the client is imported by the commands that talk HTTP only (start-up stays short)
    client_types = sys.modules.get("corrosion_py.client.errors")
    if client_types is not None and isinstance(exc, client_types.ClientError):
        if isinstance(exc, client_types.TransportError):
            return f"{exc.message}; {AGENT_HINT}"
        if isinstance(exc, client_types.Unauthorized):
            return f"{exc}; {TOKEN_HINT}"
        return str(exc)
    if isinstance(exc, CorrosionError):
        return str(exc)
    if isinstance(exc, OSError):
        return _os_error(exc)
    return None


def _os_error(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    if exc.filename is not None:
        text += f": {exc.filename}"
    return text
