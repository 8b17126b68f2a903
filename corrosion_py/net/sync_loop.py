"""The periodic anti-entropy loop: every few seconds, sync with a few members over TCP.

Rules (the choice, planning and what to believe are replication/sync_client.py and
replication/sync_plan.py, the sessions net/sync_client.py):

- Rounds are ``jittered_interval(low, high)`` apart (1-15 s by default), so a cluster's rounds
  do not line up. The first round starts soon after start (``first_delay``): a new or restarted
  node catches up at once instead of waiting for the jitter.
- Candidates are the members SWIM holds alive (by address); ``SyncClient.choose`` prefers
  those whose own versions we miss most, then those not synced longest.
- Changesets go to ``deliver``: the apply queue's waiting puts (backpressure through TCP).
- A round that fails with every peer is counted; the loop goes on. ``failures`` counts the
  rounds failed in a row. The node reports that it cannot sync (``trouble``, for health: its
  ``gaps`` only count versions it has heard of) from ``CANNOT_SYNC_AFTER`` failed rounds in a
  row, or when no round has worked for ``stale_after`` seconds while it had members to sync
  with (a round can also hang, e.g. behind a full apply queue, until its 300 s bound).
- No rounds while the store refuses writes for good (a corrupt file): what they brought could
  not be applied. A transient fault (a full disk) does not stop them: the apply queue holds
  what they bring, waits for room, and its retries find out when space is back.
- The actors a member's sync state advertises are remembered (``learnt``, bounded by the
  sync client): with the members, they are the actors whose missing versions health counts.
"""

from __future__ import annotations

import random
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import trio

from corrosion_py.addr import Addr
from corrosion_py.net.secure import GossipSecurity
from corrosion_py.net.sync_client import Deliver, SyncReport, sync_with
from corrosion_py.replication.sync_client import SyncClient
from corrosion_py.replication.sync_plan import missing_versions
from corrosion_py.store.store import Store
from corrosion_py.swim.events import MemberInfo

if TYPE_CHECKING:  # its type only: the agent, which owns the queue, imports this module
    pass

CANNOT_SYNC_AFTER = 3  # rounds failed in a row before the node reports it cannot sync
STALE_AFTER = 60.0  # seconds without a round that worked (at least 4 intervals)


class Syncer:
    """One node's anti-entropy loop. Start ``run`` in the agent's nursery."""

    def __init__(
        self,
        store: Store,
        deliver: Deliver,
        *,
        cluster_id: int,
        members: Callable[[], Sequence[MemberInfo]],
        rng: random.Random,
        interval: tuple[float, float] = (1.0, 15.0),
        first_delay: float = 0.5,
        blocked: Callable[[Addr], bool] = lambda addr: False,
        security: GossipSecurity | None = None,
        stale_after: float | None = None,
    ) -> None:
        self.store = store
        self.deliver = deliver
        self.cluster_id = cluster_id
        self.members = members
        self.client = SyncClient[Addr](rng, interval)
        self.first_delay = first_delay
        self.blocked = blocked
        """Peers the fault layer cuts off (tests): skipped as if unreachable."""
        self.security = security
        self.stats: Counter[str] = Counter()
        """rounds, rounds_ok, rounds_failed, rounds_idle (nobody to sync with), rounds_paused
        (corrupt store), rounds_early (sooner: new gaps), changesets."""
        self.last_report: SyncReport | None = None
        self.stale_after = stale_after or max(STALE_AFTER, 4 * interval[1])
        self.failures = 0
        """Rounds failed in a row (0 after a round that worked)."""
        self.unsynced_since: float | None = None
        """Wall time since when the node had members to sync with and no round worked (None:
        the last round worked, or there was nobody to sync with)."""
        self.last_ok: float | None = None
        """trio time of the last round that worked (None: none yet)."""
        self._gaps_at_round = 0

    @property
    def learnt(self) -> OrderedDict[bytes, None]:
        """Actors advertised by a member we synced with, most recent last (bounded)."""
        return self.client.learnt

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sync rounds until cancelled: ``next_interval()`` apart, or sooner once the node
        misses versions it did not miss at the last round (broadcast repairs its own losses
        within a fraction of a second; sync is the net under it, so a loss that escaped
        broadcast waits at most about the interval's low bound, not its high one)."""
        task_status.started()
        await trio.sleep(self.first_delay)
        while True:
            self._gaps_at_round = self._missing_now()
            await self.round()
            deadline = trio.current_time() + self.client.next_interval()
            while (now := trio.current_time()) < deadline:
                await trio.sleep(min(self.client.interval[0], deadline - now))
                missing = self._missing_now()
                if missing and missing != self._gaps_at_round:
                    self.stats["rounds_early"] += 1
                    break

    def _missing_now(self) -> int:
        """Versions the bookkeeping knows it misses (gaps and partial versions), all actors."""
        return sum(
            sum(end - start + 1 for start, end in booked.gaps) + len(booked.partials)
            for booked in self.store.bookie_snapshot().values()
        )

    def trouble(self, now: float) -> str | None:
        """Why this node cannot sync, or None (``now``: wall time)."""
        if self.failures >= CANNOT_SYNC_AFTER:
            return f"{self.failures} rounds failed in a row (last: {self.last_error()})"
        since = self.unsynced_since
        if since is not None and now - since > self.stale_after:
            return f"no sync round has worked for {now - since:.0f} s"
        return None

    def last_error(self) -> str | None:
        """The first peer error of the last failed round, with the peer's address."""
        report = self.last_report
        if report is None or report.ok:
            return None
        for peer in report.peers:
            if peer.error is not None:
                host, port = peer.addr
                return f"{host}:{port}: {peer.error}"
        return None

    async def round(self) -> SyncReport | None:
        """One round now; None when no member is alive (or the store is corrupt)."""
        if self.store.faults.corrupt:
            self.stats["rounds_paused"] += 1
            return None
        alive = {m.addr: m.actor_id for m in self.members() if not self.blocked(m.addr)}
        if not alive:  # nobody to sync with is not a failure to sync (`members` says so)
            self.stats["rounds_idle"] += 1
            self.failures, self.unsynced_since = 0, None
            return None
        if self.unsynced_since is None:
            self.unsynced_since = time.time()
        missing = missing_versions(self.store.sync_state())
        chosen = self.client.choose(
            list(alive), {addr: missing.get(actor, 0) for addr, actor in alive.items()}
        )
        report = await sync_with(
            self.store,
            self.cluster_id,
            chosen,
            self.deliver,
            client=self.client,
            security=self.security,
        )
        now = trio.current_time()
        self.stats["rounds"] += 1
        self.stats["rounds_ok" if report.ok else "rounds_failed"] += 1
        if report.ok:
            self.failures, self.unsynced_since, self.last_ok = 0, None, now
        else:
            self.failures += 1
        self.stats["changesets"] += report.changesets
        self.last_report = report
        return report
