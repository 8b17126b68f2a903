"""A proxy's routing table, kept in memory from a subscription: the way Fly.io's proxies do not
query the database for every request but keep a "Catalog" that Corrosion updates push into.

The subscription returns the current rows (each with a rowid), then one change per difference
of its result: an insert or an update sets the route of a rowid, a delete removes it. A machine
that stops leaves the result (``state = 'started'``), so it arrives here as a delete.

    python examples/routing/proxy.py --api 127.0.0.1:8082 web api     # Ctrl-C to stop
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from typing import NamedTuple

import trio

from corrosion_py.client import (
    AsyncCorrosionClient,
    Change,
    ClientError,
    EndOfQuery,
    Event,
    Row,
)

ROUTES = """
SELECT m.id, m.app, m.region, m.address
FROM machines m JOIN apps a ON a.name = m.app
WHERE m.state = 'started'
"""


class Route(NamedTuple):
    machine: str
    app: str
    region: str
    address: str


class RoutingTable:
    """Routes by the subscription's rowid; ``where`` answers from memory."""

    def __init__(self) -> None:
        self.routes: dict[int, Route] = {}
        self.ready = False
        """True once the initial rows are in."""
        self._changed = trio.Event()

    def apply(self, event: Event) -> None:
        """Take one subscription event."""
        if isinstance(event, Row):
            self.routes[event.rowid] = Route(*event.cells)
        elif isinstance(event, EndOfQuery):
            self.ready = True
        elif isinstance(event, Change):
            if event.kind == "delete":
                self.routes.pop(event.rowid, None)
            else:  # insert or update
                self.routes[event.rowid] = Route(*event.cells)
        else:
            return  # Columns: the names are known
        self._changed.set()
        self._changed = trio.Event()

    def where(self, app: str, near: str | None = None) -> list[str]:
        """Where ``app`` runs: its started machines' addresses, those in region ``near``
        first (a proxy sends a request to the closest one)."""
        routes = sorted((r.region != near, r.address) for r in self.routes.values() if r.app == app)
        return [address for _, address in routes]

    async def changed(self) -> None:
        """Return after the next event that changed the table."""
        await self._changed.wait()

    async def wait_until(self, check: Callable[[RoutingTable], bool]) -> None:
        """Return once ``check(self)`` holds (checked after each change)."""
        while not check(self):
            await self.changed()


async def follow(
    api: str, table: RoutingTable, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Keep ``table`` up to date from the node at ``api`` (HOST:PORT) until cancelled; started
    (for ``nursery.start``) once the initial rows are in. The client reconnects and resumes
    on its own if the stream drops."""
    async with AsyncCorrosionClient(api) as client, client.subscribe(ROUTES) as sub:
        async for event in sub:
            table.apply(event)
            if isinstance(event, EndOfQuery):
                task_status.started()


def answer(table: RoutingTable, app: str) -> str:
    """One line: where ``app`` runs."""
    addresses = table.where(app)
    return f"{app} -> {', '.join(addresses) if addresses else 'nowhere'}"


async def stop_on_signal(
    scope: trio.CancelScope, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Turn the first SIGINT (Ctrl-C) or SIGTERM into a cancellation of ``scope``.

    Left to itself, trio raises KeyboardInterrupt wherever the program happens to be, which can
    be the middle of the HTTP client's connection handling: its clean-up can then wait forever
    on state the interrupt left half-changed, and the program does not exit. A cancellation
    arrives at a checkpoint, where every library is ready for it. A second Ctrl-C during the
    clean-up interrupts at once (the handler is trio's again)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            scope.cancel()
            return


async def main(api: str, apps: list[str]) -> None:
    """Print where ``apps`` run whenever it changes, until SIGINT or SIGTERM."""
    table = RoutingTable()
    async with trio.open_nursery() as nursery:
        await nursery.start(stop_on_signal, nursery.cancel_scope)  # before the first line
        await nursery.start(follow, api, table)
        shown: list[str] = []
        while True:
            lines = [answer(table, app) for app in apps]
            if lines != shown:
                print("\n".join(lines), flush=True)
                shown = lines
            await table.changed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True, help="the node's HTTP API, HOST:PORT")
    parser.add_argument("apps", nargs="+", help="the apps to answer for")
    args = parser.parse_args()
    try:
        trio.run(main, args.api, args.apps)
    except* KeyboardInterrupt:  # Ctrl-C before the handler was in place, or a second one
        sys.exit(130)
    except* ClientError as group:
        sys.exit(f"proxy: {group.exceptions[0]}")
