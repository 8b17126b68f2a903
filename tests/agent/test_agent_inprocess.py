"""Agents in one trio run, on real UDP and TCP sockets on 127.0.0.1 and real SQLite files:
writes spread by broadcast, sync repairs what broadcast lost, a restarted agent resumes, and
shutdown leaves the cluster cleanly."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import attrs
import trio

from corrosion_py.addr import Addr
from corrosion_py.agent import Agent, AgentConfig
from corrosion_py.net.faults import FaultPlan
from corrosion_py.swim import LOCAL, MemberState

SCHEMA = "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT, node INTEGER);\n"


def config(tmp: Path, name: str, bootstrap: tuple[Addr, ...] = (), **kw: object) -> AgentConfig:
    schema = tmp / "schema.sql"
    if not schema.exists():
        schema.write_text(SCHEMA)
    base = AgentConfig(
        db_path=tmp / f"{name}.db",
        schema_paths=[schema],
        bootstrap=bootstrap,
        cluster_id=3,
        swim=LOCAL,
        sync_interval=(0.5, 1.0),
        save_members_interval=0.5,
        shutdown_timeout=3.0,
    )
    return attrs.evolve(base, **kw)  # type: ignore[arg-type]


async def rows(agent: Agent) -> list[tuple[object, ...]]:
    return await agent.store.query("SELECT k, v, node FROM kv ORDER BY k")


async def wait_for(cond: Callable[[], object], seconds: float = 20.0) -> None:
    """Poll an async or sync condition until a bound that only catches hangs."""
    with trio.fail_after(seconds):
        while True:
            value = cond()
            if hasattr(value, "__await__"):
                value = await value  # type: ignore[misc]
            if value:
                return
            await trio.sleep(0.05)


async def converged(agents: list[Agent]) -> bool:
    tables = [await rows(a) for a in agents]
    states = [a.store.sync_state() for a in agents]
    return all(t == tables[0] for t in tables) and not any(s.need or s.partial_need for s in states)


@contextlib.asynccontextmanager
async def cluster(tmp: Path, n: int, **kw: object) -> AsyncIterator[list[Agent]]:
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(Agent.open(config(tmp, "n0", **kw)))
        agents = [first]
        for i in range(1, n):
            cfg = config(tmp, f"n{i}", (first.gossip_addr,), **kw)
            agents.append(await stack.enter_async_context(Agent.open(cfg)))
        await wait_for(lambda: all(len(a.alive_members()) == n - 1 for a in agents))
        yield agents


async def test_writes_on_every_node_reach_every_node(tmp_path: Path) -> None:
    async with cluster(tmp_path, 3) as agents:
        for i, agent in enumerate(agents):
            for k in range(20):
                key = i * 100 + k
                await agent.transaction([("INSERT INTO kv VALUES (?, ?, ?)", [key, f"v{key}", i])])
        await wait_for(lambda: converged(agents))
        assert len(await rows(agents[2])) == 60
        gossip = [a.stats()["gossip"] for a in agents]
        assert all(g["local_pieces"] == 20 for g in gossip)
        assert sum(g.get("new", 0) for g in gossip) >= 40  # broadcast carried them, not sync


async def test_sync_repairs_what_broadcast_loses(tmp_path: Path) -> None:
    """Writes committed on the store directly are never broadcast: only sync can carry them."""
    async with cluster(tmp_path, 3) as agents:
        for k in range(50):
            await agents[0].store.transaction([("INSERT INTO kv VALUES (?, ?, 0)", [k, "x" * k])])
        await wait_for(lambda: converged(agents))
        assert sum(a.stats()["sync"].get("changesets", 0) for a in agents) >= 100
        assert sum(a.stats()["gossip"].get("new", 0) for a in agents) == 0


async def test_lossy_datagrams_still_converge(tmp_path: Path) -> None:
    async with cluster(tmp_path, 4, faults=FaultPlan(loss=0.2)) as agents:
        for k in range(100):
            agent = agents[k % 4]
            await agent.transaction([("INSERT INTO kv VALUES (?, ?, ?)", [k, f"v{k}", k % 4])])
        await wait_for(lambda: converged(agents), seconds=40)
        assert len(await rows(agents[0])) == 100


async def test_restart_resumes_with_same_actor_and_a_higher_incarnation(tmp_path: Path) -> None:
    async with Agent.open(config(tmp_path, "a")) as a:
        async with Agent.open(config(tmp_path, "b", (a.gossip_addr,))) as b:
            await wait_for(lambda: len(a.alive_members()) == 1)
            b_actor, b_addr = b.actor_id, b.gossip_addr
            await b.transaction([("INSERT INTO kv VALUES (1, 'one', 1)", [])])
            await wait_for(lambda: converged([a, b]))
        # b left gracefully: a reports it left, never dead
        info = a.membership.core.member(b_actor)
        assert info is not None and info.state is MemberState.LEFT
        await a.transaction([("INSERT INTO kv VALUES (2, 'two', 0)", [])])
        cfg = config(tmp_path, "b", gossip_addr=b_addr)  # no bootstrap: the saved members
        async with Agent.open(cfg) as b2:
            assert b2.actor_id == b_actor
            assert b2.membership.core.incarnation >= 1
            await wait_for(lambda: converged([a, b2]))
            assert [r[0] for r in await rows(b2)] == [1, 2]
            await wait_for(lambda: a.membership.core.member(b_actor).state is MemberState.ALIVE)  # type: ignore[union-attr]


async def test_a_node_that_cannot_bind_its_port_creates_no_database(tmp_path: Path) -> None:
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as taken:
        await taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        cfg = config(tmp_path, "n", gossip_addr=("127.0.0.1", port))
        try:
            async with Agent.open(cfg):
                raise AssertionError("the port was taken")
        except OSError:
            pass
        assert not cfg.db_path.exists()


async def test_a_loss_broadcast_did_not_repair_is_synced_soon_not_at_the_interval_end(
    tmp_path: Path,
) -> None:
    """Sync every 0.5 to 120 s: a version lost with its announcements (the link cut while it
    was written and announced) shows up as a gap when the next one arrives, and the gap makes
    the node sync at once instead of waiting out its interval."""
    async with cluster(tmp_path, 2, sync_interval=(0.5, 120.0), seed=7) as (a, b):
        await trio.sleep(1.0)  # the first rounds are done; the next are far away
        a.block([b.gossip_addr])
        await a.transaction([("INSERT INTO kv VALUES (1, 'lost', 0)", [])])
        await trio.sleep(0.6)  # its announcements (three intervals) are lost too
        a.block([])
        await a.transaction([("INSERT INTO kv VALUES (2, 'seen', 0)", [])])
        await wait_for(lambda: b.store.booked(a.actor_id) is not None)
        await wait_for(converged_pair(a, b), seconds=10)
        assert b.syncer.stats["rounds_early"] >= 1


def converged_pair(a: Agent, b: Agent) -> Callable[[], object]:
    async def check() -> bool:
        return await converged([a, b])

    return check
