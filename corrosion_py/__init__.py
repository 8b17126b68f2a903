"""corrosion_py: a gossip-replicated CRDT state store on SQLite.

Embed a node in a trio program::

    from corrosion_py import Agent, AgentConfig

    async with Agent.open(AgentConfig(db_path="node.db", schema_paths=["schema.sql"])) as agent:
        await agent.transaction(["INSERT INTO machines (id, app) VALUES ('m1', 'web')"])
        async with agent.subscribe("SELECT id FROM machines WHERE app = 'web'") as (sub, events):
            async for event in events:
                ...

``corrosion_py.runner.open_node`` runs the agent with its HTTP API and admin socket, as
``corrosion agent`` does. The CRR engine (`corrosion_py.crdt`) works on its own on any
``sqlite3`` connection; the store, membership, gossip, API and CLI are built on it (see
docs/architecture.md). ``Agent`` and
``AgentConfig`` are imported on first use, so ``import corrosion_py.crdt`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Agent", "AgentConfig", "__version__"]

if TYPE_CHECKING:
    from corrosion_py.agent import Agent, AgentConfig


def __getattr__(name: str) -> Any:
    if name in ("Agent", "AgentConfig"):
        from corrosion_py import agent

        return getattr(agent, name)
    raise AttributeError(f"module 'corrosion_py' has no attribute {name!r}")
