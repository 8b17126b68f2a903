"""Gossip keys: ``keygen`` makes one (or a key file), ``keys list`` and ``keys reload`` ask a
running agent over its admin socket (key ids only, never the keys)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from corrosion_py.cli.errors import CliError
from corrosion_py.cli.output import toml_str
from corrosion_py.cli.settings import Settings, global_options

KEYFILE_HEADER = (
    "# corrosion_py gossip keys: one base64 key per line, the first is the primary.\n"
    "# Keep this file secret (mode 0600). Rotation: add a key, make it first, remove the old.\n"
)


def write_new_keyring(path: Path) -> None:
    """Create ``path`` holding one new key, mode 0600; `CliError` when it exists."""
    from corrosion_py.wire.keyring import generate_key

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CliError(
            f"{path} exists; refusing to overwrite a key file (to rotate, add a key printed "
            "by `corrosion keygen` to it)"
        ) from None
    with os.fdopen(fd, "w") as out:
        out.write(KEYFILE_HEADER + generate_key(os.urandom) + "\n")


@click.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a new key file here (mode 0600; refused if it exists).")  # fmt: skip
def keygen(out: Path | None) -> None:
    """Make a new gossip key (32 random bytes, base64): print it, or write a key file."""
    from corrosion_py.wire.keyring import generate_key

    if out is None:
        click.echo(generate_key(os.urandom))
        return
    write_new_keyring(out)
    click.echo(f"wrote a new key file {out} (set [gossip] keyring_file = {toml_str(out)})")


@click.group()
def keys() -> None:
    """The gossip keys of a running agent (admin socket): ids only, never the keys."""


def _print_keys(rows: list[Any]) -> None:
    if not rows:
        click.echo("gossip runs in plaintext: no keys")
    for row in rows:
        click.echo(f"{row['key_id']}{'  (primary)' if row.get('primary') else ''}")


@keys.command("list")
@global_options
def keys_list(settings: Settings) -> None:
    """Key ids in use, the primary (the one that seals) first."""
    _print_keys(settings.admin({"Keys": "List"}))


@keys.command("reload")
@global_options
def keys_reload(settings: Settings) -> None:
    """Re-read [gossip] keyring_file and use it at once (nothing changes if it is refused)."""
    rows = settings.admin({"Keys": "Reload"})
    click.echo(f"keys reloaded: {len(rows)} key{'s' * (len(rows) != 1)}")
    _print_keys(rows)
