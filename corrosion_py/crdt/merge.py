"""Merging remote change rows, following cr-sqlite 0.16's §3.2 step by step.

Theory of operation: every change is validated first (a bad one rejects the whole call before
anything is written); then the changes are applied one by one, in the order given, inside one
write scope with the sync bit on so the recording triggers stand aside. Per row the merger keeps
what it learnt (lookaside key, sentinel, whether any clock exists) so a changeset's many columns
of one row cost one lookup.

Where we deliberately differ from upstream (docs/crdt.md):
- a winning change keeps the origin's db_version and seq (no Lamport bump), and
  ``crsql_db_versions`` records the max version seen per site, won or lost;
- resurrect zeroing sets col_version 0 and keeps each clock's db_version, site and seq;
- ties that upstream leaves unbroken (equal value at equal clocks, equal-cl sentinels) go to the
  larger (site_id, db_version, seq), so clock metadata converges and not only data.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from corrosion_py.crdt.changes import Change
from corrosion_py.crdt.pk import SqlValue, compare, unpack_pk
from corrosion_py.crdt.schema import SENTINEL, TableInfo, q
from corrosion_py.crdt.state import ConnState, conn_state
from corrosion_py.crdt.tx import write_scope
from corrosion_py.errors import (
    MalformedChangeError,
    MalformedPkError,
    UnknownColumnError,
    UnknownTableError,
)

Clock = tuple[int, int, int, int]  # col_version, site ordinal, db_version, seq


@attrs.frozen
class _Incoming:
    info: TableInfo
    pk_values: tuple[SqlValue, ...]
    change: Change


@attrs.define
class _Row:
    key: int
    sentinel: Clock | None
    known: bool  # some clock row exists for the key

    @property
    def cl(self) -> int:
        if self.sentinel is not None:
            return self.sentinel[0]
        return 1 if self.known else 0


def _int(field: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MalformedChangeError(f"{field} must be an integer >= {minimum}, got {value!r}")
    return value


def _validate(tables: dict[str, TableInfo], raw: Change | Sequence[Any]) -> _Incoming:
    if isinstance(raw, Change):
        fields = attrs.astuple(raw, recurse=False)
    else:
        fields = tuple(raw)
        if len(fields) != 9:
            raise MalformedChangeError(f"a change has 9 fields, got {len(fields)}")
    table, pk, cid, val, col_version, db_version, site_id, cl, seq = fields
    if not isinstance(table, str) or len(table.encode()) > 2048:
        raise MalformedChangeError(f"table must be a name of at most 2048 bytes, got {table!r}")
    info = tables.get(table)
    if info is None:
        raise UnknownTableError(f"table {table!r} is not a CRR here")
    if not isinstance(pk, bytes | bytearray | memoryview):
        raise MalformedPkError(f"pk of a change to {table!r} must be bytes")
    pk_values = unpack_pk(pk)
    if len(pk_values) != len(info.pks):
        raise MalformedPkError(
            f"pk of a change to {table!r} has {len(pk_values)} values; "
            f"the table's primary key has {len(info.pks)}"
        )
    if not isinstance(cid, str) or (cid != SENTINEL and cid not in info.cols):
        raise UnknownColumnError(f"table {table!r} has no column {cid!r}")
    if val is not None and not isinstance(val, int | float | str | bytes):
        raise MalformedChangeError(f"value of type {type(val).__name__} is not an SQL value")
    if not isinstance(site_id, bytes | bytearray | memoryview) or len(site_id) != 16:
        raise MalformedChangeError("site_id must be 16 bytes")
    change = Change(
        table,
        bytes(pk),
        cid,
        val,
        _int("col_version", col_version, 0),
        _int("db_version", db_version, 0),
        bytes(site_id),
        _int("cl", cl, 1),
        _int("seq", seq, 0),
    )
    return _Incoming(info, pk_values, change)


class _TableSql:
    """The statements the merge runs against one CRR."""

    def __init__(self, info: TableInfo) -> None:
        t, c, lk = q(info.name), info.clock, info.lookaside
        pk_cols = ", ".join(q(p) for p in info.pks)
        marks = ", ".join("?" for _ in info.pks)
        pk_match = " AND ".join(f"{q(p)} IS ?" for p in info.pks)
        self.key_select = f"SELECT __crsql_key FROM {lk} WHERE {pk_match}"
        self.key_insert = f"INSERT INTO {lk} ({pk_cols}) VALUES ({marks})"
        self.sentinel = f"SELECT col_version, site_id, db_version, seq FROM {c} WHERE key = ? AND col_name = '-1'"
        self.known = f"SELECT 1 FROM {c} WHERE key = ? LIMIT 1"
        self.clock = f"SELECT col_version, site_id, db_version, seq FROM {c} WHERE key = ? AND col_name = ?"
        self.clock_upsert = (
            f"INSERT INTO {c} (key, col_name, col_version, db_version, site_id, seq) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key, col_name) DO UPDATE SET "
            "col_version = excluded.col_version, db_version = excluded.db_version, "
            "site_id = excluded.site_id, seq = excluded.seq"
        )
        self.drop_columns = f"DELETE FROM {c} WHERE key = ? AND col_name != '-1'"
        self.zero_columns = f"UPDATE {c} SET col_version = 0 WHERE key = ? AND col_name != '-1'"
        self.base_delete = f"DELETE FROM {t} WHERE {pk_match}"
        self.base_create = f"INSERT OR IGNORE INTO {t} ({pk_cols}) VALUES ({marks})"
        self.base_set = {
            col: f"INSERT INTO {t} ({pk_cols}, {q(col)}) VALUES ({marks}, ?) "
            f"ON CONFLICT ({pk_cols}) DO UPDATE SET {q(col)} = excluded.{q(col)}"
            for col in info.cols
        }
        self.base_get = {col: f"SELECT {q(col)} FROM {t} WHERE {pk_match}" for col in info.cols}


class _Merger:
    def __init__(self, conn: sqlite3.Connection, st: ConnState) -> None:
        self.conn = conn
        self.st = st
        self.sql: dict[str, _TableSql] = {}
        self.rows: dict[tuple[str, bytes], _Row] = {}
        self.max_seen: dict[bytes, int] = {}

    def _table_sql(self, info: TableInfo) -> _TableSql:
        got = self.sql.get(info.name)
        if got is None:
            got = self.sql[info.name] = _TableSql(info)
        return got

    def _row(self, inc: _Incoming, sql: _TableSql) -> _Row:
        """§3.2 step 1-2: get or create the lookaside key, and learn the row's causal length."""
        ident = (inc.info.name, inc.change.pk)
        row = self.rows.get(ident)
        if row is not None:
            return row
        ex = self.conn.execute
        found = ex(sql.key_select, inc.pk_values).fetchone()
        if found is None:
            key = ex(sql.key_insert, inc.pk_values).lastrowid
            assert key is not None
            row = _Row(key, None, False)
        else:
            key = found[0]
            sent = ex(sql.sentinel, (key,)).fetchone()
            known = sent is not None or ex(sql.known, (key,)).fetchone() is not None
            row = _Row(key, tuple(sent) if sent else None, known)  # type: ignore[arg-type]
        self.rows[ident] = row
        return row

    def _meta_wins(self, ch: Change, local: Clock) -> bool:
        """Our tie-break: the larger (site_id, db_version, seq) wins."""
        theirs = (ch.site_id, ch.db_version, ch.seq)
        return theirs > (self.st.site_of(self.conn, local[1]), local[2], local[3])

    def _write_sentinel(self, sql: _TableSql, row: _Row, ch: Change, cl: int) -> None:
        site = self.st.ordinal(self.conn, ch.site_id)
        self.conn.execute(sql.clock_upsert, (row.key, SENTINEL, cl, ch.db_version, site, ch.seq))
        row.sentinel = (cl, site, ch.db_version, ch.seq)
        row.known = True

    def _resurrect(self, inc: _Incoming, sql: _TableSql, row: _Row, cl: int) -> None:
        self.conn.execute(sql.base_create, inc.pk_values)
        self.conn.execute(sql.zero_columns, (row.key,))
        self._write_sentinel(sql, row, inc.change, cl)

    def merge_one(self, inc: _Incoming) -> int:
        ch = inc.change
        prev = self.max_seen.get(ch.site_id, -1)
        if ch.db_version > prev:
            self.max_seen[ch.site_id] = ch.db_version
        sql = self._table_sql(inc.info)
        row = self._row(inc, sql)
        local_cl = row.cl
        if ch.cl < local_cl:  # step 3
            return 0
        if ch.cl % 2 == 0:  # step 4: a delete
            if ch.cl == local_cl:
                assert row.sentinel is not None
                if not self._meta_wins(ch, row.sentinel):
                    return 0
                self._write_sentinel(sql, row, ch, ch.cl)
                return 1
            self.conn.execute(sql.base_delete, inc.pk_values)
            self._write_sentinel(sql, row, ch, ch.cl)
            self.conn.execute(sql.drop_columns, (row.key,))
            return 1
        if ch.cid == SENTINEL:  # step 5: a create record
            if ch.cl == local_cl:
                if row.sentinel is not None and not self._meta_wins(ch, row.sentinel):
                    return 0
                self._write_sentinel(sql, row, ch, ch.cl)
                return 1
            self._resurrect(inc, sql, row, ch.cl)
            return 1
        impacted = 0  # step 6: a column change with odd cl
        needs_resurrect = ch.cl > local_cl
        if needs_resurrect and (local_cl != 0 or ch.cl > 1):
            self._resurrect(inc, sql, row, ch.cl)
            impacted += 1
        if not (needs_resurrect or local_cl == 0) and not self._column_wins(inc, sql, row):
            return impacted
        self.conn.execute(sql.base_set[ch.cid], (*inc.pk_values, ch.val))
        site = self.st.ordinal(self.conn, ch.site_id)
        self.conn.execute(
            sql.clock_upsert, (row.key, ch.cid, ch.col_version, ch.db_version, site, ch.seq)
        )
        row.known = True
        return impacted + 1

    def _column_wins(self, inc: _Incoming, sql: _TableSql, row: _Row) -> bool:
        ch = inc.change
        local = self.conn.execute(sql.clock, (row.key, ch.cid)).fetchone()
        if local is None:
            return True
        if ch.col_version != local[0]:
            return bool(ch.col_version > local[0])
        current = self.conn.execute(sql.base_get[ch.cid], inc.pk_values).fetchone()
        if current is None:  # clocks without a row: let the change recreate it
            return True
        c = compare(ch.val, current[0])
        if c != 0:
            return c > 0
        return self._meta_wins(ch, tuple(local))  # type: ignore[arg-type]

    def record_max_seen(self) -> None:
        self.conn.executemany(
            "INSERT INTO crsql_db_versions (site_id, db_version) VALUES (?, ?) "
            "ON CONFLICT (site_id) DO UPDATE SET db_version = max(db_version, excluded.db_version)",
            self.max_seen.items(),
        )


def _apply(conn: sqlite3.Connection, st: ConnState, items: list[_Incoming]) -> int:
    merger = _Merger(conn, st)
    impacted = sum(merger.merge_one(inc) for inc in items)
    merger.record_max_seen()
    st.rows_impacted += impacted
    return impacted


def merge(conn: sqlite3.Connection, changes: Iterable[Change | Sequence[Any]]) -> int:
    """Apply remote change rows atomically; return the number of rows impacted (§3.5).

    Runs in its own transaction, or in a savepoint of the caller's. Any invalid change (unknown
    table or column, malformed pk or field) raises before anything is written.
    """
    st = conn_state(conn)
    tables = st.crrs(conn)
    items = [_validate(tables, raw) for raw in changes]
    with write_scope(conn, st, sync=True):
        return _apply(conn, st, items)


def merge_in_statement(conn: sqlite3.Connection, raw: Sequence[Any]) -> int:
    """Merge one change from inside a running SQL statement (``INSERT INTO crsql_changes``):
    the statement's own transaction brackets it, so no BEGIN or SAVEPOINT is issued."""
    st = conn_state(conn)
    item = _validate(st.crrs(conn), raw)
    saved = st.sync_bit
    st.depth += 1
    st.sync_bit = 1
    try:
        return _apply(conn, st, [item])
    finally:
        st.depth -= 1
        st.sync_bit = saved
