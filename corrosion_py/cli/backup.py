"""``backup`` and ``restore`` of a node's database (`corrosion_py.backup`), with a progress
bar on a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from corrosion_py.cli.errors import CliError
from corrosion_py.cli.settings import Settings, global_options


@contextmanager
def _progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr, fed by a ``progress(done, total)`` callback (nothing
    when stderr is not a terminal)."""
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeElapsedColumn

    columns = ("[progress.description]{task.description}", BarColumn(), TaskProgressColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield update


def _backup_module() -> Any:
    try:
        from corrosion_py import backup
    except ImportError as exc:
        raise CliError(f"backup and restore are not available in this build ({exc})") from None
    return backup


@click.command()
@click.argument("dest", type=click.Path(path_type=Path))
@global_options
def backup(settings: Settings, dest: Path) -> None:
    """Copy the database to DEST, without this node's identity (see `restore`)."""
    module = _backup_module()
    db_path = settings.config().db.path
    with _progress("backup") as progress:
        module.backup(db_path, dest, progress=progress)
    click.echo(f"backed up {db_path} to {dest}")


def _actor_id(text: str) -> bytes:
    import uuid

    try:
        return uuid.UUID(text).bytes
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a UUID (or 32 hex digits)", param_hint="--actor-id"
        ) from None


@click.command()
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--self-actor-id",
    is_flag=True,
    help="Keep this node's actor id (the one of the database being replaced).",
)
@click.option("--actor-id", metavar="UUID", help="Take this actor id.")  # fmt: skip
@global_options
def restore(settings: Settings, src: Path, self_actor_id: bool, actor_id: str | None) -> None:
    """Replace the database with the backup SRC (the agent must be stopped)."""
    if self_actor_id and actor_id is not None:
        raise click.UsageError("--self-actor-id and --actor-id cannot be used together")
    wanted = _actor_id(actor_id) if actor_id is not None else None
    module = _backup_module()
    db_path = settings.config().db.path
    with _progress("restore") as progress:
        actor = module.restore(
            src, db_path, actor_id=wanted, keep_actor_id=self_actor_id, progress=progress
        )
    click.echo(f"restored {src} into {db_path}; actor id {bytes(actor).hex()}")
