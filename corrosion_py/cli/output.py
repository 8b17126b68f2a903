"""How commands print: cells as text or JSON, durations, tables on stdout, the ``--format``
option of the admin commands, TOML string literals for the files and hints they write."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)


def cell_text(cell: Any) -> str:
    """A cell for a table or a line: NULL, a BLOB as ``x'..'``, anything else as itself."""
    if cell is None:
        return "NULL"
    if isinstance(cell, bytes):
        return f"x'{cell.hex()}'"
    return str(cell)


def json_cell(cell: Any) -> Any:
    """A cell for JSON: a BLOB as its byte numbers (as the HTTP API writes it)."""
    return list(cell) if isinstance(cell, bytes) else cell


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=json_cell)


def ms(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds * 1000:.1f} ms"


def stdout_console() -> Any:
    """A rich console on stdout for tables (200 columns wide when stdout is not a terminal)."""
    from rich.console import Console

    stdout = sys.stdout
    # markup off: cells are data ("[fdaa::1]:8080" is an address, not a rich tag)
    return Console(
        file=stdout, width=None if stdout.isatty() else 200, highlight=False, markup=False
    )


def toml_str(value: object) -> str:
    """``value`` as a TOML basic string (a JSON string is one)."""
    return json.dumps(str(value))
