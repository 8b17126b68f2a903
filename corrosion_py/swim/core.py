"""The SWIM + Lifeguard state machine: sans-IO, one object per node.

Everything that decides *when* something happens lives in this file; *whether* a rumour wins
lives in members.py, the suspicion timer's arithmetic in suspicion.py, local health in
awareness.py, what to piggyback in rumours.py. This file knows nothing of sockets or trio: the
host passes ``now`` (float seconds, any origin) and a seeded ``random.Random``, hands in packets
and due timers, and carries out the returned effects (events.py).

Theory of operation:

- **Probe round** (every probe_interval · (LHM score + 1)): judge the previous probe, then ping
  the next member of the shuffled round-robin. After probe_timeout without an ack, ask
  ``indirect_checks`` random alive members to ping it for us (PingReq); each relay answers Ack if
  the target answered, else Nack after 0.8 · min(probe_timeout, probe_interval - probe_timeout),
  so the nack lands inside our indirect window. At the next round, no ack means the target
  becomes suspect at the incarnation it had when probed, and our LHM worsens by one per missing
  nack (by one if no relay was asked); an ack improves it by one.
- **Buddy system**: every packet to a member we hold as suspect, dead or left carries our rumour
  about it first, so it learns of the accusation at once and refutes.
- **Refutation**: a suspect, dead or left rumour about this node at incarnation >= ours, or an
  alive rumour above ours (a restarted node learning its old incarnation), makes us jump to
  that incarnation + 1 and spread ``alive``; our LHM worsens by one. A leaving node does not
  refute.
- **Suspicion**: a suspect gets a Lifeguard timer (suspicion.py); suspect rumours from new
  sources at the same incarnation confirm it (shortening the timer, re-gossiped); the timer
  token carries incarnation and serial, so a timer from an older suspicion is stale.
- **Dissemination**: every packet is filled, up to max_packet_size, with queued rumours
  (rumours.py); a gossip tick sends queued rumours to ``gossip_nodes`` random members (live, or
  dead for less than gossip_to_the_dead_time, who may refute).
- **Headers**: every packet names its sender and the sender's incarnation; that is handled as an
  alive rumour from the member itself, which is how members are first learned.
- **Join**: ``join(now, addrs)`` sends Join to every bootstrap address and repeats with doubling
  waits until a Feed (member list) arrives. A Feed is merged as memberlist merges push-pull
  state: a remote dead becomes suspect here, so a live member gets the chance to refute. The
  bootstrap node puts the joiner's own record first, so a restarted node learns its old
  incarnation and comes back above it. ``join(now, [])`` starts a new cluster.
- **Push-pull**: every push_pull_interval the node exchanges its full member list with one
  random alive member, and every reconnect_interval with one random member it holds dead (serf's
  reconnect: after a partition both sides hold each other dead, and gossip alone would never
  cross again). Lists travel over a stream (the ``PushPull`` effect, carried out by the host);
  the first Feed of a join is followed by one at once, since a Feed holds one packet's worth.
- **Lifeguard off** (``config.lifeguard = False``): no awareness, no nacks, no buddy rumour,
  suspicion timeout fixed at its minimum: plain SWIM, kept only to measure Lifeguard against.
- **Leave**: ``leave(now)`` spreads a ``left`` rumour (which beats alive and suspect at the same
  incarnation), stops probing, and keeps answering and gossiping until that rumour is spent or
  leave_timeout passes, then reports ``LeaveComplete``. Others report MemberLeft, never down.
- **Bad input**: packets for another cluster, from our own actor id, or that do not decode are
  dropped and counted in ``stats``; nothing a peer sends raises.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from corrosion_py.addr import Addr
from corrosion_py.swim.awareness import Awareness
from corrosion_py.swim.events import (
    Effect,
    GossipTick,
    Joined,
    JoinRetry,
    LeaveComplete,
    LeaveDone,
    MemberDown,
    MemberInfo,
    MemberLeft,
    MemberRecovered,
    MemberRejoined,
    MembershipEvent,
    MemberSuspect,
    MemberUp,
    Notify,
    ProbeTick,
    ProbeTimeout,
    PushPull,
    PushPullTick,
    ReconnectTick,
    RelayTimeout,
    RemoveDown,
    Send,
    SetTimer,
    SuspectTimeout,
    Timer,
)
from corrosion_py.swim.members import Member, MemberList, supersedes
from corrosion_py.swim.presets import LAN, SwimConfig
from corrosion_py.swim.rumours import RumourQueue
from corrosion_py.swim.suspicion import Suspicion
from corrosion_py.wire.errors import DecodeError, UnknownMessageError
from corrosion_py.wire.layout import ACTOR_ID_LEN
from corrosion_py.wire.swim import (
    MAX_RUMOURS,
    RUMOURS_HEADER_SLACK,
    U32_MAX,
    Ack,
    Body,
    Feed,
    Gossip,
    Join,
    MemberState,
    Nack,
    NodeId,
    Packet,
    Ping,
    PingReq,
    Rumour,
    decode_packet,
    packet_size,
    rumour_size,
)

if TYPE_CHECKING:
    import random

ALIVE, SUSPECT, DEAD, LEFT = MemberState

RELAY_NACK_FRACTION = 0.8
"""A relay nacks after this fraction of min(probe_timeout, probe_interval - probe_timeout)."""


@attrs.define
class _Probe:
    """The probe of the current round."""

    seq: int
    target: bytes
    incarnation: int
    acked: bool = False
    relays: int = 0
    nacks: int = 0


@attrs.frozen
class _Relay:
    """A ping we send on behalf of ``requester``, who waits for Ack/Nack(``seq``)."""

    requester: Addr
    seq: int


class Swim:
    """One node's membership protocol. Every input method returns the effects to carry out."""

    def __init__(
        self,
        *,
        actor_id: bytes,
        addr: Addr,
        cluster_id: int,
        rng: random.Random,
        config: SwimConfig = LAN,
        incarnation: int = 0,
    ) -> None:
        if type(actor_id) is not bytes or len(actor_id) != ACTOR_ID_LEN:
            raise ValueError(f"actor_id must be {ACTOR_ID_LEN} bytes")
        self.node = NodeId(actor_id, addr)
        self._actor = actor_id
        self.cluster_id = cluster_id
        self.config = config
        self.incarnation = incarnation
        self.stats: Counter[str] = Counter()
        """Counters of dropped input and protocol facts (refutations, degraded timeouts...)."""
        self.awareness = Awareness(config.awareness_max_multiplier if config.lifeguard else 1)
        self._rng = rng
        self._members = MemberList()
        self._rumours = RumourQueue(config.max_rumours)
        self._out: list[Effect] = []
        self._started = False
        self._joined = True
        self._bootstrap: tuple[Addr, ...] = ()
        self._join_attempt = 0
        self._join_retries = 0
        self._leaving = False
        self._done = False
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        self._seq = 0
        self._serial = 0
        self._limit_n = self._limit = 0
        self._gossip_size = (-1, 0)  # (incarnation, size)
        self._targets: tuple[list[Member], list[Member], int] = ([], [], -1)

    # -- views ----------------------------------------------------------------------------------

    @property
    def actor_id(self) -> bytes:
        """This node's actor id."""
        return self.node.actor_id

    def members(self) -> list[MemberInfo]:
        """Every other member this node knows, in any state, in the order they were learned."""
        return [m.info() for m in self._members.all()]

    @property
    def changes(self) -> int:
        """Bumped whenever the set of live members (alive or suspect) or an address changes:
        a list built from ``members()`` stays valid while this stays put."""
        return self._members.changes

    def member(self, actor_id: bytes) -> MemberInfo | None:
        """What this node holds about ``actor_id``."""
        m = self._members.get(actor_id)
        return m.info() if m else None

    def cluster_size(self) -> int:
        """Live members, this node included: the n of the scaling formulas."""
        return 1 + self._members.live_count

    @property
    def joined(self) -> bool:
        """Whether a member list has arrived (always true for a node that founded a cluster)."""
        return self._joined

    @property
    def rumours_queued(self) -> int:
        """Rumours waiting to be sent (bounded by max_rumours)."""
        return len(self._rumours)

    # -- commands -------------------------------------------------------------------------------

    def join(self, now: float, addrs: Sequence[Addr]) -> list[Effect]:
        """Start the protocol and join through ``addrs`` (none: found a new cluster)."""
        if self._leaving:
            return []
        if not self._started:
            self._started = True
            self._rumours.push(self._self_rumour(ALIVE))
            self._timer(self._rng.uniform(0, self.config.probe_interval), ProbeTick())
            self._timer(self.config.gossip_interval, GossipTick())
            self._timer(self._rng.uniform(0, self.config.push_pull_interval), PushPullTick())
            self._timer(self._rng.uniform(0, self.config.reconnect_interval), ReconnectTick())
        self._bootstrap = tuple(a for a in addrs if a != self.node.addr)
        if self._bootstrap:
            self._joined = False
            self._join_retries = 0
            self._send_join()
        return self._flush()

    def leave(self, now: float) -> list[Effect]:
        """Leave gracefully: tell the cluster, linger until told, then ``LeaveComplete``."""
        if self._leaving or not self._started:
            return []
        self._leaving = True
        self._rumours.push(self._self_rumour(LEFT))
        self._gossip(now)
        self._timer(self.config.leave_timeout, LeaveDone())
        return self._flush()

    # -- inputs ---------------------------------------------------------------------------------

    def handle_bytes(self, now: float, addr: Addr, data: bytes) -> list[Effect]:
        """Decode a datagram and handle it; undecodable input is dropped and counted."""
        try:
            packet = decode_packet(data)
        except UnknownMessageError:
            self.stats["dropped_unknown_type"] += 1
            return []
        except DecodeError:
            self.stats["dropped_malformed"] += 1
            return []
        return self.handle_datagram(now, addr, packet)

    def handle_datagram(self, now: float, addr: Addr, packet: Packet) -> list[Effect]:
        """Handle a decoded packet that arrived from ``addr``."""
        if self._done or not self._started:
            self.stats["dropped_not_running"] += 1
            return []
        if packet.cluster_id != self.cluster_id:
            self.stats["dropped_wrong_cluster"] += 1
            return []
        sender = packet.sender
        if sender.actor_id == self._actor:
            self.stats["dropped_from_self"] += 1
            return []
        self.stats["packets_received"] += 1
        get = self._members.get
        peer = get(sender.actor_id)
        if peer is None or packet.incarnation > peer.incarnation:  # else the header changes nothing
            self._apply(now, Rumour(ALIVE, sender, packet.incarnation, sender.actor_id))
        for r in packet.rumours:
            # Most piggybacked rumours are old news: skip those that cannot change anything
            # without the full rules. By the table in members.py, a rumour at an older
            # incarnation never wins, and at the same incarnation only a worse state does (or a
            # suspect meeting a suspect, which may confirm it).
            m = get(r.node.actor_id)
            if m is not None:
                inc, held = r.incarnation, m.incarnation
                if inc < held:
                    continue
                if inc == held:
                    state = r.state
                    if state < m.state or (state is m.state and state is not SUSPECT):
                        continue
            self._apply(now, r)
        body = packet.body
        if type(body) is Gossip:  # by far the most common body: checked first, by exact type
            pass
        elif type(body) is Ping:
            if body.target == self._actor:
                self._send(addr, Ack(body.seq), get(sender.actor_id))
            else:
                self.stats["dropped_misdirected_ping"] += 1
        elif type(body) is Ack:
            self._on_ack(body.seq)
        elif type(body) is PingReq:
            self._on_ping_req(addr, body)
        elif type(body) is Nack:
            if self._probe is not None and self._probe.seq == body.seq:
                self._probe.nacks = min(self._probe.relays, self._probe.nacks + 1)
        elif type(body) is Join:
            self._send_feed(addr, sender.actor_id)
        elif type(body) is Feed:
            self._on_feed(now, addr, body)
        return self._flush()

    def handle_timer(self, now: float, token: Timer) -> list[Effect]:
        """Handle a timer set earlier; stale tokens do nothing."""
        if self._done:
            return []
        if isinstance(token, ProbeTick):
            self._probe_tick(now)
        elif isinstance(token, ProbeTimeout):
            self._probe_timeout(token.seq)
        elif isinstance(token, RelayTimeout):
            relay = self._relays.pop(token.seq, None)
            if relay is not None and self.config.lifeguard:
                self._send(relay.requester, Nack(relay.seq), None)
        elif isinstance(token, SuspectTimeout):
            self._suspect_timeout(now, token)
        elif isinstance(token, GossipTick):
            self._gossip(now)
            if self._leaving and self._self_rumour(LEFT) not in self._rumours:
                self._finish_leave()
            else:
                self._timer(self.config.gossip_interval, GossipTick())
        elif isinstance(token, JoinRetry):
            if not self._joined and token.attempt == self._join_attempt and not self._leaving:
                self._send_join()
        elif isinstance(token, RemoveDown):
            m = self._members.get(token.actor_id)
            if (
                m is not None
                and m.state in (DEAD, LEFT)
                and (m.incarnation, m.state_change) == (token.incarnation, token.state_change)
            ):
                self._members.remove(token.actor_id)
        elif isinstance(token, LeaveDone):
            self._finish_leave()
        elif isinstance(token, PushPullTick):
            self._push_pull_with([m for m in self._members.live() if m.state is ALIVE])
            self._timer(self.config.push_pull_interval, PushPullTick())
        elif isinstance(token, ReconnectTick):
            self._push_pull_with([m for m in self._members.all() if m.state is DEAD])
            self._timer(self.config.reconnect_interval, ReconnectTick())
        return self._flush()

    def push_pull_state(self) -> tuple[Rumour, ...]:
        """This node's full member list for a push-pull: itself first, then every member."""
        own = self._self_rumour(LEFT if self._leaving else ALIVE)
        return (own, *(m.rumour() for m in self._members.all()))

    def handle_push_pull(self, now: float, addr: Addr, members: Sequence[Rumour]) -> list[Effect]:
        """Merge a peer's full member list (either side of a push-pull). Merged like a Feed:
        a remote dead becomes suspect here, so a live member gets the chance to refute."""
        if self._done or not self._started:
            self.stats["dropped_not_running"] += 1
            return []
        self.stats["push_pulls"] += 1
        self._on_feed(now, addr, Feed(tuple(members)))
        return self._flush()

    # -- membership rules -----------------------------------------------------------------------

    def _apply(self, now: float, r: Rumour) -> None:
        """Apply one rumour (a header, a piggybacked rumour or a feed entry)."""
        if r.node.actor_id == self._actor:
            self._about_self(r)
            return
        m = self._members.get(r.node.actor_id)
        if m is None:
            if r.state is ALIVE:
                self._add(now, r)
            return
        if r.state is SUSPECT and m.state is SUSPECT and r.incarnation == m.incarnation:
            self._confirm(now, m, r.source)
        elif supersedes(r.state, r.incarnation, m.state, m.incarnation):
            self._change(now, m, r)

    def _about_self(self, r: Rumour) -> None:
        if self._leaving:
            return
        accused = r.state is not ALIVE and r.incarnation >= self.incarnation
        if accused or r.incarnation > self.incarnation:
            self.incarnation = r.incarnation + 1
            self.awareness.apply(1)
            self.stats["refutations"] += 1
            self._rumours.push(self._self_rumour(ALIVE))

    def _add(self, now: float, r: Rumour) -> None:
        if len(self._members) >= self.config.max_members:
            victim = self._members.evictable()
            if victim is None:
                self.stats["dropped_new_member"] += 1
                return
            self._members.remove(victim.node.actor_id)
        m = Member(r.node, r.incarnation, ALIVE, r.node.actor_id, now)
        self._members.add(m, self._rng)
        m.adopt(r)
        self._rumours.push(m.rumour())
        self._notify(MemberUp(m.info()))

    def _change(self, now: float, m: Member, r: Rumour) -> None:
        """Move ``m`` to the rumour's state (precedence already checked) and spread it."""
        old = m.state
        if r.state is ALIVE and m.node != r.node:
            m.node = r.node  # only the member itself moves its address, at a new incarnation
            self._members.changes += 1
        self._members.set_state(m, r.state)
        m.incarnation, m.source, m.state_change = r.incarnation, r.source, now
        m.suspicion = None
        m.adopt(r)
        self._rumours.push(m.rumour())
        event: MembershipEvent | None = None
        if r.state is ALIVE:
            if old is SUSPECT:
                event = MemberRecovered(m.info())
            elif old in (DEAD, LEFT):
                event = MemberRejoined(m.info())
        elif r.state is SUSPECT:
            self._start_suspicion(now, m)
            event = MemberSuspect(m.info()) if old is ALIVE else None
        else:
            event = (MemberLeft if r.state is LEFT else MemberDown)(m.info())
            token = RemoveDown(m.node.actor_id, m.incarnation, now)
            self._timer(self.config.remove_down_after, token)
        if event is not None:
            self._notify(event)

    def _start_suspicion(self, now: float, m: Member) -> None:
        n = self.cluster_size()
        low, high = self.config.suspicion_timeouts(n)
        k = self.config.expected_confirmations(n)
        m.suspicion = Suspicion(start=now, accuser=m.source, k=k, low=low, high=high)
        self.stats["suspicions"] += 1
        self._arm_suspicion(now, m)

    def _arm_suspicion(self, now: float, m: Member) -> None:
        """(Re)set the suspicion timer; earlier tokens of this member go stale."""
        assert m.suspicion is not None
        self._serial += 1
        m.suspicion_serial = self._serial
        token = SuspectTimeout(m.node.actor_id, m.incarnation, self._serial)
        self._timer(max(0.0, m.suspicion.deadline - now), token)

    def _confirm(self, now: float, m: Member, source: bytes) -> None:
        if m.suspicion is not None and m.suspicion.confirm(source):
            self._rumours.push(Rumour(SUSPECT, m.node, m.incarnation, source))
            self._arm_suspicion(now, m)

    def _suspect_timeout(self, now: float, token: SuspectTimeout) -> None:
        m = self._members.get(token.actor_id)
        if (
            m is None
            or m.state is not SUSPECT
            or m.incarnation != token.incarnation
            or m.suspicion_serial != token.serial
            or m.suspicion is None
        ):
            return
        if m.suspicion.confirmations < m.suspicion.k:
            self.stats["degraded_timeout"] += 1
        self._change(now, m, Rumour(DEAD, m.node, m.incarnation, self.actor_id))

    # -- probing --------------------------------------------------------------------------------

    def _probe_tick(self, now: float) -> None:
        if self._leaving:
            return
        self._judge_probe(now)
        target = self._members.next_probe_target(self._rng)
        if target is not None:
            seq = self._next_seq()
            self._probe = _Probe(seq, target.node.actor_id, target.incarnation)
            self._send(target.node.addr, Ping(seq, target.node.actor_id), target)
            self._timer(self.config.probe_timeout, ProbeTimeout(seq))
        if self.awareness.score > 0:
            self.stats["degraded_probe"] += 1
        self._timer(self.awareness.scale(self.config.probe_interval), ProbeTick())

    def _judge_probe(self, now: float) -> None:
        probe, self._probe = self._probe, None
        if probe is None:
            return
        if probe.acked:
            self.awareness.apply(-1)
            return
        self.awareness.apply(probe.relays - probe.nacks if probe.relays else 1)
        m = self._members.get(probe.target)
        if m is not None:
            self._apply(now, Rumour(SUSPECT, m.node, probe.incarnation, self.actor_id))

    def _probe_timeout(self, seq: int) -> None:
        probe = self._probe
        if probe is None or probe.seq != seq or probe.acked:
            return
        target = self._members.get(probe.target)
        if target is None:
            return
        candidates = [
            m for m in self._members.live() if m.state is ALIVE and m.node.actor_id != probe.target
        ]
        relays = self._rng.sample(candidates, min(self.config.indirect_checks, len(candidates)))
        probe.relays = len(relays)
        for relay in relays:
            self._send(relay.node.addr, PingReq(seq, target.node), relay)

    def _on_ack(self, seq: int) -> None:
        relay = self._relays.pop(seq, None)
        if relay is not None:
            self._send(relay.requester, Ack(relay.seq), None)
        elif self._probe is not None and self._probe.seq == seq:
            self._probe.acked = True

    def _on_ping_req(self, requester: Addr, req: PingReq) -> None:
        if len(self._relays) >= self.config.max_relays:
            self.stats["dropped_ping_req"] += 1
            return
        seq = self._next_seq()
        self._relays[seq] = _Relay(requester, req.seq)
        target = self._members.get(req.target.actor_id)
        self._send(req.target.addr, Ping(seq, req.target.actor_id), target)
        cfg = self.config
        window = min(cfg.probe_timeout, cfg.probe_interval - cfg.probe_timeout)
        self._timer(RELAY_NACK_FRACTION * window, RelayTimeout(seq))

    # -- join, gossip, leave --------------------------------------------------------------------

    def _send_join(self) -> None:
        for addr in self._bootstrap:
            self._send(addr, Join(), None)
        cfg = self.config
        delay = min(cfg.join_retry_interval * 2**self._join_retries, cfg.join_retry_max)
        self._join_retries += 1
        self._join_attempt += 1
        self._timer(delay, JoinRetry(self._join_attempt))

    def _send_feed(self, addr: Addr, joiner: bytes) -> None:
        """Answer Join: the joiner's own record first, then as many others as fit."""
        base = Packet(self.cluster_id, self.node, self.incarnation, Feed(()))
        budget = self.config.max_packet_size - packet_size(base) - RUMOURS_HEADER_SLACK
        others = [m for m in self._members.all() if m.node.actor_id != joiner]
        self._rng.shuffle(others)
        own = self._members.get(joiner)
        entries: list[Rumour] = []
        for m in ([own] if own is not None else []) + others:
            r = m.rumour()
            size = rumour_size(r)
            if size <= budget and len(entries) < MAX_RUMOURS:
                entries.append(r)
                budget -= size
        self._out.append(Send(addr, attrs.evolve(base, body=Feed(tuple(entries)))))

    def _on_feed(self, now: float, addr: Addr, feed: Feed) -> None:
        if not self._joined:
            self._joined = True
            self._notify(Joined(addr))
            # A Feed fits one packet; the full list comes by push-pull at once.
            self._out.append(PushPull(addr, self.push_pull_state()))
        for r in feed.members:
            self._apply(now, attrs.evolve(r, state=SUSPECT) if r.state is DEAD else r)

    def _gossip(self, now: float) -> None:
        if not len(self._rumours):
            return
        targets = self._gossip_targets(now)
        for m in self._rng.sample(targets, min(self.config.gossip_nodes, len(targets))):
            self._send(m.node.addr, Gossip(), m)

    def _gossip_targets(self, now: float) -> list[Member]:
        """Live members and those dead for less than gossip_to_the_dead_time, in list order.

        Cached: rebuilt only when the member list changed (``MemberList.changes``) or a dead
        member in it has passed its window (which only closes as time goes on).
        """
        window = self.config.gossip_to_the_dead_time
        targets, dead, changes = self._targets
        if changes != self._members.changes or any(not now - m.state_change < window for m in dead):
            targets = [
                m
                for m in self._members.all()
                if m.state in (ALIVE, SUSPECT)
                or (m.state is DEAD and now - m.state_change < window)
            ]
            dead = [m for m in targets if m.state is DEAD]
            self._targets = (targets, dead, self._members.changes)
        return targets

    def _push_pull_with(self, candidates: list[Member]) -> None:
        if candidates and not self._leaving:
            target = self._rng.choice(candidates)
            self._out.append(PushPull(target.node.addr, self.push_pull_state()))

    def _finish_leave(self) -> None:
        if not self._done:
            self._done = True
            self._notify(LeaveComplete())

    # -- plumbing -------------------------------------------------------------------------------

    def _send(self, addr: Addr, body: Body, to: Member | None) -> None:
        """Send ``body`` with the buddy rumour (if ``to`` is not alive) and queued rumours."""
        budget = self.config.max_packet_size - self._bare_size(body) - RUMOURS_HEADER_SLACK
        rumours: list[Rumour] = []
        if to is not None and to.state is not ALIVE and self.config.lifeguard:
            buddy = to.rumour()
            size = rumour_size(buddy)
            if size <= budget:
                rumours.append(buddy)
                budget -= size
        rumours += self._rumours.take(budget, self._retransmit_limit(), MAX_RUMOURS - len(rumours))
        packet = Packet(self.cluster_id, self.node, self.incarnation, body, tuple(rumours))
        self._out.append(Send(addr, packet))

    def _bare_size(self, body: Body) -> int:
        """Encoded size of a packet with ``body`` and no rumours; that of Gossip, the most
        common body, is kept per incarnation (a core's node and cluster id never change)."""
        if type(body) is not Gossip:
            return packet_size(Packet(self.cluster_id, self.node, self.incarnation, body))
        if self._gossip_size[0] != self.incarnation:
            bare = Packet(self.cluster_id, self.node, self.incarnation, body)
            self._gossip_size = (self.incarnation, packet_size(bare))
        return self._gossip_size[1]

    def _retransmit_limit(self) -> int:
        """The transmit limit at the current cluster size (recomputed only when it changes)."""
        n = self.cluster_size()
        if n != self._limit_n:
            self._limit_n, self._limit = n, self.config.retransmit_limit(n)
        return self._limit

    def _self_rumour(self, state: MemberState) -> Rumour:
        return Rumour(state, self.node, self.incarnation, self.actor_id)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & U32_MAX
        return self._seq

    def _timer(self, delay: float, token: Timer) -> None:
        self._out.append(SetTimer(delay, token))

    def _notify(self, event: MembershipEvent) -> None:
        self._out.append(Notify(event))

    def _flush(self) -> list[Effect]:
        out, self._out = self._out, []
        return out
