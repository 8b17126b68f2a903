"""An agent embedded in a trio program as a library: no HTTP server, no separate process. The
program runs its own service task next to the agent (a "scheduler" that keeps the number of
started machines per app from a subscription), writes and reads through the agent, and follows
the cluster's membership. It ends by itself after a short scripted run (about 5 s):

    python examples/embedded.py

A second agent in the same program stands in for another host: it joins, writes a machine
(which replicates into the first agent and reaches the scheduler's subscription), then leaves.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import trio

from corrosion_py import Agent, AgentConfig
from corrosion_py.subs import Change, EndOfQuery, Row
from corrosion_py.swim import LOCAL, MemberLeft, MemberUp

SCHEMA = Path(__file__).resolve().parent / "routing" / "schema.sql"
STARTED = "SELECT id, app FROM machines WHERE state = 'started'"


class Capacity:
    """The service's state: the app of each started machine, by the subscription's rowid."""

    def __init__(self) -> None:
        self.apps: dict[int, str] = {}
        self._changed = trio.Event()

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for app in self.apps.values():
            out[app] = out.get(app, 0) + 1
        return dict(sorted(out.items()))

    async def run(self, agent: Agent, *, task_status: trio.TaskStatus[None]) -> None:
        """The service task: follow the subscription until cancelled."""
        async with agent.subscribe(STARTED) as (_subscription, events):
            async for event in events:
                if isinstance(event, Row):
                    self.apps[event.rowid] = event.cells[1]
                elif isinstance(event, EndOfQuery):
                    task_status.started()
                elif isinstance(event, Change):
                    if event.kind == "delete":
                        del self.apps[event.rowid]
                    else:
                        self.apps[event.rowid] = event.cells[1]
                    print(f"  scheduler: {event.kind} {event.cells[0]} -> {self.counts()}")
                self._changed.set()
                self._changed = trio.Event()

    async def wait_for(self, counts: dict[str, int]) -> None:
        with trio.fail_after(10):
            while self.counts() != counts:
                await self._changed.wait()


def machine(mid: str, app: str, worker: str) -> tuple[str, list[str]]:
    return (
        "INSERT INTO machines (id, app, worker, region, state) VALUES (?, ?, ?, 'ams', 'started')",
        [mid, app, worker],
    )


async def main(directory: Path) -> None:
    config = AgentConfig(db_path=directory / "node.db", schema_paths=[SCHEMA], swim=LOCAL)
    async with (
        Agent.open(config) as agent,
        agent.member_events() as members,
        trio.open_nursery() as nursery,
    ):
        host, port = agent.gossip_addr
        print(f"agent {agent.actor_id.hex()[:8]} running, gossip on {host}:{port}")
        capacity = Capacity()
        await nursery.start(capacity.run, agent)
        print(f"scheduler subscribed: {STARTED}")

        result = await agent.transaction([
            "INSERT INTO apps (name, org) VALUES ('web', 'acme'), ('api', 'acme')",
            machine("ams1-m1", "web", "ams1"),
            machine("ams1-m2", "api", "ams1"),
        ])  # fmt: skip
        print(f"wrote two machines: version {result.version}")
        await capacity.wait_for({"api": 1, "web": 1})
        rows = await agent.query("SELECT id, app, state FROM machines ORDER BY id")
        print(f"query: {rows}")

        peer_config = AgentConfig(
            db_path=directory / "peer.db",
            schema_paths=[SCHEMA],
            swim=LOCAL,
            bootstrap=[agent.gossip_addr],
        )
        async with Agent.open(peer_config) as peer:
            with trio.fail_after(10):
                async for event in members:
                    if isinstance(event, MemberUp):
                        who = event.member
                        print(f"member up: {who.actor_id.hex()[:8]} at {who.addr[0]}:{who.addr[1]}")
                        break
            await peer.transaction([machine("ord1-m1", "web", "ord1")])
            print("the peer wrote a machine")
            await capacity.wait_for({"api": 1, "web": 2})
        print("the peer stopped (it leaves the cluster)")
        with trio.fail_after(10):
            async for event in members:
                if isinstance(event, MemberLeft):
                    print(f"member left: {event.member.actor_id.hex()[:8]}")
                    break

        stop = "UPDATE machines SET state = 'stopped' WHERE id = ?"
        await agent.transaction([(stop, ["ams1-m2"])])
        await capacity.wait_for({"web": 2})
        nursery.cancel_scope.cancel()  # stop the service task; the agent closes after it
    print("done")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="corrosion-embedded-") as tmp:
        trio.run(main, Path(tmp))
