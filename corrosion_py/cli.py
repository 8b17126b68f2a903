"""The `corrosion` command. For now it carries the engine's demo; the agent, client and admin
commands arrive with the agent and the HTTP API."""

from __future__ import annotations

import click

from corrosion_py import __version__


@click.group()
@click.version_option(__version__, prog_name="corrosion")
def main() -> None:
    """corrosion_py: a gossip-replicated CRDT state store on SQLite."""


@main.command()
def demo() -> None:
    """Three replicas of a routing table converging through the CRR engine."""
    from corrosion_py.demo import main as run_demo

    run_demo()
