"""Whole-cluster replication on the virtual clock: N real stores, SWIM, broadcast and sync.

Rules (what the simulator models, and how; everything else is the real code):

- **Same logic as the agent.** Each node is a real ``Store`` (its own SQLite file under
  ``directory``), one ``Swim`` core and one ``Broadcaster``; which received claims are believed
  by ``claims.broadcast_refusal`` and ``claims.Solicited``, which pieces are new by
  ``changes.piece_key``/``is_known``, sync peers and requests by ``sync.choose_peers``/
  ``plan_requests``/``jittered_interval``, and what a server sends by ``Store.serve_sync``. The
  host code here only moves bytes and calls them, as the trio agent does with sockets.
- **Datagrams** (SWIM packets and changeset pieces) go through ``Network.arrivals``: loss,
  jitter, duplication, partitions and crashes apply to each copy. Pieces travel as encoded
  bytes (wire codec, ``CLUSTER_ID``) and are decoded on arrival; bytes that do not decode to a
  changeset are counted in ``stats["bad_datagrams"]`` and dropped.
- **Streams** (sync sessions and SWIM push-pulls) are lossless, as TCP is, but each leg needs
  both directions connected and both ends running when it happens, else the session ends there
  silently (a refused or cut connection). A leg takes the default link delay. A sync session:
  the client picks its peers at t; each server reads its ``sync_state()`` at t+d; the client
  plans at t+2d with the answers it got; each server serves its needs at t+3d; the client
  queues what arrives at t+4d.
- **Apply queue.** Broadcast and sync feed one queue per node; it is applied with
  ``store.apply_sync`` ``apply_interval`` after its first item arrived (a batch), like the
  agent's apply loop. A crash loses the queue (what it held was never acknowledged).
- **Crashes and restarts.** A crash closes the store, drops the SWIM core, the broadcaster and
  the queue; the node's pending timers die with its generation. A restart reopens the same
  file (same actor id, bookkeeping reloaded), with a new core at a higher incarnation joining
  through live nodes, a new broadcaster and a new sync schedule.

Theory of operation: one ``Scheduler`` runs everything in (time, priority, insertion) order.
Every random draw comes from a generator seeded from the run's seed (per node and generation:
SWIM, broadcast, sync; one for the network, one for the host). Stores get the virtual clock
(``EPOCH_NS`` + virtual time) for their HLC and a site id derived from the seed, so the bytes
on the wire are a function of the seed too: ``trace_hash`` (sha256 over every datagram with
its time, sender and receiver, and every event) is equal for equal seeds.

Why real files and not in-memory stores: the store's readers are separate
connections on the same file (WAL), restarts must reopen what a crash left behind, and a file
per node in a temporary directory is what the agent runs on. The cost is SQLite's, which is the
point: a run measures the replication code as it is, not a stand-in.

Not modelled (the trio shell's concerns): the sync handshake's SyncClock exchange and cluster
id check, the server's concurrency limit, stream backpressure and timeouts, the broadcast
byte budget shared with SWIM on one socket; sync sessions' bytes are counted, not delayed.

Propagation is measured per write: from the commit on its origin to the time each node first
held the whole version (applied, or known cleared); a write's spread is the latest of those
over the nodes live at report time.
"""

from __future__ import annotations

import hashlib
import math
import random
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from corrosion_py.aliases import Statement
from corrosion_py.replication.broadcast import BroadcastConfig, Broadcaster, Peer
from corrosion_py.replication.broadcast import Send as BroadcastSend
from corrosion_py.replication.claims import Solicited, broadcast_refusal
from corrosion_py.replication.known import is_known, piece_key
from corrosion_py.replication.sync_plan import (
    choose_peers,
    jittered_interval,
    missing_versions,
    plan_requests,
)
from corrosion_py.sim.cluster import CLUSTER_ID, addr_of
from corrosion_py.sim.metrics import Distribution
from corrosion_py.sim.network import Link, Network
from corrosion_py.sim.scheduler import DELIVERY, TIMER, Scheduler
from corrosion_py.store.apply import ApplyResult
from corrosion_py.store.store import Store, TxResult
from corrosion_py.swim import (
    LAN,
    Addr,
    Effect,
    MemberState,
    Notify,
    PushPull,
    Send,
    SetTimer,
    Swim,
    SwimConfig,
    Timer,
)
from corrosion_py.wire.codec import decode, encode
from corrosion_py.wire.errors import DecodeError
from corrosion_py.wire.messages import Changeset, EmptyChangeset, Item, NeedPartial, SyncState
from corrosion_py.wire.swim import Feed, NodeId, Packet, Rumour, encode_packet

EPOCH_NS = 1_700_000_000 * 1_000_000_000
"""Wall time of virtual time 0, in ns since the Unix epoch (HLC timestamps need a real-looking
clock)."""
MAX_DATAGRAM = 65_507
"""Largest UDP payload: the decode limit of broadcast datagrams."""

_ALIVE_EVENTS = frozenset({"MemberUp", "MemberRecovered", "MemberRejoined"})
_GONE_EVENTS = frozenset({"MemberSuspect", "MemberDown", "MemberLeft"})
_DATAGRAM = struct.Struct("<dIIB")  # time, src, dst, kind (0 swim, 1 broadcast)
_NO_NODE = 0xFFFFFFFF
_DECODE_CACHE = 4096

WriteKey = tuple[bytes, int]
"""(actor id, version) of a local write."""


def site_of(seed: int, i: int) -> bytes:
    """The actor (site) id of node ``i`` in a run seeded ``seed``: 16 bytes shaped as a UUID v4,
    like the ids cr-sqlite makes, derived from the seed so runs are reproducible."""
    b = bytearray(hashlib.sha256(f"{seed}/site/{i}".encode()).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    return bytes(b)


@attrs.define(eq=False)
class _Node:
    """One node's running parts; ``store`` is None while it is down."""

    generation: int = 0
    store: Store | None = None
    swim: Swim | None = None
    bcast: Broadcaster | None = None
    rng: random.Random = attrs.Factory(random.Random)
    """Sync choices (peers, intervals) of this generation."""
    view: set[int] = attrs.Factory(set)
    """Members this node's SWIM core reports alive."""
    peers: list[Peer] | None = None
    """``view`` as broadcast peers, rebuilt when the view changes."""
    queue: list[Item] = attrs.Factory(list)
    flush_scheduled: bool = False
    tick_at: float | None = None
    last_sync: dict[int, float] = attrs.Factory(dict)


@attrs.define(eq=False)
class _Session:
    """A sync round of one client: the servers' answers gathered so far."""

    client: int
    generation: int
    theirs: dict[int, SyncState] = attrs.Factory(dict)


@attrs.frozen
class ReplicationReport:
    """What a run measured (``values``), for tests and printing."""

    values: dict[str, float]
    propagation: Distribution
    trace_hash: str

    def text(self) -> str:
        """A readable summary."""
        v = self.values
        return "\n".join(
            [
                f"writes {v['writes']:.0f} on {v['nodes']:.0f} nodes, "
                f"{v['live']:.0f} live, complete {v['complete']:.0f}",
                f"propagation {self.propagation.text()}",
                f"broadcast: {v['bcast_datagrams_per_write_per_node']:.2f} datagrams, "
                f"{v['bcast_bytes_per_write_per_node']:.0f} bytes per write per node",
                f"sync: {v['sync_rounds']:.0f} rounds, {v['sync_sessions']:.0f} sessions, "
                f"{v['sync_changesets']:.0f} changesets, {v['sync_bytes']:.0f} bytes",
                f"trace {self.trace_hash[:16]}",
            ]
        )


class ReplicationSim:
    """Nodes 0..n-1 replicating one schema over the simulated network (see the module rules).

    sim = ReplicationSim(20, seed=1, link=Link(loss=0.1), directory=tmp,
                         schema_sql="CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v);")
    sim.start_all(); sim.run_until(2.0)
    sim.write(3, ["INSERT INTO t VALUES (1, 'a')"])
    sim.run_until_converged(60.0)
    print(sim.report().text())
    sim.close()
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        directory: str | Path,
        schema_sql: str,
        link: Link | None = None,
        swim_config: SwimConfig = LAN,
        broadcast_config: BroadcastConfig | None = None,
        broadcast: bool = True,
        sync: bool = True,
        sync_interval: tuple[float, float] = (1.0, 15.0),
        apply_interval: float = 0.01,
    ) -> None:
        if n < 2:
            raise ValueError("a simulation needs at least 2 nodes")
        low, high = sync_interval
        if not 0 < low <= high:
            raise ValueError("sync_interval must be (low, high) with 0 < low <= high")
        if apply_interval < 0:
            raise ValueError("apply_interval cannot be negative")
        self.n = n
        self.seed = seed
        self.directory = Path(directory)
        self.swim_config = swim_config
        self.broadcast_config = broadcast_config or BroadcastConfig()
        self.broadcast_enabled = broadcast
        self.sync_enabled = sync
        self.sync_interval = sync_interval
        self.apply_interval = apply_interval
        self.scheduler = Scheduler()
        self.network = Network(random.Random(f"{seed}/network"), link or Link())
        self.sites = [site_of(seed, i) for i in range(n)]
        self.paths = [self.directory / f"node-{i}.db" for i in range(n)]
        for path in self.paths:
            if path.exists():
                raise ValueError(f"{path} exists: give each run an empty directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.schema_path = self.directory / "schema.sql"
        self.schema_path.write_text(schema_sql)
        self.nodes = [_Node() for _ in range(n)]
        self.incarnations = [0] * n
        self.stats: Counter[str] = Counter()
        """bad_datagrams, bcast_datagrams/bytes (sent, lost ones included), swim_datagrams/bytes,
        applied_batches, sync_rounds, sync_sessions (servers that answered), sync_cut (legs
        a partition or a crash cut), sync_partial_needs (NeedPartial requests planned),
        sync_changesets and sync_bytes (received by clients), writes, crashes, restarts."""
        self.sent_bytes = [0] * n
        """Broadcast bytes each node sent (all generations)."""
        self.written_at: dict[WriteKey, float] = {}
        self.had_at: dict[WriteKey, dict[int, float]] = {}
        """Per write, when each node first held all of it."""
        self._by_actor: dict[bytes, int] = {s: i for i, s in enumerate(self.sites)}
        self._index: dict[Addr, int] = {addr_of(i): i for i in range(n)}
        self._peer_records = [Peer(self.sites[i], addr_of(i)) for i in range(n)]
        self._host_rng = random.Random(f"{seed}/host")
        self._decoded: dict[bytes, Changeset | EmptyChangeset] = {}
        self._hash = hashlib.sha256()

    # -- views ----------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """Virtual time, in seconds."""
        return self.scheduler.now

    def clock_ns(self) -> int:
        """The wall clock the stores see: ``EPOCH_NS`` plus virtual time."""
        return EPOCH_NS + round(self.scheduler.now * 1e9)

    def live(self) -> list[int]:
        """Nodes running."""
        return [i for i, node in enumerate(self.nodes) if node.store is not None]

    def store(self, i: int) -> Store:
        """Node ``i``'s store (it must be running)."""
        store = self.nodes[i].store
        if store is None:
            raise ValueError(f"node {i} is not running")
        return store

    def user_tables(self, i: int) -> dict[str, list[tuple[Any, ...]]]:
        """Every user table of node ``i`` with its rows, sorted."""

        def read(conn: Any) -> dict[str, list[tuple[Any, ...]]]:
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                    "AND name NOT LIKE '\\_\\_corro%' ESCAPE '\\' "
                    "AND name NOT LIKE 'crsql\\_%' ESCAPE '\\' "
                    "AND name NOT LIKE '%\\_\\_crsql\\_%' ESCAPE '\\' ORDER BY name"
                )
            ]
            return {
                name: sorted(conn.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr)
                for name in names
            }

        return self.store(i).read_sync(read)

    def converged(self) -> bool:
        """Whether every live node holds the same user tables and its bookkeeping has no need
        (no gap, no partial version) for any actor."""
        live = self.live()
        heads: dict[bytes, int] | None = None
        for i in live:
            state = self.store(i).sync_state()
            if state.need or any(state.partial_need.values()):
                return False
            if heads is None:
                heads = state.heads
            elif state.heads != heads:
                return False
        if not live:
            return True
        first = self.user_tables(live[0])
        return all(self.user_tables(i) == first for i in live[1:])

    def trace_hash(self) -> str:
        """sha256 of the trace so far: every datagram sent and every event, with times."""
        return self._hash.hexdigest()

    def report(self, since: float = 0.0, until: float = math.inf) -> ReplicationReport:
        """Propagation of the writes made in [since, until) to the nodes live now (``complete``
        counts the writes every one of them holds), and the traffic of the whole run."""
        live = self.live()
        spreads: list[float] = []
        writes = 0
        for key, when in self.written_at.items():
            if not since <= when < until:
                continue
            writes += 1
            had = self.had_at.get(key, {})
            if all(i in had for i in live):
                spreads.append(max((had[i] for i in live), default=when) - when)
        total = max(1, len(self.written_at))
        s = self.stats
        values: dict[str, float] = {
            "nodes": self.n,
            "live": len(live),
            "writes": writes,
            "complete": len(spreads),
            "bcast_datagrams_per_write_per_node": s["bcast_datagrams"] / total / self.n,
            "bcast_bytes_per_write_per_node": s["bcast_bytes"] / total / self.n,
            "sync_bytes_per_write_per_node": s["sync_bytes"] / total / self.n,
            "swim_bytes": s["swim_bytes"],
            "bad_datagrams": s["bad_datagrams"],
            "sync_rounds": s["sync_rounds"],
            "sync_sessions": s["sync_sessions"],
            "sync_cut": s["sync_cut"],
            "sync_partial_needs": s["sync_partial_needs"],
            "sync_changesets": s["sync_changesets"],
            "sync_bytes": s["sync_bytes"],
        }
        return ReplicationReport(values, Distribution.of(spreads), self.trace_hash())

    # -- actions --------------------------------------------------------------------------------

    def start(self, i: int, bootstrap: Sequence[int]) -> None:
        """Start node ``i`` (again, after a crash) and join through ``bootstrap``."""
        node = self.nodes[i]
        if node.store is not None:
            raise ValueError(f"node {i} is already running")
        node.generation += 1
        gen = node.generation
        if gen > 1:
            self.incarnations[i] += 1
            self.stats["restarts"] += 1
        self.network.crashed.discard(i)
        node.store = Store.open(
            self.paths[i],
            schema_paths=[self.schema_path],
            clock=self.clock_ns,
            site_id=self.sites[i],
        )
        node.swim = Swim(
            actor_id=self.sites[i],
            addr=addr_of(i),
            cluster_id=CLUSTER_ID,
            rng=random.Random(f"{self.seed}/swim/{i}/{gen}"),
            config=self.swim_config,
            incarnation=self.incarnations[i],
        )
        node.bcast = Broadcaster(
            self.broadcast_config, random.Random(f"{self.seed}/bcast/{i}/{gen}")
        )
        node.rng = random.Random(f"{self.seed}/sync/{i}/{gen}")
        node.view = set()
        node.peers = None
        node.queue = []
        node.flush_scheduled = False
        node.tick_at = None
        node.last_sync = {}
        self._record(i, "Start", i, self.incarnations[i])
        if self.sync_enabled:
            self._schedule_sync(i)
        self._run(i, node.swim.join(self.now, [addr_of(b) for b in bootstrap]))

    def start_all(self) -> None:
        """Start every node with the full member list, as after a completed push-pull (the
        cluster forms at once instead of one join at a time, as in ``Simulation.start_all``)."""
        everyone = tuple(
            Rumour(MemberState.ALIVE, NodeId(self.sites[j], addr_of(j)), 0, self.sites[j])
            for j in range(self.n)
        )
        for i in range(self.n):
            self.start(i, [])
        for i in range(self.n):
            core = self.nodes[i].swim
            assert core is not None
            j = 1 if i == 0 else 0
            feed = Packet(CLUSTER_ID, everyone[j].node, 0, Feed(everyone))
            self._run(i, core.handle_datagram(self.now, addr_of(j), feed))

    def crash(self, i: int) -> None:
        """Stop node ``i`` without a word: its store is closed, its queue and timers lost."""
        node = self.nodes[i]
        if node.store is None:
            return
        assert node.swim is not None
        self.incarnations[i] = max(self.incarnations[i], node.swim.incarnation)
        node.store.close()
        node.store = node.swim = node.bcast = None
        node.view = set()
        node.peers = None
        node.queue = []
        self.network.crashed.add(i)
        self.stats["crashes"] += 1
        self._record(i, "Crash", i, self.incarnations[i])

    def restart(self, i: int, bootstrap: Sequence[int] | None = None) -> None:
        """Start crashed node ``i`` again from its file, joining through ``bootstrap`` (default:
        up to three live nodes chosen by the host's seeded generator)."""
        if bootstrap is None:
            live = [j for j in self.live() if j != i]
            bootstrap = self._host_rng.sample(live, min(3, len(live)))
        self.start(i, bootstrap)

    def write(self, i: int, statements: Sequence[Statement]) -> TxResult:
        """Run a local transaction on node ``i`` and broadcast its changeset."""
        node = self.nodes[i]
        store = self.store(i)
        result = store.transaction_sync(statements)
        cs = result.changeset
        if cs is None:
            return result
        key = (cs.actor_id, cs.version)
        self.written_at[key] = self.now
        self.had_at[key] = {i: self.now}
        self.stats["writes"] += 1
        self._record(i, "Write", cs.version, len(cs.changes))
        if self.broadcast_enabled:
            bcast = node.bcast
            assert bcast is not None
            peers = self._peers(i)
            for piece in store.pieces(cs):
                data = encode(piece, cluster_id=CLUSTER_ID)
                self._send_pieces(i, bcast.local(self.now, piece_key(piece), data, peers))
            self._arm(i)
        return result

    def inject(self, src: int, dst: int, data: bytes) -> None:
        """Deliver ``data`` to ``dst`` as a broadcast datagram from ``src``, one link delay
        from now and never lost (to test what a node does with bytes a peer should not send)."""
        self._hash.update(_DATAGRAM.pack(self.now, src, dst, 2))
        self._hash.update(data)
        when = self.now + self._delay()
        self.scheduler.at(when, DELIVERY, self._receive_piece, (dst, data))

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run a scenario ``action`` at virtual time ``when``."""
        self.scheduler.at(when, TIMER, _call, action)

    def run_until(self, t: float) -> None:
        """Advance virtual time to ``t``."""
        self.scheduler.run_until(t)

    def run_until_converged(self, deadline: float, step: float = 1.0) -> float | None:
        """Advance in ``step``s until ``converged``; the time it happened, or None."""
        while self.now < deadline:
            self.run_until(min(deadline, self.now + step))
            if self.converged():
                return self.now
        return None

    def close(self) -> None:
        """Close every open store (the files stay)."""
        for node in self.nodes:
            if node.store is not None:
                node.store.close()
                node.store = None

    def __enter__(self) -> ReplicationSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- broadcast ------------------------------------------------------------------------------

    def _peers(self, i: int) -> list[Peer]:
        node = self.nodes[i]
        if node.peers is None:
            records = self._peer_records
            node.peers = [records[j] for j in sorted(node.view)]
        return node.peers

    def _send_pieces(self, i: int, sends: Sequence[BroadcastSend]) -> None:
        if not sends:
            return
        now = self.scheduler.now
        at = self.scheduler.at
        arrivals = self.network.arrivals
        update = self._hash.update
        receive = self._receive_piece
        size = 0
        last: bytes | None = None
        for send in sends:
            data = send.data
            size += len(data)
            dst = self._index.get(send.addr)
            update(_DATAGRAM.pack(now, i, _NO_NODE if dst is None else dst, 1))
            if data is not last:  # a round sends the same bytes to each of its targets
                update(data)
                last = data
            if dst is None:
                continue
            for delay in arrivals(i, dst):
                at(now + delay, DELIVERY, receive, (dst, data))
        self.stats["bcast_datagrams"] += len(sends)
        self.stats["bcast_bytes"] += size
        self.sent_bytes[i] += size

    def _receive_piece(self, arg: tuple[int, bytes]) -> None:
        dst, data = arg
        node = self.nodes[dst]
        store, bcast = node.store, node.bcast
        if store is None or bcast is None:
            return
        item = self._decode(data)
        if item is None:
            self.stats["bad_datagrams"] += 1
            return
        now = self.scheduler.now
        bookie = store.bookie_snapshot()
        known = is_known(bookie, item)
        refusal = (
            None
            if known
            else broadcast_refusal(
                item, own_actor=store.actor_id, bookie=bookie, is_member=self._by_actor.__contains__
            )
        )
        if refusal is not None:
            self.stats[f"bcast_refused_{refusal}"] += 1
            return
        if bcast.received(now, piece_key(item), data, known):
            self._enqueue(dst, [item])
            self._arm(dst)

    def _decode(self, data: bytes) -> Changeset | EmptyChangeset | None:
        """The changeset in ``data``, or None. Decoding is pure, so equal bytes (the copies of
        one piece reaching many nodes) are decoded once and the result is shared."""
        item = self._decoded.get(data)
        if item is not None:
            return item
        try:
            msg = decode(data, cluster_id=CLUSTER_ID, max_size=MAX_DATAGRAM)
        except DecodeError:
            return None
        if not isinstance(msg, Changeset | EmptyChangeset):
            return None
        if len(self._decoded) >= _DECODE_CACHE:
            self._decoded.clear()
        self._decoded[data] = msg
        return msg

    def _arm(self, i: int) -> None:
        """Make sure the broadcaster's tick runs at its next deadline."""
        node = self.nodes[i]
        if node.bcast is None:
            return
        due = node.bcast.next_deadline()
        if due is not None and (node.tick_at is None or due < node.tick_at):
            node.tick_at = due
            self.scheduler.at(due, TIMER, self._tick, (i, node.generation, due))

    def _tick(self, arg: tuple[int, int, float]) -> None:
        i, generation, due = arg
        node = self.nodes[i]
        if node.bcast is None or generation != node.generation or node.tick_at != due:
            return  # crashed, or superseded by an earlier tick
        node.tick_at = None
        self._send_pieces(i, node.bcast.tick(self.scheduler.now, self._peers(i)))
        self._arm(i)

    # -- apply queue ----------------------------------------------------------------------------

    def _enqueue(self, i: int, items: Sequence[Item]) -> None:
        node = self.nodes[i]
        node.queue.extend(items)
        if not node.flush_scheduled:
            node.flush_scheduled = True
            when = self.scheduler.now + self.apply_interval
            self.scheduler.at(when, TIMER, self._flush, (i, node.generation))

    def _flush(self, arg: tuple[int, int]) -> None:
        i, generation = arg
        node = self.nodes[i]
        if node.store is None or generation != node.generation:
            return
        node.flush_scheduled = False
        items, node.queue = node.queue, []
        result = node.store.apply_sync(items)
        self.stats["applied_batches"] += 1
        self._note_held(i, result)

    def _note_held(self, i: int, result: ApplyResult) -> None:
        now = self.scheduler.now
        for actor, version in result.applied:
            had = self.had_at.get((actor, version))
            if had is not None:
                had.setdefault(i, now)
        for actor, (start, end) in result.cleared:
            for version in range(start, end + 1):
                had = self.had_at.get((actor, version))
                if had is not None:
                    had.setdefault(i, now)

    # -- sync -----------------------------------------------------------------------------------

    def _schedule_sync(self, i: int) -> None:
        node = self.nodes[i]
        wait = jittered_interval(node.rng, *self.sync_interval)
        self.scheduler.at(self.now + wait, TIMER, self._sync_round, (i, node.generation))

    def _delay(self) -> float:
        return self.network.default.delay

    def _both_ways(self, a: int, b: int) -> bool:
        net = self.network
        return net.connected(a, b) and net.connected(b, a)

    def _sync_round(self, arg: tuple[int, int]) -> None:
        i, generation = arg
        node = self.nodes[i]
        if node.store is None or generation != node.generation:
            return
        self._schedule_sync(i)
        candidates = sorted(node.view)
        if not candidates:
            return
        ours = node.store.sync_state()
        missing = {
            self._by_actor[actor]: count
            for actor, count in missing_versions(ours).items()
            if actor in self._by_actor
        }
        peers = choose_peers(candidates, rng=node.rng, missing=missing, last_sync=node.last_sync)
        self.stats["sync_rounds"] += 1
        self._record(i, "SyncRound", len(peers), sum(missing.values()))
        session = _Session(i, generation)
        leg = self._delay()
        for p in peers:
            if self._both_ways(i, p):
                self.scheduler.at(self.now + leg, DELIVERY, self._sync_answer, (session, p))
            else:
                self.stats["sync_cut"] += 1
        self.scheduler.at(self.now + leg + leg, TIMER, self._sync_plan, session)

    def _sync_answer(self, arg: tuple[_Session, int]) -> None:
        """At the server: its sync state, sent back to the client."""
        session, p = arg
        store = self.nodes[p].store
        if store is None or not self._both_ways(session.client, p):
            self.stats["sync_cut"] += 1
            return
        session.theirs[p] = store.sync_state()

    def _sync_plan(self, session: _Session) -> None:
        """At the client, once the answers are in: ask each server for its share."""
        i = session.client
        node = self.nodes[i]
        if node.store is None or session.generation != node.generation:
            return
        theirs = {p: s for p, s in session.theirs.items() if self._both_ways(i, p)}
        self.stats["sync_sessions"] += len(theirs)
        plan = plan_requests(node.store.sync_state(), theirs)
        for p, needs in plan.items():
            node.last_sync[p] = self.now
            self.stats["sync_partial_needs"] += sum(
                isinstance(need, NeedPartial) for _, actor_needs in needs for need in actor_needs
            )
            if needs:
                arg = (i, session.generation, p, dict(needs), Solicited(needs))
                self.scheduler.at(self.now + self._delay(), DELIVERY, self._sync_serve, arg)

    def _sync_serve(self, arg: tuple[int, int, int, dict[bytes, Any], Solicited]) -> None:
        """At the server: stream what the client asked for."""
        i, generation, p, needs, solicited = arg
        store = self.nodes[p].store
        if store is None or not self._both_ways(i, p):
            self.stats["sync_cut"] += 1
            return
        items = list(store.serve_sync(needs))
        size = 0
        for item in items:
            data = encode(item, cluster_id=CLUSTER_ID)
            size += len(data)
            self._hash.update(data)
        self._record(p, "SyncServe", i, len(items))
        out = (i, generation, p, items, size, solicited)
        self.scheduler.at(self.now + self._delay(), DELIVERY, self._sync_receive, out)

    def _sync_receive(self, arg: tuple[int, int, int, list[Item], int, Solicited]) -> None:
        i, generation, p, served, size, solicited = arg
        node = self.nodes[i]
        if node.store is None or generation != node.generation or not self._both_ways(i, p):
            self.stats["sync_cut"] += 1
            return
        items: list[Item] = []
        for item in served:
            parts = solicited.admit(item)
            if not parts:
                self.stats["sync_unsolicited"] += 1
            items += parts
        self.stats["sync_changesets"] += len(items)
        self.stats["sync_bytes"] += size
        self._enqueue(i, items)

    # -- SWIM (as sim/cluster.py) ---------------------------------------------------------------

    def _run(self, i: int, effects: Iterable[Effect]) -> None:
        """Carry out the effects node ``i``'s core returned."""
        now = self.scheduler.now
        at = self.scheduler.at
        for e in effects:
            if type(e) is Send:
                data = encode_packet(e.packet, check=False)
                self.stats["swim_datagrams"] += 1
                self.stats["swim_bytes"] += len(data)
                dst = self._index.get(e.addr)
                self._hash.update(_DATAGRAM.pack(now, i, _NO_NODE if dst is None else dst, 0))
                self._hash.update(data)
                if dst is None:
                    continue
                for delay in self.network.arrivals(i, dst):
                    at(now + delay, DELIVERY, self._deliver, (dst, addr_of(i), e.packet))
            elif type(e) is SetTimer:
                at(now + e.delay, TIMER, self._fire, (i, self.nodes[i].generation, e.token))
            elif type(e) is Notify:
                self._notify(i, e)
            elif type(e) is PushPull:
                self._push_pull(i, e)

    def _deliver(self, arg: tuple[int, Addr, Packet]) -> None:
        dst, src, packet = arg
        core = self.nodes[dst].swim
        if core is not None:
            self._run(dst, core.handle_datagram(self.scheduler.now, src, packet))

    def _fire(self, arg: tuple[int, int, Timer]) -> None:
        i, generation, token = arg
        node = self.nodes[i]
        if node.swim is not None and generation == node.generation:
            self._run(i, node.swim.handle_timer(self.scheduler.now, token))

    def _push_pull(self, i: int, e: PushPull) -> None:
        dst = self._index.get(e.addr)
        self._record(i, "PushPull", _NO_NODE if dst is None else dst, len(e.members))
        if dst is None or not self._both_ways(i, dst):
            return
        arg = (i, self.nodes[i].generation, dst, e.members)
        self.scheduler.at(self.now + self._delay(), DELIVERY, self._push_pull_serve, arg)

    def _push_pull_serve(self, arg: tuple[int, int, int, tuple[Rumour, ...]]) -> None:
        i, generation, dst, members = arg
        core = self.nodes[dst].swim
        if core is None:
            return
        self._run(dst, core.handle_push_pull(self.now, addr_of(i), members))
        answer = (i, generation, dst, core.push_pull_state())
        self.scheduler.at(self.now + self._delay(), DELIVERY, self._push_pull_answer, answer)

    def _push_pull_answer(self, arg: tuple[int, int, int, tuple[Rumour, ...]]) -> None:
        i, generation, dst, members = arg
        node = self.nodes[i]
        if node.swim is not None and generation == node.generation:
            self._run(i, node.swim.handle_push_pull(self.now, addr_of(dst), members))

    def _notify(self, i: int, effect: Notify) -> None:
        event = effect.event
        name = type(event).__name__
        info = getattr(event, "member", None)
        if info is None:
            self._record(i, name, i, self.incarnations[i])
            return
        member = self._index.get(info.addr)
        if member is None:
            return
        self._record(i, name, member, info.incarnation)
        node = self.nodes[i]
        if name in _ALIVE_EVENTS:
            if member not in node.view:
                node.view.add(member)
                node.peers = None
        elif name in _GONE_EVENTS and member in node.view:
            node.view.discard(member)
            node.peers = None

    def _record(self, observer: int, name: str, member: int, detail: int) -> None:
        self._hash.update(f"{self.now!r} {observer} {name} {member} {detail}\n".encode())


def _call(action: Callable[[], None]) -> None:
    action()


__all__ = [
    "EPOCH_NS",
    "ReplicationReport",
    "ReplicationSim",
    "site_of",
]
