"""Hostile claims against real agents on real UDP and TCP sockets (plaintext: the bounds must
hold without encryption) and real SQLite files: forged empty ranges over a node's own future
versions or a peer's, a forged empty range for a random actor then a node joining later, huge
versions and clocks, a lying sync server, a greedy sync client, a flood of changesets for a
table nobody has, and bit-flipped datagrams. Each test asserts that nothing bad was written or
booked, that what a lie can touch stays bounded, and that a real write afterwards still reaches
every node."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from corrosion_py import crdt
from corrosion_py.addr import Addr
from corrosion_py.agent import Agent, AgentConfig
from corrosion_py.crdt.limits import MAX_CLOCK
from corrosion_py.net.port import MAX_PLAINTEXT_STREAMS
from corrosion_py.net.sync_client import MAX_STATE_FRAME, sync_with
from corrosion_py.replication.booked import MAX_VERSION_JUMP
from corrosion_py.replication.hlc import ns_from_ntp64
from corrosion_py.replication.needs import MAX_SESSION_NEEDS
from corrosion_py.replication.sync_plan import MAX_ROUND_NEEDS
from corrosion_py.store.apply import MAX_QUARANTINE_ROWS
from corrosion_py.swim import LOCAL
from corrosion_py.wire.codec import decode, encode
from corrosion_py.wire.framing import FrameReader, frame
from corrosion_py.wire.messages import (
    Changeset,
    EmptyChangeset,
    Message,
    Need,
    NeedFull,
    NeedPartial,
    SyncClock,
    SyncDone,
    SyncRejection,
    SyncRequest,
    SyncStart,
    SyncState,
)

CLUSTER = 3
SCHEMA = "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT);\n"
HANG = 60.0  # seconds: only catches hangs
FAKE = bytes([0xFA]) * 16  # the actor a hostile peer claims to be


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


async def wait_for(cond: Callable[[], object], seconds: float = HANG) -> None:
    with trio.fail_after(seconds):
        while True:
            value = cond()
            if hasattr(value, "__await__"):
                value = await value  # type: ignore[misc]
            if value:
                return
            await trio.sleep(0.02)


@contextlib.asynccontextmanager
async def cluster(tmp: Path, n: int, **kw: Any) -> AsyncIterator[list[Agent]]:
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(Agent.open(config(tmp, "n0", **kw)))
        agents = [first]
        for i in range(1, n):
            cfg = config(tmp, f"n{i}", (first.gossip_addr,), **kw)
            agents.append(await stack.enter_async_context(Agent.open(cfg)))
        await wait_for(lambda: all(len(a.alive_members()) == n - 1 for a in agents))
        yield agents


async def value_of(agent: Agent, k: int) -> object:
    got = await agent.query("SELECT v FROM kv WHERE k = ?", [k])
    return got[0][0] if got else None


async def replicated(agents: list[Agent], writer: Agent, k: int, v: str) -> None:
    """A real write on ``writer`` reaches every node."""
    await writer.transaction([("INSERT OR REPLACE INTO kv VALUES (?, ?)", [k, v])])

    async def everywhere() -> bool:
        return all([await value_of(a, k) == v for a in agents])

    await wait_for(everywhere)


async def send(addr: Addr, datagrams: list[bytes], *, pace: int = 200) -> None:
    """Send raw datagrams from a socket of our own, ``pace`` at a time (the receiver's inbox
    holds 1,024; a flood beyond it is dropped and counted, which is not what these test)."""
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        for i, data in enumerate(datagrams):
            await sock.sendto(data, addr)
            if i % pace == pace - 1:
                await trio.sleep(0.02)


def forge(msg: Message) -> bytes:
    """A message encoded without the sender's own checks (as a hostile peer would)."""
    return encode(msg, cluster_id=CLUSTER, check=False)


def gossip(agent: Agent, key: str) -> int:
    return int(agent.gossiper.stats[key])


def heads(agent: Agent) -> dict[bytes, int]:
    return {actor: b.max for actor, b in agent.store.bookie_snapshot().items()}


def member_actors(agents: list[Agent]) -> set[bytes]:
    return {a.actor_id for a in agents}


def change(actor: bytes, version: int, k: int, v: object, **kw: Any) -> crdt.Change:
    fields = {"col_version": 1, "cl": 1, "seq": 0} | kw
    return crdt.Change("kv", crdt.pack_pk([k]), "v", v, fields["col_version"], version, actor,
                       fields["cl"], fields["seq"])  # fmt: skip


def changeset(actor: bytes, version: int, *changes: crdt.Change) -> Changeset:
    return Changeset(actor, version, changes, (0, 0), 0, 0)


# -- broadcast ---------------------------------------------------------------------------------


async def test_forged_future_empties_for_own_and_peer_actors_change_nothing(
    tmp_path: Path,
) -> None:
    """The measured attack: an EmptyChangeset claiming a node's future versions (head+1 ..
    2**63-1) made its later writes vanish everywhere. Now nothing about a node's own actor is
    believed, no broadcast empty is, and nothing refused is relayed."""
    async with cluster(tmp_path, 3) as agents:
        a, b, c = agents
        await replicated(agents, a, 1, "one")
        before = [heads(x) for x in agents]
        accepted = [gossip(x, "new") for x in agents]
        lies = [
            forge(EmptyChangeset(a.actor_id, (2, MAX_CLOCK), 0)),
            forge(EmptyChangeset(a.actor_id, (2, 1_000), 0)),
            forge(EmptyChangeset(b.actor_id, (1, 50), 0)),
        ]
        for target in agents:
            await send(target.gossip_addr, lies)
        await wait_for(
            lambda: all(
                gossip(x, "refused_own_actor") + gossip(x, "refused_broadcast_empty") == 3
                for x in agents
            )
        )
        assert gossip(a, "refused_own_actor") == 2 and gossip(b, "refused_own_actor") == 1
        assert gossip(c, "refused_broadcast_empty") == 3
        assert [heads(x) for x in agents] == before
        assert [gossip(x, "new") for x in agents] == accepted  # nothing queued nor relayed
        # later writes of the targeted actors reach every node
        await replicated(agents, a, 2, "two")
        await replicated(agents, b, 3, "three")
        await replicated(agents, a, 4, "four")
        for x in agents:
            assert x.health().gaps == 0
            assert x.store.bookie_snapshot()[a.actor_id].max == 3


async def test_a_forged_empty_for_a_random_actor_leaves_a_later_joiner_small(
    tmp_path: Path,
) -> None:
    """The measured attack: an empty range 1..2**63-1 for a random actor made a node joining
    later build one object per 10 versions (OOM at 23 GB). By broadcast it is refused (an
    empty, of an unknown actor); even when such a claim reached a member's bookkeeping (as a
    lying sync server can make it), it is cut at the jump allowance, and a joiner learns it as
    one range in rounds of at most MAX_ROUND_NEEDS needs."""
    x = random.Random(7).randbytes(16)
    async with cluster(tmp_path, 2) as agents:
        a, b = agents
        await replicated(agents, a, 1, "one")
        lies = [
            forge(EmptyChangeset(x, (1, MAX_CLOCK), 0)),
            forge(EmptyChangeset(x, (1, 2**63 - 1), 0)),  # past the wire's limit
            forge(changeset(x, 5, change(x, 5, 9, "junk"))),  # data from an unknown actor
        ]
        for target in agents:
            await send(target.gossip_addr, lies)
        await wait_for(
            lambda: all(
                gossip(t, "refused_broadcast_empty") == 1
                and gossip(t, "refused_unknown_actor") == 1
                and gossip(t, "dropped_malformed") == 1
                for t in agents
            )
        )
        assert all(x not in t.store.bookie_snapshot() for t in agents)
        assert await value_of(a, 9) is None and await value_of(b, 9) is None
        # the same lie, had it reached b's store (the apply rules are the last gate)
        result = await b.store.apply([EmptyChangeset(x, (1, MAX_CLOCK), 0)])
        assert result.rejected == {"empty_clamped": 1}
        assert b.store.bookie_snapshot()[x].max == MAX_VERSION_JUMP
        async with Agent.open(config(tmp_path, "late", (a.gossip_addr,))) as late:
            everyone = [*agents, late]

            def caught_up() -> bool:
                booked = late.store.bookie_snapshot().get(x)
                return booked is not None and booked.max == MAX_VERSION_JUMP and not booked.gaps

            await wait_for(caught_up)  # in a few rounds of at most MAX_ROUND_NEEDS needs
            booked = late.store.bookie_snapshot()
            assert sum(len(v.gaps) + len(v.partials) for v in booked.values()) == 0
            report = late.syncer.last_report
            assert report is not None
            assert all(p.needs_sent <= MAX_ROUND_NEEDS + 2 for p in report.peers)
            await replicated(everyone, a, 2, "two")
            await replicated(everyone, late, 3, "three")


async def test_forged_huge_versions_and_clocks_are_refused(tmp_path: Path) -> None:
    """The measured attacks: a version 2**63-1 froze its node and gave everyone gaps of 2**63;
    a col_version 2**63-1 made every later UPDATE of the row fail. Now the wire refuses clocks
    above 2**53-1 and changes that are not their changeset's, and a version past an actor's
    ceiling is refused: the row stays as it was and stays writable everywhere."""
    async with cluster(tmp_path, 3) as agents:
        a, b, c = agents
        await replicated(agents, a, 1, "one")
        actor, nxt = a.actor_id, 2
        lies = [
            forge(changeset(actor, 2**63 - 1, change(actor, 2**63 - 1, 1, "evil"))),
            forge(changeset(actor, MAX_CLOCK + 1, change(actor, MAX_CLOCK + 1, 1, "evil"))),
            forge(changeset(actor, nxt, change(actor, nxt, 1, "evil", col_version=2**63 - 1))),
            forge(changeset(actor, nxt, change(actor, nxt, 1, "evil", col_version=MAX_CLOCK + 1))),
            forge(changeset(actor, nxt, change(actor, nxt, 1, "evil", cl=2**63 - 1))),
            forge(changeset(actor, nxt, change(FAKE, nxt, 1, "evil"))),  # not its changeset's
            forge(changeset(actor, nxt, change(actor, nxt + 1, 1, "evil"))),
        ]
        jump = 1 + MAX_VERSION_JUMP + 1  # past the ceiling (head 1 + the allowance)
        lies.append(forge(changeset(actor, jump, change(actor, jump, 1, "evil"))))
        await send(b.gossip_addr, lies)
        await wait_for(
            lambda: gossip(b, "dropped_malformed") == 7 and gossip(b, "refused_version_jump") == 1
        )
        assert [await value_of(x, 1) for x in agents] == ["one"] * 3
        assert heads(b)[actor] == 1 and not b.store.bookie_snapshot()[actor].gaps
        await replicated(agents, b, 1, "updated on b")  # the row is writable everywhere
        await replicated(agents, c, 1, "updated on c")
        await replicated(agents, a, 5, "five")
        assert heads(b)[actor] == 2


async def test_bit_flipped_datagrams_make_no_fake_actors_and_no_absurd_lag(
    tmp_path: Path,
) -> None:
    """The measured attack: 3,000 bit-flipped datagrams created ~80 fake actors and a p99 lag
    of 1.4e9 s. Now an actor must be a member or known, a change must belong to its changeset,
    and an absurd timestamp is no lag sample. (A flipped *value* in a datagram that still
    decodes is written as sent: only authenticated encryption detects that.)"""
    async with cluster(tmp_path, 3) as agents:
        a, b, c = agents
        await replicated(agents, a, 0, "warm-up")
        sets: list[Changeset] = []
        for k in range(1, 101):  # written on a's store directly: not broadcast, sync repairs
            result = await a.store.transaction([("INSERT INTO kv VALUES (?, ?)", [k, f"v{k}"])])
            assert result.changeset is not None
            sets.append(result.changeset)
        # timestamps from 1900 and from the far future, in otherwise valid changesets
        absurd = [attrs.evolve(cs, ts=1) for cs in sets[:5]]
        absurd += [attrs.evolve(cs, ts=2**64 - 1) for cs in sets[5:10]]
        for target in (b, c):
            await send(target.gossip_addr, [forge(cs) for cs in absurd])
        pieces = [forge(cs) for cs in sets[10:]]
        rng = random.Random(13)
        flipped = []
        for i in range(3_000):
            data = bytearray(pieces[i % len(pieces)])
            for _ in range(rng.randint(1, 3)):
                bit = rng.randrange(len(data) * 8)
                data[bit // 8] ^= 1 << (bit % 8)
            flipped.append(bytes(data))
        before = [t.endpoint.stats.received for t in (b, c)]
        for target in (b, c):
            await send(target.gossip_addr, flipped)
        await wait_for(
            lambda: all(
                t.endpoint.stats.received - n >= 2_900 for t, n in zip((b, c), before, strict=True)
            )
        )
        await trio.sleep(0.5)  # let the receive loops route what is in their inboxes
        await b.apply_queue.drained()
        await c.apply_queue.drained()
        for t in agents:
            assert set(t.store.bookie_snapshot()) <= member_actors(agents)
            lag = t.p99_lag()
            assert lag is None or 0.0 <= lag <= 3_600.0
        assert all(t.apply_queue.stats["lag_ignored"] >= 10 for t in (b, c))
        for t in (b, c):  # the far-future timestamps did not drag the clock along
            assert t.store.clock_drift_rejections >= 5
            ahead = ns_from_ntp64(t.store.hlc.now(time.time_ns())) - time.time_ns()
            assert ahead < 2 * 10**9
        report = c.health()  # what /v1/health answers
        assert report.members == 3
        assert report.p99_lag is None or report.p99_lag <= 3_600.0
        await replicated(agents, b, 1_000, "after the flood")
        await replicated(agents, a, 1_001, "and again")


async def test_a_flood_of_changesets_for_an_unknown_table_keeps_the_quarantine_bounded(
    tmp_path: Path,
) -> None:
    """The measured attack: 20,000 forged changesets for a table nobody has left ~3,900 rows
    in the quarantine. It now holds at most MAX_QUARANTINE_ROWS, the oldest dropped and
    counted."""
    async with cluster(tmp_path, 2) as agents:
        a, b = agents
        await replicated(agents, a, 1, "one")
        actor = a.actor_id
        flood = []
        for version in range(2, 20_002):
            bad = crdt.Change("nope", crdt.pack_pk([version]), "x", "junk", 1, version, actor, 1, 0)
            flood.append(forge(changeset(actor, version, bad)))
        await send(b.gossip_addr, flood, pace=100)
        await wait_for(lambda: gossip(b, "received") + (b.endpoint.kernel_drops() or 0) >= 19_000)
        await b.apply_queue.drained()
        assert b.store.quarantined_total > MAX_QUARANTINE_ROWS
        assert len(b.store.quarantine()) <= MAX_QUARANTINE_ROWS
        assert b.store.quarantine_dropped == b.store.quarantined_total - len(b.store.quarantine())
        assert heads(b)[actor] == 1  # quarantined versions are not known
        await replicated(agents, a, 2, "two")
        await replicated(agents, b, 3, "three")


# -- sync --------------------------------------------------------------------------------------


async def read_messages(stream: trio.SocketStream, reader: FrameReader) -> list[Message]:
    data = await stream.receive_some(65_536)
    if not data:
        return []
    return [decode(p, cluster_id=CLUSTER) for p in reader.feed(bytes(data))]


async def send_messages(stream: trio.SocketStream, *messages: Message) -> None:
    await stream.send_all(b"".join(frame(forge(m)) for m in messages))


@attrs.define
class LyingServer:
    """A sync server that advertises heads it does not have and answers with what nobody
    asked: empty ranges over everything, changesets of versions not requested."""

    victim: bytes
    invented: bytes
    needs: list[tuple[bytes, Need]] = attrs.Factory(list)
    huge_state: bool = False

    async def handle(self, stream: trio.SocketStream) -> None:
        reader = FrameReader(1 << 24)
        hello: list[Message] = []
        while len(hello) < 2:
            hello += await read_messages(stream, reader)
        if self.huge_state:  # a frame over the client's limit for a state
            await stream.send_all(frame(b"\x00" * (MAX_STATE_FRAME + 1)))
            return
        partials = {v: ((0, 5),) for v in range(1, 3_000)}
        state = SyncState(
            FAKE,
            {self.victim: MAX_CLOCK, self.invented: MAX_CLOCK, FAKE: MAX_CLOCK},
            {FAKE: tuple((v, v) for v in range(2, 20_000, 2))},
            {FAKE: partials},
        )
        await send_messages(stream, state, SyncClock(1))
        done = False
        while not done:
            for msg in await read_messages(stream, reader):
                if isinstance(msg, SyncRequest):
                    self.needs += [(a, n) for a, ns in msg.needs for n in ns]
                done = done or isinstance(msg, SyncDone)
        lies: list[Message] = [
            EmptyChangeset(self.victim, (1, MAX_CLOCK), 0),
            EmptyChangeset(self.invented, (1, MAX_CLOCK), 0),
            changeset(self.invented, MAX_VERSION_JUMP + 5, change(self.invented, 100_005, 1, "x")),
            changeset(self.victim, 2, change(self.victim, 2, 1, "evil")),
            EmptyChangeset(FAKE, (1, MAX_CLOCK), 0),
            SyncDone(),
        ]
        await send_messages(stream, *lies)
        await stream.send_eof()


async def test_a_lying_sync_server_is_believed_only_for_what_it_was_asked(
    tmp_path: Path,
) -> None:
    """A server advertising 2**53-1 for our own actor, for an invented actor and for itself,
    with 10,000 gap ranges and 3,000 partial versions, then answering with empties over every
    version and changesets nobody asked for. The client asks nothing about itself, at most its
    ceiling of the others, at most one round's budget; it drops what it did not ask and cuts
    empty ranges to what it asked. That last part is the bound on a lying server: it can mark
    as cleared at most the versions it was asked for, MAX_VERSION_JUMP past our head."""
    async with cluster(tmp_path, 2) as agents:
        a, b = agents
        await replicated(agents, a, 1, "one")
        invented = random.Random(3).randbytes(16)
        liar = LyingServer(victim=b.actor_id, invented=invented)
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(trio.serve_tcp, liar.handle, 0, host="127.0.0.1")
            )
            port = listeners[0].socket.getsockname()[1]
            before = heads(b)
            with trio.fail_after(HANG):
                report = await sync_with(
                    b.store, CLUSTER, [("127.0.0.1", port)], b.apply_queue.put,
                    rng=random.Random(1),
                )  # fmt: skip
            await b.apply_queue.drained()
            nursery.cancel_scope.cancel()
        peer = report.peers[0]
        assert peer.ok, peer.error
        assert {actor for actor, _ in liar.needs} <= {invented, FAKE}  # never about ourselves
        assert len(liar.needs) <= MAX_ROUND_NEEDS + 1
        for _, need in liar.needs:
            assert isinstance(need, NeedFull) and need.versions[1] <= MAX_VERSION_JUMP
        assert peer.unsolicited == 3  # our own actor's empty, two unasked changesets
        after = heads(b)
        assert after[b.actor_id] == before[b.actor_id] and after[a.actor_id] == 1
        assert after[invented] <= MAX_VERSION_JUMP  # the bound: asked versions only
        assert len(b.store.bookie_snapshot()[invented].gaps) <= 1  # the rest, not yet asked
        assert await value_of(b, 1) == "one"
        assert b.store.rejected.get("own_actor", 0) == 0  # dropped before reaching the store
        await replicated(agents, b, 2, "b writes on")
        await replicated(agents, a, 3, "a writes on")


async def test_a_sync_state_frame_over_the_limit_is_refused_before_decoding(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path, 1) as agents:
        (b,) = agents
        liar = LyingServer(victim=b.actor_id, invented=FAKE, huge_state=True)
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(trio.serve_tcp, liar.handle, 0, host="127.0.0.1")
            )
            port = listeners[0].socket.getsockname()[1]
            with trio.fail_after(HANG):
                report = await sync_with(
                    b.store, CLUSTER, [("127.0.0.1", port)], b.apply_queue.put,
                    rng=random.Random(1),
                )  # fmt: skip
            nursery.cancel_scope.cancel()
        assert not report.peers[0].ok
        assert "larger than" in (report.peers[0].error or "")


async def greedy_session(addr: Addr, requests: list[SyncRequest], actor: bytes) -> list[Message]:
    """A raw sync client claiming to be member ``actor`` (plaintext gossip lets it): handshake,
    send ``requests`` then SyncDone, read to the end. Tried again while the server is serving
    the real member (one session per member)."""
    for _ in range(100):
        stream = await trio.open_tcp_stream(*addr)
        reader = FrameReader(1 << 24)
        got: list[Message] = []
        async with stream:
            await send_messages(stream, SyncStart(actor), SyncClock(1))
            for request in requests:
                await send_messages(stream, request)
            await send_messages(stream, SyncDone())
            with contextlib.suppress(trio.BrokenResourceError):
                while batch := await read_messages(stream, reader):
                    got += batch
        if got and got[0] == SyncRejection("already_syncing"):
            await trio.sleep(0.1)
            continue
        return got
    raise AssertionError("the server never had a slot for the session")


async def test_a_greedy_sync_client_costs_what_exists_and_is_cut_off_past_its_budget(
    tmp_path: Path,
) -> None:
    """A client asking NeedFull(1, 2**53-1) 2,000 times for each actor, partial needs with
    thousands of seq ranges, and actors that do not exist: the server answers in bounded time
    with each existing version once. A client sending more than MAX_SESSION_NEEDS needs loses
    its session."""
    async with cluster(tmp_path, 3) as agents:
        a, b, member = agents  # the greedy client claims to be ``member``
        for k in range(20):
            await a.transaction([("INSERT INTO kv VALUES (?, ?)", [k, f"v{k}"])])
        await wait_for(lambda: heads(b).get(a.actor_id) == 20)
        everything = NeedFull((1, MAX_CLOCK))
        wide = NeedPartial(3, tuple((s, s) for s in range(0, 8_000, 2)))
        strangers = [random.Random(i).randbytes(16) for i in range(20)]
        requests = [
            SyncRequest(((a.actor_id, (everything,) * 200), (b.actor_id, (everything,) * 50)))
            for _ in range(8)
        ]
        requests.append(SyncRequest(((a.actor_id, (wide,)),)))
        requests += [SyncRequest(tuple((s, (everything,)) for s in strangers))]
        with trio.fail_after(HANG):
            got = await greedy_session(b.gossip_addr, requests, member.actor_id)
        versions = sorted(m.version for m in got if isinstance(m, Changeset))
        assert versions == list(range(1, 21))  # every existing version of a, once
        assert isinstance(got[-1], SyncDone)
        # past the session budget the server hangs up
        flood = [SyncRequest(((a.actor_id, (everything,) * 250),))] * (MAX_SESSION_NEEDS // 250 + 1)
        with trio.fail_after(HANG):
            cut = await greedy_session(b.gossip_addr, flood, member.actor_id)
        assert not any(isinstance(m, SyncDone) for m in cut)
        assert b.sync_server.stats.too_many_needs == 1
        await replicated(agents, a, 100, "a writes on")
        await replicated(agents, b, 101, "b writes on")


async def test_a_flood_of_idle_tcp_connections_is_capped_and_sync_goes_on(
    tmp_path: Path,
) -> None:
    """Without keys, 200 connections that never send a byte: at most MAX_PLAINTEXT_STREAMS are
    served at once (the rest closed at once and counted), each served one ends at the hello
    timeout, and a sync round works once they are gone."""
    async with cluster(tmp_path, 2, sync_interval=(0.3, 0.6)) as agents:
        a, b = agents
        streams = [await trio.open_tcp_stream(*b.gossip_addr) for _ in range(200)]
        try:
            # (a's own sync attempts during the flood may be refused too)
            await wait_for(lambda: b.port.tcp_stats["refused_busy"] >= 200 - MAX_PLAINTEXT_STREAMS)
        finally:
            for stream in streams:
                await stream.aclose()
        rounds = a.syncer.stats["rounds_ok"]  # a syncs with b's server
        await wait_for(lambda: a.syncer.stats["rounds_ok"] > rounds)
        await replicated(agents, a, 200, "after the flood")
