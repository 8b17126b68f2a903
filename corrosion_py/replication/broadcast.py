"""Changeset broadcast: push each new changeset to a few peers at once, then let it spread.

Everything that decides *who* gets a datagram and *when* lives in this file; it never looks
inside one. Items are opaque datagrams (encoded changeset pieces that already fit a packet)
named by a hashable key (the agent uses ``(actor_id, version, seq_start, seq_end)``). Sans-IO:
the host passes ``now`` (float seconds, any origin), a seeded ``random.Random`` and the current
peers (live members other than this node, distinct addresses), and sends the returned ``Send``
datagrams.

Rules (Corrosion's default "gossip" broadcast method, with its default numbers), with
n = len(peers) + 1 the cluster size:

- **Budget.** A local item (written on this node) is sent in ``max_transmissions(n)`` =
  max(1, ⌊4·log10(n + 1)⌋) rounds (foca's rule: 4 for 10 nodes, 8 for 100, 12 for 1000). A
  relayed item gets half of that, rounded up (``relay_transmissions``): the writer pushes
  hardest, relays spread it without multiplying the traffic, and sync repairs what gossip
  loses. The budget is read with the n of each round, so it follows the member list.
- **Fan-out.** Each round goes to ``fanout(n)`` = max(min_fanout, (n − 1) // (10 ·
  max_transmissions(n))) random peers the item was not sent to yet, so no peer gets an item
  twice while others remain; an item sent to every peer is done early. A round that follows
  one the rate limiter stopped uses half that fan-out (at least 1), as Corrosion does.
- **First hop.** A local item's first round goes out from ``local()`` at once: the
  ``close_peers`` peers of lowest RTT (unknown RTT after known, ties at random), plus the
  random fan-out among the others. A relayed item's first round is due at once, on the next
  ``tick``.
- **Resends.** After its k-th round an item waits ``resend_delay``·k (100 ms·k) for the next.
- **Dedupe.** ``received`` accepts an item only if its key is not in the seen-cache and the
  store does not already hold it (``known``); only then is it relayed. Known items stop
  spreading here, which is what ends an epidemic.
- **Rate limit.** A token bucket of ``rate_bytes_per_s``, one second's worth deep. A round is
  sent whole and may overdraw it; while it is overdrawn no round starts: the due items wait
  for the tick at which it has refilled (``next_deadline`` says when), ``rate_limited``
  counts each call it stopped. Any window of T seconds thus carries at most one burst,
  T·rate and one round of bytes.
- **Bounded work.** A call starts no round once it has returned ``max_sends_per_call``
  datagrams (Corrosion caps in-flight sends at 500); the rest stay due, the host calls again
  at once.
- **Bounded memory.** At most ``max_queue`` items: the item that pushes the queue over drops
  the most-sent one (among those, the oldest relayed one, else the oldest local one) and
  ``dropped_overflow`` counts it; sync repairs it. The seen-cache keeps the last
  ``seen_cache`` keys, first in first out.

Theory of operation: items wait in a heap keyed by (next send time, serial), so a tick pops
only the due ones instead of sorting the queue. They also sit in buckets by (send count,
relayed), each oldest first, so overflow finds its victim at the top bucket without a scan.
A dropped item's heap entry is left behind and skipped when popped; the heap is rebuilt from
the queue when it reaches twice ``max_queue`` entries (half of them stale at least). Random
peers are drawn by rejection (expected O(fan-out), not O(peers)) while at most half the peers
are excluded, by a scan otherwise.
"""

from __future__ import annotations

import bisect
import heapq
import math
import operator
from collections import Counter, OrderedDict
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

import attrs
from attrs import validators

from corrosion_py.addr import Addr

if TYPE_CHECKING:
    import random


def max_transmissions(n: int) -> int:
    """Rounds a local item is sent in a cluster of ``n`` nodes: max(1, ⌊4·log10(n + 1)⌋)."""
    return max(1, math.floor(4 * math.log10(n + 1)))


def relay_transmissions(n: int) -> int:
    """Rounds a relayed item is sent: half the local budget, rounded up."""
    return -(-max_transmissions(n) // 2)


def fanout(n: int, min_fanout: int) -> int:
    """Random peers per round: max(min_fanout, (n − 1) // (10 · max_transmissions(n)))."""
    return max(min_fanout, (n - 1) // (10 * max_transmissions(n)))


@attrs.frozen
class BroadcastConfig:
    """Knobs of the broadcaster; durations are float seconds."""

    close_peers: int = attrs.field(default=3, validator=validators.ge(0))
    """Lowest-RTT peers that get a local item at once, besides the random fan-out."""
    min_fanout: int = attrs.field(default=3, validator=validators.ge(1))
    """Fan-out floor (Corrosion uses num_indirect_probes, 3)."""
    resend_delay: float = attrs.field(default=0.1, validator=validators.ge(0.0))
    """The k-th resend waits this times k."""
    rate_bytes_per_s: float = attrs.field(default=4.0 * 1024 * 1024, validator=validators.gt(0.0))
    """Token-bucket rate of datagram bytes; the bucket holds one second's worth."""
    max_queue: int = attrs.field(default=10_000, validator=validators.ge(1))
    """Items queued for further rounds; over it the most-sent item is dropped."""
    seen_cache: int = attrs.field(default=100_000, validator=validators.ge(1))
    """Keys remembered for dedupe, first in first out."""
    max_sends_per_call: int = attrs.field(default=500, validator=validators.ge(1))
    """A call starts no round once it has returned this many datagrams."""


@attrs.frozen
class Peer:
    """A member to broadcast to; ``rtt`` in seconds, None while unmeasured."""

    actor_id: bytes
    addr: Addr
    rtt: float | None = None


@attrs.frozen
class Send:
    """Send ``data`` to ``addr`` as one datagram."""

    addr: Addr
    data: bytes


@attrs.define(eq=False)
class _Item:
    key: Hashable
    data: bytes
    local: bool
    serial: int  # higher is newer
    rounds: int = 0
    next_at: float = 0.0
    sent_to: set[Addr] = attrs.Factory(set)


_serial_of = operator.attrgetter("serial")


class Broadcaster:
    """One node's changeset broadcast. Input methods return the datagrams to send."""

    def __init__(self, config: BroadcastConfig, rng: random.Random) -> None:
        self.config = config
        self.stats: Counter[str] = Counter()
        """local, relayed, duplicates, sent_datagrams, sent_bytes, completed,
        dropped_overflow, rate_limited, send_cap."""
        self._rng = rng
        self._items: dict[Hashable, _Item] = {}
        self._heap: list[tuple[float, int, _Item]] = []
        self._buckets: dict[tuple[int, bool], list[_Item]] = {}  # (rounds, relayed) -> oldest first
        self._seen: OrderedDict[Hashable, None] = OrderedDict()
        self._serial = 0
        self._tokens = config.rate_bytes_per_s
        self._refilled_at = -math.inf
        self._resume_at = -math.inf  # no round starts before this (the bucket is overdrawn)
        self._limited = False  # the limiter stopped the previous call: halve the fan-out

    @property
    def queue_len(self) -> int:
        """Items waiting for further rounds."""
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        """Whether ``key`` is queued for further rounds."""
        return key in self._items

    def next_deadline(self) -> float | None:
        """When ``tick`` should next be called; None while nothing is queued. The host also
        calls it (or ``tick``) again after ``received`` accepts an item, which is due at once."""
        if not self._heap:
            return None
        return max(self._heap[0][0], self._resume_at)

    def local(self, now: float, key: Hashable, data: bytes, peers: Sequence[Peer]) -> list[Send]:
        """A changeset piece written on this node: its first round, and later ones queued."""
        if key in self._items:
            raise ValueError(f"broadcast key {key!r} is already queued")
        self._see(key)
        self.stats["local"] += 1
        item = self._enqueue(key, data, local=True)
        self._refill(now)
        out: list[Send] = []
        if self._throttled(now):
            self._limited = True
            self.stats["rate_limited"] += 1
            self._schedule(item, now)  # its first round, close peers included, waits for tick
        else:
            self._round(now, item, peers, self._limited, out)
        return out

    def received(self, now: float, key: Hashable, data: bytes, known: bool) -> bool:
        """A datagram that arrived by broadcast; ``known`` if the store already holds it.
        True if it is new: the caller applies it, and it is queued for relaying."""
        if known or key in self._seen:
            self.stats["duplicates"] += 1
            return False
        self._see(key)
        self.stats["relayed"] += 1
        self._schedule(self._enqueue(key, data, local=False), now)
        return True

    def tick(self, now: float, peers: Sequence[Peer]) -> list[Send]:
        """Send the rounds that are due, as far as the rate limit and the per-call cap allow."""
        self._refill(now)
        halve, self._limited = self._limited, False
        out: list[Send] = []
        while self._heap and self._heap[0][0] <= now:
            if self._throttled(now):
                self._limited = True
                self.stats["rate_limited"] += 1
                break
            if len(out) >= self.config.max_sends_per_call:
                self.stats["send_cap"] += 1
                break
            item = heapq.heappop(self._heap)[2]
            if self._items.get(item.key) is item:  # else dropped meanwhile
                self._round(now, item, peers, halve, out)
        return out

    # -- rounds ---------------------------------------------------------------------------------

    def _round(
        self, now: float, item: _Item, peers: Sequence[Peer], halve: bool, out: list[Send]
    ) -> None:
        """Send one round of ``item``, then requeue it or let it go."""
        n = len(peers) + 1
        limit = max_transmissions(n) if item.local else relay_transmissions(n)
        targets = self._targets(item, peers, n, halve) if item.rounds < limit else []
        self._unlink(item)
        if targets:
            for peer in targets:
                item.sent_to.add(peer.addr)
                out.append(Send(peer.addr, item.data))
            size = len(item.data) * len(targets)
            self._charge(now, size)
            self.stats["sent_datagrams"] += len(targets)
            self.stats["sent_bytes"] += size
            item.rounds += 1
            if item.rounds < limit:
                self._link(item)
                self._schedule(item, now + self.config.resend_delay * item.rounds)
                return
        del self._items[item.key]
        self.stats["completed"] += 1

    def _targets(self, item: _Item, peers: Sequence[Peer], n: int, halve: bool) -> list[Peer]:
        count = fanout(n, self.config.min_fanout)
        if halve:
            count = max(1, count // 2)
        if not (item.local and item.rounds == 0 and self.config.close_peers):
            return self._pick(peers, item.sent_to, count)
        close = heapq.nsmallest(self.config.close_peers, peers, key=self._closeness)
        return close + self._pick(peers, item.sent_to | {p.addr for p in close}, count)

    def _closeness(self, peer: Peer) -> tuple[bool, float, float]:
        """Sort key: known RTT first, lowest first, ties at random."""
        return (peer.rtt is None, peer.rtt or 0.0, self._rng.random())

    def _pick(self, peers: Sequence[Peer], exclude: set[Addr], k: int) -> list[Peer]:
        """``k`` random peers whose address is not in ``exclude`` (all of them if fewer)."""
        picked: dict[Addr, Peer] = {}
        if 2 * (len(exclude) + k) <= len(peers):  # each draw hits with probability >= 1/2
            for _ in range(4 * k):  # bounded, should the caller pass repeated addresses
                peer = peers[self._rng.randrange(len(peers))]
                if peer.addr not in exclude:
                    picked.setdefault(peer.addr, peer)
                    if len(picked) == k:
                        return list(picked.values())
        rest = [p for p in peers if p.addr not in exclude and p.addr not in picked]
        return [*picked.values(), *self._rng.sample(rest, min(k - len(picked), len(rest)))]

    # -- rate limit -----------------------------------------------------------------------------

    def _refill(self, now: float) -> None:
        elapsed = now - self._refilled_at
        if elapsed > 0:
            rate = self.config.rate_bytes_per_s
            self._tokens = min(rate, self._tokens + elapsed * rate)
            self._refilled_at = now

    def _charge(self, now: float, size: int) -> None:
        self._tokens -= size
        if self._tokens < 0:
            self._resume_at = now - self._tokens / self.config.rate_bytes_per_s

    def _throttled(self, now: float) -> bool:
        return now < self._resume_at

    # -- queue and seen-cache -------------------------------------------------------------------

    def _see(self, key: Hashable) -> None:
        self._seen[key] = None
        if len(self._seen) > self.config.seen_cache:
            self._seen.popitem(last=False)

    def _enqueue(self, key: Hashable, data: bytes, *, local: bool) -> _Item:
        self._serial += 1
        item = _Item(key, data, local, self._serial)
        self._items[key] = item
        self._link(item)
        if len(self._items) > self.config.max_queue:
            # Most sent, relayed before local, oldest: the new item itself only if it is
            # relayed and all others are local items that have not been sent yet.
            worst = self._buckets[max(self._buckets)][0]
            self._unlink(worst)
            del self._items[worst.key]
            self.stats["dropped_overflow"] += 1
        return item

    def _schedule(self, item: _Item, at: float) -> None:
        item.next_at = at
        if len(self._heap) >= 2 * self.config.max_queue:  # mostly entries of dropped items
            self._heap = [(i.next_at, i.serial, i) for i in self._items.values()]
            heapq.heapify(self._heap)
        else:
            heapq.heappush(self._heap, (at, item.serial, item))

    def _link(self, item: _Item) -> None:
        bucket = self._buckets.setdefault((item.rounds, not item.local), [])
        bisect.insort(bucket, item, key=_serial_of)

    def _unlink(self, item: _Item) -> None:
        where = (item.rounds, not item.local)
        bucket = self._buckets[where]
        del bucket[bisect.bisect_left(bucket, item.serial, key=_serial_of)]
        if not bucket:
            del self._buckets[where]
