"""The admin socket: a Unix stream socket where a running agent answers operator commands
(``corrosion cluster members``, ``sync generate``, ``reload``, ``subs list``), in Corrosion's
protocol (its ``corro-admin`` framing and commands).

Protocol. Every frame is a 4-byte big-endian length then that many bytes of JSON. The client
sends a command; the server answers with zero or more ``{"Json": value}`` frames, then
``"Success"`` or ``{"Error": {"msg": "..."}}``. A connection may carry several commands, one
after the other. Commands (serde's externally tagged enums, as Corrosion spells them):

=========================  ========================================================================
``"Ping"``                 one Json: ``{"actor_id", "pid", "gossip_addr", "api_addr"}``
``{"Cluster": "Members"}``  one Json per member, this node first: ``{"actor_id" (hex), "addr"
                           ("host:port"), "state", "incarnation", "last_seen" (unix seconds of the
                           last datagram from it, or null), "this_node"}``
``{"Sync": "Generate"}``    one Json: this node's sync state ``{"actor_id", "heads": {actor: v},
                           "need": {actor: [[start, end], ...]}, "partial_need": {actor:
                           {version: [[start, end], ...]}}}``, actors in hex
``"Reload"``               re-apply the schema files; one Json saying what changed
                           (``created_tables``, ``added_columns``, ``created_indexes``,
                           ``adopted_tables``, ``changed``); a refused schema is an Error with
                           the schema's message, and nothing changes
``{"Subs": "List"}``        one Json per subscription: ``{"id", "hash", "sql", "listeners",
                           "change_id"}``
``{"Keys": "List"}``        one Json per gossip key, primary first: ``{"key_id" (hex), "primary"}``
                           (never key material; none when gossip runs plaintext)
``{"Keys": "Reload"}``      re-read ``[gossip] keyring_file`` and use it; then as ``List``. A
                           refused file is an Error naming its line, and nothing changes
=========================  ========================================================================

Bad input never hurts the agent: a frame over `MAX_COMMAND` bytes, JSON that does not parse, or
an unknown command is answered with an Error (after an oversized or truncated frame the
connection is closed, as the stream cannot be resynchronised). Each connection runs in its own
task; at most `MAX_CONNECTIONS` are served at once, and a client silent for `IDLE_TIMEOUT`
seconds is disconnected.

Every command reaches the node through ``Agent``'s public methods only. `serve_admin` (started
by `corrosion_py.runner`) removes a stale socket file (one nobody answers on) and refuses to
start when a live agent answers on the path; it removes the file on exit. `admin_request` is
the blocking client the CLI uses.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import stat
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corrosion_py.addr import Addr, format_addr
from corrosion_py.errors import CorrosionError

if TYPE_CHECKING:
    import trio

    from corrosion_py.agent import Agent

__all__ = [
    "MAX_COMMAND",
    "MAX_RESPONSE",
    "AdminError",
    "AdminSocketInUse",
    "AgentNotRunning",
    "admin_request",
    "decode_frame_length",
    "encode_frame",
    "serve_admin",
]

log = logging.getLogger("corrosion_py.admin")

MAX_COMMAND = 1 << 20
"""Largest command frame the server reads (commands are tiny)."""
MAX_RESPONSE = 100 << 20
"""Largest answer frame the client reads (Corrosion's frame limit, 100 MiB)."""
MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 60.0
MAX_UNIX_PATH = 107  # sun_path is 108 bytes on Linux, including the final NUL
_HEADER = struct.Struct(">I")


class AdminError(CorrosionError):
    """An admin command failed (the agent's Error answer, or the socket misbehaved)."""


class AgentNotRunning(AdminError):
    """Nothing answers on the admin socket."""


class AdminSocketInUse(AdminError):
    """Another live agent answers on the admin socket path."""


# -- framing -------------------------------------------------------------------------------------


def encode_frame(value: Any) -> bytes:
    body = json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
    return _HEADER.pack(len(body)) + body


def decode_frame_length(header: bytes, limit: int) -> int:
    (length,) = _HEADER.unpack(header)
    if length > limit:
        raise AdminError(f"frame of {length} bytes exceeds the limit of {limit}")
    return int(length)


def _error(msg: str) -> dict[str, dict[str, str]]:
    return {"Error": {"msg": msg}}


# -- commands ------------------------------------------------------------------------------------

Emit = Callable[[Any], Awaitable[None]]


def _ranges(ranges: Any) -> list[list[int]]:
    return [[int(start), int(end)] for start, end in ranges]


async def _sync_state(agent: Agent) -> dict[str, Any]:
    state = await agent.sync_state()
    return {
        "actor_id": state.actor_id.hex(),
        "heads": {a.hex(): v for a, v in sorted(state.heads.items())},
        "need": {a.hex(): _ranges(r) for a, r in sorted(state.need.items())},
        "partial_need": {
            a.hex(): {str(v): _ranges(r) for v, r in sorted(p.items())}
            for a, p in sorted(state.partial_need.items())
        },
    }


def _members(agent: Agent) -> list[dict[str, Any]]:
    rows = [
        {
            "actor_id": agent.actor_id.hex(),
            "addr": format_addr(agent.gossip_addr),
            "state": "alive",
            "incarnation": agent.incarnation,
            "last_seen": None,
            "this_node": True,
        }
    ]
    for m in agent.members():
        rows.append(
            {
                "actor_id": m.actor_id.hex(),
                "addr": format_addr(m.addr),
                "state": m.state.name.lower(),
                "incarnation": m.incarnation,
                "last_seen": agent.last_seen(m.addr),
                "this_node": False,
            }
        )
    return rows


def _subs(agent: Agent) -> list[dict[str, Any]]:
    subs = agent.subscriptions()
    return [
        {
            "id": sub.id,
            "hash": sub.hash,
            "sql": sub.sql,
            "listeners": len(sub.listeners),
            "change_id": sub.change_id,
        }
        for sub in subs
    ]


async def _reload(agent: Agent) -> dict[str, Any]:
    result = await agent.reload_schema()
    return {
        "changed": result.changed,
        "created_tables": list(result.created_tables),
        "added_columns": [list(c) for c in result.added_columns],
        "created_indexes": list(result.created_indexes),
        "adopted_tables": list(result.adopted_tables),
    }


def _ping(agent: Agent, api_addr: Addr | None) -> dict[str, Any]:
    return {
        "actor_id": agent.actor_id.hex(),
        "pid": os.getpid(),
        "gossip_addr": format_addr(agent.gossip_addr),
        "api_addr": format_addr(api_addr) if api_addr else None,
    }


COMMANDS = ('"Ping"', '{"Cluster": "Members"}', '{"Sync": "Generate"}', '"Reload"',
            '{"Subs": "List"}', '{"Keys": "List"}', '{"Keys": "Reload"}')  # fmt: skip


def _keys(agent: Agent) -> list[dict[str, Any]]:
    return [{"key_id": kid, "primary": i == 0} for i, kid in enumerate(agent.key_ids())]


async def run_command(agent: Agent, command: Any, emit: Emit, api_addr: Addr | None = None) -> None:
    """Answer one command: ``emit`` each Json value; raises `AdminError` (or any
    `CorrosionError`) for an Error answer. ``api_addr`` is what Ping reports as the HTTP API
    (None: the node serves none)."""
    if command == "Ping":
        await emit(_ping(agent, api_addr))
    elif command == {"Cluster": "Members"}:
        for row in _members(agent):
            await emit(row)
    elif command == {"Sync": "Generate"}:
        await emit(await _sync_state(agent))
    elif command == "Reload":
        await emit(await _reload(agent))
    elif command == {"Subs": "List"}:
        for row in _subs(agent):
            await emit(row)
    elif command == {"Keys": "List"}:
        for row in _keys(agent):
            await emit(row)
    elif command == {"Keys": "Reload"}:
        await agent.reload_keyring()
        for row in _keys(agent):
            await emit(row)
    else:
        shown = json.dumps(command)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise AdminError(f"unknown command {shown}; known: {', '.join(COMMANDS)}")


# -- server --------------------------------------------------------------------------------------


class _Closed(Exception):
    """The client went away, or sent a frame we cannot read past."""


async def _read_exactly(stream: trio.SocketStream, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = await stream.receive_some(min(n - len(data), 1 << 16))
        if not chunk:
            raise _Closed("end of stream")
        data += chunk
    return bytes(data)


async def _serve_connection(agent: Agent, stream: trio.SocketStream, api_addr: Addr | None) -> None:
    import trio

    async def send(value: Any) -> None:
        await stream.send_all(encode_frame(value))

    async with stream:
        try:
            while True:
                with trio.move_on_after(IDLE_TIMEOUT) as idle:
                    try:
                        header = await stream.receive_some(4)
                        if not header:
                            return  # the client is done
                        if len(header) < 4:
                            header += await _read_exactly(stream, 4 - len(header))
                    except _Closed:
                        await send(_error("truncated frame header"))
                        return
                    try:
                        length = decode_frame_length(header, MAX_COMMAND)
                    except AdminError as exc:
                        await send(_error(str(exc)))
                        return
                    try:
                        body = await _read_exactly(stream, length)
                    except _Closed:
                        await send(_error(f"truncated frame: expected {length} bytes"))
                        return
                if idle.cancelled_caught:
                    return
                try:
                    command = json.loads(body)
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    await send(_error(f"the command is not JSON: {exc}"))
                    continue
                await _answer(agent, command, send, api_addr)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # the client hung up mid-answer


async def _answer(agent: Agent, command: Any, send: Emit, api_addr: Addr | None) -> None:
    import trio

    async def emit(value: Any) -> None:
        await send({"Json": value})

    try:
        await run_command(agent, command, emit, api_addr)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        raise
    except CorrosionError as exc:
        await send(_error(str(exc)))
        return
    except Exception as exc:  # never let a command take the agent down
        log.exception("admin command %r failed", command)
        await send(_error(f"internal error: {type(exc).__name__}: {exc}"))
        return
    await send("Success")


def _check_path_length(path: Path) -> None:
    if len(os.fsencode(path)) > MAX_UNIX_PATH:
        raise AdminError(
            f"admin socket path is too long for a Unix socket ({len(os.fsencode(path))} > "
            f"{MAX_UNIX_PATH} bytes): {path}; set a shorter [admin] path"
        )


def _answers(path: Path, timeout: float = 2.0) -> dict[str, Any] | None:
    """What a live agent on ``path`` says to Ping; None when nothing listens."""
    try:
        answers = admin_request(path, "Ping", timeout=timeout)
    except AgentNotRunning:
        return None
    except AdminError:
        return {}  # something answers, if oddly
    return answers[0] if answers and isinstance(answers[0], dict) else {}


def check_admin_path(path: Path) -> None:
    """Raise `AdminSocketInUse` when a live agent answers on ``path``, `AdminError` when the
    path cannot hold our socket (too long, or an existing file that is not a socket)."""
    _check_path_length(path)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise AdminError(f"admin socket path {path} exists and is not a socket; remove it first")
    other = _answers(path)
    if other is not None:
        pid = other.get("pid")
        who = f"an agent (pid {pid})" if pid else "another process"
        raise AdminSocketInUse(
            f"{who} already answers on the admin socket {path}; stop it, or set another "
            "[admin] path"
        )


async def serve_admin(
    agent: Agent,
    path: Path,
    *,
    api_addr: Addr | None = None,
    task_status: trio.TaskStatus[Path] | None = None,
) -> None:
    """Serve the admin commands of ``agent`` on the Unix socket ``path`` until cancelled
    (start it with ``nursery.start``: it reports the path once listening). ``api_addr`` is
    where the node's HTTP API listens, for Ping (None: it serves none). Raises
    `AdminSocketInUse` when a live agent answers on ``path``."""
    import trio

    status = task_status or trio.TASK_STATUS_IGNORED

    path = Path(path)
    await trio.to_thread.run_sync(check_admin_path, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # stale: nobody answered on it
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(os.fspath(path))
        sock.listen(MAX_CONNECTIONS)
        ours = path.stat().st_ino
    except BaseException:
        sock.close()
        raise
    limiter = trio.CapacityLimiter(MAX_CONNECTIONS)

    async def handle(stream: trio.SocketStream) -> None:
        async with limiter:
            await _serve_connection(agent, stream, api_addr)

    try:
        listener = trio.SocketListener(sock)
        async with listener:
            status.started(path)
            await trio.serve_listeners(handle, [listener])
    finally:
        with contextlib.suppress(OSError):
            if path.stat().st_ino == ours:
                path.unlink()


# -- client --------------------------------------------------------------------------------------


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(min(n - len(data), 1 << 20))
        if not chunk:
            raise AdminError("the agent closed the admin connection mid-answer")
        data += chunk
    return bytes(data)


def admin_request(path: Path | str, command: Any, *, timeout: float | None = 30.0) -> list[Any]:
    """Send ``command`` to the agent listening on ``path``; the Json values it answered.
    Raises `AgentNotRunning` when nothing listens there, `AdminError` for an Error answer."""
    path = Path(path)
    not_running = AgentNotRunning(
        f"no agent is running at {path} (start one with `corrosion agent`)"
    )
    _check_path_length(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(os.fspath(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise not_running from None
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
                raise not_running from None
            raise AdminError(f"cannot connect to the admin socket {path}: {exc}") from None
        values: list[Any] = []
        try:
            sock.sendall(encode_frame(command))
            while True:
                length = decode_frame_length(_recv_exactly(sock, 4), MAX_RESPONSE)
                answer = json.loads(_recv_exactly(sock, length))
                if answer == "Success":
                    return values
                if isinstance(answer, dict) and "Json" in answer:
                    values.append(answer["Json"])
                elif isinstance(answer, dict) and isinstance(answer.get("Error"), dict):
                    raise AdminError(str(answer["Error"].get("msg", "unknown error")))
                elif isinstance(answer, dict) and "Log" in answer:
                    continue
                else:
                    raise AdminError(f"unexpected admin answer: {str(answer)[:200]}")
        except TimeoutError:
            raise AdminError(f"the agent at {path} did not answer within {timeout:g}s") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AdminError(f"the agent sent an answer that is not JSON: {exc}") from None
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise AdminError(f"the admin connection to {path} failed: {exc}") from None


def wait_for_agent(path: Path | str, timeout: float) -> dict[str, Any]:
    """Poll ``path`` until an agent answers Ping (its answer); `AgentNotRunning` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = admin_request(path, "Ping", timeout=max(0.5, deadline - time.monotonic()))
            return answer[0] if answer and isinstance(answer[0], dict) else {}
        except AgentNotRunning:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
