"""Changeset broadcast as an epidemic broadcast tree (Plumtree: Leitão, Pereira, Rodrigues,
SRDS 2007), so that each node receives each changeset about once when nothing is lost.

Everything that decides *who* gets a piece and *when* lives in this file. Pieces are opaque
encoded changesets (each fits a datagram) named by ``(actor, version)``; sans-IO: the host passes
``now``, a seeded ``random.Random`` and the current peers, calls ``flush`` and sends the
returned datagrams.

Rules:

- **Eager and lazy peers.** Each node keeps an eager set (peers it pushes every piece to) and
  treats every other peer as lazy (peers it only tells which versions it has: IHAVE). At first
  the eager set is ``eager_peers`` random peers, each told so with an empty GRAFT (so the link is
  eager both ways at once); a new member starts lazy. Eager links are symmetric: a piece that
  arrives new from a peer makes it eager here.
- **Push.** A new piece (written here, or arrived new) goes in full to every eager peer except
  the one it came from and its origin: never back to the sender or the writer.
- **Prune.** A piece that arrives again from an eager peer (already seen) moves that peer to
  lazy and answers PRUNE, which moves us to lazy there: duplicate paths are cut until the eager
  links form a tree, and a tree delivers exactly one copy to each node, from any origin. A node
  keeps at least one eager peer: when the last one goes (pruned or gone), a lazy one is grafted.
- **Lazy announcements.** Every ``ihave_interval`` the versions that arrived or were written
  in the last ``announce_rounds`` intervals go as ranges per actor to ``lazy_peers`` random
  lazy peers: each version is announced several times by every node that has it, so a node
  that lost a push hears of it almost surely within an interval or two (ranges stay short:
  consecutive versions are one range).
- **Graft.** An announced version this node lacks (``missing`` says so: not seen, not known) is
  awaited for ``graft_timeout``; if it has not arrived by then, GRAFT asks the first announcer
  for it, making that link eager (the tree repairs itself where a push was lost); the next
  announcer is asked after another timeout, up to ``graft_attempts``, then sync repairs it. A
  GRAFT is answered with the pieces of the asked versions still in the cache.
- **Batching.** Everything bound for one peer between two ``flush`` calls shares datagrams, up
  to ``max_payload`` bytes each: the host flushes after each burst of received datagrams and
  after each local write, so a busy node packs many pieces per datagram and an idle one adds no
  delay.

Bounded memory: the seen-cache and the piece cache keep the last ``cache_items`` pieces (first
in, first out); awaited versions at most ``max_missing`` (more announcements are ignored: sync
repairs); announcement ranges per interval at most ``max_announce`` (more are left to sync);
each peer's outbox at most ``max_outbox`` pieces between flushes (the oldest dropped, counted in
``dropped_outbox``).
"""

from __future__ import annotations

import heapq
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import attrs
from attrs import validators

from corrosion_py.addr import Addr
from corrosion_py.aliases import Range
from corrosion_py.replication.ranges import RangeSet
from corrosion_py.wire.messages import Broadcast

if TYPE_CHECKING:
    import random

VersionKey = tuple[bytes, int]
"""(actor, version): what announcements and grafts name."""

PIECE_SLACK = 3
"""Bytes a piece adds to a datagram beyond its own (its CBOR byte-string header, at most 3 for
a piece under 64 KiB): a piece of ``max_payload - overhead()`` bytes fits a datagram alone."""
MAX_VERSIONS_PER_MESSAGE = 4_096
"""Versions one announcement or graft may make this node look at (the rest are ignored)."""
MAX_ANNOUNCERS = 8


def _versions(entries: Sequence[tuple[bytes, Sequence[Range]]], limit: int) -> list[VersionKey]:
    """The versions ``entries`` name, at most ``limit`` of them."""
    out: list[VersionKey] = []
    for actor, ranges in entries:
        for start, end in ranges:
            for version in range(start, min(end, start + limit - len(out) - 1) + 1):
                out.append((actor, version))
            if len(out) >= limit:
                return out
    return out


@attrs.frozen
class PlumtreeConfig:
    """The knobs of the broadcast tree (Corrosion's ``[gossip.broadcast.plumtree]``)."""

    eager_peers: int = attrs.field(default=3, validator=validators.ge(1))
    """Peers pushed to at first (a random 3-out graph is connected; prunes make it a tree)."""
    lazy_peers: int = attrs.field(default=3, validator=validators.ge(1))
    """Lazy peers each announcement goes to."""
    ihave_interval: float = attrs.field(default=0.1, validator=validators.gt(0))
    announce_rounds: int = attrs.field(default=3, validator=validators.ge(1))
    """Announcements each version that arrived is part of."""
    graft_timeout: float = attrs.field(default=0.05, validator=validators.gt(0))
    """How long an announced version is awaited before it is grafted: short, because an
    announcement comes an interval after its sender had the piece, when an eager copy bound for
    us would be here already."""
    graft_attempts: int = attrs.field(default=3, validator=validators.ge(1))
    cache_items: int = attrs.field(default=10_000, validator=validators.ge(1))
    max_missing: int = attrs.field(default=10_000, validator=validators.ge(1))
    max_announce: int = attrs.field(default=4_096, validator=validators.ge(1))
    max_outbox: int = attrs.field(default=1_024, validator=validators.ge(1))


@attrs.frozen
class Peer:
    """A member to broadcast to."""

    actor_id: bytes
    addr: Addr


@attrs.frozen
class Send:
    """Send ``data`` to ``addr`` as one datagram."""

    addr: Addr
    data: bytes


@attrs.define(eq=False)
class _Outbox:
    """What is bound for one peer until the next flush."""

    gossip: list[bytes] = attrs.Factory(list)
    ihave: dict[bytes, list[Range]] = attrs.Factory(dict)
    graft: dict[bytes, list[Range]] = attrs.Factory(dict)
    join: bool = False
    prune: bool = False


@attrs.define(eq=False)
class _Missing:
    """A version announced to us that we lack: who announced it, and when to ask."""

    deadline: float
    announcers: list[bytes]
    attempts: int = 0


Encode = Callable[[Broadcast], bytes]
"""A message to its datagram bytes (the host's codec, with its cluster id)."""


class Plumtree:
    """One node's broadcast tree. Inputs say what happened; ``flush`` returns what to send."""

    def __init__(
        self,
        config: PlumtreeConfig,
        rng: random.Random,
        *,
        encode: Encode,
        max_payload: int,
    ) -> None:
        self.config = config
        self.rng = rng
        self.encode = encode
        self.max_payload = max_payload
        self.eager: set[bytes] = set()
        self.lazy: set[bytes] = set()
        self._addr: dict[bytes, Addr] = {}
        self._by_addr: dict[Addr, bytes] = {}
        self._peers: Sequence[Peer] | None = None
        self._seen: OrderedDict[bytes, VersionKey] = OrderedDict()
        """Piece bytes -> their version, oldest first (the seen-cache)."""
        self._pieces: dict[VersionKey, list[bytes]] = {}
        """Pieces still cached, by version (to answer grafts)."""
        self._missing: dict[VersionKey, _Missing] = {}
        self._timers: list[tuple[float, VersionKey]] = []
        self._announce: dict[bytes, RangeSet] = {}
        self._announced = 0
        self._recent: list[dict[bytes, RangeSet]] = []
        """What the last ``announce_rounds - 1`` announcements held, newest last."""
        self._next_announce: float | None = None
        self._out: dict[bytes, _Outbox] = {}
        self._initial_grafts = config.eager_peers
        """Peers still to graft as they appear, until the first ``eager_peers`` are eager."""
        self.empty_size = len(encode(Broadcast()))
        """Bytes of a datagram that carries nothing (the envelope)."""
        self.missing: Callable[[bytes, int], bool] = lambda actor, version: True
        """Whether this node lacks a version (the host's bookkeeping says; set by the host)."""
        self.stats: Counter[str] = Counter()
        """pushed, pruned, pruned_by_peer, grafted, grafts_answered, ihave_sent, missing,
        dropped_outbox, dropped_missing, dropped_announce, sent_datagrams, sent_bytes."""

    # -- membership --------------------------------------------------------------------------

    def set_peers(self, peers: Sequence[Peer]) -> None:
        """The live members other than this node (cheap when given the same sequence again)."""
        if peers is self._peers:
            return
        self._peers = peers
        self._addr = {p.actor_id: p.addr for p in peers}
        self._by_addr = {p.addr: p.actor_id for p in peers}
        current = set(self._addr)
        self.eager &= current
        self.lazy = current - self.eager
        for actor in list(self._out):
            if actor not in current:
                del self._out[actor]
        while self._initial_grafts > 0 and self.lazy:
            self._initial_grafts -= 1
            self._graft_random()
        if not self.eager:
            self._graft_random()

    def actor_at(self, addr: Addr) -> bytes | None:
        """The member at ``addr`` (None: not a live member)."""
        return self._by_addr.get(addr)

    def _graft_random(self, avoid: bytes | None = None) -> None:
        """Make a random lazy peer eager (``avoid`` only when it is the only one), telling it
        with an empty GRAFT so the link is eager both ways at once."""
        choices = sorted(self.lazy - {avoid}) or sorted(self.lazy)
        if choices:
            actor = self.rng.choice(choices)
            self._make_eager(actor)
            self._outbox(actor).join = True

    def _make_eager(self, actor: bytes) -> None:
        if actor in self._addr and actor not in self.eager:
            self.eager.add(actor)
            self.lazy.discard(actor)

    def _make_lazy(self, actor: bytes) -> None:
        if actor in self.eager:
            self.eager.discard(actor)
            self.lazy.add(actor)
            if not self.eager:
                self._graft_random(avoid=actor)

    # -- pieces --------------------------------------------------------------------------------

    def seen(self, piece: bytes) -> bool:
        return piece in self._seen

    def push(self, now: float, key: VersionKey, piece: bytes, *, sender: bytes | None) -> None:
        """A new piece (written here: ``sender`` None; else the peer it came from): cache it,
        push it to the eager peers but its sender and origin, announce it to lazy ones."""
        self._remember(key, piece)
        if sender is not None:
            self._make_eager(sender)
        origin = key[0]
        for actor in self.eager:
            if actor != sender and actor != origin:
                box = self._outbox(actor)
                if len(box.gossip) >= self.config.max_outbox:
                    box.gossip.pop(0)
                    self.stats["dropped_outbox"] += 1
                box.gossip.append(piece)
                self.stats["pushed"] += 1
        self._arrived(now, key)

    def duplicate(self, sender: bytes | None) -> None:
        """A piece seen before arrived again from ``sender``: prune that link."""
        if sender is not None and sender in self.eager:
            self._make_lazy(sender)
            self._outbox(sender).prune = True
            self.stats["pruned"] += 1

    def known(self, now: float, key: VersionKey) -> None:
        """A version arrived by other means (sync): stop awaiting it."""
        self._arrived(now, key)

    def _arrived(self, now: float, key: VersionKey) -> None:
        self._missing.pop(key, None)
        actor, version = key
        ranges = self._announce.get(actor)
        if ranges is None:
            if self._announced >= self.config.max_announce:
                self.stats["dropped_announce"] += 1
                return
            ranges = self._announce[actor] = RangeSet()
        before = len(ranges)
        ranges.add(version, version)
        self._announced += len(ranges) - before
        if self._next_announce is None:
            self._next_announce = now + self.config.ihave_interval

    def _remember(self, key: VersionKey, piece: bytes) -> None:
        seen = self._seen
        seen[piece] = key
        self._pieces.setdefault(key, []).append(piece)
        while len(seen) > self.config.cache_items:
            old, old_key = seen.popitem(last=False)
            kept = self._pieces.get(old_key)
            if kept is not None:
                kept[:] = [p for p in kept if p is not old]
                if not kept:
                    del self._pieces[old_key]

    # -- control messages ----------------------------------------------------------------------

    def prune(self, sender: bytes) -> None:
        """The peer cut its eager link to us."""
        if sender in self.eager:
            self._make_lazy(sender)
            self.stats["pruned_by_peer"] += 1

    def graft(self, sender: bytes, wanted: Sequence[tuple[bytes, Sequence[Range]]]) -> None:
        """The peer made its link to us eager (and asks for the cached pieces of ``wanted``)."""
        self._make_eager(sender)
        box = self._outbox(sender)
        for actor, version in _versions(wanted, MAX_VERSIONS_PER_MESSAGE):
            for piece in self._pieces.get((actor, version), ()):
                box.gossip.append(piece)
                self.stats["grafts_answered"] += 1

    def ihave(
        self, now: float, sender: bytes, announced: Sequence[tuple[bytes, Sequence[Range]]]
    ) -> None:
        """The peer has these versions: await those ``missing`` says we lack, then graft."""
        deadline = now + self.config.graft_timeout
        for key in _versions(announced, MAX_VERSIONS_PER_MESSAGE):
            awaited = self._missing.get(key)
            if awaited is not None:
                if sender not in awaited.announcers and len(awaited.announcers) < MAX_ANNOUNCERS:
                    awaited.announcers.append(sender)
                continue
            if key in self._pieces or not self.missing(*key):
                continue
            if len(self._missing) >= self.config.max_missing:
                self.stats["dropped_missing"] += 1
                continue
            self._missing[key] = _Missing(deadline, [sender])
            heapq.heappush(self._timers, (deadline, key))
            self.stats["missing"] += 1

    # -- time ----------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When ``tick`` is next due (None: nothing pending)."""
        due = [t for t in (self._next_announce, self._timers[0][0] if self._timers else None)]
        return min((t for t in due if t is not None), default=None)

    def tick(self, now: float) -> None:
        """Announce what arrived, and graft what was announced and did not come."""
        if self._next_announce is not None and now >= self._next_announce:
            self._send_announcements(now)
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, key = heapq.heappop(timers)
            awaited = self._missing.get(key)
            if awaited is None or awaited.deadline != deadline:
                continue  # arrived, or rescheduled
            if awaited.attempts >= min(
                self.config.graft_attempts, len(awaited.announcers)
            ) or not self.missing(*key):
                del self._missing[key]
                continue
            actor = awaited.announcers[awaited.attempts]
            awaited.attempts += 1
            if actor in self._addr:
                self._make_eager(actor)
                self._outbox(actor).graft.setdefault(key[0], []).append((key[1], key[1]))
                self.stats["grafted"] += 1
            awaited.deadline = now + self.config.graft_timeout
            heapq.heappush(timers, (awaited.deadline, key))

    def _send_announcements(self, now: float) -> None:
        fresh, self._announce, self._announced = self._announce, {}, 0
        window = [*self._recent, fresh]
        keep = self.config.announce_rounds - 1
        self._recent = window[-keep:] if keep else []
        pending = any(self._recent)
        self._next_announce = now + self.config.ihave_interval if pending else None
        if not self.lazy:
            return
        announce: dict[bytes, RangeSet] = {}
        for ranges_of in window:
            for actor, ranges in ranges_of.items():
                union = announce.setdefault(actor, RangeSet())
                for start, end in ranges:
                    union.add(start, end)
        entries: dict[bytes, list[Range]] = {}
        size = self.empty_size
        for actor, ranges in announce.items():  # what fits one datagram; sync repairs the rest
            kept = list(ranges)
            cost = len(actor) + 4 + 19 * len(kept)
            if size + cost > self.max_payload:
                self.stats["dropped_announce"] += len(kept)
                continue
            entries[actor] = kept
            size += cost
        count = min(self.config.lazy_peers, len(self.lazy))
        for actor in self.rng.sample(sorted(self.lazy), count):
            self._outbox(actor).ihave.update(entries)
            self.stats["ihave_sent"] += 1

    # -- output --------------------------------------------------------------------------------

    def _outbox(self, actor: bytes) -> _Outbox:
        box = self._out.get(actor)
        if box is None:
            box = self._out[actor] = _Outbox()
        return box

    def flush(self) -> list[Send]:
        """The datagrams of everything queued since the last flush."""
        out: list[Send] = []
        boxes, self._out = self._out, {}
        for actor, box in boxes.items():
            addr = self._addr.get(actor)
            if addr is None:
                continue
            for data in self._datagrams(box):
                out.append(Send(addr, data))
                self.stats["sent_datagrams"] += 1
                self.stats["sent_bytes"] += len(data)
        return out

    def _datagrams(self, box: _Outbox) -> list[bytes]:
        """The outbox packed into datagrams of at most ``max_payload`` bytes: the control
        entries (announcements, grafts, prune, join) ride with the first pieces."""
        control: Broadcast | None = None
        if box.ihave or box.graft or box.prune or box.join:
            control = Broadcast(
                (),
                tuple((a, tuple(r)) for a, r in box.ihave.items()),
                tuple((a, tuple(r)) for a, r in box.graft.items()),
                box.prune,
                box.join,
            )
        size = len(self.encode(control)) if control is not None else self.empty_size
        datagrams: list[bytes] = []
        batch: list[bytes] = []
        for piece in box.gossip:
            cost = len(piece) + PIECE_SLACK
            if size + cost > self.max_payload and (batch or control is not None):
                datagrams.append(self._pack(batch, control))
                control, batch, size = None, [], self.empty_size
            batch.append(piece)
            size += cost
        if batch or control is not None:
            datagrams.append(self._pack(batch, control))
        return datagrams

    def _pack(self, pieces: list[bytes], control: Broadcast | None) -> bytes:
        if control is None:
            return self.encode(Broadcast(tuple(pieces)))
        return self.encode(attrs.evolve(control, gossip=tuple(pieces)))
