"""The periodic anti-entropy loop: every few seconds, sync with a few members over TCP.

Rules (reference/corrosion.md §3.9; the choice and planning are gossip/sync.py, the sessions
net/sync.py):

- Rounds are ``jittered_interval(low, high)`` apart (1-15 s by default), so a cluster's rounds
  do not line up. The first round starts soon after start (``first_delay``): a new or restarted
  node catches up at once instead of waiting for the jitter.
- Candidates are the members SWIM holds alive; ``choose_peers`` prefers those whose own
  versions we miss most, then those not synced longest.
- Changesets go to the apply queue with waiting puts (backpressure through TCP).
- A round that fails with every peer is counted; the loop goes on.
- The actors a member's sync state advertises are remembered (``learnt``, at most
  ``LEARNT_ACTORS``, the least recently advertised forgotten first): with the members, they are
  the actors whose missing versions health counts.
"""

from __future__ import annotations

import random
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence

import trio

from corrosion_py.agent.apply_queue import ApplyQueue
from corrosion_py.gossip import choose_peers, jittered_interval, missing_versions
from corrosion_py.net.sync import SyncReport, sync_with
from corrosion_py.store.store import Store
from corrosion_py.swim.events import MemberInfo
from corrosion_py.wire.messages import SyncState
from corrosion_py.wire.swim import Addr

LEARNT_ACTORS = 65_536


class Syncer:
    """One node's anti-entropy loop. Start ``run`` in the agent's nursery."""

    def __init__(
        self,
        store: Store,
        queue: ApplyQueue,
        *,
        cluster_id: int,
        members: Callable[[], Sequence[MemberInfo]],
        rng: random.Random,
        interval: tuple[float, float] = (1.0, 15.0),
        first_delay: float = 0.5,
        blocked: Callable[[Addr], bool] = lambda addr: False,
    ) -> None:
        self.store = store
        self.queue = queue
        self.cluster_id = cluster_id
        self.members = members
        self.rng = rng
        self.interval = interval
        self.first_delay = first_delay
        self.blocked = blocked
        """Peers the fault layer cuts off (tests): skipped as if unreachable."""
        self.stats: Counter[str] = Counter()
        """rounds, rounds_ok, rounds_failed, rounds_idle (nobody to sync with), changesets."""
        self.last_sync: dict[bytes, float] = {}
        self.last_report: SyncReport | None = None
        self.learnt: OrderedDict[bytes, None] = OrderedDict()
        """Actors advertised by a member we synced with, most recent last (bounded)."""

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sync rounds until cancelled."""
        task_status.started()
        await trio.sleep(self.first_delay)
        while True:
            await self.round()
            await trio.sleep(jittered_interval(self.rng, *self.interval))

    async def round(self) -> SyncReport | None:
        """One round now; None when no member is alive."""
        alive = {m.actor_id: m.addr for m in self.members() if not self.blocked(m.addr)}
        if not alive:
            self.stats["rounds_idle"] += 1
            return None
        missing = missing_versions(self.store.sync_state())
        chosen = choose_peers(list(alive), rng=self.rng, missing=missing, last_sync=self.last_sync)
        report = await sync_with(
            self.store,
            self.cluster_id,
            [alive[a] for a in chosen],
            self.queue.put,
            rng=self.rng,
            learn=self._learn,
        )
        now = trio.current_time()
        by_addr = report.by_addr()
        for actor in chosen:
            peer = by_addr.get(alive[actor])
            if peer is not None and peer.ok:
                self.last_sync[actor] = now
        self.stats["rounds"] += 1
        self.stats["rounds_ok" if report.ok else "rounds_failed"] += 1
        self.stats["changesets"] += report.changesets
        self.last_report = report
        return report

    def _learn(self, state: SyncState) -> None:
        for actor in state.heads:
            self.learnt[actor] = None
            self.learnt.move_to_end(actor)
        while len(self.learnt) > LEARNT_ACTORS:
            self.learnt.popitem(last=False)
