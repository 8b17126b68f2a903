"""``corrosion agent``: run a node (agent, HTTP API, admin socket: `corrosion_py.runner`) until
SIGINT or SIGTERM, logging its start, its catch-up and its stop."""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

import click

from corrosion_py.cli.errors import CliError
from corrosion_py.cli.logs import setup_logging
from corrosion_py.cli.settings import Settings, global_options
from corrosion_py.errors import leaves

if TYPE_CHECKING:
    from corrosion_py.agent import Agent
    from corrosion_py.config import Config

BIND_ERRORS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)


async def report_catch_up(agent: Agent, log: logging.Logger, interval: float = 1.0) -> None:
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
        missing = await agent.missing_versions()
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


async def run_agent(config: Config) -> None:
    """Run the node of ``config`` until SIGINT or SIGTERM, then stop it cleanly."""
    import trio

    from corrosion_py.addr import format_addr
    from corrosion_py.runner import open_node

    log = logging.getLogger("corrosion_py.agent")
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_node(config.node_config()) as node, trio.open_nursery() as nursery:
            agent = node.agent
            nursery.start_soon(report_catch_up, agent, log)
            fields = {
                "actor_id": agent.actor_id.hex(),
                "gossip_addr": format_addr(agent.gossip_addr),
                "api_addr": format_addr(node.api_addr) if node.api_addr else None,
                "admin_path": str(node.admin_path),
                "db_path": str(config.db.path),
                "pid": os.getpid(),
            }
            log.info(
                "agent started: actor %s, gossip %s, api %s, admin %s",
                fields["actor_id"], fields["gossip_addr"], fields["api_addr"], node.admin_path,
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


@click.command()
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
    import attrs
    import trio

    config = settings.config()
    if skip_integrity_check:
        config = attrs.evolve(config, db=attrs.evolve(config.db, skip_integrity_check=True))
    setup_logging(config.log)
    try:
        trio.run(run_agent, config)
    except Exception as exc:
        bind = [e for e in leaves(exc) if isinstance(e, OSError) and e.errno in BIND_ERRORS]
        if bind:
            raise CliError(
                f"cannot listen: {bind[0].strerror} (gossip {config.gossip.addr}, api "
                f"{config.api.addr}); is another agent running? Pick other ports with "
                "[gossip] addr and [api] addr (port 0: any free port)"
            ) from None
        raise
