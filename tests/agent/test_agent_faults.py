"""Faults degrade a node, never kill it: real agents on 127.0.0.1 (UDP, TCP, HTTP), the
database of one of them on a disk that fills up (a real tmpfs, or SQLITE_FULL injected with
``PRAGMA max_page_count`` where mounting is impossible) or corrupted under it, and a damaged
database refused at start by `Agent.open` as a typed error."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from disk_faults import SmallDisk, limit_growth

from corrosion_py import crdt
from corrosion_py.addr import Addr
from corrosion_py.agent import Agent, AgentConfig
from corrosion_py.api.server import serve_api
from corrosion_py.errors import UnusableDatabase
from corrosion_py.subs import EndOfQuery, Row, SubscriptionClosed
from corrosion_py.swim import LOCAL

SCHEMA = (
    "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT);\n"
    "CREATE TABLE other (id INTEGER PRIMARY KEY NOT NULL, x TEXT);\n"
)
HANG = 60.0  # seconds: only catches hangs
BIG = 40_000  # bytes per value: twenty of them outgrow the write-ahead log


def config(tmp: Path, directory: Path, name: str, bootstrap: tuple[Addr, ...] = ()) -> AgentConfig:
    schema = tmp / "schema.sql"
    if not schema.exists():
        schema.write_text(SCHEMA)
    return AgentConfig(
        db_path=directory / f"{name}.db",
        schema_paths=[schema],
        bootstrap=bootstrap,
        cluster_id=9,
        swim=LOCAL,
        sync_interval=(0.3, 0.6),
        save_members_interval=0.3,
        shutdown_timeout=3.0,
    )


async def wait_for(cond: Callable[[], Any], seconds: float = HANG) -> Any:
    """Poll an async or sync condition until it holds (the bound only catches hangs)."""
    with trio.fail_after(seconds):
        while True:
            value = cond()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return value
            await trio.sleep(0.05)


@contextlib.asynccontextmanager
async def client(agent: Agent) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``agent``'s HTTP API, served on 127.0.0.1 while it is open."""
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(serve_api, agent, ("127.0.0.1", 0), None)
        base = f"http://{host}:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(HANG)) as http:
            yield http
        nursery.cancel_scope.cancel()


async def health(http: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    r = await http.get("/v1/health")
    return r.status_code, r.json()["response"]


async def query(http: httpx.AsyncClient, sql: str) -> list[list[Any]]:
    r = await http.post("/v1/queries", json=sql)
    assert r.status_code == 200, r.text
    lines = [json.loads(line) for line in r.text.splitlines() if line]
    assert "eoq" in lines[-1], lines
    return [line["row"][1] for line in lines if "row" in line]


async def write(http: httpx.AsyncClient, k: int, value: str) -> httpx.Response:
    return await http.post("/v1/transactions", json=[["INSERT INTO kv VALUES (?, ?)", [k, value]]])


def clocks(agent: Agent) -> list[tuple[object, ...]]:
    """Every change row (clock metadata included) the node holds, comparable across nodes."""
    return sorted(attrs.astuple(c) for c in crdt.changes(agent.store.reader()))


async def converged(a: Agent, b: Agent) -> bool:
    sql = "SELECT k, v FROM kv ORDER BY k"
    states = [a.store.sync_state(), b.store.sync_state()]
    return await a.store.query(sql) == await b.store.query(sql) and not any(
        s.need or s.partial_need for s in states
    )


@pytest.mark.parametrize("fault", ["tmpfs", "max_page_count"])
async def test_a_full_disk_during_remote_applies_degrades_and_recovers(
    tmp_path: Path, fault: str, request: pytest.FixtureRequest
) -> None:
    disk: SmallDisk | None = request.getfixturevalue("small_disk") if fault == "tmpfs" else None
    async with (
        Agent.open(config(tmp_path, tmp_path, "a")) as a,
        Agent.open(config(tmp_path, disk.path if disk else tmp_path, "b", (a.gossip_addr,))) as b,
        client(b) as http,
    ):
        await wait_for(lambda: a.alive_members() and b.alive_members())
        await a.transaction([("INSERT INTO kv VALUES (0, 'before')", [])])
        await wait_for(lambda: converged(a, b))

        if disk is not None:
            disk.fill()
        else:
            limit_growth(b.store, b.store.reader().execute("PRAGMA page_count").fetchone()[0])
        for k in range(1, 21):
            await a.transaction([("INSERT INTO kv VALUES (?, ?)", [k, f"{k}" * BIG])])

        # b keeps running: it says why in health, keeps the changesets and retries them
        status, body = await wait_for(lambda: _unhealthy(http))
        assert status == 503
        [reported] = body["faults"]
        assert reported["kind"] == "disk_full" and reported["failures"] >= 1
        assert reported["message"].startswith(f"the disk is full at {b.store.path}")
        assert await wait_for(lambda: b.apply_queue.stats["apply_retries"] >= 2)
        assert b.apply_queue.stats["apply_errors"] == 0
        assert [0] in await query(http, "SELECT k FROM kv")  # reads go on
        refused = await write(http, 100, "b" * BIG * 5)  # local writes fail cleanly
        assert refused.status_code == 503
        assert refused.json()["error"].startswith(
            f"write failed: the disk is full at {b.store.path}"
        )
        assert await b.store.query("SELECT k FROM kv WHERE k = 100") == []

        if disk is not None:
            disk.free()
        else:
            limit_growth(b.store, None)
        await wait_for(lambda: converged(a, b))  # applying resumed by itself
        status, body = await health(http)
        assert status == 200 and body["faults"] == []
        assert (await write(http, 100, "after")).status_code == 200
        await wait_for(lambda: converged(a, b))
        assert len(await a.store.query("SELECT k FROM kv")) == 22  # every write converged
        assert clocks(a) == clocks(b)


async def _unhealthy(http: httpx.AsyncClient) -> tuple[int, dict[str, Any]] | None:
    status, body = await health(http)
    return (status, body) if body["faults"] else None


def corrupt_root_page(path: Path, table: str) -> None:
    """Damage ``table``'s root page in the file under a running node, then commit from another
    connection so every connection of the node drops its page cache."""
    side = sqlite3.connect(path, isolation_level=None)
    try:
        assert side.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        page = side.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,))
        number = page.fetchone()[0]
        size = side.execute("PRAGMA page_size").fetchone()[0]
        with open(path, "r+b") as f:
            f.seek((number - 1) * size)
            f.write(b"\xde\xad\xbe\xef" * 16)
        side.execute("PRAGMA user_version = 1")
    finally:
        side.close()


async def test_a_page_corrupted_at_runtime_stops_writes_not_the_node(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="corrosion_py.store")
    async with (
        Agent.open(config(tmp_path, tmp_path, "a")) as a,
        Agent.open(config(tmp_path, tmp_path, "b", (a.gossip_addr,))) as b,
        client(b) as http,
    ):
        await wait_for(lambda: a.alive_members() and b.alive_members())
        await a.transaction([
            ("INSERT INTO kv VALUES (1, 'one')", []), ("INSERT INTO other VALUES (1, 'x')", [])
        ])  # fmt: skip
        await wait_for(lambda: converged(a, b))
        await trio.to_thread.run_sync(corrupt_root_page, b.store.path, "kv")

        await a.transaction([("UPDATE kv SET v = 'two' WHERE k = 1", [])])  # reaches b's page
        status, body = await wait_for(lambda: _unhealthy(http))
        assert status == 503 and [f["kind"] for f in body["faults"]] == ["corrupt"]
        assert "restore the database from a backup" in body["faults"][0]["message"]
        refused = await write(http, 2, "local")
        assert refused.status_code == 503 and "is corrupt" in refused.json()["error"]
        assert refused.json()["code"] == "storage_fault"
        assert await query(http, "SELECT id, x FROM other") == [[1, "x"]]  # reads go on
        await a.transaction([("INSERT INTO other VALUES (2, 'y')", [])])
        await wait_for(lambda: b.apply_queue.stats["dropped_corrupt"] >= 2)
        assert b.syncer.stats["rounds_paused"] >= 1 or b.store.faults.corrupt
        assert (await health(http))[0] == 503  # still up, still failing
        lines = [r for r in caplog.records if "is corrupt" in r.getMessage()]
        assert len(lines) == 1 and lines[0].name == "corrosion_py.store"
        assert str(b.store.path) in lines[0].getMessage()


async def test_a_full_disk_under_the_subscriptions_file_ends_them_not_the_node(
    tmp_path: Path, small_disk: SmallDisk
) -> None:
    """The subscriptions' file on a disk that fills up: a subscription whose changes cannot be
    saved ends with the reason (its client subscribes again), the node and its writes go on."""
    cfg = attrs.evolve(
        config(tmp_path, tmp_path, "n"), subscriptions_path=small_disk.path / "subs.db"
    )
    async with Agent.open(cfg) as agent:
        async with agent.subscribe("SELECT k, v FROM kv") as (_, events):
            small_disk.fill()
            await agent.transaction([("INSERT INTO kv VALUES (1, ?)", ["s" * BIG * 10])])
            with trio.fail_after(HANG), pytest.raises(SubscriptionClosed) as ended:
                async for _ in events:
                    pass
        assert "subscription storage failed: database or disk is full" in str(ended.value)
        assert ended.value.code == "subscription_failed"
        small_disk.free()
        assert (await agent.transaction([("INSERT INTO kv VALUES (2, 'x')", [])])).version
        async with agent.subscribe("SELECT k FROM kv ORDER BY k") as (_, events):
            with trio.fail_after(HANG):
                rows = [e async for e in _until_eoq(events)]
        assert [r.cells for r in rows] == [(1,), (2,)]


async def _until_eoq(events: Any) -> Any:
    async for event in events:
        if isinstance(event, EndOfQuery):
            return
        if isinstance(event, Row):
            yield event


async def test_agent_open_refuses_a_damaged_database_with_a_typed_error(tmp_path: Path) -> None:
    cfg = config(tmp_path, tmp_path, "n")
    async with Agent.open(cfg):
        pass
    cfg.db_path.write_bytes(b"")  # a database truncated to nothing
    with pytest.raises(UnusableDatabase) as caught:
        async with Agent.open(cfg):
            pytest.fail("an empty database must not start as a new node")
    assert "the file is empty (0 bytes)" in str(caught.value)
    assert cfg.db_path.read_bytes() == b""  # not made a new node with a new actor id
