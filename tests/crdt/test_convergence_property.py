"""Convergence property of the CRR engine (nodes that received the same changes, in any order,
with duplicates, hold identical tables and clocks), as a hypothesis state machine.

Several replicas (stdlib sqlite3 connections, one file each) run random local transactions and
exchange random, shuffled, duplicated, split subsets of each other's change rows. At the end a
full all-pairs exchange must reach a fixpoint within a few rounds, after which every replica holds

* identical user tables (compared with ``typeof`` per value, so ``1`` and ``1.0`` differ), and
* identical clock metadata: the same set of ``attrs.astuple(change)`` from ``crdt.changes``.
  These tuples are globally meaningful: site ids are blobs and merged rows keep the origin's
  db_version and seq.

Along the way and at the end it also checks that

* merge is idempotent: re-merging rows a replica already has (its own change rows, a batch it
  has just merged, every row ever seen once converged) impacts 0 rows and changes nothing;
* merge is order-independent: fresh replicas that receive the union of all change rows in
  different shuffled orders (one call, or many small calls), or every change row ever observed
  anywhere (stale ones included), end identical to the others;
* a local transaction that hits a constraint error rolls back completely;
* ``crdt.changes`` filters return a subset of the full change set that honours the filter.

Modelled on cr-sqlite's ``test_sync_prop.py``, with a richer
statement mix and adversarial delivery. The default run is small; ``-m slow`` runs a heavier one.
"""

from __future__ import annotations

import itertools
import random
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)

from corrosion_py import crdt

SCHEMA = (
    "CREATE TABLE items(id INTEGER PRIMARY KEY NOT NULL, name TEXT, qty INTEGER, price REAL,"
    " tag BLOB)",
    "CREATE TABLE edges(src TEXT NOT NULL, dst INTEGER NOT NULL, w, PRIMARY KEY (src, dst))",
    "CREATE TABLE tags(name TEXT PRIMARY KEY NOT NULL)",
)
# table -> (pk columns in PRIMARY KEY order, non-pk columns)
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "items": (("id",), ("name", "qty", "price", "tag")),
    "edges": (("src", "dst"), ("w",)),
    "tags": (("name",), ()),
}
MAX_REPLICAS = 5

# Small domains so that key collisions, resurrections and equal-value ties are frequent. The
# first element of each list is what hypothesis shrinks towards.
PK_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "id": st.sampled_from([1, 2, 3, -1, 2**40]),
    "src": st.sampled_from(["a", "b", "é"]),
    "dst": st.sampled_from([1, 2, -1, 1.0]),  # 1.0 becomes integer 1 under INTEGER affinity
    "name": st.sampled_from(["x", "y", ""]),
}
VALUES: st.SearchStrategy[Any] = st.sampled_from(
    [
        None,
        1,
        0,
        -1,
        1.0,
        2.5,
        -0.5,
        "a",
        "b",
        "",
        "1",
        b"",
        b"a",
        b"\x00\xff",
        2**63 - 1,
        -(2**63),
        1e300,
    ]
)
REPLICA = st.integers(0, MAX_REPLICAS - 1)


def _where(cols: tuple[str, ...]) -> str:
    return " AND ".join(f"{c} = ?" for c in cols)


@st.composite
def statements(draw: st.DrawFn) -> tuple[str, tuple[Any, ...]]:
    """One local write statement, as (sql, params)."""
    table = draw(st.sampled_from(sorted(TABLES)))
    pk_cols, cols = TABLES[table]
    kinds = ["insert", "insert_or_replace", "upsert", "delete", "update_pk", "insert_or_ignore"]
    if cols:
        kinds += ["update", "update_multi"]
    if table == "items":
        kinds += ["update_expr", "delete_multi"]
    if len(pk_cols) > 1:
        kinds += ["update_pk_multi"]
    kind = draw(st.sampled_from(kinds))
    pk = tuple(draw(PK_VALUES[c]) for c in pk_cols)

    if kind.startswith("insert") or kind == "upsert":
        ins_cols = tuple(c for c in cols if draw(st.booleans()) or kind == "insert_or_replace")
        vals = tuple(draw(VALUES) for _ in ins_cols)
        names = ", ".join(pk_cols + ins_cols)
        marks = ", ".join("?" * (len(pk_cols) + len(ins_cols)))
        verb = {
            "insert": "INSERT",
            "insert_or_replace": "INSERT OR REPLACE",
            "insert_or_ignore": "INSERT OR IGNORE",
            "upsert": "INSERT",
        }[kind]
        sql = f"{verb} INTO {table}({names}) VALUES ({marks})"
        if kind == "upsert":
            target = ", ".join(pk_cols)
            if ins_cols:
                sets = ", ".join(f"{c} = excluded.{c}" for c in ins_cols)
                sql += f" ON CONFLICT({target}) DO UPDATE SET {sets}"
            else:
                sql += f" ON CONFLICT({target}) DO NOTHING"
        return sql, pk + vals
    if kind == "delete":
        return f"DELETE FROM {table} WHERE {_where(pk_cols)}", pk
    if kind == "update":
        upd = draw(st.lists(st.sampled_from(cols), min_size=1, max_size=len(cols), unique=True))
        vals = tuple(draw(VALUES) for _ in upd)
        sets = ", ".join(f"{c} = ?" for c in upd)
        return f"UPDATE {table} SET {sets} WHERE {_where(pk_cols)}", vals + pk
    if kind == "update_multi":
        col, where_col = draw(st.sampled_from(cols)), draw(st.sampled_from(cols))
        return f"UPDATE {table} SET {col} = ? WHERE {where_col} IS ?", (
            draw(VALUES),
            draw(VALUES),
        )
    if kind == "update_expr":
        # (name || 'x' on a blob could build text that is not UTF-8, which Python cannot read.)
        return (
            "UPDATE items SET qty = qty + 1,"
            " name = CASE typeof(name) WHEN 'text' THEN name ELSE typeof(name) END || 'x'"
            " WHERE id = ?"
        ), pk
    if kind == "delete_multi":
        col = draw(st.sampled_from(cols))
        return f"DELETE FROM items WHERE {col} IS ?", (draw(VALUES),)
    if kind == "update_pk":
        col = draw(st.sampled_from(pk_cols))
        verb = draw(st.sampled_from(["UPDATE", "UPDATE OR REPLACE"]))
        new = draw(PK_VALUES[col])
        return f"{verb} {table} SET {col} = ? WHERE {_where(pk_cols)}", (new, *pk)
    assert kind == "update_pk_multi"  # edges: move every edge of one src to another dst
    verb = draw(st.sampled_from(["UPDATE", "UPDATE OR REPLACE"]))
    return f"{verb} edges SET dst = ? WHERE src = ?", (draw(PK_VALUES["dst"]), pk[0])


# --- replica helpers --------------------------------------------------------------------------


def site_id_for(n: int) -> bytes:
    """A deterministic, UUID-v4-shaped site id (hypothesis needs reproducible runs, and tie-breaks
    on equal values depend on how site ids compare)."""
    b = bytearray(n.to_bytes(2, "big") * 8)
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    return bytes(b)


def open_replica(path: Path, site: bytes) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    assert crdt.init(conn, site_id=site) == site  # a seeded id: runs are reproducible
    for ddl in SCHEMA:
        conn.execute(ddl)
    for table in TABLES:
        crdt.as_crr(conn, table)
    return conn


def user_rows(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table, (pk_cols, cols) in TABLES.items():
        sel = ", ".join(f"typeof({c}), {c}" for c in pk_cols + cols)
        order = ", ".join(pk_cols)
        out[table] = conn.execute(f"SELECT {sel} FROM {table} ORDER BY {order}").fetchall()
    return out


def clock_rows(changes: list[crdt.Change]) -> list[tuple[Any, ...]]:
    return sorted((attrs.astuple(c) for c in changes), key=repr)


def snapshot(conn: sqlite3.Connection) -> tuple[dict[str, list[tuple[Any, ...]]], list[Any]]:
    return user_rows(conn), clock_rows(crdt.changes(conn))


def describe_diff(label_a: str, a: Any, label_b: str, b: Any) -> str:
    """Readable difference between two snapshots (user rows dict, sorted clock rows)."""
    lines = []
    rows_a, clocks_a = a
    rows_b, clocks_b = b
    for table in TABLES:
        ra, rb = rows_a[table], rows_b[table]
        if ra != rb:
            lines.append(f"  {table}: only in {label_a}: {[r for r in ra if r not in rb]}")
            lines.append(f"  {table}: only in {label_b}: {[r for r in rb if r not in ra]}")
    if clocks_a != clocks_b:
        lines.append(f"  clocks only in {label_a}: {[c for c in clocks_a if c not in clocks_b]}")
        lines.append(f"  clocks only in {label_b}: {[c for c in clocks_b if c not in clocks_a]}")
    return "\n".join(lines)


def merge_checked(conn: sqlite3.Connection, changes: list[crdt.Change]) -> int:
    n = crdt.merge(conn, changes)
    assert isinstance(n, int) and n >= 0, f"merge returned {n!r}"
    return n


# --- the state machine ------------------------------------------------------------------------


class ConvergenceMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="crdt-conv-"))
        self.conns: list[sqlite3.Connection] = []
        self.sites: list[bytes] = []
        self.extra_conns: list[sqlite3.Connection] = []
        # Every change row ever read from any replica, by its tuple (stale ones included).
        self.history: dict[tuple[Any, ...], crdt.Change] = {}
        self.seed = 0

    def _new_conn(self, name: str, site: bytes) -> sqlite3.Connection:
        return open_replica(self.tmp / f"{name}.db", site)

    def _conn(self, r: int) -> sqlite3.Connection:
        return self.conns[r % len(self.conns)]

    def _changes(self, conn: sqlite3.Connection, **filters: Any) -> list[crdt.Change]:
        changes = crdt.changes(conn, **filters)
        for c in changes:
            self.history.setdefault(attrs.astuple(c), c)
        return changes

    @initialize(
        n=st.integers(3, MAX_REPLICAS),
        site_order=st.permutations(range(MAX_REPLICAS)),
        seed=st.integers(0, 2**16),
    )
    def open_replicas(self, n: int, site_order: list[int], seed: int) -> None:
        # site_order decides how the replicas' site ids compare (they break equal-value ties).
        self.seed = seed
        for i in range(n):
            self.conns.append(self._new_conn(f"r{i}", site_id_for(site_order[i] + 1)))
            self.sites.append(crdt.init(self.conns[-1]))
        assert len(set(self.sites)) == n, "site ids must be distinct"

    @rule(r=REPLICA, stmts=st.lists(statements(), min_size=1, max_size=4))
    def local_transaction(self, r: int, stmts: list[tuple[str, tuple[Any, ...]]]) -> None:
        conn = self._conn(r)
        before = snapshot(conn)
        try:
            with crdt.transaction(conn):
                for sql, params in stmts:
                    conn.execute(sql, params)
        except sqlite3.IntegrityError:
            after = snapshot(conn)
            assert after == before, "a rolled-back transaction left changes behind:\n" + (
                describe_diff("before", before, "after", after)
            )

    @rule(src=REPLICA, dst=REPLICA, data=st.data())
    def exchange(self, src: int, dst: int, data: st.DataObject) -> None:
        n = len(self.conns)
        src, dst = src % n, dst % n
        if src == dst:
            dst = (src + 1) % n
        sender, receiver = self.conns[src], self.conns[dst]
        full = self._changes(sender)
        k = len(full)
        # Every draw below is independent of the replicas' state (indices are reduced modulo
        # the sizes), so hypothesis replays a choice sequence the same way whatever the engine
        # does with it.
        mode = data.draw(st.sampled_from(["all", "subset", "filtered"]), label="mode")
        if mode == "all":
            shuffle = data.draw(st.integers(0, 2**16), label="shuffle seed (0: as listed)")
            dups = data.draw(st.lists(st.integers(0, 999), max_size=4), label="duplicates")
            batch = full[:]
            if shuffle:
                random.Random(shuffle).shuffle(batch)
            batch += [full[i % k] for i in dups] if k else []
        elif mode == "subset":
            picks = data.draw(st.lists(st.integers(0, 999), min_size=1, max_size=40), label="picks")
            batch = [full[i % k] for i in picks] if k else []
        else:
            sites = sorted({c.site_id for c in full})
            pick = data.draw(st.integers(0, MAX_REPLICAS), label="site (0: any)")
            site = sites[(pick - 1) % len(sites)] if pick and sites else None
            lo = data.draw(st.none() | st.integers(0, 40), label="min_version")
            hi = data.draw(st.none() | st.integers(0, 40), label="max_version")
            batch = self._changes(sender, site_id=site, min_version=lo, max_version=hi)
            full_set = {attrs.astuple(c) for c in full}
            for c in batch:
                assert attrs.astuple(c) in full_set, f"filtered row not in full change set: {c}"
                assert site is None or c.site_id == site, f"site filter {site!r} let {c} through"
                assert lo is None or c.db_version >= lo, f"min_version={lo} let {c} through"
                assert hi is None or c.db_version <= hi, f"max_version={hi} let {c} through"
            if site is None and lo is None and hi is None:
                assert clock_rows(batch) == clock_rows(full), "unfiltered changes() differs"
        cuts = data.draw(st.lists(st.integers(0, 999), max_size=3), label="split at")
        cuts = sorted(c % (len(batch) + 1) for c in cuts)
        bounds = [0, *cuts, len(batch)]
        for a, b in itertools.pairwise(bounds):
            merge_checked(receiver, batch[a:b])
        # Delivering the very same batch again is a no-op.
        before = snapshot(receiver)
        again = merge_checked(receiver, batch)
        after = snapshot(receiver)
        assert again == 0, f"re-merging a batch just merged impacted {again} rows"
        assert after == before, "re-merging a batch just merged changed state:\n" + (
            describe_diff("before", before, "after", after)
        )

    @rule(r=REPLICA)
    def remerge_own_changes(self, r: int) -> None:
        conn = self._conn(r)
        before = snapshot(conn)
        impacted = merge_checked(conn, self._changes(conn))
        after = snapshot(conn)
        assert impacted == 0, f"merging a replica's own change rows impacted {impacted} rows"
        assert after == before, "merging a replica's own change rows changed state:\n" + (
            describe_diff("before", before, "after", after)
        )

    # --- final checks -----------------------------------------------------------------------

    def _full_exchange_to_fixpoint(self, max_rounds: int = 4) -> None:
        n = len(self.conns)
        impacted_per_round = []
        for _ in range(max_rounds):
            before = [snapshot(c) for c in self.conns]
            impacted = 0
            for s in range(n):
                for d in range(n):
                    if s != d:
                        impacted += merge_checked(self.conns[d], self._changes(self.conns[s]))
            after = [snapshot(c) for c in self.conns]
            impacted_per_round.append(impacted)
            if impacted == 0:
                for i in range(n):
                    assert after[i] == before[i], (
                        f"a full exchange round reported 0 rows impacted but changed replica {i}:\n"
                        + describe_diff("before", before[i], "after", after[i])
                    )
                return
        raise AssertionError(
            f"no fixpoint after {max_rounds} full all-pairs exchange rounds; "
            f"rows impacted per round: {impacted_per_round}"
        )

    def _assert_same(self, label: str, snap: Any, ref: Any) -> None:
        assert snap == ref, f"{label} differs from replica 0:\n" + describe_diff(
            "r0", ref, label, snap
        )

    def _final_checks(self) -> None:
        self._full_exchange_to_fixpoint()
        snaps = [snapshot(c) for c in self.conns]
        ref = snaps[0]
        for i, snap in enumerate(snaps[1:], start=1):
            self._assert_same(f"replica {i}", snap, ref)

        union = self._changes(self.conns[0])
        history = list(self.history.values())

        # Idempotence once converged: everything already held, and every row ever seen.
        for i, conn in enumerate(self.conns):
            for what, rows in (("the union of all change rows", union), ("all history", history)):
                impacted = merge_checked(conn, rows)
                assert impacted == 0, f"re-merging {what} into replica {i} impacted {impacted}"
                self._assert_same(f"replica {i} after re-merging {what}", snapshot(conn), ref)

        # Order independence: fresh replicas fed the same rows in different orders.
        rng = random.Random(self.seed)
        feeds: list[tuple[str, list[crdt.Change], bool]] = []
        shuffled = union[:]
        rng.shuffle(shuffled)
        feeds.append(("fresh replica (union, shuffled, one merge call)", shuffled, False))
        shuffled2 = union[::-1] + rng.sample(union, min(len(union), 5))
        rng.shuffle(shuffled2)
        feeds.append(("fresh replica (union, reshuffled+dups, many calls)", shuffled2, True))
        hist = history[:]
        rng.shuffle(hist)
        feeds.append(("fresh replica (every row ever seen, shuffled)", hist, True))
        for j, (label, rows, split) in enumerate(feeds):
            conn = self._new_conn(f"fresh{j}", site_id_for(100 + j))
            self.extra_conns.append(conn)
            if split:
                pos = 0
                while pos < len(rows):
                    step = rng.randint(1, 7)
                    merge_checked(conn, rows[pos : pos + step])
                    pos += step
            else:
                merge_checked(conn, rows)
            self._assert_same(label, snapshot(conn), ref)

    def teardown(self) -> None:
        try:
            # Only judge convergence when the run itself succeeded (teardown also runs while a
            # failure or hypothesis' own control flow exception is propagating).
            if sys.exc_info()[0] is None and self.conns:
                self._final_checks()
        finally:
            for conn in self.conns + self.extra_conns:
                conn.close()
            shutil.rmtree(self.tmp, ignore_errors=True)


SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
# No "explain" phase: its line tracing makes every replay of a failing case many times slower.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]


def test_convergence_property() -> None:
    run_state_machine_as_test(
        ConvergenceMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=SUPPRESS,
            phases=PHASES,
            report_multiple_bugs=False,  # keeps a failing run's shrinking within a minute or two
        ),
    )


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_convergence_property_heavy() -> None:
    run_state_machine_as_test(
        ConvergenceMachine,
        settings=settings(
            max_examples=400,
            stateful_step_count=80,
            deadline=None,
            suppress_health_check=SUPPRESS,
            phases=PHASES,
        ),
    )
