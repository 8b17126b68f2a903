"""The agent: one store, one SWIM member, broadcast, sync and the apply queue in one nursery.

    async with Agent.open(AgentConfig(db_path="node.db", schema_paths=["schema.sql"],
                                      bootstrap=[("10.0.0.2", 7878)])) as agent:
        result = await agent.transaction(["INSERT INTO machines (id, app) VALUES (1, 'web')"])
        rows = await agent.store.query("SELECT * FROM machines")

Rules:

- **One port.** The gossip address is UDP (SWIM packets and changeset broadcasts, routed by
  their tag) and TCP on the same number (anti-entropy sync and SWIM push-pull, routed by the
  first frame).
- **Identity survives restarts.** The actor id is the database's site id. The member list is
  saved in the store (every ``save_members_interval`` and at shutdown) together with this
  node's own incarnation; a restart comes back one incarnation higher and tries the saved
  members as bootstrap addresses besides the configured ones. Bookkeeping is the store's, so
  sync resumes exactly where it stopped.
- **Writes** commit locally (``Store.transaction``), then their changeset is broadcast at once;
  the call returns after the commit and the first sends, never waiting for peers.
- **Shutdown** is a cancellation (the caller's, or SIGTERM in the runner): shielded and
  bounded by ``shutdown_timeout``, the agent announces its leave and lingers until it is spread,
  applies what is already queued, saves the member list, then closes the database.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from corrosion_py.agent.apply_queue import ApplyQueue
from corrosion_py.agent.gossiper import Gossiper
from corrosion_py.agent.syncer import Syncer
from corrosion_py.gossip import BroadcastConfig, Broadcaster, Peer
from corrosion_py.net.faults import FaultPlan
from corrosion_py.net.membership import Membership
from corrosion_py.net.sync import SyncServer
from corrosion_py.net.udp import UdpEndpoint, open_gossip_port
from corrosion_py.store import lock as db_lock
from corrosion_py.store.apply import ApplyResult
from corrosion_py.store.members import MemberRecord
from corrosion_py.store.schema import SchemaResult
from corrosion_py.store.store import Params, Statement, Store, TxResult
from corrosion_py.subs import Event, SubsConfig, Subscription, SubscriptionManager
from corrosion_py.swim import LAN, LeaveComplete, MemberInfo, MemberState, Swim, SwimConfig
from corrosion_py.swim.events import Event as SwimEvent
from corrosion_py.wire import peek_tag
from corrosion_py.wire.framing import FrameReader
from corrosion_py.wire.swim import SWIM_TAGS, Addr, format_addr, parse_addr

ARRIVALS_KEPT = 100_000

_STATES = {
    MemberState.ALIVE: "alive",
    MemberState.SUSPECT: "suspect",
    MemberState.DEAD: "dead",
    MemberState.LEFT: "left",
}


def _paths(values: Sequence[str | Path]) -> tuple[Path, ...]:
    return tuple(Path(v) for v in values)


def _addrs(values: Sequence[Addr]) -> tuple[Addr, ...]:
    return tuple((host, port) for host, port in values)


@attrs.frozen
class AgentConfig:
    """Everything an agent needs; every field but the database path has a working default."""

    db_path: Path = attrs.field(converter=Path)
    schema_paths: tuple[Path, ...] = attrs.field(default=(), converter=_paths)
    gossip_addr: Addr = ("127.0.0.1", 0)
    bootstrap: tuple[Addr, ...] = attrs.field(default=(), converter=_addrs)
    cluster_id: int = 0
    swim: SwimConfig = LAN
    broadcast: BroadcastConfig = attrs.Factory(BroadcastConfig)
    sync_interval: tuple[float, float] = (1.0, 15.0)
    apply_queue_len: int = 20_000
    """Changesets waiting for apply; broadcast overflow drops the oldest (sync repairs)."""
    save_members_interval: float = 10.0
    shutdown_timeout: float = 10.0
    faults: FaultPlan = attrs.Factory(FaultPlan)
    """Injected faults (tests and experiments only): loss, duplication and delay of datagrams;
    ``blocked`` links also cut the sync and push-pull streams this node opens."""
    seed: int | None = None
    """Seeds the agent's random choices (tests); None draws from the OS."""
    api_addr: Addr | None = None
    """Where the HTTP API listens (port 0 picks a free port); None runs no HTTP server."""
    api_token: str | None = None
    """When set, every HTTP request needs ``Authorization: Bearer <token>`` (else 401)."""
    subscriptions_path: Path | None = attrs.field(
        default=None, converter=attrs.converters.optional(Path)
    )
    """The subscriptions' file (None: ``<db_path>.subs.db`` beside the database)."""
    subs: SubsConfig = attrs.Factory(SubsConfig)


class Agent:
    """A running node. Get one with ``Agent.open``."""

    def __init__(
        self,
        config: AgentConfig,
        store: Store,
        endpoint: UdpEndpoint,
        incarnation: int,
    ) -> None:
        self.config = config
        self.store = store
        self.endpoint = endpoint
        rng = random.Random(config.seed)
        core = Swim(
            actor_id=store.actor_id,
            addr=endpoint.addr,
            cluster_id=config.cluster_id,
            rng=random.Random(rng.random()),
            config=config.swim,
            incarnation=incarnation,
        )
        self.membership = Membership(core, endpoint, receive=False)
        self.arrivals: deque[tuple[bytes, int, float]] = deque(maxlen=ARRIVALS_KEPT)
        """(actor, version, wall time) of every version written or applied here, newest last:
        what propagation measurements read (bounded; the oldest fall off)."""
        self.apply_queue = ApplyQueue(
            store, max_items=config.apply_queue_len, on_applied=self._applied
        )
        self.gossiper = Gossiper(
            Broadcaster(config.broadcast, random.Random(rng.random())),
            endpoint,
            store,
            self.apply_queue,
            cluster_id=config.cluster_id,
            peers=self._peers,
            is_member=lambda actor: core.member(actor) is not None,
        )
        self.syncer = Syncer(
            store,
            self.apply_queue,
            cluster_id=config.cluster_id,
            members=self.alive_members,
            rng=random.Random(rng.random()),
            interval=config.sync_interval,
            blocked=lambda addr: (endpoint.addr, addr) in endpoint.faults.blocked,
        )
        self.sync_server = SyncServer(store, config.cluster_id, push_pull=self._serve_push_pull)
        subs_path = config.subscriptions_path or config.db_path.with_name(
            config.db_path.name + ".subs.db"
        )
        self.subs = SubscriptionManager(store, subs_path, config.subs)
        self.stats_udp_unrouted = 0
        self.api_addr: Addr | None = None
        """The HTTP API's bound address once started (None when the agent serves none)."""
        self._heard: dict[Addr, float] = {}
        """Wall time of the last datagram from each address (pruned to members)."""
        self._left = trio.Event()
        self._member_listeners: set[trio.MemorySendChannel[SwimEvent]] = set()
        self.member_events_dropped = 0

    # -- opening and closing ---------------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def open(cls, config: AgentConfig) -> AsyncIterator[Agent]:
        """Start a node; on exit (or cancellation) leave the cluster and close the database.

        Raises `DatabaseInUse` when another process runs a node on the same database."""
        with db_lock.hold(config.db_path):
            async with cls._open_locked(config) as agent:
                yield agent

    @classmethod
    @asynccontextmanager
    async def _open_locked(cls, config: AgentConfig) -> AsyncIterator[Agent]:
        host, port = config.gossip_addr
        # the port first: a node that cannot bind it stops before creating its database
        async with open_gossip_port(host, port, faults=config.faults, seed=config.seed) as (
            endpoint,
            listeners,
        ):
            store = await trio.to_thread.run_sync(
                lambda: Store.open(config.db_path, schema_paths=config.schema_paths)
            )
            try:
                saved = await trio.to_thread.run_sync(
                    store.load_members, limiter=store.read_limiter
                )
                own = [r for r in saved if r.actor_id == store.actor_id]
                incarnation = own[0].incarnation + 1 if own else 0
                async with trio.open_nursery() as nursery:
                    agent = cls(config, store, endpoint, incarnation)
                    await agent._start(nursery, listeners, saved)
                    try:
                        yield agent
                    finally:
                        with trio.CancelScope(shield=True):
                            await agent._shutdown()
                        nursery.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True):  # a cancelled stop must still close the file
                    await trio.to_thread.run_sync(store.close)

    async def _start(
        self,
        nursery: trio.Nursery,
        listeners: list[trio.SocketListener],
        saved: Sequence[MemberRecord],
    ) -> None:
        await nursery.start(self.subs.run)
        nursery.start_soon(self._member_events_loop)
        await nursery.start(self.membership.run)
        await nursery.start(self.apply_queue.run)
        await nursery.start(self.gossiper.run)
        nursery.start_soon(self._receive)
        nursery.start_soon(trio.serve_listeners, self.sync_server.serve, listeners)
        nursery.start_soon(self._save_members_loop)
        known = [
            r.address
            for r in saved
            if r.actor_id != self.store.actor_id and r.state in ("alive", "suspect")
        ]
        bootstrap = [*self.config.bootstrap, *_addrs_or_skip(known)]
        await self.membership.join(list(dict.fromkeys(bootstrap)))
        await nursery.start(self.syncer.run)
        if self.config.api_addr is not None:
            from corrosion_py.api.server import serve_api  # the API layer sits above the agent

            self.api_addr = await nursery.start(
                serve_api, self, self.config.api_addr, self.config.api_token
            )

    async def _shutdown(self) -> None:
        with trio.move_on_after(self.config.shutdown_timeout):
            await self.membership.leave()
            if self.membership.core.members():
                with trio.move_on_after(self.config.swim.leave_timeout):
                    await self._left.wait()
            await self.apply_queue.drained()
        await self._save_members()

    async def _member_events_loop(self) -> None:
        """Hand SWIM's events to every `member_events` listener (a full listener misses the
        event, counted) and note when our leave has spread."""
        async for event in self.membership.events:
            if isinstance(event, LeaveComplete):
                self._left.set()
            for send in list(self._member_listeners):
                try:
                    send.send_nowait(event)
                except trio.WouldBlock:
                    self.member_events_dropped += 1

    # -- public ------------------------------------------------------------------------------------

    @property
    def actor_id(self) -> bytes:
        return self.store.actor_id

    @property
    def gossip_addr(self) -> Addr:
        return self.endpoint.addr

    async def transaction(self, statements: Sequence[Statement]) -> TxResult:
        """Run statements as one local transaction and broadcast its changeset."""
        result = await self.store.transaction(statements)
        if result.version is not None:
            self.arrivals.append((self.actor_id, result.version, time.time()))
        if result.changeset is not None:
            self.subs.notify(result.changeset.changes)
            await self.gossiper.local(result.changeset)
        return result

    @asynccontextmanager
    async def subscribe(
        self,
        sql: str,
        params: Params = (),
        *,
        from_change: int | None = None,
        skip_rows: bool = False,
    ) -> AsyncIterator[tuple[Subscription, AsyncIterator[Event]]]:
        """A live query: yields the subscription and its events (`Columns`, `Row`s,
        `EndOfQuery`, then a `Change` per difference; see ``Subscription.attach``)."""
        sub, _ = await self.subs.subscribe(sql, params, existing_only=bool(from_change))
        async with sub.attach(from_change=from_change, skip_rows=skip_rows) as events:
            yield sub, events

    async def query(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement, from this node's copy."""
        return await self.store.query(sql, params)

    def p99_lag(self, window: float = 120.0) -> float | None:
        """99th percentile of seconds from a remote change's timestamp to its apply here, over
        the last ``window`` seconds (None before any remote change arrived)."""
        return self.apply_queue.p99_lag(window)

    @asynccontextmanager
    async def member_events(self, buffer: int = 1024) -> AsyncIterator[AsyncIterator[SwimEvent]]:
        """Membership changes as they happen (`MemberUp`, `MemberSuspect`, `MemberDown`,
        `MemberLeft`, ...): yields an iterator. A listener more than ``buffer`` events behind
        misses the newer ones (counted in ``member_events_dropped``); ``members()`` is the
        current view."""
        send, receive = trio.open_memory_channel[SwimEvent](buffer)
        self._member_listeners.add(send)
        try:
            yield receive
        finally:
            self._member_listeners.discard(send)
            send.close()
            receive.close()

    async def reload_schema(self) -> SchemaResult:
        """Re-read the schema files and apply what changed (additive rules; nothing changes
        when a file is refused). Subscriptions whose query no longer runs end."""
        result = await self.store.apply_schema(self.config.schema_paths)
        if result.changed:
            self.subs.schema_changed()
        return result

    def members(self) -> list[MemberInfo]:
        """Every other member this node knows, in any state."""
        return self.membership.members()

    def last_seen(self, addr: Addr) -> float | None:
        """Wall time of the last datagram received from ``addr`` (None: none yet)."""
        return self._heard.get(addr)

    def block(self, addrs: Sequence[Addr]) -> None:
        """Cut this node's traffic to ``addrs`` (datagrams and the streams it opens); an empty
        list heals. For partition tests: block both sides to cut both directions."""
        blocked = frozenset((self.endpoint.addr, a) for a in addrs)
        self.endpoint.faults = attrs.evolve(self.endpoint.faults, blocked=blocked)

    def vouched(self, actor: bytes) -> bool:
        """Whether health counts an actor's missing versions: this node, a member SWIM knows
        (in any state), or an actor a member advertised in a sync session (bounded)."""
        return (
            actor == self.actor_id
            or self.membership.core.member(actor) is not None
            or actor in self.syncer.learnt
        )

    def alive_members(self) -> list[MemberInfo]:
        return [m for m in self.membership.members() if m.state is MemberState.ALIVE]

    def stats(self) -> dict[str, Any]:
        """Counters of every part, for health and metrics."""
        return {
            "apply_queue": {"depth": self.apply_queue.depth, **self.apply_queue.stats},
            "broadcast": {"queued": self.gossiper.broadcaster.queue_len,
                          **self.gossiper.broadcaster.stats},
            "gossip": dict(self.gossiper.stats),
            "sync": dict(self.syncer.stats),
            "claims": {**self.store.rejected,
                       "quarantine_dropped": self.store.quarantine_dropped},
            "sync_server": attrs.asdict(self.sync_server.stats),
            "swim": dict(self.membership.core.stats),
            "push_pull": dict(self.membership.push_pull_stats),
            "udp": {**attrs.asdict(self.endpoint.stats), "unrouted": self.stats_udp_unrouted},
        }  # fmt: skip

    # -- plumbing ----------------------------------------------------------------------------------

    def _applied(self, result: ApplyResult) -> None:
        self.subs.notify(result.impactful)
        now = time.time()
        self.arrivals.extend((actor, version, now) for actor, version in result.applied)
        for actor, (start, end) in result.cleared:  # versions whose every change lost here
            if end - start < 64:  # (long empty ranges come from sync, not from new writes)
                self.arrivals.extend((actor, v, now) for v in range(start, end + 1))

    def _peers(self) -> list[Peer]:
        return [Peer(m.actor_id, m.addr) for m in self.alive_members()]

    async def _receive(self) -> None:
        """Route each datagram to SWIM or broadcast by its tag."""
        while True:
            addr, data = await self.endpoint.receive()
            self._heard[addr] = time.time()
            tag = peek_tag(data)
            if tag in SWIM_TAGS:
                await self.membership.handle_datagram(addr, data)
            elif tag is not None:
                await self.gossiper.handle_datagram(addr, data)
            else:
                self.stats_udp_unrouted += 1

    async def _serve_push_pull(self, stream: trio.abc.Stream, first: bytes) -> None:
        peer: Addr = ("", 0)
        if isinstance(stream, trio.SocketStream):
            host, port = stream.socket.getpeername()[:2]
            peer = (host, port)
        async with stream:
            reader = FrameReader(1 << 20)
            await self.membership.serve_push_pull(stream, reader, [first], peer)

    async def _save_members_loop(self) -> None:
        while True:
            await trio.sleep(self.config.save_members_interval)
            known = {m.addr for m in self.membership.members()}
            for addr in [a for a in self._heard if a not in known]:
                del self._heard[addr]  # bounded by the member list
            await self._save_members()

    async def _save_members(self) -> None:
        core = self.membership.core
        now = time.time_ns()
        own = MemberRecord(
            core.actor_id, format_addr(core.node.addr), "alive", core.incarnation, now
        )
        records = [own] + [
            MemberRecord(m.actor_id, format_addr(m.addr), _STATES[m.state], m.incarnation, now)
            for m in core.members()
        ]
        await self.store.save_members(records)


def _addrs_or_skip(texts: Sequence[str]) -> list[Addr]:
    """Saved addresses; one that does not parse (a damaged row) is skipped, not fatal."""
    out = []
    for text in texts:
        try:
            out.append(parse_addr(text))
        except ValueError:
            continue
    return out
