"""Sealed gossip between agents on real UDP and TCP sockets on 127.0.0.1 and real SQLite files:
forged, replayed and wrong-key traffic writes nothing and is counted while replication goes
on; strangers get nothing from sync; keys rotate under continuous writes without losing one."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from test_agent_inprocess import config, converged, rows, wait_for

from corrosion_py.addr import Addr
from corrosion_py.agent import Agent
from corrosion_py.errors import GossipKeyError
from corrosion_py.net.secure import GossipSecurity
from corrosion_py.net.sync_client import sync_with
from corrosion_py.store.store import Store
from corrosion_py.wire import encode
from corrosion_py.wire.keyring import Keyring
from corrosion_py.wire.seal import OVERHEAD, DatagramSealer

K1, K2, K3 = (bytes([i]) * 32 for i in (11, 12, 13))
CLUSTER = 3  # the cluster id of test_agent_inprocess.config


def write_keys(path: Path, *keys: bytes) -> Path:
    path.write_text("# test keys\n" + "".join(base64.b64encode(k).decode() + "\n" for k in keys))
    path.chmod(0o600)
    return path


@contextlib.asynccontextmanager
async def keyed_cluster(tmp: Path, n: int, **kw: Any) -> AsyncIterator[list[Agent]]:
    """n agents, each reading its own key file ``k<i>.keys`` (holding K1 unless given)."""
    async with contextlib.AsyncExitStack() as stack:
        agents: list[Agent] = []
        for i in range(n):
            keys = tmp / f"k{i}.keys"
            if not keys.exists():
                write_keys(keys, K1)
            boot = (agents[0].gossip_addr,) if agents else ()
            cfg = config(tmp, f"n{i}", boot, keyring_file=keys, **kw)
            agents.append(await stack.enter_async_context(Agent.open(cfg)))
        await wait_for(lambda: all(len(a.alive_members()) == n - 1 for a in agents))
        yield agents


def security(agent: Agent) -> GossipSecurity:
    assert agent.security is not None
    return agent.security


def send_raw(addr: Addr, *datagrams: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for data in datagrams:
            sock.sendto(data, addr)


def stranger_changeset(tmp: Path, key: int) -> tuple[Store, bytes]:
    """A valid changeset inserting row ``key``, made by a store outside the cluster."""
    schema = tmp / "schema.sql"
    store = Store.open(tmp / f"stranger{key}.db", schema_paths=[schema])
    result = store.transaction_sync([("INSERT INTO kv VALUES (?, 'forged', 9)", [key])])
    assert result.changeset is not None
    return store, encode(result.changeset, cluster_id=CLUSTER)


async def test_forged_datagrams_write_nothing_are_counted_and_replication_goes_on(
    tmp_path: Path,
) -> None:
    async with keyed_cluster(tmp_path, 3) as agents:
        store, plain = stranger_changeset(tmp_path, 666)
        store.close()
        wrong_key = DatagramSealer(Keyring.of([K3]), CLUSTER, os.urandom)
        forged = [plain, random.Random(1).randbytes(300), wrong_key.seal("x", plain, time.time())]
        for agent in agents:
            send_raw(agent.gossip_addr, *forged)
        await agents[0].transaction([("INSERT INTO kv VALUES (1, 'real', 0)", [])])
        await wait_for(lambda: converged(agents))
        await wait_for(
            lambda: all(
                security(a).dropped["plaintext"] >= 1 and security(a).dropped["unknown_key"] >= 1
                for a in agents
            )
        )
        for agent in agents:
            assert await rows(agent) == [(1, "real", 0)]
            assert sum(security(agent).dropped.values()) >= 3
            assert agent.stats()["gossip"].get("dropped_malformed", 0) == 0  # never decoded


async def test_replayed_datagrams_have_no_effect_and_are_counted(tmp_path: Path) -> None:
    async with keyed_cluster(tmp_path, 3) as agents:
        sender = agents[0].endpoint
        captured: list[tuple[Addr, bytes]] = []
        send_now = sender._send_now

        def capture(addr: Addr, data: bytes) -> None:
            captured.append((addr, data))
            send_now(addr, data)

        sender._send_now = capture  # type: ignore[method-assign]
        for k in range(5):
            await agents[0].transaction([("INSERT INTO kv VALUES (?, 'v', 0)", [k])])
        await wait_for(lambda: converged(agents))
        sender._send_now = send_now  # type: ignore[method-assign]
        await agents[0].transaction([("DELETE FROM kv WHERE k < 5", [])])
        await wait_for(lambda: converged(agents))
        await trio.sleep(0.5)  # every captured datagram has long arrived
        by_target = {a.gossip_addr: a for a in agents[1:]}
        replays = [(addr, data) for addr, data in captured if addr in by_target]
        assert len(replays) >= 10  # changeset pieces and SWIM packets
        before = {addr: security(a).dropped["replay"] for addr, a in by_target.items()}
        received = {addr: a.stats()["gossip"].get("received", 0) for addr, a in by_target.items()}
        for addr, data in replays:
            send_raw(addr, data)
        expected = {addr: sum(1 for a, _ in replays if a == addr) for addr in by_target}
        await wait_for(
            lambda: all(
                security(a).dropped["replay"] - before[addr] == expected[addr]
                for addr, a in by_target.items()
            )
        )
        for addr, agent in by_target.items():
            assert agent.stats()["gossip"].get("received", 0) == received[addr]
            assert await rows(agent) == []  # the deleted rows stay deleted


async def test_strangers_get_nothing_from_sync_and_a_keyed_non_member_is_refused(
    tmp_path: Path,
) -> None:
    async with keyed_cluster(tmp_path, 2) as agents:
        for k in range(3):
            await agents[0].transaction([("INSERT INTO kv VALUES (?, 'secret', 0)", [k])])
        server = agents[0]
        store, _ = stranger_changeset(tmp_path, 1)
        got: list[Any] = []

        async def deliver(items: list[Any]) -> None:
            got.extend(items)

        try:
            connections = server.sync_server.stats.connections
            rng = random.Random(0)
            addr = server.gossip_addr
            plain = await sync_with(store, CLUSTER, [addr], deliver, rng=rng)
            wrong = GossipSecurity(Keyring.of([K3]), CLUSTER)
            keyed_wrong = await sync_with(store, CLUSTER, [addr], deliver, rng=rng, security=wrong)
            assert not plain.ok and not keyed_wrong.ok
            assert keyed_wrong.peers[0].error is not None
            assert "does not hold our primary key" in keyed_wrong.peers[0].error
            assert got == []
            assert server.sync_server.stats.connections == connections  # never reached
            streams = security(server).streams
            assert streams["failed_plaintext"] >= 1 and streams["failed_unknown_key"] >= 1
            # the same stranger with the cluster's key gets through to the sync server (the test
            # could fail), which then refuses it as no member of the cluster
            right = GossipSecurity(Keyring.of([K1]), CLUSTER)
            keyed = await sync_with(store, CLUSTER, [addr], deliver, rng=rng, security=right)
            assert server.sync_server.stats.connections == connections + 1
            assert server.sync_server.stats.rejected_not_member == 1
            assert not keyed.ok and got == []
        finally:
            store.close()


class Recorder(trio.abc.Stream):
    """A stream that records every byte sent through it."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.sent = bytearray()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += data
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return bytes(await self.inner.receive_some(max_bytes))

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_replayed_tcp_stream_fails(tmp_path: Path) -> None:
    from corrosion_py.wire import SyncClock, SyncStart
    from corrosion_py.wire.framing import frame

    async with keyed_cluster(tmp_path, 2) as agents:
        server = agents[0]
        client_security = GossipSecurity(Keyring.of([K1]), CLUSTER)
        recorder = Recorder(await trio.open_tcp_stream(*server.gossip_addr))
        stream = await client_security.client(recorder, server.gossip_addr)
        hello = [SyncStart(agents[1].actor_id), SyncClock(1)]
        await stream.send_all(b"".join(frame(encode(m, cluster_id=CLUSTER)) for m in hello))
        with trio.fail_after(10):
            assert await stream.receive_some(4)  # the server answered the recorded session
        await stream.aclose()
        recorded = bytes(recorder.sent)
        sessions = server.sync_server.stats.connections
        failed = security(server).streams["failed_bad_finished"]
        replay = await trio.open_tcp_stream(*server.gossip_addr)
        async with replay:
            await replay.send_all(recorded)
            answer = b""
            with trio.fail_after(10), contextlib.suppress(trio.BrokenResourceError):
                while chunk := await replay.receive_some(4096):  # until closed (or reset)
                    answer += chunk
        assert len(answer) <= 51  # at most a fresh ServerHello, then the connection closed
        assert security(server).streams["failed_bad_finished"] == failed + 1
        assert server.sync_server.stats.connections == sessions


async def test_a_node_without_the_key_sees_nothing_injects_nothing_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="corrosion_py.net.secure")
    async with keyed_cluster(tmp_path, 2) as agents:
        await agents[0].transaction([("INSERT INTO kv VALUES (1, 'cluster', 0)", [])])
        boot = (agents[0].gossip_addr, agents[1].gossip_addr)
        wrong = config(tmp_path, "wrong", boot, keyring_file=write_keys(tmp_path / "w", K3))
        plain = config(tmp_path, "plain", boot)  # loopback without a key: plaintext
        async with Agent.open(wrong) as w, Agent.open(plain) as p:
            assert p.security is None
            await w.transaction([("INSERT INTO kv VALUES (2, 'wrong key', 1)", [])])
            await p.transaction([("INSERT INTO kv VALUES (3, 'plaintext', 2)", [])])
            await wait_for(
                lambda: (
                    all(security(a).dropped["unknown_key"] >= 3 for a in agents)
                    and all(security(a).dropped["plaintext"] >= 3 for a in agents)
                ),
            )
            await trio.sleep(2.0)  # several probe rounds, join retries and sync rounds
            for outsider in (w, p):
                assert outsider.alive_members() == []
                assert (1, "cluster", 0) not in await rows(outsider)
            for agent in agents:
                assert await rows(agent) == [(1, "cluster", 0)]
                assert len(agent.alive_members()) == 1
        wrong_lines = [
            r.getMessage()
            for r in caplog.records
            if "key this node does not hold" in r.getMessage()
            and f"{w.gossip_addr[0]}:{w.gossip_addr[1]} " in r.getMessage()
        ]
        # agents[0] and agents[1] each log the wrong-key node once, however many it sent
        assert len(wrong_lines) == 2, wrong_lines
        assert base64.b64encode(K3).decode() not in caplog.text


async def test_keys_rotate_under_continuous_writes_without_losing_one(tmp_path: Path) -> None:
    async with keyed_cluster(tmp_path, 3) as agents:
        acknowledged: list[int] = []
        stop = trio.Event()

        async def writer() -> None:
            k = 0
            while not stop.is_set():
                agent = agents[k % 3]
                await agent.transaction([("INSERT INTO kv VALUES (?, 'w', ?)", [k, k % 3])])
                acknowledged.append(k)
                k += 1
                await trio.sleep(0.01)

        async def rotate_to(*keys: bytes) -> None:
            for i, agent in enumerate(agents):  # one node after the other, as an operator would
                write_keys(tmp_path / f"k{i}.keys", *keys)
                ring = await agent.reload_keyring()
                assert ring.ids() == Keyring.of(keys).ids()
                await trio.sleep(0.3)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await trio.sleep(0.5)
            await rotate_to(K1, K2)  # add the new key everywhere
            await rotate_to(K2, K1)  # make it primary everywhere
            await rotate_to(K2)  # remove the old one
            await trio.sleep(0.5)
            stop.set()
        await wait_for(lambda: converged(agents), seconds=40)
        assert len(acknowledged) > 50
        for agent in agents:
            assert [r[0] for r in await rows(agent)] == sorted(acknowledged)
            assert agent.key_ids() == Keyring.of([K2]).ids()
            assert len(agent.alive_members()) == 2
        # the old key is gone: a datagram sealed with it is refused
        old = DatagramSealer(Keyring.of([K1]), CLUSTER, os.urandom)
        before = security(agents[1]).dropped["unknown_key"]
        send_raw(agents[1].gossip_addr, old.seal("x", b"\x80", time.time()))
        await wait_for(lambda: security(agents[1]).dropped["unknown_key"] == before + 1)


async def test_a_refused_key_file_changes_nothing(tmp_path: Path) -> None:
    async with keyed_cluster(tmp_path, 1) as (agent,):
        (tmp_path / "k0.keys").write_text("not a key\n")
        with pytest.raises(GossipKeyError, match=r"k0.keys: line 1: not base64"):
            await agent.reload_keyring()
        assert agent.key_ids() == Keyring.of([K1]).ids()


async def test_sealed_datagrams_fit_the_endpoint_limit(tmp_path: Path) -> None:
    async with keyed_cluster(tmp_path, 1) as (agent,):
        endpoint = agent.endpoint
        assert endpoint.max_payload == endpoint.max_datagram - OVERHEAD == 1200 - 41
        assert agent.membership.core.config.max_packet_size + OVERHEAD <= endpoint.max_datagram
        assert agent.gossiper.core.budget + OVERHEAD <= endpoint.max_datagram


async def test_plaintext_off_loopback_is_refused_and_explicit_plaintext_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="corrosion_py.agent")
    refused = config(tmp_path, "a", gossip_addr=("0.0.0.0", 0))
    with pytest.raises(GossipKeyError, match=r"needs a key: set \[gossip\] keyring_file"):
        async with Agent.open(refused):
            pass
    assert not (tmp_path / "a.db").exists()
    explicit = attrs.evolve(refused, plaintext=True)
    async with Agent.open(explicit) as agent:
        assert agent.security is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("PLAINTEXT" in r.getMessage() for r in warnings)
