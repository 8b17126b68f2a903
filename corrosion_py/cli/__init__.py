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
``sync``, ``reload`` and ``subs`` to its admin socket (corrosion_py.admin). docs/cli.md shows
each command with its output.

Rules: every user error (bad configuration, refused SQL, no agent, bad option) prints one line
``Error: ...`` to stderr, with a hint where one helps, and exits non-zero; a traceback means a
bug. Start-up is kept short: trio, httpx, rich and the agent are imported inside the commands
that use them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, NoReturn

import click

from corrosion_py import __version__, sqltext

if TYPE_CHECKING:
    from corrosion_py.client import CorrosionClient
    from corrosion_py.config import Config, LogSection

# -- errors --------------------------------------------------------------------------------------

AGENT_HINT = "is an agent running there? Start one with `corrosion agent`, or pass --api-addr"
TOKEN_HINT = (
    "set [api.authz] bearer-token (or CORROSION_API_AUTHZ_BEARER_TOKEN) to the agent's token"
)


class CliError(click.ClickException):
    """A user error: printed as one ``Error: ...`` line, exit status 1."""


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _user_message(exc: BaseException) -> str | None:
    """The line to print for a user error; None for anything else (a bug: let it show)."""
    from corrosion_py.errors import CorrosionError

    leaves = _leaves(exc)
    if len(leaves) > 1 or leaves[0] is not exc:
        messages = [_user_message(leaf) for leaf in leaves]
        if all(m is not None for m in messages):
            return messages[0]
        return None
    if isinstance(exc, CliError):
        return exc.format_message()
    client_types = sys.modules.get("corrosion_py.client.protocol")
    if client_types is not None and isinstance(exc, client_types.ClientError):
        if isinstance(exc, client_types.TransportError):
            return f"{exc.message}; {AGENT_HINT}"
        if isinstance(exc, client_types.Unauthorized):
            return f"{exc}; {TOKEN_HINT}"
        return str(exc)
    if isinstance(exc, CorrosionError):
        return str(exc)
    if isinstance(exc, OSError):
        return _os_error(exc)
    return None


def _os_error(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    if exc.filename is not None:
        text += f": {exc.filename}"
    return text


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
            message = _user_message(exc)
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


# -- the global options --------------------------------------------------------------------------


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


_GLOBALS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="corrosion")
@click.option(*_GLOBALS[0][0], **_GLOBALS[0][1], envvar="CORROSION_CONFIG")
@click.option(*_GLOBALS[1][0], **_GLOBALS[1][1])
@click.option(*_GLOBALS[2][0], **_GLOBALS[2][1])
@click.option(*_GLOBALS[3][0], **_GLOBALS[3][1])
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


pass_settings = click.make_pass_decorator(Settings)


def _set_global(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is not None:
        setattr(ctx.ensure_object(Settings), str(param.name), value)


def global_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The global options, also accepted after the command name (``corrosion query ...
    --api-addr HOST:PORT``), as Corrosion's are."""
    command = pass_settings(command)
    for decls, kwargs in reversed(_GLOBALS):
        command = click.option(*decls, **kwargs, expose_value=False, callback=_set_global)(command)
    return command


# -- agent ---------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the ``fields`` given as extra, and
    the exception when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(section: LogSection) -> None:
    """Log to stderr in the format and at the level of ``[log]``."""
    handler = logging.StreamHandler(sys.stderr)
    if section.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.set_name("corrosion")
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if h.get_name() != "corrosion"] + [handler]
    root.setLevel(section.level.upper())


def missing_versions(state: Any) -> int:
    """Versions a node has heard of and does not hold yet (gaps, plus partially received)."""
    gaps = sum(end - start + 1 for ranges in state.need.values() for start, end in ranges)
    return int(gaps + sum(len(partials) for partials in state.partial_need.values()))


async def _report_catch_up(agent: Any, log: logging.Logger, interval: float = 1.0) -> None:
    """While the node misses versions it has heard of (after a start, or a partition), show
    the catch-up: a progress bar when stderr is a terminal, else a log line every 5 s, and one
    line when it is done."""
    import trio

    progress: Any = None
    task: Any = None
    worst = 0
    started = last_line = 0.0
    while True:
        await trio.sleep(interval)
        missing = missing_versions(agent.store.sync_state())
        now = trio.current_time()
        if missing and not worst:
            started = last_line = now
        if missing:
            worst = max(worst, missing)
            if sys.stderr.isatty():
                if progress is None:
                    from rich.console import Console
                    from rich.progress import Progress

                    progress = Progress(console=Console(file=sys.stderr), transient=True)
                    progress.start()
                    task = progress.add_task("catching up (versions)", total=worst)
                progress.update(task, total=worst, completed=worst - missing)
            elif now - last_line >= 5 * interval:
                last_line = now
                log.info(
                    "catching up: %d of %d versions received", worst - missing, worst,
                    extra={"fields": {"event": "catching_up", "missing": missing}},
                )  # fmt: skip
        elif worst:
            if progress is not None:
                progress.stop()
                progress = None
            log.info(
                "caught up: %d versions received in %.1f s", worst, now - started,
                extra={"fields": {"event": "caught_up", "versions": worst}},
            )  # fmt: skip
            worst = 0


async def _run_agent(config: Config) -> None:
    import trio

    from corrosion_py.addr import format_addr
    from corrosion_py.admin import serve_admin
    from corrosion_py.agent import Agent

    log = logging.getLogger("corrosion_py.agent")
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with Agent.open(config.agent_config()) as agent, trio.open_nursery() as nursery:
            admin_path = await nursery.start(serve_admin, agent, config.admin_path)
            nursery.start_soon(_report_catch_up, agent, log)
            fields = {
                "actor_id": agent.actor_id.hex(),
                "gossip_addr": format_addr(agent.gossip_addr),
                "api_addr": format_addr(agent.api_addr) if agent.api_addr else None,
                "admin_path": str(admin_path),
                "db_path": str(config.db.path),
                "pid": os.getpid(),
            }
            log.info(
                "agent started: actor %s, gossip %s, api %s, admin %s",
                fields["actor_id"], fields["gossip_addr"], fields["api_addr"], admin_path,
                extra={"fields": {"event": "started", **fields}},
            )  # fmt: skip
            async for signum in signals:
                log.info(
                    "%s received, stopping", signal.Signals(signum).name,
                    extra={"fields": {"event": "stopping"}},
                )  # fmt: skip
                nursery.cancel_scope.cancel()
                break
    log.info("agent stopped", extra={"fields": {"event": "stopped"}})


@main.command()
@click.option(
    "--skip-integrity-check",
    is_flag=True,
    help="Start without PRAGMA quick_check of the database ([db] skip_integrity_check).",
)
@global_options
def agent(settings: Settings, skip_integrity_check: bool) -> None:
    """Run a node: the store, gossip, the HTTP API and the admin socket.

    Logs go to stderr ([log] format and level); SIGINT or SIGTERM stop it cleanly (it leaves
    the cluster, applies what is queued, closes the database), exit status 0. A database that
    is empty, not SQLite, truncated or corrupt is refused in one line, nothing changed."""
    import errno

    import attrs
    import trio

    from corrosion_py.admin import check_admin_path
    from corrosion_py.store import lock
    from corrosion_py.store.lock import DatabaseInUse

    config = settings.config()
    if skip_integrity_check:
        config = attrs.evolve(config, db=attrs.evolve(config.db, skip_integrity_check=True))
    setup_logging(config.log)
    holder = lock.holder(config.db.path)
    if holder is not None:
        shown = f"pid {holder}" if holder > 0 else "pid unknown"
        raise DatabaseInUse(f"a node is running on {config.db.path} ({shown}); stop it first")
    check_admin_path(config.admin_path)
    try:
        trio.run(_run_agent, config)
    except Exception as exc:
        bind = [
            e
            for e in _leaves(exc)
            if isinstance(e, OSError)
            and e.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)
        ]
        if bind:
            raise CliError(
                f"cannot listen: {bind[0].strerror} (gossip {config.gossip.addr}, api "
                f"{config.api.addr}); is another agent running? Pick other ports with "
                "[gossip] addr and [api] addr (port 0: any free port)"
            ) from None
        raise


# -- HTTP client commands ------------------------------------------------------------------------


def _param(text: str) -> Any:
    """A ``--param``: its JSON value when it parses as JSON, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def split_sql(text: str) -> list[str]:
    """Statements of ``text`` (split at the ``;`` that end complete statements, so semicolons in
    strings and trigger bodies stay), without the empty ones."""
    return [stmt.with_semicolon() for stmt in sqltext.statements(text)]


def _statements(sql: Sequence[str]) -> list[str]:
    if not sql or list(sql) == ["-"]:
        stdin = sys.stdin
        if stdin.isatty():
            raise click.UsageError("give SQL statements as arguments, or on stdin")
        sql = [stdin.read()]
    statements = [s for text in sql for s in split_sql(text)]
    if not statements:
        raise click.UsageError("no SQL statement given")
    return statements


def _ms(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds * 1000:.1f} ms"


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


@main.command("exec")
@click.argument("sql", nargs=-1)
@param_option
@timeout_option
@global_options
def exec_(settings: Settings, sql: tuple[str, ...], params: tuple[str, ...],
          timeout: float | None) -> None:  # fmt: skip
    """Run SQL statements as one transaction (from the arguments, or stdin when none or "-").

    Prints each statement's rows affected, the new version and the time."""
    statements: list[Any] = list(_statements(sql))
    if params:
        if len(statements) != 1:
            raise click.UsageError("--param needs exactly one statement")
        statements = [(statements[0], [_param(p) for p in params])]
    with settings.client() as client:
        result = client.transaction(statements, timeout=timeout)
    for r in result.results:
        click.echo(f"Rows affected: {r.rows_affected}")
    version = "none (nothing replicated changed)" if result.version is None else result.version
    click.echo(f"Version: {version}, actor {result.actor_id}, time {_ms(result.time)}")


def _text(cell: Any) -> str:
    if cell is None:
        return "NULL"
    if isinstance(cell, bytes):
        return f"x'{cell.hex()}'"
    return str(cell)


def _json_cell(cell: Any) -> Any:
    return list(cell) if isinstance(cell, bytes) else cell


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_json_cell)


def _stdout_console() -> Any:
    from rich.console import Console

    stdout = sys.stdout
    # markup off: cells are data ("[fdaa::1]:8080" is an address, not a rich tag)
    return Console(
        file=stdout, width=None if stdout.isatty() else 200, highlight=False, markup=False
    )


@main.command()
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
    values = [_param(p) for p in params]
    with settings.client() as client, client.query(sql, values, timeout=timeout) as rows:
        columns = rows.columns
        if fmt == "json":
            for row in rows:
                click.echo(_dumps(dict(zip(columns, map(_json_cell, row), strict=False))))
        elif fmt == "csv":
            import csv

            out = sys.stdout
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(columns)
            for row in rows:
                writer.writerow(["" if c is None else _text(c) for c in row])
        else:
            from rich.table import Table

            table = Table(*columns, show_edge=True)
            count = 0
            for row in rows:
                table.add_row(*(_text(c) for c in row))
                count += 1
            console = _stdout_console()
            console.print(table)
            console.print(f"{count} row{'s' * (count != 1)} ({_ms(rows.time)})", style="dim")


def _event_line(event: Any, fmt: str) -> str:
    from corrosion_py.client import Change, Columns, EndOfQuery, Row

    if fmt == "json":  # Corrosion's NDJSON event shapes
        if isinstance(event, Columns):
            return _dumps({"columns": list(event.names)})
        if isinstance(event, Row):
            return _dumps({"row": [event.rowid, list(event.cells)]})
        if isinstance(event, EndOfQuery):
            return _dumps({"eoq": {"time": event.time, "change_id": event.change_id}})
        assert isinstance(event, Change)
        return _dumps({"change": [event.kind, event.rowid, list(event.cells), event.change_id]})
    if isinstance(event, Columns):
        return "columns: " + " | ".join(event.names)
    if isinstance(event, Row):
        return f"row {event.rowid}: " + " | ".join(map(_text, event.cells))
    if isinstance(event, EndOfQuery):
        return f"end of query (change id {event.change_id}, {_ms(event.time)})"
    assert isinstance(event, Change)
    cells = " | ".join(map(_text, event.cells))
    return f"{event.kind} row {event.rowid} (change {event.change_id}): {cells}"


@main.command()
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

    values = [_param(p) for p in params]
    changes = 0
    with _interruptible(), settings.client() as client:
        try:
            sub = client.subscribe(sql, values, skip_rows=skip_rows, from_change=from_change)
            with sub:
                if fmt == "table":
                    click.echo(f"subscription {sub.id} (Ctrl-C to stop)", err=True)
                for event in sub:
                    click.echo(_event_line(event, fmt))
                    if isinstance(event, Change):
                        changes += 1
                        if count is not None and changes >= count:
                            break
        except KeyboardInterrupt:
            pass


# -- admin commands ------------------------------------------------------------------------------


def _ago(seconds: float | None, now: float) -> str:
    if seconds is None:
        return "never"
    delta = max(0.0, now - seconds)
    return f"{delta:.1f}s ago" if delta < 120 else f"{delta / 60:.0f}m ago"


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)


@main.group()
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
    _stdout_console().print(table)


@main.group()
def sync() -> None:
    """Anti-entropy sync (admin socket)."""


@sync.command()
@global_options
def generate(settings: Settings) -> None:
    """Print this agent's sync state as JSON: heads, needs and partial needs per actor."""
    (state,) = settings.admin({"Sync": "Generate"}) or [{}]
    click.echo(json.dumps(state, indent=2))


@main.command()
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


@main.group()
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
    _stdout_console().print(table)


# -- gossip keys ---------------------------------------------------------------------------------

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


@main.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a new key file here (mode 0600; refused if it exists).")  # fmt: skip
def keygen(out: Path | None) -> None:
    """Make a new gossip key (32 random bytes, base64): print it, or write a key file."""
    from corrosion_py.wire.keyring import generate_key

    if out is None:
        click.echo(generate_key(os.urandom))
        return
    write_new_keyring(out)
    click.echo(f"wrote a new key file {out} (set [gossip] keyring_file = {_toml_str(out)})")


@main.group()
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


# -- backup and restore --------------------------------------------------------------------------


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


@main.command()
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


@main.command()
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


# -- dev-cluster ---------------------------------------------------------------------------------


def _free_port(held: list[Any]) -> int:
    """A port free for TCP and UDP on 127.0.0.1 (its sockets stay open in ``held`` until the
    caller closes them, so two calls never return the same port)."""
    import socket

    for _ in range(100):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", 0))
        port = int(tcp.getsockname()[1])
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(("127.0.0.1", port))
        except OSError:
            tcp.close()
            udp.close()
            continue
        held += [tcp, udp]
        return port
    raise CliError("no free port found on 127.0.0.1")


def _toml_str(value: object) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _node_config(directory: Path, schema: Sequence[Path], gossip: int, api: int,
                 bootstrap: int | None, keys: Path) -> str:  # fmt: skip
    boot = f"[{_toml_str(f'127.0.0.1:{bootstrap}')}]" if bootstrap is not None else "[]"
    schemas = ", ".join(_toml_str(p) for p in schema)
    return (
        f"[db]\npath = {_toml_str(directory / 'corrosion.db')}\nschema_paths = [{schemas}]\n\n"
        f'[gossip]\naddr = "127.0.0.1:{gossip}"\nbootstrap = {boot}\npreset = "local"\n'
        f"keyring_file = {_toml_str(keys)}\n\n"
        f'[api]\naddr = "127.0.0.1:{api}"\n\n'
        f"[admin]\npath = {_toml_str(directory / 'admin.sock')}\n\n"
        "[perf]\nmin_sync_backoff = 0.5\nmax_sync_backoff = 2.0\n"
    )


def _stop(procs: Sequence[Any], timeout: float = 15.0) -> None:
    """SIGTERM each process by its pid, then SIGKILL those still running after ``timeout``."""
    for proc in procs:
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:  # subprocess.TimeoutExpired
            with suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def _interrupt(signum: int, frame: Any) -> NoReturn:
    raise KeyboardInterrupt


@contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt inside (also when SIGINT came in ignored, as
    it does for background jobs of a non-interactive shell). Only the main thread can set
    handlers: elsewhere (a test running the command in a thread) nothing changes."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@main.command("dev-cluster")
@click.argument("n", type=click.IntRange(min=1, max=64))
@click.option(
    "--schema",
    "schema",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Schema file or directory (repeat for several).",
)
@click.option("--base-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the nodes' files here (default: a temporary directory, removed "
                   "at the end).")  # fmt: skip
def dev_cluster(n: int, schema: tuple[Path, ...], base_dir: Path | None) -> None:
    """Run N local agents (one process each) joined through the first, until Ctrl-C.

    Each node gets a directory with its config, database, admin socket and log
    (``agent.log``); ports are picked free on 127.0.0.1. Gossip is encrypted with a key
    made for the cluster (``gossip.keys`` in the base directory)."""
    with _interruptible():
        _dev_cluster(n, schema, base_dir)


def _dev_cluster(n: int, schema: Sequence[Path], base_dir: Path | None) -> None:
    import shutil
    import subprocess
    import tempfile

    from corrosion_py.admin import MAX_UNIX_PATH, AgentNotRunning, wait_for_agent

    base = (base_dir or Path(tempfile.mkdtemp(prefix="corrosion-dev-"))).absolute()
    schemas = [p.absolute() for p in schema]
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORROSION_")}
    try:
        held: list[Any] = []
        ports = [(_free_port(held), _free_port(held)) for _ in range(n)]
        for sock in held:
            sock.close()
        keyring = base / "gossip.keys"
        if not keyring.exists():  # a kept --base-dir keeps its key
            base.mkdir(parents=True, exist_ok=True)
            write_new_keyring(keyring)
        nodes = []
        for i, (gossip, api) in enumerate(ports, 1):
            directory = base / f"n{i}"
            directory.mkdir(parents=True, exist_ok=True)
            if len(os.fsencode(directory / "admin.sock")) > MAX_UNIX_PATH:
                raise CliError(f"{base} is too deep for Unix sockets; pick a shorter --base-dir")
            config = directory / "corrosion.toml"
            config.write_text(
                _node_config(
                    directory, schemas, gossip, api, ports[0][0] if i > 1 else None, keyring
                )
            )
            log_file = open(directory / "agent.log", "ab")  # noqa: SIM115 (closed in finally)
            logs.append(log_file)
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "corrosion_py", "-c", str(config), "agent"],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    env=env,
                    start_new_session=True,  # Ctrl-C reaches us only; we stop them in order
                )
            )
            nodes.append((f"n{i}", directory, gossip, api))
        for (name, directory, _, _), proc in zip(nodes, procs, strict=True):
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise CliError(
                        f"{name} exited with status {proc.returncode}: "
                        f"{_tail(directory / 'agent.log')}"
                    )
                try:
                    wait_for_agent(directory / "admin.sock", timeout=0.5)
                    break
                except AgentNotRunning:
                    if time.monotonic() > deadline:
                        raise CliError(f"{name} did not start within 60 s") from None
        for (name, directory, gossip, api), proc in zip(nodes, procs, strict=True):
            click.echo(
                f"{name}  pid {proc.pid}  api 127.0.0.1:{api}  gossip 127.0.0.1:{gossip}  "
                f"admin {directory / 'admin.sock'}"
            )
        first = nodes[0][1] / "corrosion.toml"
        click.echo(f"{n} node{'s' * (n != 1)} running in {base} (configs and logs: n*/).")
        click.echo(f'Try: corrosion -c {first} query "SELECT 1"')
        click.echo("Press Ctrl-C to stop.")
        warned: set[int] = set()
        try:
            while True:
                time.sleep(0.5)
                for (name, _, _, _), proc in zip(nodes, procs, strict=True):
                    if proc.poll() is not None and proc.pid not in warned:
                        warned.add(proc.pid)
                        click.echo(f"{name} exited with status {proc.returncode}", err=True)
        except KeyboardInterrupt:
            click.echo("stopping...")
    finally:
        with suppress(KeyboardInterrupt):
            _stop(procs)
        for opened in logs:
            opened.close()
        if base_dir is None:
            shutil.rmtree(base, ignore_errors=True)
    click.echo("all nodes stopped.")


# -- the rest ------------------------------------------------------------------------------------


@main.command()
def demo() -> None:
    """Three replicas of a routing table converging through the CRR engine."""
    from corrosion_py.demo import main as run_demo

    run_demo()
