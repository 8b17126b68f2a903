"""One subscription's materialised result and how it moves: evaluate, re-evaluate what changed,
diff, and number the differences.

Theory of operation: the result is a dict from row key to (rowid, cells). A key is the row's
primary keys (keyed plans) or its cells plus an occurrence number (unkeyed plans, so duplicate
rows stay distinct). A refresh computes the new rows of some *scope* (the partitions a change
touched, or everything), compares them with the stored rows of that scope and records the
differences as numbered changes: a key that appears is an ``insert`` with a new rowid, a key
that goes is a ``delete`` (with its last cells), a key whose cells differ is an ``update``.
Change ids are contiguous from 1; rowids are never reused.

Thread model: only the subscription engine's worker thread refreshes a matcher; readers on the
event loop (a new listener's snapshot, a resume's backlog) take ``lock``, which a refresh holds
only while it mutates the dict, never while it queries SQLite.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

import attrs

from corrosion_py.subs.plan import Plan, Restricted

Key = tuple[Any, ...]
Cells = tuple[Any, ...]
CHUNK = 500
"""Keys per restricted query (a composite key binds one parameter per column; SQLite allows
32,766)."""


@attrs.frozen
class RowChange:
    """A numbered difference of a subscription's result."""

    kind: str  # "insert" | "update" | "delete"
    rowid: int
    cells: Cells
    change_id: int
    key: Key = attrs.field(eq=False, repr=False)


class Matcher:
    """The result of one subscription. ``initialize`` (or ``restore``) before refreshing."""

    def __init__(self, plan: Plan, *, retention: int) -> None:
        self.plan = plan
        self.columns: list[str] = []
        self.rows: dict[Key, tuple[int, Cells]] = {}
        self.next_rowid = 1
        self.change_id = 0
        self.backlog: deque[RowChange] = deque(maxlen=retention)
        """The newest changes, for listeners resuming with ``from``."""
        self.lock = threading.Lock()
        width = len(plan.refs[0].pks) if plan.mode == "incremental" else 0
        self._partition_width = width
        self._partitions: dict[Key, set[Key]] = {}
        self._by_ref: list[dict[Key, set[Key]]] = [{} for _ in plan.refs]

    # -- evaluation --------------------------------------------------------------------------

    def _rows(self, cursor: sqlite3.Cursor) -> Iterator[tuple[Key, Cells]]:
        width = self.plan.key_width
        if not self.columns and cursor.description is not None:
            names = [d[0] for d in cursor.description]
            self.columns = names[: len(names) - width] if width else names
        if width:
            for row in cursor:
                yield tuple(row[-width:]), tuple(row[:-width])
            return
        seen: Counter[Cells] = Counter()
        for row in cursor:
            cells = tuple(row)
            seen[cells] += 1
            yield (*cells, seen[cells]), cells

    def evaluate(self, conn: sqlite3.Connection) -> dict[Key, Cells]:
        """The whole result as it is now, in the query's order."""
        return dict(self._rows(conn.execute(self.plan.sql, self.plan.params)))

    def initialize(self, conn: sqlite3.Connection) -> None:
        """First evaluation: every row gets a rowid, no change is recorded."""
        new = self.evaluate(conn)
        with self.lock:
            for key, cells in new.items():
                self._add(key, self.next_rowid, cells)
                self.next_rowid += 1

    def restore(
        self,
        columns: Sequence[str],
        rows: Iterable[tuple[Key, int, Cells]],
        next_rowid: int,
        changes: Iterable[RowChange],
    ) -> None:
        """State read back from disk (then ``refresh_all`` catches up with the store)."""
        with self.lock:
            self.columns = list(columns)
            for key, rowid, cells in rows:
                self._add(key, rowid, cells)
            self.next_rowid = next_rowid
            self.backlog.extend(changes)
            self.change_id = self.backlog[-1].change_id if self.backlog else 0

    def set_change_id(self, change_id: int) -> None:
        with self.lock:
            self.change_id = max(self.change_id, change_id)

    # -- refreshing --------------------------------------------------------------------------

    def refresh_all(self, conn: sqlite3.Connection) -> list[RowChange]:
        """Re-evaluate everything and record the differences (the fallback, and restarts)."""
        new = self.evaluate(conn)
        changes = self._diff(new, list(self.rows))
        with self.lock:  # keep the query's order for later snapshots (ORDER BY)
            self.rows = {key: self.rows[key] for key in new}
        return changes

    def refresh(self, conn: sqlite3.Connection, changed: Mapping[str, set[Key]]) -> list[RowChange]:
        """Record what ``changed`` (primary keys per table) did to the result."""
        if self.plan.mode != "incremental":
            return self.refresh_all(conn)
        plan = self.plan
        assert plan.partition is not None
        affected: set[Key] = set()
        for index, ref in enumerate(plan.refs):
            keys = changed.get(ref.table)
            if not keys:
                continue
            if index == 0:
                affected |= keys
                continue
            for pk in keys:
                for key in self._by_ref[index].get(pk, ()):
                    affected.add(key[: self._partition_width])
            for rows in _restricted(conn, plan.variants[index], keys):
                affected.update(rows)
        if not affected:
            return []
        new: dict[Key, Cells] = {}
        for chunk_rows in _restricted(conn, plan.partition, affected, cursor=True):
            new.update(self._rows(chunk_rows))
        old = [key for p in affected for key in self._partitions.get(p, ())]
        return self._diff(new, old)

    def _diff(self, new: Mapping[Key, Cells], scope: Iterable[Key]) -> list[RowChange]:
        changes: list[RowChange] = []
        with self.lock:
            for key in scope:
                if key not in new and key in self.rows:
                    rowid, cells = self.rows[key]
                    self._remove(key)
                    changes.append(self._change("delete", rowid, cells, key))
            for key, cells in new.items():
                old = self.rows.get(key)
                if old is None:
                    rowid = self.next_rowid
                    self.next_rowid += 1
                    self._add(key, rowid, cells)
                    changes.append(self._change("insert", rowid, cells, key))
                elif old[1] != cells or _types(old[1]) != _types(cells):
                    self.rows[key] = (old[0], cells)
                    changes.append(self._change("update", old[0], cells, key))
        return changes

    def _change(self, kind: str, rowid: int, cells: Cells, key: Key) -> RowChange:
        self.change_id += 1
        change = RowChange(kind, rowid, cells, self.change_id, key)
        self.backlog.append(change)
        return change

    def _add(self, key: Key, rowid: int, cells: Cells) -> None:
        self.rows[key] = (rowid, cells)
        if self._partition_width:
            self._partitions.setdefault(key[: self._partition_width], set()).add(key)
            for index in range(1, len(self.plan.refs)):
                pk = key[self.plan.key_slice(index)]
                if any(v is not None for v in pk):
                    self._by_ref[index].setdefault(pk, set()).add(key)

    def _remove(self, key: Key) -> None:
        del self.rows[key]
        if self._partition_width:
            _discard(self._partitions, key[: self._partition_width], key)
            for index in range(1, len(self.plan.refs)):
                _discard(self._by_ref[index], key[self.plan.key_slice(index)], key)

    # -- reading (event loop) ----------------------------------------------------------------

    def snapshot(self) -> tuple[list[str], list[tuple[int, Cells]], int]:
        """Columns, rows (rowid, cells) and the change id they include."""
        with self.lock:
            return list(self.columns), list(self.rows.values()), self.change_id

    def changes_after(self, change_id: int) -> list[RowChange] | None:
        """Changes newer than ``change_id``; None when some of them are no longer kept."""
        with self.lock:
            if change_id >= self.change_id:
                return []
            oldest = self.backlog[0].change_id if self.backlog else self.change_id + 1
            if change_id + 1 < oldest:
                return None
            return [c for c in self.backlog if c.change_id > change_id]

    @property
    def oldest_kept(self) -> int:
        with self.lock:
            return self.backlog[0].change_id if self.backlog else self.change_id + 1


def _types(cells: Cells) -> tuple[type, ...]:
    """1 and 1.0 compare equal in Python but are different SQLite values."""
    return tuple(type(c) for c in cells)


def _discard(index: dict[Key, set[Key]], at: Key, key: Key) -> None:
    keys = index.get(at)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[at]


def _restricted(
    conn: sqlite3.Connection, query: Restricted, keys: Iterable[Key], *, cursor: bool = False
) -> Iterator[Any]:
    """Run ``query`` for ``keys`` in chunks: yields each chunk's rows (or cursor)."""
    it = iter(keys)
    while chunk := list(islice(it, CHUNK)):
        params = [v for key in chunk for v in key]
        result = conn.execute(query.sql(len(chunk)), params)
        yield result if cursor else result.fetchall()
