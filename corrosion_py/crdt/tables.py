"""Which tables can be CRRs, and the SQL that makes them one.

Everything that shapes the on-disk layout lives here: the names of the per-table clock and
lookaside tables, the compatibility rules of cr-sqlite (``crsql_as_crr``'s checks), and the
triggers that record local writes (cr-sqlite's local write rules). The triggers are plain SQL;
they reach the engine only through cheap SQL functions registered on the connection
(`state.py`): ``crsql_internal_sync_bit()`` (NULL outside an engine transaction, 1 during a
merge), ``crsql_internal_next_db_version()``, ``crsql_internal_next_seq()`` and
``crsql_internal_reserve_seq(n)`` (which refuse calls outside a local engine transaction). A
connection that has not registered them cannot write to a CRR at all: its statements fail with
"no such function".
"""

from __future__ import annotations

import sqlite3

import attrs

from corrosion_py.crdt.limits import CLOCK_LIMIT_MESSAGE, MAX_CLOCK
from corrosion_py.errors import IncompatibleTableError, UnknownTableError
from corrosion_py.sqltext import tokens

SENTINEL = "-1"


def q(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(text: str) -> str:
    """Quote an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def clock_table(table: str) -> str:
    return table + "__crsql_clock"


def pks_table(table: str) -> str:
    return table + "__crsql_pks"


@attrs.frozen
class TableInfo:
    """A CRR's shape: pk columns in PRIMARY KEY order, other columns in cid order."""

    name: str
    pks: tuple[str, ...]
    cols: tuple[str, ...]
    colset: frozenset[str] = attrs.field(init=False, eq=False, repr=False)

    @colset.default
    def _colset(self) -> frozenset[str]:
        return frozenset(self.cols)

    @property
    def clock(self) -> str:
        return q(clock_table(self.name))

    @property
    def lookaside(self) -> str:
        return q(pks_table(self.name))

    def key_of(self, prefix: str) -> str:
        """SQL for the lookaside key of the row whose pk columns are ``prefix."col"``.

        The unary ``+`` strips the base column's affinity: without it SQLite applies that
        affinity to the untyped lookaside column and cannot use its index (a full scan per row).
        """
        where = " AND ".join(f"{q(p)} IS +{prefix}.{q(p)}" for p in self.pks)
        return f"(SELECT __crsql_key FROM {self.lookaside} WHERE {where})"


def _columns(conn: sqlite3.Connection, table: str) -> list[tuple[int, str, int, object, int]]:
    """(cid, name, notnull, dflt_value, pk) for every ordinary (non-generated) column."""
    rows = conn.execute(f"PRAGMA table_xinfo({q(table)})").fetchall()
    return [(r[0], r[1], r[3], r[4], r[5]) for r in rows if r[6] == 0]


def table_exists(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return row is not None


def is_crr(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?",
        (table + "__crsql_itrig",),
    ).fetchone()
    return row is not None


def crr_names(conn: sqlite3.Connection) -> list[str]:
    """Every CRR of the main database, in the order its clock table was created."""
    rows = conn.execute(
        "SELECT tbl_name FROM sqlite_master WHERE type = 'trigger' AND name = tbl_name || "
        "'__crsql_itrig' ORDER BY (SELECT rowid FROM sqlite_master m WHERE m.type = 'table' "
        "AND m.name = tbl_name || '__crsql_clock')"
    ).fetchall()
    return [r[0] for r in rows]


def introspect(conn: sqlite3.Connection, table: str) -> TableInfo:
    if not table_exists(conn, table):
        raise UnknownTableError(f"table {table!r} does not exist")
    cols = _columns(conn, table)
    pks = tuple(name for _, name, _, _, pk in sorted(cols, key=lambda c: c[4]) if pk > 0)
    others = tuple(name for _, name, _, _, pk in cols if pk == 0)
    return TableInfo(table, pks, others)


def check_compatible(conn: sqlite3.Connection, table: str) -> TableInfo:
    """Apply cr-sqlite's rules (no unique index besides the primary key, a NOT NULL primary key,
    no AUTOINCREMENT, no foreign key, a DEFAULT for every other NOT NULL column); raise
    IncompatibleTableError naming the table and rule."""
    info = introspect(conn, table)

    def refuse(rule: str) -> IncompatibleTableError:
        return IncompatibleTableError(f"table {table!r} cannot be a CRR: {rule}")

    for row in conn.execute(f"PRAGMA index_list({q(table)})").fetchall():
        name, unique, origin = row[1], row[2], row[3]
        if unique and origin != "pk":
            raise refuse(f"unique index {name!r} besides the primary key is not allowed")
    if not info.pks:
        raise refuse("a primary key is required")
    cols = _columns(conn, table)
    for _, name, notnull, dflt, pk in cols:
        if pk and not notnull:
            raise refuse(f"primary key column {name!r} must be declared NOT NULL")
        if not pk and notnull and dflt is None:
            raise refuse(f"NOT NULL column {name!r} needs a DEFAULT value")
    sql_row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    if sql_row and any(t.norm == "AUTOINCREMENT" for t in tokens(sql_row[0]) if t.kind == "word"):
        raise refuse("AUTOINCREMENT is not allowed")
    if conn.execute(f"PRAGMA foreign_key_list({q(table)})").fetchall():
        raise refuse("foreign keys are not allowed")
    return info


def metadata_ddl(info: TableInfo) -> list[str]:
    """The lookaside and clock tables (cr-sqlite's layout; the clock index leads with site_id so
    that "versions a..b of actor X" is an index range, as in Corrosion's fork)."""
    t = info.name
    pk_cols = ", ".join(q(p) for p in info.pks)
    return [
        f"CREATE TABLE IF NOT EXISTS {info.lookaside} (__crsql_key INTEGER PRIMARY KEY, {pk_cols})",
        f"CREATE UNIQUE INDEX IF NOT EXISTS {q(pks_table(t) + '_pks')} "
        f"ON {info.lookaside} ({pk_cols})",
        f"CREATE TABLE IF NOT EXISTS {info.clock} (key INTEGER NOT NULL, col_name TEXT NOT NULL, "
        "col_version INTEGER NOT NULL, db_version INTEGER NOT NULL, "
        "site_id INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL, "
        "PRIMARY KEY (key, col_name)) WITHOUT ROWID, STRICT",
        f"CREATE INDEX IF NOT EXISTS {q(clock_table(t) + '_dbv_idx')} "
        f"ON {info.clock} (site_id, db_version)",
    ]


# Bump whenever triggers_ddl changes: databases made by an older engine get new triggers on open.
TRIGGERS_VERSION = 2
TRIGGER_SUFFIXES = ("itrig", "utrig", "dtrig", "iguard", "uguard", "dguard")


def drop_triggers_ddl(table: str) -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {q(table + '__crsql_' + s)}" for s in TRIGGER_SUFFIXES]


# Local clock writes: every row written takes the transaction's version and the next seq.
_NEXT = "crsql_internal_next_db_version()"
_SEQ = "crsql_internal_next_seq()"
_SET_LOCAL = "db_version = excluded.db_version, seq = excluded.seq, site_id = 0"
_LIMIT = f"RAISE(ABORT, {lit('corrosion_py: ' + CLOCK_LIMIT_MESSAGE)})"


def _bounded(expr: str) -> str:
    """A clock bump that fails the statement instead of passing MAX_CLOCK (limits.py)."""
    return f"iif({expr} <= {MAX_CLOCK}, {expr}, {_LIMIT})"


_BUMP = _bounded("col_version + 1")
_NEXT_ODD = _bounded("col_version + 1 + col_version % 2")
_NEXT_EVEN = _bounded("col_version + 2 - col_version % 2")


def _changed(col: str) -> str:
    """True when NEW and OLD differ as cr-sqlite's cmp sees it (type or bytewise value)."""
    new, old = f"NEW.{q(col)}", f"OLD.{q(col)}"
    return f"({new} IS NOT {old} COLLATE BINARY OR typeof({new}) != typeof({old}))"


def _sentinel_upsert(info: TableInfo, key: str, first: int, bump: str, where: str = "1") -> str:
    return (
        f"INSERT INTO {info.clock} (key, col_name, col_version, db_version, site_id, seq) "
        f"SELECT {key}, '-1', {first}, {_NEXT}, 0, {_SEQ} WHERE {where} "
        f"ON CONFLICT (key, col_name) DO UPDATE SET col_version = {bump}, {_SET_LOCAL}"
    )


def triggers_ddl(info: TableInfo) -> list[str]:
    """Guard triggers (refuse writes outside an engine transaction) and the three recording
    triggers of cr-sqlite's local write rules (after INSERT, UPDATE and DELETE), with the fix
    Corrosion's fork made to primary-key changes (the moved column clocks get a new version).

    Trigger bodies use upsert clauses only, never ``INSERT OR ...``: SQLite lets the conflict
    policy of the statement that fired a trigger (``INSERT OR REPLACE INTO t``) override an
    ``OR`` policy inside the trigger, which would replace lookaside rows and renumber keys.
    """
    t, c = info.name, info.clock
    new_key, old_key = info.key_of("NEW"), info.key_of("OLD")
    pk_new = ", ".join(f"NEW.{q(p)}" for p in info.pks)
    pk_old = ", ".join(f"OLD.{q(p)}" for p in info.pks)
    pk_cols = ", ".join(q(p) for p in info.pks)
    msg = lit(f"corrosion_py: write to CRR table {t!r} outside crdt.transaction()")
    out = [
        f"CREATE TRIGGER {q(t + '__crsql_' + g)} BEFORE {op} ON {q(t)} "
        f"WHEN crsql_internal_sync_bit() IS NULL BEGIN SELECT RAISE(ABORT, {msg}); END"
        for g, op in (("iguard", "INSERT"), ("uguard", "UPDATE"), ("dguard", "DELETE"))
    ]
    when = "WHEN crsql_internal_sync_bit() = 0"
    col_values = ", ".join(f"({lit(col)}, {i})" for i, col in enumerate(info.cols))

    if info.cols:
        insert_body = [
            f"INSERT INTO {info.lookaside} ({pk_cols}) VALUES ({pk_new}) ON CONFLICT DO NOTHING",
            # Inside a trigger changes() counts the previous statement of the same trigger, so
            # 0 here means the key was known: a re-insert. It consumes one seq, and moves the
            # sentinel to the next odd cl if there is one (cr-sqlite's rule for a re-insert); a
            # fresh insert skips both lookups.
            f"SELECT {_SEQ} WHERE changes() = 0 AND NOT EXISTS "
            f"(SELECT 1 FROM {c} WHERE key = {new_key} AND col_name = '-1')",
            f"UPDATE {c} SET col_version = {_NEXT_ODD}, db_version = {_NEXT}, seq = {_SEQ}, "
            f"site_id = 0 WHERE changes() = 0 AND key = {new_key} AND col_name = '-1'",
            # Every column gets a clock; the key, version and a block of seqs (in cid order)
            # are computed once per row: LIMIT 1 keeps SQLite from flattening the subquery.
            f"INSERT INTO {c} (key, col_name, col_version, db_version, site_id, seq) "
            f"SELECT k, column1, 1, v, 0, s + column2 FROM (SELECT {new_key} AS k, {_NEXT} AS v, "
            f"crsql_internal_reserve_seq({len(info.cols)}) AS s LIMIT 1), (VALUES {col_values}) "
            f"WHERE 1 ON CONFLICT (key, col_name) DO UPDATE SET "
            f"col_version = {_BUMP}, {_SET_LOCAL}",
        ]
    else:
        insert_body = [
            f"INSERT INTO {info.lookaside} ({pk_cols}) VALUES ({pk_new}) ON CONFLICT DO NOTHING",
            _sentinel_upsert(info, new_key, 1, _NEXT_ODD),
        ]
    out.append(
        f"CREATE TRIGGER {q(t + '__crsql_itrig')} AFTER INSERT ON {q(t)} {when} BEGIN "
        + "; ".join(insert_body)
        + "; END"
    )

    pk_changed = " OR ".join(_changed(p) for p in info.pks)
    update_body = [
        f"INSERT INTO {info.lookaside} ({pk_cols}) VALUES ({pk_old}) ON CONFLICT DO NOTHING",
        f"INSERT INTO {info.lookaside} ({pk_cols}) VALUES ({pk_new}) ON CONFLICT DO NOTHING",
        _sentinel_upsert(info, old_key, 2, _NEXT_EVEN, pk_changed),
        _sentinel_upsert(info, new_key, 1, _NEXT_ODD, pk_changed),
    ]
    for col in info.cols:
        # pk change: move each column clock to the new key with a new version (upstream keeps
        # the old one, so a peer pulling only newer versions would miss the moved values).
        update_body.append(
            f"INSERT INTO {c} (key, col_name, col_version, db_version, site_id, seq) "
            f"SELECT {new_key}, col_name, {_BUMP}, {_NEXT}, 0, {_SEQ} FROM {c} "
            f"WHERE ({pk_changed}) AND key = {old_key} AND col_name = {lit(col)} "
            f"ON CONFLICT (key, col_name) DO UPDATE SET "
            f"col_version = max({_BUMP}, excluded.col_version), {_SET_LOCAL}"
        )
    if info.cols:
        update_body.append(
            f"DELETE FROM {c} WHERE ({pk_changed}) AND key = {old_key} AND col_name != '-1'"
        )
        changed_values = ", ".join(f"({lit(col)}, {_changed(col)})" for col in info.cols)
        update_body.append(
            f"INSERT INTO {c} (key, col_name, col_version, db_version, site_id, seq) "
            f"SELECT {new_key}, column1, 1, {_NEXT}, 0, {_SEQ} FROM (VALUES {changed_values}) "
            f"WHERE column2 ON CONFLICT (key, col_name) DO UPDATE SET "
            f"col_version = {_BUMP}, {_SET_LOCAL}"
        )
    out.append(
        f"CREATE TRIGGER {q(t + '__crsql_utrig')} AFTER UPDATE ON {q(t)} {when} BEGIN "
        + "; ".join(update_body)
        + "; END"
    )

    delete_body = [
        f"INSERT INTO {info.lookaside} ({pk_cols}) VALUES ({pk_old}) ON CONFLICT DO NOTHING",
        _sentinel_upsert(info, old_key, 2, _NEXT_EVEN),
        f"DELETE FROM {c} WHERE key = {old_key} AND col_name != '-1'",
    ]
    out.append(
        f"CREATE TRIGGER {q(t + '__crsql_dtrig')} AFTER DELETE ON {q(t)} {when} BEGIN "
        + "; ".join(delete_body)
        + "; END"
    )
    return out
