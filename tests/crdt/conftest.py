"""Shared fixtures for the CRR engine scenario tests (translations of cr-sqlite's upstream suites).

Everything is exposed through fixtures so that test modules never import this file:

* ``make_db(name=None, path=None)`` opens a file database under ``tmp_path`` with
  ``isolation_level=None``, runs ``crdt.init`` and returns the connection.
* ``h`` is a small namespace of helpers (``h.write``, ``h.changes``, ``h.sync`` ...).
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

PK1 = b"\x01\x09\x01"
PK2 = b"\x01\x09\x02"
PK3 = b"\x01\x09\x03"

SIMPLE_SCHEMA = "CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b INTEGER) STRICT"
PKO_SCHEMA = "CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL) STRICT"


def q(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _crdt() -> Any:
    from corrosion_py import crdt

    return crdt


class Helpers:
    """Helpers shared by every scenario module (reached through the ``h`` fixture)."""

    PK1 = PK1
    PK2 = PK2
    PK3 = PK3
    SIMPLE_SCHEMA = SIMPLE_SCHEMA
    PKO_SCHEMA = PKO_SCHEMA

    q = staticmethod(q)

    @property
    def crdt(self) -> Any:
        return _crdt()

    def write(self, conn: sqlite3.Connection, *stmts: str | tuple[str, Iterable[Any]]) -> Any:
        """Run statements inside one ``crdt.transaction``; return ``tx.version``."""
        with _crdt().transaction(conn) as tx:
            for stmt in stmts:
                if isinstance(stmt, tuple):
                    conn.execute(stmt[0], tuple(stmt[1]))
                else:
                    conn.execute(stmt)
        return tx.version

    def raw_changes(self, conn: sqlite3.Connection, **kw: Any) -> list[Any]:
        return list(_crdt().changes(conn, **kw))

    def changes(self, conn: sqlite3.Connection, **kw: Any) -> list[tuple[Any, ...]]:
        """``crdt.changes`` as 9-tuples. Checks the documented (db_version, seq) order, then
        orders ties (possible for merged rows) by (table, pk, cid) so that expected lists are
        deterministic: upstream leaves the order of ties unspecified."""
        rows = [attrs.astuple(c) for c in _crdt().changes(conn, **kw)]
        keys = [(r[5], r[8]) for r in rows]
        assert keys == sorted(keys), f"changes not in (db_version, seq) order: {keys}"
        return sorted(rows, key=lambda r: (r[5], r[8], r[0], r[1], r[2]))

    def cols(self, conn: sqlite3.Connection, *names: str, **kw: Any) -> list[tuple[Any, ...]]:
        """Project the changes onto the named Change fields."""
        return [tuple(getattr_t(r, n) for n in names) for r in self.changes(conn, **kw)]

    def merge(self, conn: sqlite3.Connection, changes: Iterable[Any]) -> int:
        return int(_crdt().merge(conn, list(changes)))

    def sync(
        self,
        src: sqlite3.Connection,
        dst: sqlite3.Connection,
        since: int = 0,
        *,
        exact: int | None = None,
        exclude_receiver: bool = False,
    ) -> int:
        """Upstream's sync helper: ship every change of ``src`` with db_version > since (or ==
        exact) into ``dst`` in one merge call; return rows impacted."""
        rows = self.changes(src)
        if exact is not None:
            rows = [r for r in rows if r[5] == exact]
        else:
            rows = [r for r in rows if r[5] > since]
        if exclude_receiver:
            dst_site = _crdt().site_id(dst)
            rows = [r for r in rows if r[6] != dst_site]
        return self.merge(dst, rows)

    def site(self, conn: sqlite3.Connection) -> bytes:
        return bytes(_crdt().site_id(conn))

    def dbv(self, conn: sqlite3.Connection) -> int:
        return int(_crdt().db_version(conn))

    def pk(self, *values: Any) -> bytes:
        return bytes(_crdt().pack_pk(values))

    def rows(self, conn: sqlite3.Connection, table: str = "foo") -> list[tuple[Any, ...]]:
        n = len(conn.execute(f"PRAGMA table_info({q(table)})").fetchall())
        order = ", ".join(str(i) for i in range(1, n + 1))
        return conn.execute(f"SELECT * FROM {q(table)} ORDER BY {order}").fetchall()

    def typed_rows(self, conn: sqlite3.Connection, table: str) -> list[tuple[Any, ...]]:
        """Every row as (value, typeof(value)) pairs so that 1 and 1.0 compare different."""
        names = [r[1] for r in conn.execute(f"PRAGMA table_info({q(table)})")]
        sel = ", ".join(f"{q(n)}, typeof({q(n)})" for n in names)
        return conn.execute(f"SELECT {sel} FROM {q(table)} ORDER BY 1").fetchall()

    def clock(self, conn: sqlite3.Connection, table: str = "foo") -> list[tuple[Any, ...]]:
        return conn.execute(
            "SELECT key, col_name, col_version, db_version, site_id, seq"
            f" FROM {q(table + '__crsql_clock')} ORDER BY key, col_name"
        ).fetchall()

    def sentinel_count(self, conn: sqlite3.Connection, table: str = "foo") -> int:
        return int(
            conn.execute(
                f"SELECT count(*) FROM {q(table + '__crsql_clock')} WHERE col_name = '-1'"
            ).fetchone()[0]
        )

    def lookaside(self, conn: sqlite3.Connection, table: str = "foo") -> list[tuple[Any, ...]]:
        return conn.execute(f"SELECT * FROM {q(table + '__crsql_pks')} ORDER BY 1").fetchall()

    def lo_hi(
        self, a: sqlite3.Connection, b: sqlite3.Connection
    ) -> tuple[sqlite3.Connection, sqlite3.Connection]:
        """Order two peers by site id blob (the metadata tie-break of our engine)."""
        return (a, b) if self.site(a) < self.site(b) else (b, a)


_FIELDS = ("table", "pk", "cid", "val", "col_version", "db_version", "site_id", "cl", "seq")


def getattr_t(row: tuple[Any, ...], name: str) -> Any:
    return row[_FIELDS.index(name)]


@pytest.fixture
def h() -> Helpers:
    return Helpers()


@pytest.fixture
def make_db(tmp_path: Path) -> Iterator[Callable[..., sqlite3.Connection]]:
    conns: list[sqlite3.Connection] = []
    counter = itertools.count()

    def factory(
        *schema: str, path: Path | str | None = None, crr: Iterable[str] = ()
    ) -> sqlite3.Connection:
        """Open (or reopen, with ``path``) an initialised database; run ``schema`` statements,
        then ``crdt.as_crr`` for each table in ``crr``."""
        crdt = _crdt()
        p = Path(path) if path is not None else tmp_path / f"db{next(counter)}.sqlite"
        conn = sqlite3.connect(p, isolation_level=None)
        conns.append(conn)
        crdt.init(conn)
        for stmt in schema:
            conn.execute(stmt)
        for table in crr:
            crdt.as_crr(conn, table)
        return conn

    yield factory
    for conn in conns:
        conn.close()


@pytest.fixture
def simple(make_db: Callable[..., sqlite3.Connection]) -> Callable[[], sqlite3.Connection]:
    """Factory for upstream's ``make_simple_schema``: foo(a INTEGER PK NOT NULL, b INTEGER)."""
    return lambda: make_db(SIMPLE_SCHEMA, crr=["foo"])


@pytest.fixture
def pko(make_db: Callable[..., sqlite3.Connection]) -> Callable[[], sqlite3.Connection]:
    """Factory for upstream's ``make_pko_schema``: the pk-only foo(a INTEGER PK NOT NULL)."""
    return lambda: make_db(PKO_SCHEMA, crr=["foo"])
