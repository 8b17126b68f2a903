"""The commands that talk to the agent's admin socket: ``cluster members``, ``sync generate``,
``reload``, ``subs list`` (the gossip keys' are in `corrosion_py.cli.keys`)."""

from __future__ import annotations

import json
import time

import click

from corrosion_py.cli.output import format_option, stdout_console
from corrosion_py.cli.settings import Settings, global_options


def _ago(seconds: float | None, now: float) -> str:
    if seconds is None:
        return "never"
    delta = max(0.0, now - seconds)
    return f"{delta:.1f}s ago" if delta < 120 else f"{delta / 60:.0f}m ago"


@click.group()
def cluster() -> None:
    """The cluster as this agent sees it (admin socket)."""


@cluster.command()
@format_option
@global_options
def members(settings: Settings, fmt: str) -> None:
    """Every member this agent knows, itself first."""
    rows = settings.admin({"Cluster": "Members"})
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    now = time.time()
    table = Table("actor id", "address", "state", "incarnation", "last seen")
    for row in rows:
        seen = "(this node)" if row.get("this_node") else _ago(row.get("last_seen"), now)
        table.add_row(
            str(row["actor_id"]), str(row["addr"]), str(row["state"]),
            str(row["incarnation"]), seen,
        )  # fmt: skip
    stdout_console().print(table)


@click.group()
def sync() -> None:
    """Anti-entropy sync (admin socket)."""


@sync.command()
@global_options
def generate(settings: Settings) -> None:
    """Print this agent's sync state as JSON: heads, needs and partial needs per actor."""
    (state,) = settings.admin({"Sync": "Generate"}) or [{}]
    click.echo(json.dumps(state, indent=2))


@click.command()
@global_options
def reload(settings: Settings) -> None:
    """Re-read the schema files and apply what changed (admin socket)."""
    answers = settings.admin("Reload")
    result = answers[0] if answers and isinstance(answers[0], dict) else {}
    parts = []
    if result.get("created_tables"):
        parts.append("created tables: " + ", ".join(result["created_tables"]))
    if result.get("added_columns"):
        parts.append("added columns: " + ", ".join(f"{t}.{c}" for t, c in result["added_columns"]))
    if result.get("created_indexes"):
        parts.append("created indexes: " + ", ".join(result["created_indexes"]))
    if result.get("adopted_tables"):
        parts.append("adopted tables: " + ", ".join(result["adopted_tables"]))
    if parts:
        click.echo("schema reloaded; " + "; ".join(parts))
    elif result.get("changed"):
        click.echo("schema reloaded (statement text recorded, no structural change)")
    else:
        click.echo("schema unchanged")


@click.group()
def subs() -> None:
    """Subscriptions of this agent (admin socket)."""


@subs.command("list")
@format_option
@global_options
def subs_list(settings: Settings, fmt: str) -> None:
    """Every live subscription: id, hash, SQL, listeners, last change id."""
    rows = settings.admin({"Subs": "List"})
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table("id", "hash", "sql", "listeners", "change id")
    for row in rows:
        table.add_row(
            str(row["id"]), str(row["hash"]), str(row["sql"]), str(row["listeners"]),
            str(row["change_id"]),
        )  # fmt: skip
    stdout_console().print(table)
