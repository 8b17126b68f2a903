"""The property that matters for subscriptions: random writes on a 3-node cluster (real UDP,
TCP and HTTP sockets, real SQLite files) while subscriptions over HTTP run on every node, with
joins, LEFT JOINs, subqueries, EXISTS, aggregates, DISTINCT and ORDER BY/LIMIT; after
quiescence, each subscription's events applied to its initial rows equal the query run directly
on that node."""

from __future__ import annotations

import contextlib
import json
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import trio

from corrosion_py.addr import Addr
from corrosion_py.agent import Agent, AgentConfig
from corrosion_py.runner import NodeConfig, RunningNode, open_node
from corrosion_py.subs import Change, Columns, EndOfQuery, Event, Row
from corrosion_py.swim import LOCAL

sys.path.insert(0, str(Path(__file__).parent.parent / "subs"))
from subs_harness import QUERIES, SCHEMA, Mirror, direct
from test_subscriptions_exact import random_write


def event_from_json(obj: dict[str, Any]) -> Event:
    if "columns" in obj:
        return Columns(tuple(obj["columns"]))
    if "row" in obj:
        rowid, cells = obj["row"]
        return Row(rowid, tuple(cells))
    if "eoq" in obj:
        return EndOfQuery(obj["eoq"]["time"], obj["eoq"]["change_id"])
    if "change" in obj:
        kind, rowid, cells, change_id = obj["change"]
        return Change(kind, rowid, tuple(cells), change_id)
    raise AssertionError(f"unexpected line {obj}")


def config(tmp: Path, name: str, bootstrap: tuple[Addr, ...] = ()) -> AgentConfig:
    schema = tmp / "schema.sql"
    if not schema.exists():
        schema.write_text(SCHEMA)
    return AgentConfig(
        db_path=tmp / f"{name}.db",
        schema_paths=[schema],
        bootstrap=bootstrap,
        cluster_id=6,
        swim=LOCAL,
        sync_interval=(0.3, 0.6),
        shutdown_timeout=2.0,
    )


@contextlib.asynccontextmanager
async def cluster(tmp: Path, n: int) -> AsyncIterator[list[RunningNode]]:
    """``n`` agents joined through the first, each serving its HTTP API."""
    async with contextlib.AsyncExitStack() as stack:
        nodes: list[RunningNode] = []
        for i in range(n):
            bootstrap = (nodes[0].agent.gossip_addr,) if nodes else ()
            served = NodeConfig(config(tmp, f"n{i}", bootstrap), api_addr=("127.0.0.1", 0))
            nodes.append(await stack.enter_async_context(open_node(served)))
        yield nodes


def base(node: RunningNode) -> str:
    assert node.api_addr is not None
    host, port = node.api_addr
    return f"http://{host}:{port}"


async def follow(
    client: httpx.AsyncClient, url: str, sql: str, params: Any, mirror: Mirror, ready: trio.Event
) -> None:
    body = [sql, params] if params else sql
    async with client.stream("POST", url + "/v1/subscriptions", json=body) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["corro-query-id"]
        async for line in response.aiter_lines():
            obj = json.loads(line)
            assert "error" not in obj, obj
            mirror.apply(event_from_json(obj))
            if mirror.ended:
                ready.set()


async def converged(agents: list[Agent]) -> bool:
    tables = [
        await a.query("SELECT * FROM machines ORDER BY id") + await a.query("SELECT * FROM apps")
        for a in agents
    ]
    states = [a.store.sync_state() for a in agents]
    return all(t == tables[0] for t in tables) and not any(s.need or s.partial_need for s in states)


def matches(agent: Agent, mirrors: list[Mirror]) -> list[str]:
    return [
        sql
        for (sql, params), mirror in zip(QUERIES, mirrors, strict=True)
        if mirror.multiset() != direct(agent.store, sql, params)
    ]


async def test_subscriptions_on_every_node_replay_to_the_direct_result(tmp_path: Path) -> None:
    rng = random.Random(7)
    timeout = httpx.Timeout(10, read=None)
    async with cluster(tmp_path, 3) as nodes, httpx.AsyncClient(timeout=timeout) as client:
        agents = [node.agent for node in nodes]
        for _ in range(10):  # some rows before the subscriptions
            r = await client.post(
                base(rng.choice(nodes)) + "/v1/transactions", json=random_write(rng)
            )
            assert r.status_code == 200, r.text
        async with trio.open_nursery() as nursery:
            mirrors: dict[int, list[Mirror]] = {}
            for index, node in enumerate(nodes):
                mirrors[index] = []
                for sql, params in QUERIES:
                    mirror, ready = Mirror(), trio.Event()
                    mirrors[index].append(mirror)
                    nursery.start_soon(follow, client, base(node), sql, params, mirror, ready)
                    with trio.fail_after(20):
                        await ready.wait()
            for _ in range(200):
                body = [list(s) for s in random_write(rng)]
                r = await client.post(base(rng.choice(nodes)) + "/v1/transactions", json=body)
                assert r.status_code == 200, r.text
                await trio.sleep(rng.random() * 0.01)
            with trio.fail_after(60):
                while not await converged(agents):  # noqa: ASYNC110 (polls replicas)
                    await trio.sleep(0.1)
            with trio.move_on_after(30):  # the engines finish their last batches
                while any(matches(a, mirrors[i]) for i, a in enumerate(agents)):  # noqa: ASYNC110
                    await trio.sleep(0.1)
            for index, agent in enumerate(agents):
                assert matches(agent, mirrors[index]) == [], f"node {index}"
                assert all(m.change_id > 0 for m in mirrors[index][:3])
            nursery.cancel_scope.cancel()
