"""The agent: a node of the cluster (store + SWIM + broadcast + sync + apply queue) in one trio
nursery. ``agent.py`` wires the parts; ``apply_queue``, ``gossiper`` and ``syncer`` are the trio
shells of the inbound queue, changeset broadcast and the anti-entropy loop; ``node`` runs an
agent as its own OS process (tests, experiments)."""

from corrosion_py.agent.agent import Agent, AgentConfig

__all__ = ["Agent", "AgentConfig"]
