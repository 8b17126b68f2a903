"""`make demo`: a three-node cluster on this machine replicating a Fly-style routing table.

Three agents run as OS processes (`corrosion_py.testing.agent_node`, each with the HTTP API on
a free port, the `local` timing preset and its database in a temporary directory) and load
``examples/routing/schema.sql``. A "proxy" subscribes on node3 over HTTP with the Python
client; workers publish their machines on node1 and node2, change a state and delete one, and
each event is shown as it arrives on node3 with the time from the commit on the writer to its
arrival. Then node1's member list, node2 killed with SIGKILL and declared dead by the others
while the subscription goes on, and a clean stop. Every process is stopped by its own PID and
the directory is removed, also on Ctrl-C or error.

Run it with ``make demo``, ``python -m corrosion_py.demo`` or ``corrosion demo``.
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(130)


if __name__ == "__main__":  # Ctrl-C while the imports below load (a second or two): no traceback
    signal.signal(signal.SIGINT, _interrupted)

import trio  # noqa: E402

from corrosion_py.client import (  # noqa: E402
    AsyncCorrosionClient,
    Change,
    ClientError,
    Columns,
    EndOfQuery,
    Event,
    Row,
)
from corrosion_py.testing.agent_process import AgentProcess  # noqa: E402
from corrosion_py.wire.keyring import generate_key, parse_keyring  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "examples" / "routing" / "schema.sql"
FOLLOW = "SELECT id, app, region, address, state FROM machines"
NODE_MAIN = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "from corrosion_py.demo import _serve_node; _serve_node(sys.argv[1:])"
)
"""A node process: Ctrl-C reaches the whole process group, but the demo stops its nodes
itself, by PID, so a node ignores SIGINT from its first line on (no traceback from a node
still importing; a running agent then takes SIGINT as a clean stop, like SIGTERM)."""
WAIT = 15.0
"""Seconds any one step may take before the demo gives up (they take milliseconds)."""

T = TypeVar("T")


class DemoError(Exception):
    """A step that did not happen in time: printed as one line, exit status 1."""


# -- the nodes ---------------------------------------------------------------------------------


class Node(AgentProcess):
    """An agent process (`corrosion_py.testing.agent_node`). It is put in ``registry`` before its
    process starts, so the cleanup finds its PID whatever happens next."""

    def __init__(self, name: str, registry: list[Node], db: Path, **options: Any) -> None:
        self.name = name
        registry.append(self)
        keys = db.parent / "gossip.keys"  # the cluster's key, made once in the demo's directory
        super().__init__(db, SCHEMA, api="127.0.0.1:0", keyring_file=keys, **options)

    def start(self) -> None:
        if "-m" in self.args:  # run through this module's `_serve_node`, which ignores SIGINT
            i = self.args.index("-m")
            self.args[i : i + 2] = ["-c", NODE_MAIN]
        super().start()

    @property
    def http(self) -> str:
        """The HTTP API's HOST:PORT."""
        if self.api is None:
            raise DemoError(f"{self.name} has no HTTP API")
        return self.api

    def members(self) -> list[tuple[str, str, str, int]]:
        """(actor hex, HOST:PORT, state, incarnation) of every member this node knows."""
        reply = self.request(members=True)
        if "error" in reply:
            raise DemoError(f"{self.name} refused the members command: {reply['error']}")
        return [(a, addr, state, inc) for a, addr, state, inc in reply["members"]]

    def commit_time(self, actor: str, version: int) -> float | None:
        """Wall time at which this node committed ``version`` of ``actor`` (None: not seen)."""
        for a, v, at in self.request(arrivals=True)["arrivals"]:
            if a == actor and v == version:
                return float(at)
        return None


def _serve_node(argv: list[str]) -> None:
    """A node process of the demo (see NODE_MAIN): `corrosion_py.testing.agent_node`."""
    from corrosion_py.testing import agent_node as node

    sys.argv[1:] = argv
    try:
        node.run()
    except KeyboardInterrupt:
        sys.exit(130)


# -- output ------------------------------------------------------------------------------------


def section(number: int, title: str, why: str) -> None:
    print(f"\n{number}. {title}")
    print(textwrap.fill(why, width=96, initial_indent="   ", subsequent_indent="   "))


def say(text: str) -> None:
    print(f"     {text}")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


# -- the run -----------------------------------------------------------------------------------


async def in_thread(fn: Callable[[], T]) -> T:
    """A blocking call (starting a process, a command to one) off the event loop; Ctrl-C does
    not wait for it."""
    return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


async def poll(what: str, check: Callable[[], bool], limit: float = WAIT) -> float:
    """Seconds until ``check()`` (run in a thread: it asks the node processes) holds;
    DemoError naming ``what`` after ``limit`` seconds."""
    start = time.monotonic()
    with trio.move_on_after(limit):
        while not await in_thread(check):  # noqa: ASYNC110 (polls other processes)
            await trio.sleep(0.02)
        return time.monotonic() - start
    raise DemoError(f"{what}: not after {limit:g} s")


class Follower:
    """The subscription's events, stamped with their arrival time, handed to the main task."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[tuple[float, Event]](1000)

    async def run(self, client: AsyncCorrosionClient) -> None:
        async with client.subscribe(FOLLOW) as sub:
            async for event in sub:
                await self.send.send((time.time(), event))

    async def next(self, what: str) -> tuple[float, Event]:
        with trio.move_on_after(WAIT):
            return await self.receive.receive()
        raise DemoError(f"no event on node3 for {what} after {WAIT:g} s")

    async def changes(self, count: int, what: str) -> list[tuple[float, Change]]:
        out: list[tuple[float, Change]] = []
        while len(out) < count:
            at, event = await self.next(what)
            if isinstance(event, Change):
                out.append((at, event))
        return out


class Writer:
    """A worker's writes into its node over HTTP, each followed to node3's subscription."""

    def __init__(self, node: Node, client: AsyncCorrosionClient, follower: Follower) -> None:
        self.node, self.client, self.follower = node, client, follower
        self.delays: list[float] = []

    async def write(self, what: str, statements: Sequence[Any], events: int) -> None:
        sent = time.time()
        result = await self.client.transaction(statements)
        version = result.version
        if version is None:
            raise DemoError(f"{what}: the transaction changed nothing")
        say(f"{self.node.name}: {what} (version {version} of its actor)")
        arrived = await self.follower.changes(events, what)
        committed = await in_thread(lambda: self.node.commit_time(result.actor_id, version))
        committed = committed if committed is not None else sent
        for at, change in arrived:
            delay = max(0.0, at - committed)
            self.delays.append(delay)
            cells = "  ".join(str(c) for c in change.cells)
            say(f"  node3 got {change.kind:6}  {cells:44}  {ms(delay):>6} after the commit")


def machine(mid: str, app: str, worker: str, region: str, address: str) -> tuple[str, list[Any]]:
    return (
        "INSERT INTO machines (id, app, worker, region, address, state) "
        "VALUES (?, ?, ?, ?, ?, 'started')",
        [mid, app, worker, region, address],
    )


def member_table(viewer: Node, names: dict[str, str]) -> None:
    say(f"{viewer.name}'s member list (itself not included):")
    for actor, addr, state, inc in sorted(viewer.members(), key=lambda m: names.get(m[0], "")):
        name = names.get(actor, "?")
        say(f"  {name}  actor {actor[:8]}  gossip {addr:<16}  {state:<7}  incarnation {inc}")


async def run(workdir: Path, nodes: list[Node]) -> None:
    if not SCHEMA.exists():
        raise DemoError(f"the example schema is missing: {SCHEMA} (run from a checkout)")

    section(1, "Start a three-node cluster", (
        "Three agent processes on this machine, each with its own SQLite file (in a temporary "
        "directory), one gossip port (UDP: SWIM membership and change broadcasts; TCP: "
        "anti-entropy sync) and an HTTP API, with the fast `local` timing preset. node2 and "
        "node3 join through node1. Gossip is encrypted and authenticated with a cluster key "
        "made for this run (`corrosion keygen`): a process without it can neither read nor write."
    ))  # fmt: skip
    started = time.monotonic()
    say(f"data in {workdir}")
    keys = workdir / "gossip.keys"
    keys.touch(mode=0o600)
    keys.write_text(generate_key(os.urandom) + "\n")
    n1 = await in_thread(lambda: Node("node1", nodes, workdir / "node1.db"))
    others: list[Node] = []

    async def start_node(name: str) -> None:
        db = workdir / f"{name}.db"
        others.append(await in_thread(lambda: Node(name, nodes, db, bootstrap=[n1.gossip])))

    async with trio.open_nursery() as nursery:
        for name in ("node2", "node3"):
            nursery.start_soon(start_node, name)
    n2, n3 = sorted(others, key=lambda n: n.name)
    cluster = [n1, n2, n3]
    names = {n.actor: n.name for n in cluster}
    for n in cluster:
        where = f"gossip {n.gossip:<16}  api {n.http:<16}"
        say(f"{n.name}  pid {n.pid:<7}  {where}  actor {n.actor[:8]}")
    await poll("the three nodes seeing each other",
               lambda: all(n.request(state=True)["alive"] == 2 for n in cluster))  # fmt: skip
    say(f"every node sees the other two alive, {time.monotonic() - started:.1f} s after start")
    key_id = parse_keyring(keys.read_text()).primary.id_hex
    sealing = [n.request(stats=True)["stats"]["security"] for n in cluster]
    if not all(s is not None and s["key_ids"] == [key_id] for s in sealing):
        raise DemoError("a node does not seal its gossip with the cluster's key")
    say(f"every node seals its gossip with key id {key_id} (the key itself never leaves "
        f"{keys.name})")  # fmt: skip

    section(2, "The schema", (
        "Every node loaded examples/routing/schema.sql: `apps` and `machines` (app, worker, "
        "region, address, state), a routing table like the one Fly.io's proxies read to know "
        "where each app runs. Its tables are CRRs: every column of every row carries a logical "
        "clock, so writes on any node merge to the same result everywhere."
    ))  # fmt: skip

    follower = Follower()
    async with (
        AsyncCorrosionClient(n1.http) as c1,
        AsyncCorrosionClient(n2.http) as c2,
        AsyncCorrosionClient(n3.http) as c3,
        trio.open_nursery() as nursery,
    ):
        section(3, "Subscribe on node3", (
            "A proxy on node3 subscribes over HTTP (POST /v1/subscriptions) to the query below: "
            "it gets the current rows, then one event per change of the result, whichever node "
            "wrote it."
        ))  # fmt: skip
        say(FOLLOW)
        nursery.start_soon(follower.run, c3)
        rows = 0
        while True:
            _, event = await follower.next("the subscription's initial rows")
            if isinstance(event, Row):
                rows += 1
            elif isinstance(event, Columns):
                say(f"columns {', '.join(event.names)}")
            elif isinstance(event, EndOfQuery):
                empty = " (an empty table)" if rows == 0 else ""
                say(f"{rows} rows now{empty}; waiting for changes")
                break

        section(4, "Workers write on node1 and node2", (
            "Each worker publishes the machines it runs into its own node (POST "
            "/v1/transactions). The change is committed there, broadcast to the other nodes "
            "and applied, and node3's subscription turns it into events. The delay is measured "
            "from the commit on the writer to the event's arrival here."
        ))  # fmt: skip
        w1, w2 = Writer(n1, c1, follower), Writer(n2, c2, follower)
        await w1.write("worker ams-1 publishes two machines", [
            "INSERT INTO apps (name, org) VALUES ('web', 'acme'), ('api', 'acme')",
            machine("m-ams-1", "web", "ams-1", "ams", "[fdaa::1:1]:8080"),
            machine("m-ams-2", "api", "ams-1", "ams", "[fdaa::1:2]:8080"),
        ], events=2)  # fmt: skip
        await w2.write("worker ord-1 publishes two machines", [
            machine("m-ord-1", "web", "ord-1", "ord", "[fdaa::2:1]:8080"),
            machine("m-ord-2", "web", "ord-1", "ord", "[fdaa::2:2]:8080"),
        ], events=2)  # fmt: skip
        await w2.write("m-ord-2 is stopping",
                       [("UPDATE machines SET state = 'stopping' WHERE id = ?", ["m-ord-2"])],
                       events=1)  # fmt: skip
        await w1.write("m-ams-2 is destroyed",
                       [("DELETE FROM machines WHERE id = ?", ["m-ams-2"])], events=1)  # fmt: skip
        delays = w1.delays + w2.delays
        say(f"propagation over {len(delays)} events: min {ms(min(delays))}, median "
            f"{ms(statistics.median(delays))}, max {ms(max(delays))}")  # fmt: skip

        section(5, "Membership", (
            "Nodes find each other and watch each other with SWIM: each probes a random member "
            "every 200 ms (the `local` preset); a member that does not answer, directly or "
            "through others, is suspected, then declared dead."
        ))  # fmt: skip
        await in_thread(lambda: member_table(n1, names))

        section(6, "Kill node2", (
            "node2 gets SIGKILL: no goodbye, as if its host crashed. node1 and node3 notice that "
            "it stopped answering probes, suspect it, and declare it dead; the data it wrote "
            "stays on the others, and the subscription on node3 goes on."
        ))  # fmt: skip
        say(f"kill -9 {n2.pid} (node2)")
        killed = time.monotonic()
        await in_thread(n2.kill)
        seen: dict[tuple[str, str], float] = {}

        def watch() -> bool:
            for viewer in (n1, n3):
                for actor, _, state, _ in viewer.members():
                    if actor == n2.actor and state in ("suspect", "dead"):
                        seen.setdefault((viewer.name, state), time.monotonic() - killed)
            return all((v, "dead") in seen for v in ("node1", "node3"))

        await poll("node2 declared dead by node1 and node3", watch, limit=30.0)
        for viewer in ("node1", "node3"):
            suspect = seen.get((viewer, "suspect"))
            first = f"suspected after {suspect:.2f} s, " if suspect is not None else ""
            say(f"{viewer}: node2 {first}declared dead after {seen[(viewer, 'dead')]:.2f} s")
        await in_thread(lambda: member_table(n1, names))
        w1.delays.clear()
        await w1.write("worker ams-1 publishes one more machine", [
            machine("m-ams-3", "web", "ams-1", "ams", "[fdaa::1:3]:8080"),
        ], events=1)  # fmt: skip
        say("the subscription on node3 still works without node2")
        nursery.cancel_scope.cancel()

    section(7, "Stop", (
        "node1 and node3 are stopped cleanly: each announces its leave, applies what it "
        "already received, saves its member list and closes its database."
    ))  # fmt: skip
    codes = {n.name: 0 for n in (n1, n3)}

    async def stop(node: Node) -> None:
        # the end of its commands (stdin) makes the node leave the cluster, apply what it
        # holds and close its database; SIGTERM, then SIGKILL, only if it is still running
        code = await in_thread(lambda: node.stop(end_input=True))
        codes[node.name] = code or 0

    async with trio.open_nursery() as nursery:
        for n in (n1, n3):
            nursery.start_soon(stop, n)
    for name, code in codes.items():
        if code != 0:
            raise DemoError(f"{name} did not stop cleanly (exit status {code})")
        say(f"{name} stopped cleanly (exit status 0)")


def cleanup(nodes: list[Node]) -> None:
    """Stop every node process still running, by its PID (end of stdin, then SIGTERM, then
    SIGKILL)."""
    for node in nodes:
        if node.pid is None:
            continue
        try:
            node.stop(timeout=5.0, end_input=True)
        except Exception:  # a pipe closed early, or the like: make sure, by SIGKILL
            node.kill()


def _on_sigint(handler: Any) -> Any:
    """Set the SIGINT handler (only the main thread can); the previous one."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, handler)


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def main() -> None:
    _on_sigint(signal.default_int_handler)  # trio turns Ctrl-C into KeyboardInterrupt
    print("corrosion_py demo: a three-node cluster replicating a routing table, the way Fly.io's")
    print("proxies learn where every app's machines run.")
    started = time.monotonic()
    nodes: list[Node] = []
    failure: BaseException | None = None
    with tempfile.TemporaryDirectory(prefix="corrosion-demo-") as directory:
        try:
            trio.run(run, Path(directory), nodes)
        except BaseException as exc:
            failure = _leaf(exc)
        finally:
            previous = _on_sigint(signal.SIG_IGN)  # the cleanup runs to its end
            try:
                cleanup(nodes)
            finally:
                if previous is not None:
                    _on_sigint(previous)
    if isinstance(failure, KeyboardInterrupt):
        print("\ninterrupted: every node stopped, temporary files removed.")
        raise SystemExit(130)
    if isinstance(failure, SystemExit):
        raise failure
    if failure is not None:
        kind = "" if isinstance(failure, DemoError | ClientError) else f"{type(failure).__name__}: "
        print(f"\ndemo failed: {kind}{failure}", file=sys.stderr)
        print("every node stopped, temporary files removed.", file=sys.stderr)
        raise SystemExit(1)
    print(f"\nall nodes stopped cleanly, temporary files removed; "
          f"the demo took {time.monotonic() - started:.1f} s.")  # fmt: skip


if __name__ == "__main__":
    main()
