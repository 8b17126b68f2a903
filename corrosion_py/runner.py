"""Run a node: the agent, its HTTP API and its admin socket in one nursery.

    config = NodeConfig(AgentConfig(db_path="node.db", schema_paths=["schema.sql"]),
                        api_addr=("127.0.0.1", 8080), admin_path=Path("node.admin.sock"))
    async with open_node(config) as node:
        print(node.agent.actor_id.hex(), node.api_addr, node.admin_path)
        await trio.sleep_forever()

``corrosion agent`` runs a node this way (``Config.node_config()`` maps the TOML file to a
`NodeConfig`); an embedder that wants no HTTP server uses ``Agent.open`` alone. The agent knows
nothing of the API or the admin socket: both reach it through its public methods only.

Rules:

- **Refused before anything starts.** A database another process runs a node on
  (`DatabaseInUse`) and an admin socket path a live agent answers on, or that cannot hold a
  socket (`AdminSocketInUse`, `AdminError`), are refused before the agent binds a port or
  opens its database, so a refused start never joins the cluster.
- **Start order.** The agent (gossip port, database, membership, sync), then the HTTP API, then
  the admin socket, whose Ping reports the API's bound address. A start error of ours (or an
  address that cannot be bound) is raised as itself, not inside an exception group.
- **Stop** is a cancellation (the caller's): the admin socket and the HTTP API stop first
  (requests in flight get the API's ``graceful_timeout``), then the agent leaves the cluster,
  applies what is queued and closes its database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import attrs
import trio

from corrosion_py.addr import Addr
from corrosion_py.admin import check_admin_path, serve_admin
from corrosion_py.agent import Agent, AgentConfig
from corrosion_py.api.limits import ApiConfig
from corrosion_py.api.server import serve_api
from corrosion_py.errors import CorrosionError, leaves
from corrosion_py.store import lock

__all__ = ["NodeConfig", "RunningNode", "check_startable", "open_node"]


@attrs.frozen
class NodeConfig:
    """A node to run: the agent's configuration and what it serves beside it."""

    agent: AgentConfig
    api_addr: Addr | None = None
    """Where the HTTP API listens (port 0 picks a free port); None serves no HTTP API."""
    api_token: str | None = None
    """When set, every HTTP request needs ``Authorization: Bearer <token>`` (else 401)."""
    api: ApiConfig = attrs.Factory(ApiConfig)
    """The HTTP API's limits."""
    admin_path: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    """The admin socket's path; None serves none."""


@attrs.frozen
class RunningNode:
    """A node started by `open_node`: its agent and where it serves."""

    agent: Agent
    api_addr: Addr | None
    """The HTTP API's bound address (None: none served)."""
    admin_path: Path | None


def check_startable(config: NodeConfig) -> None:
    """Raise `DatabaseInUse` when a node runs on the database, `AdminSocketInUse` when a live
    agent answers on the admin socket path (`AdminError` when the path cannot hold a socket).
    Blocking: it asks the socket path."""
    lock.refuse_if_held(config.agent.db_path)
    if config.admin_path is not None:
        check_admin_path(config.admin_path)


@asynccontextmanager
async def open_node(config: NodeConfig) -> AsyncIterator[RunningNode]:
    """Start the agent, then its HTTP API and admin socket (as configured); on exit (or
    cancellation) stop them in the reverse order. See the module's rules."""
    await trio.to_thread.run_sync(check_startable, config)
    started = False
    try:
        async with Agent.open(config.agent) as agent, trio.open_nursery() as nursery:
            api_addr: Addr | None = None
            if config.api_addr is not None:
                api_addr = await nursery.start(
                    partial(serve_api, agent, config.api_addr, config.api_token, config=config.api)
                )
            admin_path: Path | None = None
            if config.admin_path is not None:
                admin_path = await nursery.start(
                    partial(serve_admin, agent, config.admin_path, api_addr=api_addr)
                )
            started = True
            try:
                yield RunningNode(agent, api_addr, admin_path)
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        inside = leaves(group)
        if started or len(inside) != 1 or not isinstance(inside[0], CorrosionError | OSError):
            raise
        raise inside[0] from None
