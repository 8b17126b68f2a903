"""Merging remote change rows: load the rows a batch touches, apply the rules, write back.

Theory of operation: every change is validated first (every clock field within its minimum and
``MAX_CLOCK``, see ``limits.py``), so a bad one rejects the whole call before anything is
written. Then, chunk by chunk in the order given, the merger loads the local state of
every row the chunk touches with a few set-based queries (lookaside keys, clocks, which base rows
exist), runs `merge_rules.apply_change` on each change in memory, and writes the rows that changed
back with batched statements, all inside one write scope with the sync bit on so the recording
triggers stand aside. The result is the same as applying the changes one by one (cr-sqlite's
merge), at a fraction of the statements.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import attrs

from corrosion_py.aliases import SqlValue
from corrosion_py.crdt.change_rows import Change
from corrosion_py.crdt.limits import MAX_CLOCK
from corrosion_py.crdt.merge_rules import SENTINEL, RowState, apply_change
from corrosion_py.crdt.pk import pack_pk, unpack_pk
from corrosion_py.crdt.site import record_versions
from corrosion_py.crdt.state import ConnState, conn_state
from corrosion_py.crdt.tables import TableInfo, q
from corrosion_py.crdt.tx import write_scope
from corrosion_py.errors import (
    MalformedChangeError,
    MalformedPkError,
    UnknownColumnError,
    UnknownTableError,
)

CHUNK = 20_000  # changes per load/apply/write round: bounds the memory of a large merge
_IN_LIMIT = 500  # rows per IN (...) list


# A validated change: its CRR, its decoded pk, the change (a plain tuple: this is the hot path).
_Incoming = tuple[TableInfo, tuple[SqlValue, ...], Change]


_INT_FIELDS = ("col_version", "db_version", "cl", "seq")
_INT_MINIMA = (0, 0, 1, 0)


class _Validator:
    """Checks change rows against this database's CRRs; caches decoded pks per call."""

    def __init__(self, tables: dict[str, TableInfo]) -> None:
        self.tables = tables
        self.pks: dict[tuple[str, bytes], tuple[SqlValue, ...]] = {}

    def __call__(self, raw: Change | Sequence[Any]) -> _Incoming:
        if isinstance(raw, Change):
            ch: Change | None = raw
            table, pk, cid, val, cv, dbv, site_id, cl, seq = (
                raw.table, raw.pk, raw.cid, raw.val, raw.col_version,
                raw.db_version, raw.site_id, raw.cl, raw.seq,
            )  # fmt: skip
        else:
            if len(raw) != 9:
                raise MalformedChangeError(f"a change has 9 fields, got {len(raw)}")
            table, pk, cid, val, cv, dbv, site_id, cl, seq = raw
            ch = None
        info = self.tables.get(table) if type(table) is str else None
        if info is None:
            raise UnknownTableError(f"table {table!r} is not a CRR here")
        if type(pk) is not bytes:
            if not isinstance(pk, _BYTES):
                raise MalformedPkError(f"pk of a change to {table!r} must be bytes")
            pk = bytes(pk)
        pk_values = self.pks.get((table, pk))
        if pk_values is None:
            pk_values = unpack_pk(pk)
            if len(pk_values) != len(info.pks):
                raise MalformedPkError(
                    f"pk of a change to {table!r} has {len(pk_values)} values; "
                    f"the table's primary key has {len(info.pks)}"
                )
            self.pks[(table, pk)] = pk_values
        if cid not in info.colset and cid != SENTINEL:
            raise UnknownColumnError(f"table {table!r} has no column {cid!r}")
        if val is not None and type(val) not in _SQL_TYPES and not isinstance(val, _SQL_TYPES):
            raise MalformedChangeError(f"value of type {type(val).__name__} is not an SQL value")
        if type(site_id) is not bytes:
            if not isinstance(site_id, _BYTES):
                raise MalformedChangeError("site_id must be 16 bytes")
            site_id = bytes(site_id)
        if len(site_id) != 16:
            raise MalformedChangeError("site_id must be 16 bytes")
        if not (type(cv) is type(dbv) is type(cl) is type(seq) is int and cl >= 1):
            _check_ints(cv, dbv, cl, seq)
        if not (
            0 <= cv <= MAX_CLOCK
            and 0 <= dbv <= MAX_CLOCK
            and cl <= MAX_CLOCK
            and 0 <= seq <= MAX_CLOCK
        ):
            _check_ints(cv, dbv, cl, seq)
        if ch is None or ch.pk is not pk or ch.site_id is not site_id:
            ch = Change(table, pk, cid, val, cv, dbv, site_id, cl, seq)
        return (info, pk_values, ch)


_BYTES = (bytes, bytearray, memoryview)
_SQL_TYPES = (int, float, str, bytes)


def _check_ints(*values: Any) -> None:
    for field, value, minimum in zip(_INT_FIELDS, values, _INT_MINIMA, strict=True):
        if type(value) is not int or not minimum <= value <= MAX_CLOCK:
            raise MalformedChangeError(
                f"{field} must be an integer in [{minimum}, {MAX_CLOCK}], got {value!r}"
            )


def _chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


class _TableBatch:
    """The rows of one CRR that a chunk touches: loaded, merged in memory, written back."""

    def __init__(self, conn: sqlite3.Connection, st: ConnState, info: TableInfo) -> None:
        self.conn, self.st, self.info = conn, st, info
        self.pk_values: dict[bytes, tuple[SqlValue, ...]] = {}
        self.keys: dict[bytes, int] = {}  # packed pk -> lookaside key, for rows known here
        self.rows: dict[bytes, RowState] = {}
        self.pk_cols = ", ".join(q(p) for p in info.pks)
        self.pk_match = " AND ".join(f"{q(p)} IS ?" for p in info.pks)

    def _where_in(self, n: int) -> str:
        if len(self.info.pks) == 1:
            return f"{q(self.info.pks[0])} IN ({', '.join('?' * n)})"
        row = "(" + ", ".join("?" * len(self.info.pks)) + ")"
        return f"({self.pk_cols}) IN (VALUES {', '.join([row] * n)})"

    def load(self) -> None:
        """Learn keys, clocks and base-row existence of every touched row, set-based."""
        info, ex = self.info, self.conn.execute
        packed = list(self.pk_values)
        existing: set[bytes] = set()
        for part in _chunks(packed, _IN_LIMIT):
            params = [v for pk in part for v in self.pk_values[pk]]
            where = self._where_in(len(part))
            for key, *vals in ex(
                f"SELECT __crsql_key, {self.pk_cols} FROM {info.lookaside} WHERE {where}", params
            ):
                self.keys[pack_pk(vals)] = key
            for vals in ex(f"SELECT {self.pk_cols} FROM {q(info.name)} WHERE {where}", params):
                existing.add(pack_pk(vals))
        by_key = {key: pk for pk, key in self.keys.items()}
        clocks: dict[bytes, dict[str, tuple[int, bytes, int, int]]] = defaultdict(dict)
        for part in _chunks(list(by_key), _IN_LIMIT):
            for key, name, cv, site, dbv, seq in ex(
                "SELECT key, col_name, col_version, site_id, db_version, seq FROM "
                f"{info.clock} WHERE key IN ({', '.join('?' * len(part))})",
                part,
            ):
                origin = b"" if seq < 0 else self.st.site_of(self.conn, site)  # provisional
                clocks[by_key[key]][name] = (cv, origin, dbv, seq)
        for pk in packed:
            row_clocks = clocks.get(pk, {})
            sentinel = row_clocks.pop(SENTINEL, None)
            self.rows[pk] = RowState(pk, pk in existing, sentinel, row_clocks)

    def current(self, row: RowState, cid: str) -> tuple[bool, SqlValue]:
        """A column's value in the base table, for the rare equal-clock comparison."""
        got = self.conn.execute(
            f"SELECT {q(cid)} FROM {q(self.info.name)} WHERE {self.pk_match}",
            self.pk_values[row.pk],
        ).fetchone()
        return (False, None) if got is None else (True, got[0])

    def write(self) -> None:
        """Write every changed row back: lookaside keys, base rows, then clocks."""
        info, conn = self.info, self.conn
        changed = {pk: row for pk, row in self.rows.items() if row.dirty or row.reset}
        new = [pk for pk in self.rows if pk not in self.keys]
        if new:  # lookaside keys are created for every pk a merge sees (merge step 1)
            top = conn.execute(f"SELECT max(__crsql_key) FROM {info.lookaside}").fetchone()[0]
            first = (top or 0) + 1
            for i, pk in enumerate(new):
                self.keys[pk] = first + i
            marks = ", ".join("?" * (1 + len(info.pks)))
            conn.executemany(
                f"INSERT INTO {info.lookaside} (__crsql_key, {self.pk_cols}) VALUES ({marks})",
                [(self.keys[pk], *self.pk_values[pk]) for pk in new],
            )
        self._write_base(changed)
        self._write_clocks(changed)

    def _write_base(self, changed: dict[bytes, RowState]) -> None:
        info, conn = self.info, self.conn
        deletes = [self.pk_values[pk] for pk, row in changed.items() if row.reset and row.existed]
        if deletes:
            conn.executemany(f"DELETE FROM {q(info.name)} WHERE {self.pk_match}", deletes)
        inserts: dict[tuple[str, ...], list[tuple[SqlValue, ...]]] = defaultdict(list)
        updates: dict[tuple[str, ...], list[tuple[SqlValue, ...]]] = defaultdict(list)
        for pk, row in changed.items():
            cols = tuple(c for c in info.cols if c in row.values)
            values = tuple(row.values[c] for c in cols)
            if row.exists and (row.reset or not row.existed):
                inserts[cols].append((*self.pk_values[pk], *values))
            elif row.exists and cols:
                updates[cols].append((*values, *self.pk_values[pk]))
        for cols, params in inserts.items():
            names = ", ".join(q(c) for c in (*info.pks, *cols))
            marks = ", ".join("?" * (len(info.pks) + len(cols)))
            conn.executemany(f"INSERT INTO {q(info.name)} ({names}) VALUES ({marks})", params)
        for cols, params in updates.items():
            sets = ", ".join(f"{q(c)} = ?" for c in cols)
            conn.executemany(f"UPDATE {q(info.name)} SET {sets} WHERE {self.pk_match}", params)

    def _write_clocks(self, changed: dict[bytes, RowState]) -> None:
        info, conn, st = self.info, self.conn, self.st
        drops = [(self.keys[pk],) for pk, row in changed.items() if row.reset]
        if drops:
            conn.executemany(f"DELETE FROM {info.clock} WHERE key = ? AND col_name != '-1'", drops)
        upserts = []
        ordinals: dict[bytes, int] = {}
        for pk, row in changed.items():
            key = self.keys[pk]
            for name in row.dirty:
                clock = row.sentinel if name == SENTINEL else row.clocks[name]
                assert clock is not None
                cv, site, dbv, seq = clock
                ordinal = ordinals.get(site)
                if ordinal is None:  # b"": a provisional sentinel, stored as the local site
                    ordinal = ordinals[site] = st.ordinal(conn, site) if site else 0
                upserts.append((key, name, cv, dbv, ordinal, seq))
        conn.executemany(
            f"INSERT INTO {info.clock} (key, col_name, col_version, db_version, site_id, seq) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key, col_name) DO UPDATE SET "
            "col_version = excluded.col_version, db_version = excluded.db_version, "
            "site_id = excluded.site_id, seq = excluded.seq",
            upserts,
        )


def _apply_chunk(
    conn: sqlite3.Connection,
    st: ConnState,
    items: Sequence[_Incoming],
    impactful: list[Change] | None,
) -> int:
    batches: dict[str, _TableBatch] = {}
    for info, pk_values, ch in items:
        batch = batches.get(info.name)
        if batch is None:
            batch = batches[info.name] = _TableBatch(conn, st, info)
        batch.pk_values.setdefault(ch.pk, pk_values)
    for batch in batches.values():
        batch.load()
    impacted = 0
    current = None
    rows: dict[bytes, RowState] = {}
    last = ""
    for info, _, ch in items:
        if info.name != last:
            batch = batches[info.name]
            rows, current, last = batch.rows, batch.current, info.name
        assert current is not None
        n = apply_change(rows[ch.pk], ch, current)
        if n:
            impacted += n
            if impactful is not None:
                impactful.append(ch)
    for batch in batches.values():
        batch.write()
    return impacted


def _apply(
    conn: sqlite3.Connection,
    st: ConnState,
    items: Sequence[_Incoming],
    impactful: list[Change] | None = None,
) -> int:
    impacted = sum(_apply_chunk(conn, st, part, impactful) for part in _chunks(items, CHUNK))
    max_seen: dict[bytes, int] = {}
    for _, _, ch in items:  # crsql_db_versions: the max version seen per site, won or lost
        if ch.db_version > max_seen.get(ch.site_id, -1):
            max_seen[ch.site_id] = ch.db_version
    record_versions(conn, max_seen)
    st.rows_impacted += impacted
    return impacted


@attrs.frozen
class MergeResult:
    """What a merge did: rows impacted (cr-sqlite's count: `merge_rules.apply_change`) and the
    changes that impacted something, in the
    order given (what subscriptions need to look at)."""

    rows_impacted: int
    impactful: list[Change]


def merge(conn: sqlite3.Connection, changes: Iterable[Change | Sequence[Any]]) -> int:
    """Apply remote change rows atomically; return the number of rows impacted (as
    ``crsql_rows_impacted()`` counts them: `merge_rules.apply_change`).

    Runs in its own transaction, or in a savepoint of the caller's. Any invalid change (unknown
    table or column, malformed pk or field) raises before anything is written.
    """
    return _merge(conn, changes, None)


def merge_changes(
    conn: sqlite3.Connection, changes: Iterable[Change | Sequence[Any]]
) -> MergeResult:
    """`merge`, also saying which changes impacted rows."""
    impactful: list[Change] = []
    return MergeResult(_merge(conn, changes, impactful), impactful)


def _merge(
    conn: sqlite3.Connection,
    changes: Iterable[Change | Sequence[Any]],
    impactful: list[Change] | None,
) -> int:
    st = conn_state(conn)
    validate = _Validator(st.crrs(conn))
    items = [validate(raw) for raw in changes]
    if not conn.in_transaction:  # crsql_rows_impacted() counts per transaction
        st.rows_impacted = 0
    with write_scope(conn, st, sync=True):
        return _apply(conn, st, items, impactful)


def merge_in_statement(conn: sqlite3.Connection, raw: Sequence[Any]) -> int:
    """Merge one change from inside a running SQL statement (``INSERT INTO crsql_changes``):
    the statement's own transaction brackets it, so no BEGIN or SAVEPOINT is issued."""
    st = conn_state(conn)
    item = _Validator(st.crrs(conn))(raw)
    if not conn.in_transaction:  # an autocommit INSERT is its own transaction
        st.rows_impacted = 0
    saved = st.sync_bit
    st.depth += 1
    st.sync_bit = 1
    try:
        return _apply(conn, st, [item])
    finally:
        st.depth -= 1
        st.sync_bit = saved
