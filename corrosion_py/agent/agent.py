"""The agent: one store, one SWIM member, broadcast, sync and the apply queue in one nursery.

    async with Agent.open(AgentConfig(db_path="node.db", schema_paths=["schema.sql"],
                                      bootstrap=[("10.0.0.2", 7878)])) as agent:
        result = await agent.transaction(["INSERT INTO machines (id, app) VALUES (1, 'web')"])
        rows = await agent.query("SELECT * FROM machines")

Rules:

- **The only door.** The HTTP API, the admin socket, the CLI and embedders reach the node
  through ``Agent``'s public methods only (writes, reads, subscriptions, members, health, sync
  state, schema changes, keys, counters), never through its parts; the agent knows nothing of
  them (``corrosion_py.runner`` serves the HTTP API and the admin socket beside it).
- **One port.** The gossip address is UDP (SWIM packets and changeset broadcasts, routed by
  their tag) and TCP on the same number (anti-entropy sync and SWIM push-pull, routed by the
  first frame): net/port.py routes, the agent only says where to.
- **Identity survives restarts.** The actor id is the database's site id. The member list is
  saved in the store (every ``save_members_interval`` and at shutdown) together with this
  node's own incarnation; a restart comes back one incarnation higher and tries the saved
  members as bootstrap addresses besides the configured ones. Bookkeeping is the store's, so
  sync resumes exactly where it stopped.
- **Writes** commit locally (``Store.transaction``), then their changeset is broadcast at once;
  the call returns after the commit and the first sends, never waiting for peers.
- **Sealed gossip** (docs/security.md). With keys (``keyring`` or ``keyring_file``) every
  datagram and every TCP stream of the gossip port is authenticated and encrypted
  (net/secure.py); the server side of a stream proves the client holds a key before the sync
  server or push-pull sees a byte. Without keys the agent runs plaintext only when told to
  (``plaintext``, logged as a warning) or when gossip is bound to a loopback address (local
  development, logged as info); otherwise ``open`` refuses to start (`GossipKeyError`). Keys
  change on a running agent with ``set_keyring`` / ``reload_keyring``.
- **Shutdown** is a cancellation (the caller's, or SIGTERM in the runner): shielded and
  bounded by ``shutdown_timeout``, the agent announces its leave and lingers until it is spread,
  applies what is already queued, saves the member list, then closes the database.
- **Faults degrade, never kill.** A database file that cannot be trusted is refused at start
  (`UnusableDatabase`); a full disk or a corrupt file met while running stops writes, not the
  node (the store's fault state, the apply queue's retries), and ``faults()`` reports it.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from corrosion_py.addr import Addr, format_addr, is_loopback, parse_addr
from corrosion_py.agent.apply_loop import ApplyLoop
from corrosion_py.agent.reports import Health, count_gaps, count_rows
from corrosion_py.aliases import Params, Statement
from corrosion_py.api_types import TableStats
from corrosion_py.errors import CorrosionError, GossipKeyError, StorageFault, leaves
from corrosion_py.net.broadcast import Gossiper
from corrosion_py.net.faults import FaultPlan
from corrosion_py.net.membership import Membership
from corrosion_py.net.port import GossipPort, Routes, open_gossip_port
from corrosion_py.net.secure import GossipSecurity, read_keyring_file
from corrosion_py.net.sync_loop import Syncer
from corrosion_py.net.sync_server import SyncServer
from corrosion_py.net.timers import Timers
from corrosion_py.replication import missing_versions
from corrosion_py.replication.apply_queue import ApplyQueue
from corrosion_py.replication.chunking import DEFAULT_BUDGET
from corrosion_py.replication.gossip import Gossip
from corrosion_py.replication.plumtree import Peer, Plumtree, PlumtreeConfig
from corrosion_py.store import lock as db_lock
from corrosion_py.store.apply import ApplyResult
from corrosion_py.store.cursor import ReadCursor
from corrosion_py.store.members import MemberRecord
from corrosion_py.store.migrations import SchemaResult
from corrosion_py.store.store import Store, TxResult
from corrosion_py.subs import Event, Notify, SubsConfig, Subscription, SubscriptionManager
from corrosion_py.swim import LAN, LeaveComplete, MemberInfo, MemberState, Swim, SwimConfig
from corrosion_py.swim.events import MembershipEvent
from corrosion_py.wire.codec import encode
from corrosion_py.wire.keyring import Keyring
from corrosion_py.wire.messages import SyncState

log = logging.getLogger(__name__)

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
    broadcast: PlumtreeConfig = attrs.Factory(PlumtreeConfig)
    sync_interval: tuple[float, float] = (1.0, 15.0)
    sync_idle_timeout: float = 10.0
    """A peer's sync session that asks for nothing this long loses its slot (shorter than a
    sync interval; longer than a client's handshakes with its slowest peer)."""
    integrity_check_timeout: float | None = 60.0
    """``PRAGMA quick_check`` of the database at start, at most this long (None: skipped)."""
    apply_queue_len: int = 20_000
    """Changesets waiting for apply; broadcast overflow drops the oldest (sync repairs)."""
    apply_linger: float = 0.01
    """Seconds the apply queue waits for more changesets after the first one arrives in an empty
    queue (Corrosion's 10 ms): one SQLite transaction then applies them all, which costs far
    less per changeset than one transaction each."""
    save_members_interval: float = 10.0
    shutdown_timeout: float = 10.0
    faults: FaultPlan = attrs.Factory(FaultPlan)
    """Injected faults (tests and experiments only): loss, duplication and delay of datagrams;
    ``blocked`` links also cut the sync and push-pull streams this node opens."""
    seed: int | None = None
    """Seeds the agent's random choices (tests); None draws from the OS."""
    subscriptions_path: Path | None = attrs.field(
        default=None, converter=attrs.converters.optional(Path)
    )
    """The subscriptions' file (None: ``<db_path>.subs.db`` beside the database)."""
    subs: SubsConfig = attrs.Factory(SubsConfig)
    keyring: Keyring | None = None
    """Gossip keys, primary first: every datagram and stream is sealed with them."""
    keyring_file: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    """A key file (one base64 key per line, first = primary), read at start and by
    ``reload_keyring``; exclusive with ``keyring``."""
    plaintext: bool = False
    """Run gossip without encryption on purpose (a warning at start). Without keys and without
    this, only a loopback gossip address runs (plaintext, for local development)."""
    sql_tx_timeout: float | None = 60.0
    """Seconds after which a local transaction is interrupted and rolled back, waiting for the
    writer included (Corrosion's ``[perf] sql_tx_timeout``); None or 0: no bound. The writer is
    the node's only one: while a transaction holds it, no other local write and no remote
    change lands here."""

    def __attrs_post_init__(self) -> None:
        if self.keyring is not None and self.keyring_file is not None:
            raise GossipKeyError("give gossip keys as keyring or keyring_file, not both")
        if self.plaintext and (self.keyring is not None or self.keyring_file is not None):
            raise GossipKeyError("gossip cannot be both plaintext and keyed")


def _initial_keyring(config: AgentConfig) -> Keyring | None:
    """The keys to start with; None for plaintext, when allowed (else `GossipKeyError`)."""
    if config.keyring_file is not None:
        return read_keyring_file(config.keyring_file)
    if config.keyring is None and not config.plaintext and not is_loopback(config.gossip_addr[0]):
        raise GossipKeyError(
            f"gossip on {format_addr(config.gossip_addr)} needs a key: set [gossip] keyring_file "
            "(create one with `corrosion keygen --out FILE`), or [gossip] plaintext = true"
        )
    return config.keyring


def _log_gossip_mode(config: AgentConfig, keyring: Keyring | None, addr: Addr) -> None:
    if keyring is not None:
        log.info(
            "gossip encrypted: %d key(s), primary key id %s", len(keyring.keys),
            keyring.primary.id_hex,
        )  # fmt: skip
    elif config.plaintext:
        log.warning(
            "gossip runs in PLAINTEXT ([gossip] plaintext = true): anyone who can reach %s can "
            "read and write every row", format_addr(addr),
        )  # fmt: skip
    else:
        log.info(
            "gossip on loopback %s runs in plaintext, without a key (local development); set "
            "[gossip] keyring_file to encrypt it", format_addr(addr),
        )  # fmt: skip


class Agent:
    """A running node. Get one with ``Agent.open``."""

    def __init__(
        self,
        config: AgentConfig,
        store: Store,
        port: GossipPort,
        incarnation: int,
    ) -> None:
        self.config = config
        self.store = store
        self.port = port
        self.endpoint = endpoint = port.endpoint
        self.security = endpoint.security
        """Keys and counters of sealed gossip (None: plaintext)."""
        rng = random.Random(config.seed)
        # a SWIM packet must fit the endpoint once sealed
        swim = attrs.evolve(
            config.swim, max_packet_size=min(config.swim.max_packet_size, endpoint.max_payload)
        )
        core = Swim(
            actor_id=store.actor_id,
            addr=endpoint.addr,
            cluster_id=config.cluster_id,
            rng=random.Random(rng.random()),
            config=swim,
            incarnation=incarnation,
        )
        self.timers = Timers()
        """The node's one timer heap (SWIM, broadcast)."""
        self.membership = Membership(core, endpoint, self.timers, security=self.security)
        self.arrivals: deque[tuple[bytes, int, float]] = deque(maxlen=ARRIVALS_KEPT)
        """(actor, version, wall time) of every version written or applied here, newest last:
        what propagation measurements read (bounded; the oldest fall off)."""
        self.apply_queue = ApplyLoop(
            store,
            ApplyQueue(max_items=config.apply_queue_len, linger=config.apply_linger),
            on_applied=self._applied,
        )
        tree = Plumtree(
            config.broadcast,
            random.Random(rng.random()),
            encode=partial(encode, cluster_id=config.cluster_id, check=False),
            max_payload=min(DEFAULT_BUDGET, endpoint.max_payload),  # a datagram, once sealed
        )
        self._peer_list: tuple[Peer, ...] = ()
        self._peer_changes = -1
        gossip = Gossip(
            tree,
            cluster_id=config.cluster_id,
            own_actor=store.actor_id,
            peers=self._peers,
            booked=store.booked,
            is_member=lambda actor: core.member(actor) is not None,
        )
        self.gossiper = Gossiper(gossip, endpoint, self.timers, enqueue=self.apply_queue.put_nowait)
        self.syncer = Syncer(
            store,
            self.apply_queue.put,
            cluster_id=config.cluster_id,
            members=self.alive_members,
            rng=random.Random(rng.random()),
            interval=config.sync_interval,
            blocked=lambda addr: (endpoint.addr, addr) in endpoint.faults.blocked,
            security=self.security,
        )
        self.sync_server = SyncServer(
            store,
            config.cluster_id,
            is_member=self._is_member,
            idle_timeout=config.sync_idle_timeout,
        )
        subs_path = config.subscriptions_path or config.db_path.with_name(
            config.db_path.name + ".subs.db"
        )
        self.subs = SubscriptionManager(store, subs_path, config.subs)
        self._left = trio.Event()
        self._member_listeners: set[trio.MemorySendChannel[MembershipEvent]] = set()
        self.member_events_dropped = 0

    # -- opening and closing ---------------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def open(cls, config: AgentConfig) -> AsyncIterator[Agent]:
        """Start a node; on exit (or cancellation) leave the cluster and close the database.

        Raises `DatabaseInUse` when another process runs a node on the same database, and
        `UnusableDatabase` for a database file it cannot trust (nothing changed); a start error
        of ours is raised as itself, not inside an exception group."""
        with db_lock.hold(config.db_path):
            started = False
            try:
                async with cls._open_locked(config) as agent:
                    started = True
                    yield agent
            except BaseExceptionGroup as group:
                inside = leaves(group)
                if started or len(inside) != 1 or not isinstance(inside[0], CorrosionError):
                    raise
                raise inside[0] from None

    @classmethod
    @asynccontextmanager
    async def _open_locked(cls, config: AgentConfig) -> AsyncIterator[Agent]:
        host, port = config.gossip_addr
        keyring = await trio.to_thread.run_sync(_initial_keyring, config)  # may read a file
        security = GossipSecurity(keyring, config.cluster_id) if keyring is not None else None
        # the port first: a node that cannot bind it stops before creating its database
        async with open_gossip_port(
            host, port, faults=config.faults, seed=config.seed, security=security
        ) as gossip_port:
            store = await trio.to_thread.run_sync(
                lambda: Store.open(
                    config.db_path,
                    schema_paths=config.schema_paths,
                    tx_timeout=config.sql_tx_timeout,
                    integrity_check_timeout=config.integrity_check_timeout,
                )
            )
            try:
                saved = await trio.to_thread.run_sync(
                    store.load_members, limiter=store.read_limiter
                )
                own = [r for r in saved if r.actor_id == store.actor_id]
                incarnation = own[0].incarnation + 1 if own else 0
                async with trio.open_nursery() as nursery:
                    agent = cls(config, store, gossip_port, incarnation)
                    await agent._start(nursery, saved)
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
        saved: Sequence[MemberRecord],
    ) -> None:
        await nursery.start(self.subs.run)
        await nursery.start(self.timers.run)
        nursery.start_soon(self._member_events_loop)
        await nursery.start(self.membership.run)
        await nursery.start(self.apply_queue.run)
        routes = Routes(
            swim=self.membership.handle_datagram,
            broadcast=self.gossiper.handle_datagram,
            burst_end=self.gossiper.flush,
            push_pull=self.membership.serve_push_pull,
            sync=lambda stream, first, peer: self.sync_server.serve(stream, first),
        )
        await nursery.start(self.port.serve, routes)
        nursery.start_soon(self._save_members_loop)
        _log_gossip_mode(self.config, self.security.keyring if self.security else None,
                         self.gossip_addr)  # fmt: skip
        known = [
            r.address
            for r in saved
            if r.actor_id != self.store.actor_id and r.state in ("alive", "suspect")
        ]
        bootstrap = [*self.config.bootstrap, *_addrs_or_skip(known)]
        await self.membership.join(list(dict.fromkeys(bootstrap)))
        await nursery.start(self.syncer.run)

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

    @property
    def incarnation(self) -> int:
        """This node's SWIM incarnation (one higher after each restart or refuted suspicion)."""
        return self.membership.core.incarnation

    async def transaction(
        self,
        statements: Sequence[Statement],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (a bound SQLite enforces: no cancel)
    ) -> TxResult:
        """Run statements as one local transaction and broadcast its changeset.

        Raises `StatementError` (naming the statement) when one fails or is refused: internal
        tables and the engine's functions are off limits, text must be UTF-8, and the whole
        transaction is bounded by ``sql_tx_timeout`` (``timeout`` may shorten that bound, never
        lengthen it; both count from the submission, waiting for the writer included); nothing
        is written then. `StorageFault` when the node's disk or file refused the write."""
        result = await self.store.transaction(statements, timeout=timeout)
        if result.version is not None:
            self.arrivals.append((self.actor_id, result.version, time.time()))
        if result.changeset is not None:
            self.subs.notify(result.changeset.changes)
            self.gossiper.local(result.changeset)
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
        sub = await self.subscription(sql, params, existing_only=bool(from_change))
        async with sub.attach(from_change=from_change, skip_rows=skip_rows) as events:
            yield sub, events

    async def subscription(
        self, sql: str, params: Params = (), *, existing_only: bool = False
    ) -> Subscription:
        """The live subscription of ``sql`` with ``params`` (one per query: created and run if
        new, unless ``existing_only``); attach to it for its events. Raises
        `SubscriptionSqlError` for a statement that cannot be subscribed, `NoSuchSubscription`
        when ``existing_only`` finds none."""
        sub, _ = await self.subs.subscribe(sql, params, existing_only=existing_only)
        return sub

    def get_subscription(self, sub_id: str) -> Subscription | None:
        """The live subscription with this id (None: none)."""
        return self.subs.get(sub_id)

    def subscriptions(self) -> list[Subscription]:
        """Every live subscription."""
        return self.subs.all()

    @asynccontextmanager
    async def table_updates(self, table: str) -> AsyncIterator[AsyncIterator[Notify]]:
        """Writes of ``table`` as they commit here: yields an iterator of `Notify` (the kind
        and the primary key values). Raises `SubscriptionError` for a table that is not
        replicated; a listener that falls behind gets `SubscriberLagged` from the iterator."""
        async with self.subs.updates(table) as notes:
            yield notes

    async def query(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement, from this node's copy (`QueryError` when it is
        refused or fails)."""
        return await self.store.query(sql, params)

    def read_cursor(self, sql: str, params: Params = (), *, timeout: float | None) -> ReadCursor:
        """One read-only statement to stream, on a connection of its own (`ReadCursor`: its
        methods block, so the caller runs them on worker threads it bounds; ``timeout``
        interrupts it). For large results, where ``query`` would hold every row."""
        return ReadCursor(self.store.path, sql, params, timeout=timeout)

    async def table_stats(self, tables: Sequence[str]) -> TableStats:
        """Rows of the named replicated tables, and the names that are not replicated tables."""
        return await self.store.read(lambda conn: count_rows(conn, tables))

    async def sync_state(self) -> SyncState:
        """This node's sync state: the head version of each actor, the versions it misses and
        the partly received ones (a copy of the bookkeeping, walked off the event loop)."""
        return await trio.to_thread.run_sync(self.store.sync_state)

    async def missing_versions(self) -> int:
        """Versions this node has heard of and does not hold yet, over every actor (missing
        ones plus partly received ones): what a catch-up after a start or a partition counts
        down."""
        return sum(missing_versions(await self.sync_state()).values())

    def health(self) -> Health:
        """Gaps, members, lag, queue, faults and sync in one report (see `Health`)."""
        return Health(
            gaps=count_gaps(self.store.bookie_snapshot(), self.vouched),
            members=len(self.alive_members()) + 1,
            p99_lag=self.p99_lag(),
            queue_size=self.apply_queue.depth,
            faults=self.faults(),
            sync=self.sync_status(),
        )

    def p99_lag(self, window: float = 120.0) -> float | None:
        """99th percentile of seconds from a remote change's timestamp to its apply here, over
        the last ``window`` seconds (None before any remote change arrived)."""
        return self.apply_queue.p99_lag(window)

    @asynccontextmanager
    async def member_events(
        self, buffer: int = 1024
    ) -> AsyncIterator[AsyncIterator[MembershipEvent]]:
        """Membership changes as they happen (`MemberUp`, `MemberSuspect`, `MemberDown`,
        `MemberLeft`, ...): yields an iterator. A listener more than ``buffer`` events behind
        misses the newer ones (counted in ``member_events_dropped``); ``members()`` is the
        current view."""
        send, receive = trio.open_memory_channel[MembershipEvent](buffer)
        self._member_listeners.add(send)
        try:
            yield receive
        finally:
            self._member_listeners.discard(send)
            send.close()
            receive.close()

    async def reload_schema(self) -> SchemaResult:
        """Re-read the schema files and apply what changed (additive rules; `SchemaError`, and
        nothing changes, when a file is refused). Subscriptions whose query no longer runs
        end."""
        return self._schema_applied(await self.store.apply_schema(self.config.schema_paths))

    async def migrate(self, statements: Sequence[str]) -> SchemaResult:
        """Apply schema statements (``CREATE TABLE``, ``CREATE INDEX``) on top of the schema
        recorded in the database, by the schema files' additive rules, in one transaction
        (`SchemaError`, and nothing changes, when one is refused). They are recorded with the
        source ``<api>``: a restart with schema files that lack them refuses to drop them."""
        return self._schema_applied(await self.store.apply_schema_statements(statements))

    def _schema_applied(self, result: SchemaResult) -> SchemaResult:
        if result.changed:
            self.subs.schema_changed()
        return result

    def key_ids(self) -> list[str]:
        """Ids of the gossip keys in use, primary first (empty: plaintext). Never the keys."""
        return self.security.keyring.ids() if self.security is not None else []

    def set_keyring(self, keyring: Keyring) -> None:
        """Use new gossip keys from now on: the primary seals, every key opens. Rotation
        without downtime: add the new key everywhere, make it primary everywhere, then
        remove the old one (docs/security.md)."""
        if self.security is None:
            raise GossipKeyError(
                "this agent runs gossip in plaintext; keys can only be added by a restart with "
                "[gossip] keyring_file"
            )
        self.security.set_keyring(keyring)
        log.info(
            "gossip keys changed: %d key(s), primary key id %s", len(keyring.keys),
            keyring.primary.id_hex,
        )  # fmt: skip

    async def reload_keyring(self) -> Keyring:
        """Re-read ``keyring_file`` and use it (`GossipKeyError`, and nothing changes, when it
        is refused)."""
        path = self.config.keyring_file
        if path is None:
            raise GossipKeyError("this agent has no [gossip] keyring_file to reload")
        keyring = await trio.to_thread.run_sync(read_keyring_file, path)
        self.set_keyring(keyring)
        return keyring

    def members(self) -> list[MemberInfo]:
        """Every other member this node knows, in any state."""
        return self.membership.members()

    def last_seen(self, addr: Addr) -> float | None:
        """Wall time of the last datagram received from ``addr`` (None: none yet)."""
        return self.port.last_seen(addr)

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

    def faults(self) -> list[dict[str, Any]]:
        """What keeps this node from doing its job now, for health: storage faults (writes
        failing or stopped) and a sync that keeps failing. Each is ``kind``, ``since`` (seconds
        since the epoch), ``failures`` (writes or rounds failed) and a readable ``message``."""
        out = [
            {"kind": f.kind, "since": f.since, "failures": f.failures,
             "message": f.describe(self.store.path)}
            for f in self.store.faults.current()
        ]  # fmt: skip
        syncer = self.syncer
        trouble = syncer.trouble(time.time())
        if trouble is not None:
            out.append({
                "kind": "cannot_sync", "since": syncer.unsynced_since,
                "failures": syncer.failures,
                "message": f"cannot sync: {trouble}; versions this node has not heard of are "
                           "not counted in gaps",
            })  # fmt: skip
        return out

    def sync_status(self) -> dict[str, Any]:
        """Seconds since the last sync round that worked (None: none yet) and the rounds that
        failed in a row since (``Syncer.trouble`` says when that makes a ``cannot_sync``
        fault)."""
        last_ok = self.syncer.last_ok
        ago = None if last_ok is None else round(trio.current_time() - last_ok, 3)
        return {"last_ok_ago": ago, "failures": self.syncer.failures}

    def stats(self) -> dict[str, Any]:
        """Counters of every part, for health and metrics."""
        return {
            "apply_queue": {"depth": self.apply_queue.depth, **self.apply_queue.stats},
            "broadcast": {"eager": len(self.gossiper.core.tree.eager),
                          "lazy": len(self.gossiper.core.tree.lazy),
                          **self.gossiper.core.tree.stats},
            "timers": {"pending": len(self.timers), "errors": self.timers.errors},
            "gossip": dict(self.gossiper.stats),
            "sync": dict(self.syncer.stats),
            "claims": {**self.store.rejected,
                       "quarantine_dropped": self.store.quarantine_dropped},
            "sync_server": attrs.asdict(self.sync_server.stats),
            "swim": dict(self.membership.core.stats),
            "push_pull": dict(self.membership.push_pull_stats),
            "udp": {**attrs.asdict(self.endpoint.stats), **self.port.udp_stats,
                    "kernel_drops": self.endpoint.kernel_drops()},
            "tcp": {"refused_busy": 0, **self.port.tcp_stats},
            "security": self.security.stats() if self.security is not None else None,
        }  # fmt: skip

    # -- plumbing ----------------------------------------------------------------------------------

    def _applied(self, result: ApplyResult) -> None:
        self.subs.notify(result.impactful)
        now = time.time()
        self.arrivals.extend((actor, version, now) for actor, version in result.applied)
        for actor, (start, end) in result.cleared:  # versions whose every change lost here
            if end - start < 64:  # (long empty ranges come from sync, not from new writes)
                self.arrivals.extend((actor, v, now) for v in range(start, end + 1))

    def _peers(self) -> tuple[Peer, ...]:
        """The live members (alive or suspect) to broadcast to: the same tuple while the member
        list does not change (the broadcast tree rebuilds its view only when it does)."""
        core = self.membership.core
        if core.changes != self._peer_changes:
            self._peer_changes = core.changes
            self._peer_list = tuple(
                Peer(m.actor_id, m.addr)
                for m in core.members()
                if m.state in (MemberState.ALIVE, MemberState.SUSPECT)
            )
        return self._peer_list

    def _is_member(self, actor: bytes) -> bool:
        """Whether ``actor`` may hold a sync session here: a member SWIM holds alive or suspect."""
        member = self.membership.core.member(actor)
        return member is not None and member.state in (MemberState.ALIVE, MemberState.SUSPECT)

    async def _save_members_loop(self) -> None:
        while True:
            await trio.sleep(self.config.save_members_interval)
            known = {m.addr for m in self.membership.members()}
            self.port.forget(known.__contains__)  # last_seen: members only
            await self._save_members()

    async def _save_members(self) -> None:
        """Save the member list; a storage fault skips it (the store logged and counts it)."""
        core = self.membership.core
        now = time.time_ns()
        own = MemberRecord(
            core.actor_id, format_addr(core.node.addr), "alive", core.incarnation, now
        )
        records = [own] + [
            MemberRecord(m.actor_id, format_addr(m.addr), _STATES[m.state], m.incarnation, now)
            for m in core.members()
        ]
        try:
            await self.store.save_members(records)
        except StorageFault as fault:
            log.debug("member list not saved: %s", fault)


def _addrs_or_skip(texts: Sequence[str]) -> list[Addr]:
    """Saved addresses; one that does not parse (a damaged row) is skipped, not fatal."""
    out = []
    for text in texts:
        try:
            out.append(parse_addr(text))
        except ValueError:
            continue
    return out
