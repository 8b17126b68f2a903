"""The agent: a node of the cluster (store + SWIM + broadcast + sync + apply queue) in one trio
nursery; ``Agent`` is the door the HTTP API, the admin socket, the CLI and embedders use."""

from corrosion_py.agent.agent import Agent, AgentConfig

__all__ = ["Agent", "AgentConfig"]
