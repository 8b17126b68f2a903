"""Fair sync between real agents on 127.0.0.1: a restarted node catches up by sync while
strangers hammer its peer's sync port (they are refused before taking a slot), and a node
whose sync rounds keep failing, or hang, says so in health instead of claiming ``gaps: 0``."""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from corrosion_py.addr import Addr
from corrosion_py.agent import Agent, AgentConfig
from corrosion_py.agent.apply_loop import ApplyLoop
from corrosion_py.net.sync_loop import Syncer
from corrosion_py.net.sync_server import SyncServer
from corrosion_py.replication.apply_queue import ApplyQueue
from corrosion_py.runner import NodeConfig, open_node
from corrosion_py.store.store import Store
from corrosion_py.swim import LOCAL, MemberInfo, MemberState
from corrosion_py.wire.codec import decode, encode
from corrosion_py.wire.framing import FrameReader, frame
from corrosion_py.wire.messages import SyncClock, SyncRequest, SyncStart, SyncState

SCHEMA = "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT);\n"
HANG = 60.0  # seconds: only catches hangs
LOCALHOST = ("127.0.0.1", 0)
CLUSTER = 11


def config(tmp: Path, name: str, bootstrap: tuple[Addr, ...] = (), **kw: Any) -> AgentConfig:
    schema = tmp / "schema.sql"
    if not schema.exists():
        schema.write_text(SCHEMA)
    base = AgentConfig(
        db_path=tmp / f"{name}.db",
        schema_paths=[schema],
        bootstrap=bootstrap,
        cluster_id=CLUSTER,
        swim=LOCAL,
        sync_interval=(0.3, 0.6),
        save_members_interval=0.5,
        shutdown_timeout=3.0,
    )
    return attrs.evolve(base, **kw)


async def wait_for(cond: Callable[[], Any], seconds: float = HANG) -> Any:
    with trio.fail_after(seconds):
        while True:
            value = cond()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return value
            await trio.sleep(0.05)


async def converged(a: Agent, b: Agent) -> bool:
    sql = "SELECT k, v FROM kv ORDER BY k"
    state = b.store.sync_state()
    same = await a.store.query(sql) == await b.store.query(sql)
    return same and not state.need and not state.partial_need


@attrs.define
class Hammer:
    """Strangers opening sync sessions on a port as fast as they are refused; one that got a
    session would hold it, asking for nothing every 0.2 s (the attack that starved a node)."""

    addr: Addr
    refused: int = 0
    admitted: int = 0

    async def stranger(self) -> None:
        while True:
            with contextlib.suppress(OSError, trio.BrokenResourceError):
                stream = await trio.open_tcp_stream(*self.addr)
                async with stream:
                    hello = [SyncStart(os.urandom(16)), SyncClock(1)]
                    await stream.send_all(b"".join(frame(encode(m, cluster_id=CLUSTER))
                                                   for m in hello))  # fmt: skip
                    reader = FrameReader(1 << 24)
                    data = await stream.receive_some(65536)
                    answers = [decode(p) for p in reader.feed(data)] if data else []
                    if answers and isinstance(answers[0], SyncState):
                        self.admitted += 1
                        while True:
                            await trio.sleep(0.2)
                            await stream.send_all(
                                frame(encode(SyncRequest(()), cluster_id=CLUSTER))
                            )
                    self.refused += 1
            await trio.sleep(0.01)


async def test_a_restarted_node_catches_up_while_strangers_hammer_the_sync_port(
    tmp_path: Path,
) -> None:
    async with Agent.open(config(tmp_path, "a")) as a:
        b_config = config(tmp_path, "b", (a.gossip_addr,))
        async with Agent.open(b_config) as b:
            await wait_for(lambda: a.alive_members() and b.alive_members())
            await a.transaction([("INSERT INTO kv VALUES (0, 'seen')", [])])
            await wait_for(lambda: converged(a, b))
        await wait_for(lambda: not a.alive_members())  # b left
        for start in range(1, 301, 50):  # written while b is away: only sync can bring them
            await a.transaction([("INSERT INTO kv VALUES (?, ?)", [k, f"v{k}"])
                                 for k in range(start, start + 50)])  # fmt: skip
        hammer = Hammer(a.gossip_addr)
        async with trio.open_nursery() as nursery:
            for _ in range(12):
                nursery.start_soon(hammer.stranger)
            await wait_for(lambda: hammer.refused >= 24)
            async with Agent.open(b_config) as b:
                await wait_for(lambda: converged(a, b))
                assert len(await b.store.query("SELECT k FROM kv")) == 301
                assert b.syncer.stats["rounds_ok"] >= 1
            nursery.cancel_scope.cancel()
        assert hammer.admitted == 0
        assert a.sync_server.stats.rejected_not_member >= hammer.refused
        assert a.sync_server.stats.clock_drift == 0


async def test_health_says_when_a_node_cannot_sync(tmp_path: Path) -> None:
    async with (
        Agent.open(config(tmp_path, "a")) as a,
        open_node(NodeConfig(config(tmp_path, "b", (a.gossip_addr,)), api_addr=LOCALHOST)) as node,
    ):
        b = node.agent
        assert node.api_addr is not None
        http = httpx.AsyncClient(
            base_url=f"http://{node.api_addr[0]}:{node.api_addr[1]}", timeout=httpx.Timeout(HANG)
        )
        async with http:
            await wait_for(lambda: a.alive_members() and b.alive_members())
            await wait_for(lambda: b.syncer.last_ok is not None)
            r = await http.get("/v1/health")
            assert r.status_code == 200
            assert r.json()["response"]["sync"]["failures"] == 0
            assert r.json()["response"]["sync"]["last_ok_ago"] >= 0

            a.sync_server.is_member = lambda actor: False  # a refuses b's sessions from now on

            async def unhealthy() -> dict[str, Any] | None:
                r = await http.get("/v1/health")
                return r.json()["response"] if r.status_code == 503 else None

            body = await wait_for(unhealthy)
            assert body["gaps"] == 0  # what it heard of, it holds: gaps alone would say healthy
            assert body["sync"]["failures"] >= 3
            [fault] = body["faults"]
            assert fault["kind"] == "cannot_sync" and fault["failures"] >= 3
            host, port = a.gossip_addr
            assert f"(last: {host}:{port}: rejected: the peer does not hold this node as a live " \
                   "member (yet))" in fault["message"]  # fmt: skip

            a.sync_server.is_member = a._is_member  # the peer serves b again
            r = await wait_for(lambda: _healthy(http))
            assert r["faults"] == [] and r["sync"]["failures"] == 0


async def _healthy(http: httpx.AsyncClient) -> dict[str, Any] | None:
    r = await http.get("/v1/health")
    return r.json()["response"] if r.status_code == 200 else None


async def test_a_round_that_hangs_is_reported_once_it_is_stale(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """No round fails, none works: the apply queue nobody drains makes the round wait for room
    (its 300 s bound is far). After ``stale_after`` the node says it cannot sync."""
    (tmp_path / "schema.sql").write_text(SCHEMA)
    server_store, store = (
        Store.open(tmp_path / f"{name}.db", schema_paths=[tmp_path / "schema.sql"])
        for name in ("server", "node")
    )
    try:
        for k in range(5):
            server_store.transaction_sync([("INSERT INTO kv VALUES (?, 'v')", [k])])
        server = SyncServer(server_store, CLUSTER, is_member=lambda actor: True)
        listeners = await nursery.start(trio.serve_tcp, server.serve, 0)
        addr = ("127.0.0.1", listeners[0].socket.getsockname()[1])
        peer = MemberInfo(server_store.actor_id, addr, 0, MemberState.ALIVE)
        queue = ApplyLoop(store, ApplyQueue(max_items=1))  # not drained yet: the second put waits
        syncer = Syncer(store, queue.put, cluster_id=CLUSTER, members=lambda: [peer],
                        rng=random.Random(1), stale_after=0.5)  # fmt: skip
        assert syncer.trouble(time.time()) is None
        nursery.start_soon(syncer.round)
        trouble = await wait_for(lambda: syncer.trouble(time.time()))
        assert trouble.startswith("no sync round has worked for ") and syncer.failures == 0
        await nursery.start(queue.run)  # the queue drains: the round completes
        await wait_for(lambda: syncer.last_ok is not None)
        assert syncer.trouble(time.time()) is None and syncer.failures == 0
        await wait_for(lambda: store.reader().execute("SELECT count(*) FROM kv").fetchone()[0] == 5)
    finally:
        server_store.close()
        store.close()
