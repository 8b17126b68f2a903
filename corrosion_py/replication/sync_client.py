"""The client side of anti-entropy, without the network: which peers each round, the states
gathered, the plan, the requests, what to believe and what to hand on.

The agent's trio driver (net/sync_client.py, net/sync_loop.py) moves frames over TCP, the
simulator moves its stream model; both run these same objects.

Rules:

- **Peers.** ``SyncClient.choose`` picks the next round's peers (``sync_plan.choose_peers``: those
  whose own versions we miss most, then those not synced longest); ``completed`` records a
  session that ended well, which is what "synced longest ago" reads. Rounds are
  ``next_interval()`` apart (uniform in ``interval``).
- **States gathered.** Each server's handshake ends in its ``SyncState`` (``answered``) or in
  a failure (it is left out). What a state advertises is remembered (``learnt``: at most
  ``LEARNT_ACTORS`` actors, the least recently advertised forgotten first): health counts the
  missing versions of those actors.
- **One plan per round.** Once every handshake ended, ``plan`` shuffles the servers that
  answered (so equal servers share the work differently from round to round) and plans once
  with every state (``plan_requests``: nothing is asked twice, at most ``MAX_ROUND_NEEDS``
  needs), giving each server a `Session`, with an empty plan when it has nothing for us.
- **Requests** are the session's plan cut into ``SyncRequest``s of at most
  ``NEEDS_PER_REQUEST`` needs, lazily, in plan order; the client then sends ``SyncDone``.
- **What to believe.** A session believes only answers to what it asked that server for
  (``claims.Solicited``); what it drops is counted in ``unsolicited``.
- **Deliveries.** Believed items are handed on in batches of ``DELIVER_BATCH`` changesets, or
  fewer once the frames that brought them reach ``DELIVER_BYTES``; the host delivers each batch
  (into the apply queue, waiting for room: the backpressure) before it reads on, and the rest
  with ``finish``.

Sans-IO: time is passed in and randomness is the ``random.Random`` given at construction.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

from corrosion_py.replication.claims import Solicited
from corrosion_py.replication.sync_plan import (
    MAX_INTERVAL,
    MIN_INTERVAL,
    choose_peers,
    jittered_interval,
    plan_requests,
)
from corrosion_py.wire.messages import Item, Need, SyncRequest, SyncState

if TYPE_CHECKING:
    import random

P = TypeVar("P", bound=Hashable)

NEEDS_PER_REQUEST = 10  # needs per SyncRequest frame (Corrosion: 10 needs per pass)
DELIVER_BATCH = 64  # changesets per delivery
DELIVER_BYTES = 1024 * 1024  # ... or fewer, once their frames reach this many bytes
LEARNT_ACTORS = 65_536


class SyncClient(Generic[P]):
    """One node's anti-entropy client across rounds; peers are named by any hashable ``P``."""

    def __init__(
        self, rng: random.Random, interval: tuple[float, float] = (MIN_INTERVAL, MAX_INTERVAL)
    ) -> None:
        low, high = interval
        if not 0 < low <= high:
            raise ValueError("a sync interval is (low, high) with 0 < low <= high")
        self.rng = rng
        self.interval = interval
        self.last_sync: dict[P, float] = {}
        """When a session with each peer last ended well."""
        self.learnt: OrderedDict[bytes, None] = OrderedDict()
        """Actors advertised by a server we synced with, most recent last (bounded)."""

    def next_interval(self) -> float:
        """Seconds until the next round."""
        return jittered_interval(self.rng, *self.interval)

    def choose(self, candidates: Sequence[P], missing: Mapping[P, int]) -> list[P]:
        """The peers of the next round, best first (``missing[c]``: versions of ``c``'s own
        actor we lack)."""
        return choose_peers(candidates, rng=self.rng, missing=missing, last_sync=self.last_sync)

    def round(self, peers: Sequence[P]) -> SyncRound[P]:
        """A round with ``peers`` (chosen, or given by the caller)."""
        return SyncRound(peers, self)

    def completed(self, now: float, peer: P) -> None:
        """A session with ``peer`` ended well."""
        self.last_sync[peer] = now

    def learn(self, state: SyncState) -> None:
        """Remember the actors a server's state advertises."""
        for actor in state.heads:
            self.learnt[actor] = None
            self.learnt.move_to_end(actor)
        while len(self.learnt) > LEARNT_ACTORS:
            self.learnt.popitem(last=False)


class SyncRound(Generic[P]):
    """One round: the peers chosen, their states as the handshakes end, then one plan."""

    def __init__(self, peers: Sequence[P], client: SyncClient[P]) -> None:
        self.peers = list(dict.fromkeys(peers))
        self.client = client
        self.states: dict[P, SyncState] = {}
        self._planned = False

    def answered(self, peer: P, state: SyncState) -> None:
        """``peer``'s handshake ended with its state."""
        if peer not in self.peers:
            raise ValueError("a state from a peer this round did not choose")
        self.states[peer] = state
        self.client.learn(state)

    def plan(self, ours: SyncState) -> dict[P, Session]:
        """Every server that answered, with what to ask it for (in the shuffled order)."""
        if self._planned:
            raise ValueError("a round is planned once")
        self._planned = True
        ready = [p for p in self.peers if p in self.states]
        self.client.rng.shuffle(ready)
        plan = plan_requests(ours, {p: self.states[p] for p in ready})
        return {p: Session(plan[p]) for p in ready}


class Session:
    """The client's side of one server's session: its requests, what it believes, deliveries."""

    def __init__(self, needs: Sequence[tuple[bytes, Sequence[Need]]]) -> None:
        self.needs = [(actor, list(actor_needs)) for actor, actor_needs in needs]
        """What to ask this server for: (actor, needs), newest first."""
        self.unsolicited = 0
        """Items dropped as answers to nothing this session asked."""
        self._solicited = Solicited(self.needs)
        self._batch: list[Item] = []
        self._batch_bytes = 0

    def requests(self) -> Iterator[SyncRequest]:
        """The needs cut into requests of at most ``NEEDS_PER_REQUEST`` needs, one at a time."""
        grouped: list[tuple[bytes, list[Need]]] = []
        count = 0
        for actor, actor_needs in self.needs:
            for need in actor_needs:
                if grouped and grouped[-1][0] == actor:
                    grouped[-1][1].append(need)
                else:
                    grouped.append((actor, [need]))
                count += 1
                if count == NEEDS_PER_REQUEST:
                    yield _request(grouped)
                    grouped, count = [], 0
        if grouped:
            yield _request(grouped)

    def receive(self, item: Item, size: int) -> list[Item] | None:
        """An item the server sent in a frame of ``size`` bytes: a batch to deliver now, or
        None (what is believed waits for the batch to fill)."""
        self._batch_bytes += size
        parts = self._solicited.admit(item)
        if not parts:
            self.unsolicited += 1
            return None
        self._batch += parts
        if len(self._batch) >= DELIVER_BATCH or self._batch_bytes >= DELIVER_BYTES:
            return self.finish()
        return None

    def finish(self) -> list[Item]:
        """What is believed and not delivered yet (at the end of the session)."""
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        return batch


def _request(grouped: list[tuple[bytes, list[Need]]]) -> SyncRequest:
    return SyncRequest(tuple((actor, tuple(needs)) for actor, needs in grouped))
