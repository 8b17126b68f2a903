"""What the subscription engine must refresh next: the tables subscriptions read, and the rows of
them that changed since the last batch (sans-IO: no trio, no threads, no clock).

Rules:

- Only tables some subscription reads (counted: one count per subscription being created or
  live) collect anything; changes to other tables are ignored.
- Changed rows are collected as primary keys per table, each key once. They are bounded in
  total (``max_keys``): when a new key would pass the bound, that table's keys are dropped and
  the table is marked for a full refresh instead, so memory stays flat under a flood and no
  change is lost (a full refresh finds every change).
- A table marked for a full refresh collects no keys until the batch is taken; a schema change
  marks every watched table.
- `take` hands the batch over and starts an empty one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import attrs

from corrosion_py.crdt import unpack_pk
from corrosion_py.subs.matcher import Key


@attrs.frozen
class Batch:
    """Changed primary keys per table, and the tables to refresh in full."""

    keys: dict[str, set[Key]]
    full: set[str]


class PendingChanges:
    """The watched tables and the changes waiting for the next batch, bounded."""

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self._watched: Counter[str] = Counter()
        self._keys: dict[str, set[Key]] = {}
        self._count = 0  # keys held, over every table
        self._full: set[str] = set()

    def watch(self, tables: Iterable[str], delta: int) -> None:
        """A subscription reading ``tables`` starts (+1) or ends (-1)."""
        for table in tables:
            self._watched[table] += delta
            if self._watched[table] <= 0:
                del self._watched[table]

    def watches(self, table: str) -> bool:
        return table in self._watched

    @property
    def watched(self) -> set[str]:
        return set(self._watched)

    def add(self, table: str, pk: bytes) -> bool:
        """The row with packed primary key ``pk`` of ``table`` changed. Returns True when this
        key passed the bound (the table falls back to a full refresh)."""
        if table not in self._watched or table in self._full:
            return False
        keys = self._keys.setdefault(table, set())
        before = len(keys)
        keys.add(unpack_pk(pk))
        self._count += len(keys) - before
        if self._count <= self.max_keys:
            return False
        self._count -= len(keys)
        del self._keys[table]
        self._full.add(table)
        return True

    def refresh_all(self) -> None:
        """Every watched table is refreshed in full next (the schema changed)."""
        self._full |= set(self._watched)

    def take(self) -> Batch:
        """The changes collected so far; the next batch starts empty."""
        batch = Batch(self._keys, self._full)
        self._keys, self._full, self._count = {}, set(), 0
        return batch
