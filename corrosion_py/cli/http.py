"""The commands that talk to the agent's HTTP API: ``exec``, ``query``, ``subscribe``."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from corrosion_py import sqltext
from corrosion_py.cli.interrupt import interruptible
from corrosion_py.cli.output import cell_text, dumps, json_cell, ms, stdout_console
from corrosion_py.cli.settings import Settings, global_options


def param(text: str) -> Any:
    """A ``--param``: its JSON value when it parses as JSON, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def split_sql(text: str) -> list[str]:
    """Statements of ``text`` (split at the ``;`` that end complete statements, so semicolons in
    strings and trigger bodies stay), without the empty ones."""
    return [stmt.with_semicolon() for stmt in sqltext.statements(text)]


def statements_of(sql: Sequence[str]) -> list[str]:
    if not sql or list(sql) == ["-"]:
        stdin = sys.stdin
        if stdin.isatty():
            raise click.UsageError("give SQL statements as arguments, or on stdin")
        sql = [stdin.read()]
    statements = [s for text in sql for s in split_sql(text)]
    if not statements:
        raise click.UsageError("no SQL statement given")
    return statements


param_option = click.option(
    "--param",
    "params",
    multiple=True,
    metavar="VALUE",
    help="A positional parameter (repeat for each); read as JSON when it parses, else text.",
)
timeout_option = click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds the server allows."
)


@click.command("exec")
@click.argument("sql", nargs=-1)
@param_option
@timeout_option
@global_options
def exec_(settings: Settings, sql: tuple[str, ...], params: tuple[str, ...],
          timeout: float | None) -> None:  # fmt: skip
    """Run SQL statements as one transaction (from the arguments, or stdin when none or "-").

    Prints each statement's rows affected, the new version and the time."""
    statements: list[Any] = list(statements_of(sql))
    if params:
        if len(statements) != 1:
            raise click.UsageError("--param needs exactly one statement")
        statements = [(statements[0], [param(p) for p in params])]
    with settings.client() as client:
        result = client.transaction(statements, timeout=timeout)
    for r in result.results:
        click.echo(f"Rows affected: {r.rows_affected}")
    version = "none (nothing replicated changed)" if result.version is None else result.version
    click.echo(f"Version: {version}, actor {result.actor_id}, time {ms(result.time)}")


@click.command()
@click.argument("sql")
@param_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="table: a table; json: one JSON object per row (JSON lines); csv: with a header.",
)
@timeout_option
@global_options
def query(settings: Settings, sql: str, params: tuple[str, ...], fmt: str,
          timeout: float | None) -> None:  # fmt: skip
    """Run a read-only SQL query on the agent and print its rows."""
    values = [param(p) for p in params]
    with settings.client() as client, client.query(sql, values, timeout=timeout) as rows:
        columns = rows.columns
        if fmt == "json":
            for row in rows:
                click.echo(dumps(dict(zip(columns, map(json_cell, row), strict=False))))
        elif fmt == "csv":
            import csv

            out = sys.stdout
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(columns)
            for row in rows:
                writer.writerow(["" if c is None else cell_text(c) for c in row])
        else:
            from rich.table import Table

            table = Table(*columns, show_edge=True)
            count = 0
            for row in rows:
                table.add_row(*(cell_text(c) for c in row))
                count += 1
            console = stdout_console()
            console.print(table)
            console.print(f"{count} row{'s' * (count != 1)} ({ms(rows.time)})", style="dim")


def event_line(event: Any, fmt: str) -> str:
    from corrosion_py.api_types import event_json
    from corrosion_py.client import Change, Columns, EndOfQuery, Row

    if fmt == "json":  # Corrosion's NDJSON event shapes
        return dumps(event_json(event))
    if isinstance(event, Columns):
        return "columns: " + " | ".join(event.names)
    if isinstance(event, Row):
        return f"row {event.rowid}: " + " | ".join(map(cell_text, event.cells))
    if isinstance(event, EndOfQuery):
        return f"end of query (change id {event.change_id}, {ms(event.time)})"
    assert isinstance(event, Change)
    cells = " | ".join(map(cell_text, event.cells))
    return f"{event.kind} row {event.rowid} (change {event.change_id}): {cells}"


@click.command()
@click.argument("sql")
@param_option
@click.option("--from", "from_change", type=click.IntRange(min=0),
              help="Resume an existing subscription after this change id.")  # fmt: skip
@click.option("--skip-rows", is_flag=True, help="Only the changes, not the current rows.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table: a readable line per event; json: Corrosion's NDJSON event lines.",
)
@click.option("--count", type=click.IntRange(min=1),
              help="Exit after this many changes (default: run until Ctrl-C).")  # fmt: skip
@global_options
def subscribe(settings: Settings, sql: str, params: tuple[str, ...], from_change: int | None,
              skip_rows: bool, fmt: str, count: int | None) -> None:  # fmt: skip
    """Subscribe to SQL: print its rows, then a line per change as it happens.

    The subscription reconnects and resumes on its own after a dropped connection; Ctrl-C
    ends it (exit status 0)."""
    from corrosion_py.client import Change

    values = [param(p) for p in params]
    changes = 0
    with interruptible(), settings.client() as client:
        try:
            sub = client.subscribe(sql, values, skip_rows=skip_rows, from_change=from_change)
            with sub:
                if fmt == "table":
                    click.echo(f"subscription {sub.id} (Ctrl-C to stop)", err=True)
                for event in sub:
                    click.echo(event_line(event, fmt))
                    if isinstance(event, Change):
                        changes += 1
                        if count is not None and changes >= count:
                            break
        except KeyboardInterrupt:
            pass
