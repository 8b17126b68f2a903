"""The merge rules of cr-sqlite 0.16, as pure functions on one row.

The steps, in cr-sqlite's order (the comments below name them): 1. the row gets a lookaside key
(`merger.py`); 2. its local causal length is its sentinel's, else 1 if it has any clock, else 0;
3. a change with a smaller cl is ignored; 4. an even cl is a delete, decided before the column;
5. a sentinel with a larger odd cl resurrects the row; 6. a column change with odd cl resurrects
the row first if its cl is larger, then wins when there is no local clock, a larger col_version,
or the larger value at an equal one (`compare`). Rows impacted count +1 for a delete, a
resurrection and a winning column, as ``crsql_rows_impacted()`` does.

Everything that decides whether a remote change wins lives in this file; it reads no SQL and
writes none. `merge.py` loads the local state of the rows a batch touches, runs these rules on
each change in order, and writes the resulting rows back with set-based statements. Keeping the
rules on an in-memory row makes a batch exactly equivalent to applying its changes one by one.

Our deliberate differences from upstream (docs/crdt.md) are here too: a winning change keeps
its origin's db_version and seq; resurrection zeroes col_version but keeps each clock's
db_version, site and seq; and ties upstream leaves open (equal values at equal clocks, equal-cl
sentinels) go to the larger (site_id, db_version, seq), so clock metadata converges too.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from corrosion_py.aliases import SqlValue
from corrosion_py.crdt.change_rows import Change
from corrosion_py.crdt.pk import compare

SENTINEL = "-1"

# A clock as the rules see it: (col_version, site_id blob, db_version, seq).
Clock = tuple[int, bytes, int, int]
Meta = tuple[bytes, int, int]

# The metadata of a provisional sentinel: the causal length a column change brought before the
# row's own sentinel arrived. It is stored with the local site, db_version 0 and seq -1, is not
# a change row (`changes()` skips it), and any real sentinel at the same cl replaces it, so the
# sentinel a node ends with does not depend on the order changes arrived in.
PROVISIONAL: Meta = (b"", 0, -1)


def is_provisional(clock: Clock) -> bool:
    return clock[3] < 0


@attrs.define
class RowState:
    """One row's local state while a batch is merged, and what changed since it was loaded."""

    pk: bytes  # the packed primary key
    exists: bool  # the base row exists
    sentinel: Clock | None = None
    clocks: dict[str, Clock] = attrs.Factory(dict)  # non-sentinel column clocks
    reset: bool = False  # the row was deleted during the batch: columns restart at defaults
    values: dict[str, SqlValue] = attrs.Factory(dict)  # column values written during the batch
    dirty: set[str] = attrs.Factory(set)  # clock names (incl. "-1") written during the batch
    existed: bool = False  # `exists` when loaded

    def __attrs_post_init__(self) -> None:
        self.existed = self.exists

    @property
    def cl(self) -> int:
        """Causal length: the sentinel's col_version, else 1 if any clock exists, else 0."""
        if self.sentinel is not None:
            return self.sentinel[0]
        return 1 if self.clocks else 0

    def set_sentinel(self, cl: int, meta: Meta) -> None:
        self.sentinel = (cl, *meta)
        self.dirty.add(SENTINEL)

    def delete(self) -> None:
        self.exists = False
        self.reset = True
        self.values.clear()
        self.clocks.clear()
        self.dirty.clear()  # the writer drops the stored clocks, then writes what is dirty

    def resurrect(self, cl: int, meta: Meta = PROVISIONAL) -> None:
        self.exists = True  # INSERT OR IGNORE of the pk alone: a missing row gets defaults
        for name, clock in self.clocks.items():
            self.clocks[name] = (0, *clock[1:])
            self.dirty.add(name)
        self.set_sentinel(cl, meta)

    def set_column(self, cid: str, val: SqlValue, clock: Clock) -> None:
        self.exists = True
        self.values[cid] = val
        self.clocks[cid] = clock
        self.dirty.add(cid)


# Looks up a column's current base-table value: (found, value); found is False if no row.
CurrentValue = Callable[[RowState, str], tuple[bool, SqlValue]]


def apply_change(row: RowState, ch: Change, current: CurrentValue) -> int:
    """Merge one change into ``row`` by the steps above; return its rows-impacted count."""
    cl = ch.cl
    sentinel = row.sentinel
    local_cl = sentinel[0] if sentinel is not None else (1 if row.clocks else 0)
    if cl < local_cl:  # step 3: an older life of the row
        return 0
    meta = (ch.site_id, ch.db_version, ch.seq)
    if cl % 2 == 0:  # step 4: a delete, decided before looking at cid
        if cl == local_cl:
            assert sentinel is not None
            if meta <= sentinel[1:]:
                return 0
            row.set_sentinel(cl, meta)
            return 1
        row.delete()
        row.set_sentinel(cl, meta)
        return 1
    cid = ch.cid
    if cid == SENTINEL:  # step 5: a create record
        if cl == local_cl:
            if sentinel is not None and not is_provisional(sentinel) and meta <= sentinel[1:]:
                return 0
            row.set_sentinel(cl, meta)
            return 1
        row.resurrect(cl, meta)
        return 1
    impacted = 0  # step 6: a column change with odd cl
    needs_resurrect = cl > local_cl
    if needs_resurrect and (local_cl != 0 or cl > 1):
        row.resurrect(cl)  # upstream takes the column change's metadata: ours is provisional
        impacted = 1
    if not (needs_resurrect or local_cl == 0) and not _column_wins(row, ch, meta, current):
        return impacted
    row.set_column(cid, ch.val, (ch.col_version, *meta))
    return impacted + 1


def _column_wins(row: RowState, ch: Change, meta: Meta, current: CurrentValue) -> bool:
    cid, col_version = ch.cid, ch.col_version
    local = row.clocks.get(cid)
    if local is None:  # e.g. a column added later, never written here
        return True
    if col_version != local[0]:
        return col_version > local[0]
    found, value = (True, row.values[cid]) if cid in row.values else current(row, cid)
    if not found:  # clocks without a row: let the change recreate it
        return True
    c = compare(ch.val, value)
    if c != 0:
        return c > 0
    return meta > local[1:]
