"""The `corrosion` command. For now it carries the engine's demo and the membership simulator
(`corrosion sim`, the same command as `python -m corrosion_py.sim`); the agent, client and admin
commands arrive with the agent and the HTTP API."""

from __future__ import annotations

import click

from corrosion_py import __version__
from corrosion_py.sim.__main__ import main as sim


@click.group()
@click.version_option(__version__, prog_name="corrosion")
def main() -> None:
    """corrosion_py: a gossip-replicated CRDT state store on SQLite."""


@main.command()
def demo() -> None:
    """Three replicas of a routing table converging through the CRR engine."""
    from corrosion_py.demo import main as run_demo

    run_demo()


main.add_command(sim, name="sim")
