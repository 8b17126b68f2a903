"""The global options of `corrosion` (``-c/--config``, ``--api-addr``, ``--db-path``,
``--admin-path``) and what commands reach through them: the configuration, the agent's HTTP API
(a client) and its admin socket.

The options are declared once (`GLOBALS`) and accepted both before the command name (on the
group) and after it (`global_options`, as Corrosion's are); either way they land in the one
`Settings` object of the invocation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from corrosion_py.cli.errors import CliError

if TYPE_CHECKING:
    from corrosion_py.client import CorrosionClient
    from corrosion_py.config import Config


class Settings:
    """The global options; the configuration is loaded on first use, so commands that need
    none (``demo``, ``sim``) work whatever ./corrosion.toml holds."""

    def __init__(
        self,
        config_path: Path | None,
        api_addr: str | None,
        db_path: str | None,
        admin_path: str | None,
    ) -> None:
        self.config_path = config_path
        self.api_addr = api_addr
        self.db_path = db_path
        self.admin_path = admin_path
        self._config: Config | None = None

    def config(self) -> Config:
        if self._config is None:
            from corrosion_py.config import Override, load_config

            overrides = [
                Override(key, value, option)
                for key, value, option in (
                    ("api.addr", self.api_addr, "option --api-addr"),
                    ("db.path", self.db_path, "option --db-path"),
                    ("admin.path", self.admin_path, "option --admin-path"),
                )
                if value is not None
            ]
            self._config = load_config(self.config_path, os.environ, overrides=overrides)
        return self._config

    def api_address(self) -> str:
        """The API to talk to: ``api.addr``; when its port is 0 (the agent picked a free one),
        the address the agent reports on its admin socket."""
        config = self.config()
        addr = config.api.addr
        if not addr.endswith(":0"):
            return addr
        from corrosion_py.admin import AgentNotRunning

        try:
            (ping,) = self.admin("Ping")
        except AgentNotRunning as exc:
            raise CliError(
                f"api.addr {addr} has port 0, and {exc}; or pass --api-addr HOST:PORT"
            ) from None
        if not ping.get("api_addr"):
            raise CliError(f"the agent at {config.admin_path} serves no HTTP API")
        return str(ping["api_addr"])

    def client(self) -> CorrosionClient:
        from corrosion_py.client import CorrosionClient

        token = self.config().api.authz.bearer_token
        host, _, port = self.api_address().rpartition(":")
        return CorrosionClient((host.strip("[]"), int(port)), token=token)  # (IPv6 bracketed)

    def admin(self, command: Any) -> list[Any]:
        from corrosion_py.admin import admin_request

        return admin_request(self.config().admin_path, command)


GLOBALS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (
        ("-c", "--config", "config_path"),
        {
            "type": click.Path(dir_okay=False, path_type=Path),
            "help": "Config file [default: ./corrosion.toml when present, else built-in "
            "defaults; env CORROSION_CONFIG].",
        },
    ),
    (("--api-addr",), {"metavar": "HOST:PORT", "help": "The agent's HTTP API (api.addr)."}),
    (("--db-path",), {"metavar": "PATH", "help": "The database (db.path)."}),
    (("--admin-path",), {"metavar": "PATH", "help": "The admin socket (admin.path)."}),
]
"""Each global option's declaration and keywords (``--config`` also reads CORROSION_CONFIG
on the group)."""

pass_settings = click.make_pass_decorator(Settings)


def group_options(group: Callable[..., Any]) -> Callable[..., Any]:
    """The global options on the group, before the command name; they build `Settings`."""
    for decls, kwargs in reversed(GLOBALS):
        envvar = "CORROSION_CONFIG" if "--config" in decls else None
        group = click.option(*decls, **kwargs, envvar=envvar)(group)
    return group


def _set_global(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is not None:
        setattr(ctx.ensure_object(Settings), str(param.name), value)


def global_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The global options, also accepted after the command name (``corrosion query ...
    --api-addr HOST:PORT``), as Corrosion's are; the command gets the `Settings`."""
    command = pass_settings(command)
    for decls, kwargs in reversed(GLOBALS):
        command = click.option(*decls, **kwargs, expose_value=False, callback=_set_global)(command)
    return command
