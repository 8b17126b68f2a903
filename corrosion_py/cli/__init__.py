"""The `corrosion` command (also ``python -m corrosion_py``), with Corrosion's command names.

    corrosion agent                               run a node from ./corrosion.toml (or -c FILE)
    corrosion exec "INSERT INTO kv VALUES (1, 'a')"
    corrosion query "SELECT * FROM kv" --format json
    corrosion subscribe "SELECT * FROM kv"
    corrosion cluster members | sync generate | reload | subs list     (admin socket)
    corrosion backup DEST | restore SRC
    corrosion keygen [--out FILE] | keys list | keys reload     (gossip keys)
    corrosion dev-cluster 3 --schema schema.sql
    corrosion demo | sim SCENARIO

Global options (``-c/--config``, ``--api-addr``, ``--db-path``, ``--admin-path``) override the
configuration (corrosion_py.config). Client commands talk to the agent's HTTP API; ``cluster``,
``sync``, ``reload``, ``subs`` and ``keys`` to its admin socket (corrosion_py.admin). docs/cli.md
shows each command with its output.

Rules: every user error (bad configuration, refused SQL, no agent, bad option) prints one line
``Error: ...`` to stderr, with a hint where one helps, and exits non-zero; a traceback means a
bug. Start-up is kept short: trio, httpx, rich and the agent are imported inside the commands
that use them.

This module holds the group; each command lives in the module of its kind: `agent` (run a
node), `http` (exec, query, subscribe), `admin` (cluster, sync, reload, subs), `keys`
(keygen, keys), `backup` (backup, restore), `dev_cluster`; `settings` (global options),
`errors` (user errors as one line), `output`, `logs` and `interrupt` serve them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import click

from corrosion_py import __version__
from corrosion_py.cli import admin, agent, backup, dev_cluster, http, keys
from corrosion_py.cli.errors import CliError, user_message
from corrosion_py.cli.settings import Settings, group_options

__all__ = ["main"]


class _Group(click.Group):
    """The ``corrosion`` group: user errors as one line; ``sim`` imported only when used."""

    LAZY: ClassVar[dict[str, str]] = {"sim": "corrosion_py.sim.__main__:main"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY:
            import importlib

            module, _, name = self.LAZY[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), name)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise  # (click quiets a closed stdout, as in `corrosion query ... | head`)
        except Exception as exc:
            message = user_message(exc)
            if message is None:
                raise
            raise CliError(message) from None

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """click's main, with usage errors on one line too."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "corrosion"
            click.echo(f"Error: {exc.format_message()} (see `{where} --help`)", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="corrosion")
@group_options
@click.pass_context
def main(
    ctx: click.Context,
    config_path: Path | None,
    api_addr: str | None,
    db_path: str | None,
    admin_path: str | None,
) -> None:
    """corrosion_py: a gossip-replicated CRDT state store on SQLite."""
    ctx.obj = Settings(config_path, api_addr, db_path, admin_path)


@main.command("demo")
def demo_command() -> None:
    """Three replicas of a routing table converging through the CRR engine."""
    from corrosion_py import demo

    demo.main()


for _command in (
    agent.agent,
    http.exec_,
    http.query,
    http.subscribe,
    admin.cluster,
    admin.sync,
    admin.reload,
    admin.subs,
    keys.keygen,
    keys.keys,
    backup.backup,
    backup.restore,
    dev_cluster.dev_cluster,
):
    main.add_command(_command)
