"""Remote changesets into the database: one apply call cut into SQLite transactions.

Each transaction is one `Applier` batch (`store.apply`: its rules) of about `batch_cost`
column changes, on the writer; its bookkeeping is published only once it committed. The size
adapts to keep one transaction between about 50 and 200 ms (100..16,000 column changes), so a
flood neither holds the writer for long nor pays a commit per changeset. A storage fault stops
the call between transactions (`ApplyInterrupted` says what committed and what did not), and
what the rules refused is counted here for the agent's stats.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence

from corrosion_py.errors import StorageFault
from corrosion_py.replication.hlc import HLC, ClockDriftError
from corrosion_py.store.apply import Applier, ApplyResult, take_quarantined
from corrosion_py.store.bookkeeping import Published
from corrosion_py.store.writer import Writer
from corrosion_py.wire.messages import Changeset, Item


class ApplyInterrupted(StorageFault):
    """A storage fault stopped `Store.apply` part-way: the items before ``rest`` committed (their
    result is ``done``), ``rest`` was not applied (retry it later, or leave it to sync)."""

    def __init__(self, fault: StorageFault, done: ApplyResult, rest: list[Item]) -> None:
        super().__init__(fault.kind, fault.path, fault.detail)
        self.done = done
        self.rest = rest


class RemoteChanges:
    """Applies remote changesets on the writer, and counts what was refused."""

    def __init__(
        self,
        writer: Writer,
        published: Published,
        *,
        actor_id: bytes,
        hlc: HLC,
        clock: Callable[[], int],
    ) -> None:
        self._writer = writer
        self._published = published
        self._actor_id = actor_id
        self._hlc = hlc
        self._clock = clock
        self.batch_cost = 2_000  # column changes per apply transaction, adapted per batch
        self.quarantined_total = 0
        self.quarantine_dropped = 0
        self.rejected: Counter[str] = Counter()
        """Claims of remote changesets refused or cut by the apply rules, by reason."""
        self.clock_drift_rejections = 0

    def apply(self, items: Sequence[Item]) -> ApplyResult:
        """Apply remote changesets, in transactions of about `batch_cost` column changes each
        (raises `ApplyInterrupted` on a storage fault)."""
        result = ApplyResult()
        now = self._clock()
        for item in items:
            if item.ts:
                try:
                    self._hlc.update(item.ts, now)
                except ClockDriftError:  # a peer's bad clock is counted, never stops an apply
                    self.clock_drift_rejections += 1
        batch: list[Item] = []
        cost = done = 0
        for item in items:
            batch.append(item)
            cost += len(item.changes) if isinstance(item, Changeset) else 1
            if cost >= self.batch_cost:
                self._apply_part(batch, result, items[done:])
                done, batch, cost = done + len(batch), [], 0
        if batch:
            self._apply_part(batch, result, items[done:])
        return result

    def retry_quarantined(self) -> ApplyResult:
        """Re-apply every quarantined changeset (after a schema change)."""
        with self._writer.writing() as conn:
            conn.execute("BEGIN IMMEDIATE")
            items = take_quarantined(conn)
            conn.execute("COMMIT")
        return self.apply(items)

    def _apply_part(self, batch: list[Item], result: ApplyResult, rest: Sequence[Item]) -> None:
        try:
            result.extend(self._apply_batch(batch))
        except StorageFault as fault:
            raise ApplyInterrupted(fault, result, list(rest)) from fault

    def _apply_batch(self, batch: Sequence[Item]) -> ApplyResult:
        started = time.perf_counter()
        with self._writer.writing() as conn:
            conn.execute("BEGIN IMMEDIATE")
            applier = Applier(conn, self._actor_id, self._published.snapshot())
            result = applier.apply(batch)
            conn.execute("COMMIT")
            self._published.publish(applier.work)  # only once committed
        self.quarantined_total += len(result.quarantined)
        self.quarantine_dropped += result.quarantine_dropped
        self.rejected.update(result.rejected)
        elapsed = time.perf_counter() - started
        if elapsed > 0.2:
            self.batch_cost = max(100, self.batch_cost // 2)
        elif elapsed < 0.05:
            self.batch_cost = min(16_000, self.batch_cost + 500)
        return result
