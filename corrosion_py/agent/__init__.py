"""The agent: a node of the cluster (store + SWIM + broadcast + sync + apply queue) in one trio
nursery. ``Agent`` is the only door the HTTP API, the admin socket, the CLI and embedders use;
this package also names the types its methods take, return and raise, so its callers import
nothing from the rooms behind it."""

from corrosion_py.agent.agent import Agent, AgentConfig
from corrosion_py.agent.reports import Health
from corrosion_py.api_types import TableStats
from corrosion_py.store.cursor import ReadCursor
from corrosion_py.store.migrations import SchemaError, SchemaResult
from corrosion_py.store.store import TxResult
from corrosion_py.subs import Subscription, SubscriptionError

__all__ = [
    "Agent",
    "AgentConfig",
    "Health",
    "ReadCursor",
    "SchemaError",
    "SchemaResult",
    "Subscription",
    "SubscriptionError",
    "TableStats",
    "TxResult",
]
