"""The routing example end to end (about 10 s): a three-node cluster on this machine, worker
ams1 writing to node1, worker ord1 writing to node2, and a proxy on node3 answering "where does
app X run?" from its in-memory table as the workers start, stop and destroy machines.

    python examples/routing/run.py

Each step waits until the proxy's answer is the expected one (the write replicated from the
worker's node to node3, then the subscription's event), and prints it with the time it took.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trio
from proxy import ROUTES, RoutingTable, answer, follow
from worker import Worker

from corrosion_py.testing.agent_process import AgentProcess

SCHEMA = Path(__file__).resolve().parent / "schema.sql"


def stop(node: AgentProcess) -> None:
    """Stop a node cleanly: the end of its commands (stdin) makes it leave the cluster and
    close its database; then reap it (SIGTERM, then SIGKILL, if it is still running)."""
    node.stop(timeout=20, end_input=True)


async def main(directory: Path) -> None:
    nodes: list[AgentProcess] = []
    try:

        async def start(name: str, bootstrap: list[str]) -> AgentProcess:
            node = await trio.to_thread.run_sync(
                lambda: AgentProcess(
                    directory / f"{name}.db", SCHEMA, api="127.0.0.1:0", bootstrap=bootstrap
                )
            )
            nodes.append(node)
            print(f"{name}: gossip {node.gossip}, HTTP API {node.api}")
            return node

        n1 = await start("node1", [])
        n2 = await start("node2", [n1.gossip])
        n3 = await start("node3", [n1.gossip])
        assert n1.api and n2.api and n3.api
        table = RoutingTable()
        async with trio.open_nursery() as nursery:
            await nursery.start(follow, n3.api, table)
            print(f"proxy on node3 follows: {' '.join(ROUTES.split())}")
            print(answer(table, "web"))
            with Worker(n1.api, "ams1", "ams", subnet=1) as ams1, \
                    Worker(n2.api, "ord1", "ord", subnet=2) as ord1:  # fmt: skip

                async def step(what: str, action: Callable[[], object],
                               expect: dict[str, list[str]]) -> None:  # fmt: skip
                    await trio.to_thread.run_sync(action)
                    done = time.monotonic()
                    with trio.fail_after(15):
                        await table.wait_until(
                            lambda t: all(t.where(app) == want for app, want in expect.items())
                        )
                    took = (time.monotonic() - done) * 1000
                    print(f"\n{what} (the proxy knew {took:.0f} ms later)")
                    for app in expect:
                        print(f"    {answer(table, app)}")

                def start_machines(worker: Worker, *apps: str) -> None:
                    for app in apps:
                        worker.start(app)

                await step("ams1 starts two web machines and one api machine on node1",
                           lambda: start_machines(ams1, "web", "web", "api"),
                           {"web": ["[fdaa:0:1::1]:8080", "[fdaa:0:1::2]:8080"],
                            "api": ["[fdaa:0:1::3]:8080"]})  # fmt: skip
                await step("ord1 starts a web machine on node2",
                           lambda: start_machines(ord1, "web"),
                           {"web": ["[fdaa:0:1::1]:8080", "[fdaa:0:1::2]:8080",
                                    "[fdaa:0:2::1]:8080"]})  # fmt: skip
                print(f"    a web request landing in ord goes to {table.where('web', 'ord')[0]}")
                await step("ams1 stops ams1-m1",
                           lambda: ams1.set_state("ams1-m1", "stopped"),
                           {"web": ["[fdaa:0:1::2]:8080", "[fdaa:0:2::1]:8080"]})  # fmt: skip
                await step("ord1 destroys ord1-m1",
                           lambda: ord1.destroy("ord1-m1"),
                           {"web": ["[fdaa:0:1::2]:8080"]})  # fmt: skip
                await step("ams1 starts ams1-m1 again and stops its api machine",
                           lambda: (ams1.set_state("ams1-m1", "started"),
                                    ams1.set_state("ams1-m3", "stopped")),
                           {"web": ["[fdaa:0:1::1]:8080", "[fdaa:0:1::2]:8080"],
                            "api": []})  # fmt: skip
            nursery.cancel_scope.cancel()
    finally:
        for node in nodes:
            stop(node)
    print("\nall nodes stopped.")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="corrosion-routing-") as tmp:
        trio.run(main, Path(tmp))
