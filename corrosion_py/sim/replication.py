"""Whole-cluster replication on the virtual clock: N real stores, SWIM, broadcast and sync.

Rules (what the simulator models, and how; everything else is the real code):

- **The agent's cores, driven on virtual time.** Each node is a real ``Store`` (its own SQLite
  file under ``directory``) and the same sans-IO objects the trio agent drives: SWIM cores under
  the simulators' one SWIM host (sim/swim_host.py), a ``replication.Gossip`` (pieces, decoding,
  claims, dedupe, relays), a ``replication.ApplyQueue`` (bounds, overflow, linger, retries) and
  a ``replication.SyncClient`` (peers, plan, requests, what to believe, deliveries); servers
  answer with ``Store.serve_sync``. The host code here only moves bytes and calls them, as the
  agent does with sockets.
- **Datagrams** (SWIM packets and changeset pieces) go through ``Network.arrivals``: loss,
  jitter, duplication, partitions and crashes apply to each copy. Pieces travel as encoded
  bytes (wire codec, ``CLUSTER_ID``) and are decoded on arrival by each node's core (equal
  bytes are decoded once for the whole run: a cache shared by the nodes, decoding being pure).
- **Streams** (sync sessions and SWIM push-pulls) are lossless, as TCP is, but each leg needs
  both directions connected and both ends running when it happens, else the session ends there
  silently (a refused or cut connection). A leg takes the default link delay. A sync session:
  the client picks its peers at t; each server reads its ``sync_state()`` at t+d; the client
  plans at t+2d with the answers it got; each server serves its needs at t+3d; the client
  delivers what arrives at t+4d, in the batches its session cuts. A sync delivery that does not
  fit the apply queue waits for room, in order (the stream's backpressure).
- **Apply.** The queue's policy says when a batch goes (``apply_interval`` is its linger); the
  batch is applied at once with ``store.apply_sync``, as the agent's apply loop does on a
  worker thread. A crash loses the queue (what it held was never acknowledged).
- **Crashes and restarts.** A crash closes the store and drops the node's cores and queue; its
  pending timers die with its generation. A restart reopens the same file (same actor id,
  bookkeeping reloaded), with a new SWIM core at a higher incarnation joining through live
  nodes, and new gossip, queue and sync client.

Theory of operation: one ``Scheduler`` runs everything in (time, priority, insertion) order.
Every random draw comes from a generator seeded from the run's seed (per node and generation:
SWIM, broadcast, sync; one for the network, one for the host). Stores get the virtual clock
(``EPOCH_NS`` + virtual time) for their HLC and a site id derived from the seed, so the bytes
on the wire are a function of the seed too: ``trace_hash`` (sim/trace.py: every datagram with
its time, sender and receiver, every sync stream's bytes and every event) is equal for equal
seeds.

Why real files and not in-memory stores: the store's readers are separate connections on the
same file (WAL), restarts must reopen what a crash left behind, and a file per node in a
temporary directory is what the agent runs on. The cost is SQLite's, which is the point: a run
measures the replication code as it is, not a stand-in.

Not modelled (the trio shell's concerns): the sync handshake's SyncClock exchange and cluster
id check, the server's concurrency limit, stream timeouts, the broadcast byte budget shared
with SWIM on one socket; sync sessions' bytes are counted, not delayed.

Propagation is measured per write: from the commit on its origin to the time each node first
held the whole version (applied, or known cleared); a write's spread is the latest of those
over the nodes live at report time.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
from collections import Counter, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from corrosion_py.aliases import Statement
from corrosion_py.replication.apply_queue import CORRUPT, TRANSIENT, ApplyQueue
from corrosion_py.replication.chunking import DEFAULT_BUDGET
from corrosion_py.replication.gossip import Gossip
from corrosion_py.replication.plumtree import Peer, Plumtree, PlumtreeConfig, Send
from corrosion_py.replication.sync_client import Session, SyncClient, SyncRound
from corrosion_py.replication.sync_plan import missing_versions
from corrosion_py.sim.cluster import CLUSTER_ID
from corrosion_py.sim.metrics import Distribution
from corrosion_py.sim.network import Link, Network
from corrosion_py.sim.scheduler import DELIVERY, TIMER, Scheduler
from corrosion_py.sim.swim_host import SwimHost, addr_of
from corrosion_py.sim.trace import BROADCAST, INJECTED, Trace
from corrosion_py.store.apply import ApplyResult
from corrosion_py.store.store import ApplyInterrupted, Store, TxResult
from corrosion_py.swim import LAN, MembershipEvent, SwimConfig
from corrosion_py.wire.codec import encode
from corrosion_py.wire.messages import Item, NeedPartial

EPOCH_NS = 1_700_000_000 * 1_000_000_000
"""Wall time of virtual time 0, in ns since the Unix epoch (HLC timestamps need a real-looking
clock)."""


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
    """One running node's parts (None while it is down)."""

    store: Store
    gossip: Gossip
    queue: ApplyQueue
    sync: SyncClient[int]
    waiting: deque[Item] = attrs.Factory(deque)
    """Sync deliveries waiting for room in the queue, oldest first."""
    peers: list[Peer] | None = None
    """The SWIM view as broadcast peers, rebuilt when the view changes."""
    tick_at: float | None = None
    apply_at: float | None = None


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
        broadcast_config: PlumtreeConfig | None = None,
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
        self.broadcast_config = broadcast_config or PlumtreeConfig()
        self.broadcast_enabled = broadcast
        self.sync_enabled = sync
        self.sync_interval = sync_interval
        self.apply_interval = apply_interval
        self.scheduler = Scheduler()
        self.network = Network(random.Random(f"{seed}/network"), link or Link())
        self.trace = Trace()
        self.sites = [site_of(seed, i) for i in range(n)]
        self.swim = SwimHost(
            self.scheduler,
            self.network,
            self.trace,
            actors=self.sites,
            cluster_id=CLUSTER_ID,
            config=swim_config,
            rng_seed=f"{seed}/swim",
            on_event=self._member_event,
            on_send=self._swim_sent,
        )
        self.paths = [self.directory / f"node-{i}.db" for i in range(n)]
        for path in self.paths:
            if path.exists():
                raise ValueError(f"{path} exists: give each run an empty directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.schema_path = self.directory / "schema.sql"
        self.schema_path.write_text(schema_sql)
        self.nodes: list[_Node | None] = [None] * n
        self.stats: Counter[str] = Counter()
        """bcast_datagrams/bytes (sent, lost ones included), swim_datagrams/bytes,
        applied_batches, sync_rounds, sync_sessions (servers that answered), sync_cut (legs
        a partition or a crash cut), sync_partial_needs (NeedPartial requests planned),
        sync_changesets and sync_bytes (received by clients), sync_unsolicited, writes,
        crashes, restarts. The gossip cores' own counters: ``gossip_stats()``."""
        self.sent_bytes = [0] * n
        """Broadcast bytes each node sent (all generations)."""
        self.written_at: dict[WriteKey, float] = {}
        self.had_at: dict[WriteKey, dict[int, float]] = {}
        """Per write, when each node first held all of it."""
        self._by_actor: dict[bytes, int] = {s: i for i, s in enumerate(self.sites)}
        self._peer_records = [Peer(self.sites[i], addr_of(i)) for i in range(n)]
        self._host_rng = random.Random(f"{seed}/host")
        self._retired_gossip: Counter[str] = Counter()

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
        return [i for i, node in enumerate(self.nodes) if node is not None]

    def store(self, i: int) -> Store:
        """Node ``i``'s store (it must be running)."""
        return self._node(i).store

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
        return self.trace.hexdigest()

    def gossip_stats(self) -> Counter[str]:
        """The gossip cores' counters (``Gossip.stats``) over every node and generation."""
        out = Counter(self._retired_gossip)
        for node in self.nodes:
            if node is not None:
                out.update(node.gossip.stats)
        return out

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
        gossip = self.gossip_stats()
        bad = sum(gossip[f"dropped_{why}"] for why in ("malformed", "unknown", "wrong_cluster"))
        values: dict[str, float] = {
            "nodes": self.n,
            "live": len(live),
            "writes": writes,
            "complete": len(spreads),
            "bcast_datagrams_per_write_per_node": s["bcast_datagrams"] / total / self.n,
            "bcast_bytes_per_write_per_node": s["bcast_bytes"] / total / self.n,
            "sync_bytes_per_write_per_node": s["sync_bytes"] / total / self.n,
            "swim_bytes": s["swim_bytes"],
            "bad_datagrams": bad,
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
        if self.nodes[i] is not None:
            raise ValueError(f"node {i} is already running")
        gen = self.swim.generation[i] + 1  # the generation this start begins
        if gen > 1:
            self.stats["restarts"] += 1
        store = Store.open(
            self.paths[i],
            schema_paths=[self.schema_path],
            clock=self.clock_ns,
            site_id=self.sites[i],
        )
        tree = Plumtree(
            self.broadcast_config,
            random.Random(f"{self.seed}/bcast/{i}/{gen}"),
            encode=functools.partial(encode, cluster_id=CLUSTER_ID, check=False),
            max_payload=DEFAULT_BUDGET,
        )
        gossip = Gossip(
            tree,
            cluster_id=CLUSTER_ID,
            own_actor=store.actor_id,
            peers=functools.partial(self._peers, i),
            booked=store.booked,
            is_member=self._by_actor.__contains__,
        )
        sync = SyncClient[int](random.Random(f"{self.seed}/sync/{i}/{gen}"), self.sync_interval)
        self.nodes[i] = _Node(store, gossip, ApplyQueue(linger=self.apply_interval), sync)
        self.swim.start(i, bootstrap)
        if self.sync_enabled:
            self._schedule_sync(i)

    def start_all(self) -> None:
        """Start every node with the full member list, as after a completed push-pull
        (``SwimHost.introduce_all`` says why)."""
        for i in range(self.n):
            self.start(i, [])
        self.swim.introduce_all()

    def crash(self, i: int) -> None:
        """Stop node ``i`` without a word: its store is closed, its queue and timers lost."""
        node = self.nodes[i]
        if node is None:
            return
        node.store.close()
        self._retired_gossip.update(node.gossip.stats)
        self.nodes[i] = None
        self.swim.stop(i)
        self.stats["crashes"] += 1
        self.trace.event(self.now, i, "Crash", i, self.swim.incarnations[i])

    def restart(self, i: int, bootstrap: Sequence[int] | None = None) -> None:
        """Start crashed node ``i`` again from its file, joining through ``bootstrap`` (default:
        up to three live nodes chosen by the host's seeded generator)."""
        if bootstrap is None:
            live = [j for j in self.live() if j != i]
            bootstrap = self._host_rng.sample(live, min(3, len(live)))
        self.start(i, bootstrap)

    def write(self, i: int, statements: Sequence[Statement]) -> TxResult:
        """Run a local transaction on node ``i`` and broadcast its changeset."""
        node = self._node(i)
        result = node.store.transaction_sync(statements)
        cs = result.changeset
        if cs is None:
            return result
        key = (cs.actor_id, cs.version)
        self.written_at[key] = self.now
        self.had_at[key] = {i: self.now}
        self.stats["writes"] += 1
        self.trace.event(self.now, i, "Write", cs.version, len(cs.changes))
        if self.broadcast_enabled:
            node.gossip.local(self.now, cs)
            self._send_pieces(i, node.gossip.flush())
            self._arm(i)
        return result

    def inject(self, src: int, dst: int, data: bytes) -> None:
        """Deliver ``data`` to ``dst`` as a broadcast datagram from ``src``, one link delay
        from now and never lost (to test what a node does with bytes a peer should not send)."""
        self.trace.datagram(self.now, src, dst, INJECTED, data)
        when = self.now + self._delay()
        self.scheduler.at(when, DELIVERY, self._receive_piece, (src, dst, data))

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
        for i, node in enumerate(self.nodes):
            if node is not None:
                node.store.close()
                self.nodes[i] = None

    def __enter__(self) -> ReplicationSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _node(self, i: int) -> _Node:
        node = self.nodes[i]
        if node is None:
            raise ValueError(f"node {i} is not running")
        return node

    def _running(self, i: int, generation: int) -> _Node | None:
        """Node ``i`` if it still runs the generation an event was scheduled in."""
        node = self.nodes[i]
        return node if node is not None and generation == self.swim.generation[i] else None

    # -- broadcast ------------------------------------------------------------------------------

    def _peers(self, i: int) -> list[Peer]:
        node = self._node(i)
        if node.peers is None:
            records = self._peer_records
            node.peers = [records[j] for j in sorted(self.swim.views[i])]
        return node.peers

    def _send_pieces(self, i: int, sends: Sequence[Send]) -> None:
        if not sends:
            return
        now = self.scheduler.now
        at = self.scheduler.at
        arrivals = self.network.arrivals
        index = self.swim.index
        trace = self.trace
        receive = self._receive_piece
        size = 0
        last: bytes | None = None
        for send in sends:
            data = send.data
            size += len(data)
            dst = index.get(send.addr)
            if data is last:  # a round sends the same bytes to each of its targets
                trace.datagram_again(now, i, dst, BROADCAST)
            else:
                trace.datagram(now, i, dst, BROADCAST, data)
                last = data
            if dst is None:
                continue
            for delay in arrivals(i, dst):
                at(now + delay, DELIVERY, receive, (i, dst, data))
        self.stats["bcast_datagrams"] += len(sends)
        self.stats["bcast_bytes"] += size
        self.sent_bytes[i] += size

    def _receive_piece(self, arg: tuple[int, int, bytes]) -> None:
        src, dst, data = arg
        node = self.nodes[dst]
        if node is None:
            return
        items = node.gossip.datagram(self.scheduler.now, addr_of(src), data)
        if items:
            self._enqueue(dst, items)
        self._send_pieces(dst, node.gossip.flush())
        self._arm(dst)

    def _arm(self, i: int) -> None:
        """Make sure the gossip core's tick runs at its next deadline."""
        node = self._node(i)
        due = node.gossip.next_deadline()
        if due is not None and (node.tick_at is None or due < node.tick_at):
            node.tick_at = due
            self.scheduler.at(due, TIMER, self._tick, (i, self.swim.generation[i], due))

    def _tick(self, arg: tuple[int, int, float]) -> None:
        i, generation, due = arg
        node = self._running(i, generation)
        if node is None or node.tick_at != due:
            return  # crashed, or superseded by an earlier tick
        node.tick_at = None
        node.gossip.tick(self.scheduler.now)
        self._send_pieces(i, node.gossip.flush())
        self._arm(i)

    # -- apply queue ----------------------------------------------------------------------------

    def _enqueue(self, i: int, items: Sequence[Item], *, waiting: bool = False) -> None:
        """Broadcast puts (never wait), or sync deliveries (``waiting``: in order, for room)."""
        node = self._node(i)
        if waiting:
            node.waiting.extend(items)
            self._admit_waiting(node)
        else:
            node.queue.offer(self.scheduler.now, items)
        self._arm_apply(i)

    def _admit_waiting(self, node: _Node) -> None:
        queue, waiting, now = node.queue, node.waiting, self.scheduler.now
        while waiting and queue.has_room(waiting[0]):
            queue.push(now, waiting.popleft())

    def _arm_apply(self, i: int) -> None:
        """Make sure the apply tick runs at the queue's next deadline."""
        node = self._node(i)
        due = node.queue.next_deadline()
        if due is not None and (node.apply_at is None or due < node.apply_at):
            node.apply_at = due
            self.scheduler.at(due, TIMER, self._apply, (i, self.swim.generation[i], due))

    def _apply(self, arg: tuple[int, int, float]) -> None:
        i, generation, due = arg
        node = self._running(i, generation)
        if node is None or node.apply_at != due:
            return
        node.apply_at = None
        now = self.scheduler.now
        batch = node.queue.tick(now)
        if batch is not None:
            self._admit_waiting(node)  # the batch left room
            try:
                result = node.store.apply_sync(batch)
            except ApplyInterrupted as fault:
                self._note_held(i, fault.done)
                node.queue.failed(now, TRANSIENT if fault.transient else CORRUPT, fault.rest)
            else:
                node.queue.applied(now)
                self._note_held(i, result)
            self.stats["applied_batches"] += 1
            self._admit_waiting(node)
        self._arm_apply(i)

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
        wait = self._node(i).sync.next_interval()
        self.scheduler.at(self.now + wait, TIMER, self._sync_round, (i, self.swim.generation[i]))

    def _delay(self) -> float:
        return self.network.default.delay

    def _both_ways(self, a: int, b: int) -> bool:
        net = self.network
        return net.connected(a, b) and net.connected(b, a)

    def _sync_round(self, arg: tuple[int, int]) -> None:
        i, generation = arg
        node = self._running(i, generation)
        if node is None:
            return
        self._schedule_sync(i)
        candidates = sorted(self.swim.views[i])
        if not candidates:
            return
        by_actor = self._by_actor
        missing = {
            by_actor[actor]: count
            for actor, count in missing_versions(node.store.sync_state()).items()
            if actor in by_actor
        }
        peers = node.sync.choose(candidates, missing)
        self.stats["sync_rounds"] += 1
        self.trace.event(self.now, i, "SyncRound", len(peers), sum(missing.values()))
        sync_round = node.sync.round(peers)
        leg = self._delay()
        for p in peers:
            if self._both_ways(i, p):
                arg2 = (i, generation, sync_round, p)
                self.scheduler.at(self.now + leg, DELIVERY, self._sync_answer, arg2)
            else:
                self.stats["sync_cut"] += 1
        self.scheduler.at(self.now + 2 * leg, TIMER, self._sync_plan, (i, generation, sync_round))

    def _sync_answer(self, arg: tuple[int, int, SyncRound[int], int]) -> None:
        """At the server: its sync state, sent back to the client."""
        i, _, sync_round, p = arg
        server = self.nodes[p]
        if server is None or not self._both_ways(i, p):
            self.stats["sync_cut"] += 1
            return
        sync_round.answered(p, server.store.sync_state())

    def _sync_plan(self, arg: tuple[int, int, SyncRound[int]]) -> None:
        """At the client, once the answers are in: ask each server for its share."""
        i, generation, sync_round = arg
        node = self._running(i, generation)
        if node is None:
            return
        sessions = sync_round.plan(node.store.sync_state())
        self.stats["sync_sessions"] += len(sessions)
        for p, session in sessions.items():
            self.stats["sync_partial_needs"] += sum(
                isinstance(need, NeedPartial) for _, needs in session.needs for need in needs
            )
            if session.needs:
                arg2 = (i, generation, p, session)
                self.scheduler.at(self.now + self._delay(), DELIVERY, self._sync_serve, arg2)
            else:
                node.sync.completed(self.now, p)

    def _sync_serve(self, arg: tuple[int, int, int, Session]) -> None:
        """At the server: stream what the client asked for."""
        i, generation, p, session = arg
        server = self.nodes[p]
        if server is None or not self._both_ways(i, p):
            self.stats["sync_cut"] += 1
            return
        served = []
        for item in server.store.serve_sync(dict(session.needs)):
            data = encode(item, cluster_id=CLUSTER_ID)
            self.trace.data(data)
            served.append((item, len(data)))
        self.trace.event(self.now, p, "SyncServe", i, len(served))
        out = (i, generation, p, session, served)
        self.scheduler.at(self.now + self._delay(), DELIVERY, self._sync_receive, out)

    def _sync_receive(self, arg: tuple[int, int, int, Session, list[tuple[Item, int]]]) -> None:
        """At the client: believe and deliver what arrived, as the session says."""
        i, generation, p, session, served = arg
        node = self._running(i, generation)
        if node is None or not self._both_ways(i, p):
            self.stats["sync_cut"] += 1
            return
        delivered = 0
        for item, size in served:
            self.stats["sync_bytes"] += size
            batch = session.receive(item, size)
            if batch:
                self._enqueue(i, batch, waiting=True)
                delivered += len(batch)
        rest = session.finish()
        if rest:
            self._enqueue(i, rest, waiting=True)
            delivered += len(rest)
        self.stats["sync_changesets"] += delivered
        self.stats["sync_unsolicited"] += session.unsolicited
        node.sync.completed(self.now, p)

    # -- the SWIM host's reports ----------------------------------------------------------------

    def _swim_sent(self, i: int, size: int) -> None:
        self.stats["swim_datagrams"] += 1
        self.stats["swim_bytes"] += size

    def _member_event(self, i: int, event: MembershipEvent, member: int | None) -> None:
        node = self.nodes[i]
        if member is not None and node is not None:
            node.peers = None  # the view may have changed


def _call(action: Callable[[], None]) -> None:
    action()


__all__ = [
    "EPOCH_NS",
    "ReplicationReport",
    "ReplicationSim",
    "site_of",
]
