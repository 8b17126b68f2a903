"""`make demo`: a three-node cluster on this machine replicating a Fly-style routing table.

Three agents run in this process, each with its own SQLite file in a temporary directory and
its own gossip port on 127.0.0.1 (UDP for SWIM and broadcast, TCP for sync), with the LOCAL
timing preset. The demo writes on nodes 1 and 2 (node 3 writes concurrently to the same cell),
shows every node converging with the measured propagation time, the member list as node 1 sees
it, then stops node 3 without a word and shows the others detecting it.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import attrs
import trio

from corrosion_py.agent import Agent, AgentConfig
from corrosion_py.swim import LOCAL, MemberState

SCHEMA = """
CREATE TABLE machines (
    id TEXT PRIMARY KEY NOT NULL,
    app TEXT NOT NULL DEFAULT '',
    region TEXT,
    address TEXT,
    state TEXT NOT NULL DEFAULT 'created'
);
"""
INSERT = "INSERT INTO machines (id, app, region, address, state) VALUES (?, ?, ?, ?, ?)"
ROWS = "SELECT id, app, region, address, state FROM machines ORDER BY id"


async def tables(agents: list[Agent]) -> list[list[tuple[object, ...]]]:
    return [await a.store.query(ROWS) for a in agents]


async def wait_converged(agents: list[Agent]) -> float:
    """Seconds until every node holds the same rows and no gaps (30 s at most)."""
    start = time.perf_counter()
    with trio.fail_after(30):
        while True:
            rows = await tables(agents)
            gaps = any(a.store.sync_state().need for a in agents)
            if all(r == rows[0] for r in rows) and not gaps:
                return time.perf_counter() - start
            await trio.sleep(0.005)


async def main_async(directory: Path) -> bool:
    schema = directory / "schema.sql"
    schema.write_text(SCHEMA)

    def config(name: str, bootstrap: tuple[tuple[str, int], ...] = ()) -> AgentConfig:
        return AgentConfig(
            db_path=directory / f"{name}.db",
            schema_paths=[schema],
            bootstrap=bootstrap,
            swim=LOCAL,
            sync_interval=(0.5, 2.0),
            shutdown_timeout=2.0,
        )

    async with AsyncExitStack() as stack:
        n1 = await stack.enter_async_context(Agent.open(config("node1")))
        seed = (n1.gossip_addr,)
        n2 = await stack.enter_async_context(Agent.open(config("node2", seed)))
        n3_scope = trio.CancelScope()
        n3_ready = trio.Event()
        holder: list[Agent] = []

        async def run_node3() -> None:
            with n3_scope:
                async with Agent.open(config("node3", seed)) as n3:
                    holder.append(n3)
                    n3_ready.set()
                    await trio.sleep_forever()

        nursery = await stack.enter_async_context(trio.open_nursery())
        nursery.start_soon(run_node3)
        await n3_ready.wait()
        n3 = holder[0]
        nodes = [n1, n2, n3]
        with trio.fail_after(20):
            while any(len(a.alive_members()) < 2 for a in nodes):  # noqa: ASYNC110 (polls cores)
                await trio.sleep(0.02)
        for i, a in enumerate(nodes, 1):
            host, port = a.gossip_addr
            print(f"node{i}: actor {a.actor_id.hex()[:8]}…, gossip {host}:{port}")

        r1 = await n1.transaction([(INSERT, ["m-ams-1", "web", "ams", "fdaa::1", "started"])])
        r2 = await n2.transaction(
            [
                (INSERT, ["m-ord-1", "web", "ord", "fdaa::2", "started"]),
                (INSERT, ["m-ord-2", "api", "ord", "fdaa::3", "started"]),
            ]
        )
        took = await wait_converged(nodes)
        print(f"\nnode1 wrote version {r1.version}, node2 wrote version {r2.version}: "
              f"on every node after {took * 1000:.0f} ms")  # fmt: skip

        update = "UPDATE machines SET state = ? WHERE id = ?"
        await n1.transaction([(update, ["stopping", "m-ord-2"])])
        await n3.transaction([(update, ["replacing", "m-ord-2"])])
        await n2.transaction([("DELETE FROM machines WHERE id = ?", ["m-ord-1"])])
        took = await wait_converged(nodes)
        print("concurrent: node1 and node3 both set m-ord-2's state; node2 deleted m-ord-1")
        print(f"converged after {took * 1000:.0f} ms; every node now holds:")
        for row in (await tables(nodes))[0]:
            print(f"    {row}")

        print("\nmembers as node1 sees them:")
        for m in n1.members():
            print(f"    {m.actor_id.hex()[:8]}…  {m.addr[0]}:{m.addr[1]}  "
                  f"{m.state.name.lower():8} incarnation {m.incarnation}")  # fmt: skip

        n3_actor = n3.actor_id
        n3.endpoint.faults = attrs.evolve(n3.endpoint.faults, loss=1.0)  # silent, as if
        n3_scope.cancel()  # it crashed: its leave announcement is lost too
        started = time.perf_counter()
        with trio.fail_after(30):
            while True:
                states = [a.membership.core.member(n3_actor) for a in (n1, n2)]
                if all(s is not None and s.state is MemberState.DEAD for s in states):
                    break
                await trio.sleep(0.02)
        took = time.perf_counter() - started
        print(f"\nnode3 stopped without a word: node1 and node2 declared it dead after {took:.2f}s")
        same = (await tables([n1, n2]))[0] == (await tables([n1, n2]))[1]
        nursery.cancel_scope.cancel()
        return same


def main() -> None:
    print("corrosion_py demo: a three-node cluster replicating a routing table\n")
    with tempfile.TemporaryDirectory(prefix="corrosion-demo-") as d:
        ok = trio.run(main_async, Path(d))
    if not ok:
        raise SystemExit("demo failed: nodes did not converge")
    print("\nall nodes stopped cleanly.")


if __name__ == "__main__":
    main()
