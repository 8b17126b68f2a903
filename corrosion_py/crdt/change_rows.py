"""Reading change rows: cr-sqlite's ``crsql_changes`` as a query over clock, lookaside and base."""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Iterator

import attrs

from corrosion_py.aliases import SqlValue
from corrosion_py.crdt.pk import pack_pk
from corrosion_py.crdt.state import conn_state
from corrosion_py.crdt.tables import TableInfo, lit, q


@attrs.frozen
class Change:
    """One change row, with exactly crsql_changes' columns in its order."""

    table: str
    pk: bytes
    cid: str
    val: SqlValue
    col_version: int
    db_version: int
    site_id: bytes
    cl: int
    seq: int


# Provisional sentinels (seq -1, see merge_rules.py) are bookkeeping of this node, not changes.
_NOT_PROVISIONAL = "NOT (c.col_name = '-1' AND c.seq < 0)"


def table_changes_sql(
    info: TableInfo, conditions: tuple[str, ...] = (), *, pack_in_sql: bool = True
) -> str:
    """SELECT of one CRR's change rows (the 9 columns), optionally filtered on the clock ``c``.

    With ``pack_in_sql=False`` the pk column holds the lookaside key and the raw pk values follow
    the nine columns, for callers that pack in Python (one pack per row, not per cell).
    """
    where = "WHERE " + " AND ".join((_NOT_PROVISIONAL, *conditions))
    pk_cols = ", ".join(f"k.{q(p)}" for p in info.pks)
    join_base = " AND ".join(f"b.{q(p)} IS k.{q(p)}" for p in info.pks)
    if info.cols:
        cases = " ".join(f"WHEN {lit(col)} THEN b.{q(col)}" for col in info.cols)
        val = f"CASE c.col_name {cases} END"
    else:
        val = "NULL"
    pk = f"crsql_internal_pack({pk_cols})" if pack_in_sql else "c.key"
    extra = "" if pack_in_sql else f", {pk_cols}"
    return (
        f'SELECT {lit(info.name)} AS "table", {pk} AS pk, '
        f"c.col_name AS cid, {val} AS val, c.col_version AS col_version, "
        "c.db_version AS db_version, s.site_id AS site_id, "
        f"COALESCE(sn.col_version, 1) AS cl, c.seq AS seq{extra} "
        f"FROM {info.clock} c JOIN {info.lookaside} k ON k.__crsql_key = c.key "
        f"LEFT JOIN {q(info.name)} b ON {join_base} "
        "LEFT JOIN crsql_site_id s ON s.ordinal = c.site_id "
        f"LEFT JOIN {info.clock} sn ON sn.key = c.key AND sn.col_name = '-1' {where}"
    )


def changes_sql(infos: list[TableInfo], conditions: tuple[str, ...] = ()) -> str:
    """All CRRs' change rows as one SELECT (the body of the ``crsql_changes`` view)."""
    if not infos:
        return (
            'SELECT NULL AS "table", NULL AS pk, NULL AS cid, NULL AS val, NULL AS col_version, '
            "NULL AS db_version, NULL AS site_id, NULL AS cl, NULL AS seq WHERE 0"
        )
    return " UNION ALL ".join(table_changes_sql(i, conditions) for i in infos)


def _table_changes(
    conn: sqlite3.Connection,
    info: TableInfo,
    index: int,
    conditions: tuple[str, ...],
    params: list[object],
) -> Iterator[tuple[tuple[int, int, bytes, int, int, str], Change]]:
    """One CRR's changes in (db_version, seq, site, table, key, cid) order, with that sort key."""
    sql = table_changes_sql(info, conditions, pack_in_sql=False) + (
        " ORDER BY c.db_version, c.seq, s.site_id, c.key, c.col_name"
    )
    packed: dict[int, bytes] = {}
    for r in conn.execute(sql, params):
        key = r[1]
        pk = packed.get(key)
        if pk is None:
            pk = packed[key] = pack_pk(r[9:])
        change = Change(info.name, pk, r[2], r[3], r[4], r[5], r[6], r[7], r[8])
        yield (r[5], r[8], r[6], index, key, r[2]), change


def _filters(
    conn: sqlite3.Connection,
    site_id: bytes | None,
    ranges: tuple[tuple[str, int | None, int | None], ...],
) -> tuple[tuple[str, ...], list[object]] | None:
    """SQL conditions on the clock ``c`` and their parameters; None if the site is unknown."""
    clauses: list[str] = []
    params: list[object] = []
    if site_id is not None:
        if bytes(site_id) == conn_state(conn).site_id:
            ordinal = 0  # this site
        else:
            row = conn.execute(
                "SELECT ordinal FROM crsql_site_id WHERE site_id = ?", (bytes(site_id),)
            ).fetchone()
            if row is None:
                return None
            ordinal = row[0]
        clauses.append("c.site_id = ?")
        params.append(ordinal)
    for column, low, high in ranges:
        if low is not None:
            clauses.append(f"c.{column} >= ?")
            params.append(low)
        if high is not None:
            clauses.append(f"c.{column} <= ?")
            params.append(high)
    return tuple(clauses), params


def changes(
    conn: sqlite3.Connection,
    *,
    site_id: bytes | None = None,
    min_version: int | None = None,
    max_version: int | None = None,
    min_seq: int | None = None,
    max_seq: int | None = None,
) -> list[Change]:
    """Change rows in (db_version, seq) order, optionally only one site's versions in a range
    (both bounds inclusive) and only seqs in a range (to page through one large version). Ties
    are broken by site id, table, row and column.

    Merged rows keep their origin's db_version and seq, so a site's range is an index lookup.
    """
    st = conn_state(conn)
    filters = _filters(
        conn, site_id, (("db_version", min_version, max_version), ("seq", min_seq, max_seq))
    )
    if filters is None:
        return []
    clauses, params = filters
    infos = st.crrs(conn).values()
    streams = [_table_changes(conn, info, i, clauses, params) for i, info in enumerate(infos)]
    if len(streams) == 1:
        return [change for _, change in streams[0]]
    return [change for _, change in heapq.merge(*streams, key=lambda item: item[0])]


def version_sizes(
    conn: sqlite3.Connection, *, site_id: bytes, min_version: int, max_version: int
) -> dict[int, tuple[int, int]]:
    """Per version of a site in a range: (number of change rows, highest seq). An index range
    scan that reads no values, to plan reading large versions in pages."""
    st = conn_state(conn)
    filters = _filters(conn, site_id, (("db_version", min_version, max_version),))
    if filters is None:
        return {}
    clauses, params = filters
    where = " AND ".join((_NOT_PROVISIONAL, *clauses))
    out: dict[int, tuple[int, int]] = {}
    for info in st.crrs(conn).values():
        for version, count, top in conn.execute(
            f"SELECT c.db_version, count(*), max(c.seq) FROM {info.clock} c WHERE {where} "
            "GROUP BY c.db_version",
            params,
        ):
            n, s = out.get(version, (0, -1))
            out[version] = (n + count, max(s, top))
    return out


def top_versions(
    conn: sqlite3.Connection, *, site_id: bytes, min_version: int, max_version: int, limit: int
) -> list[int]:
    """The ``limit`` highest versions of a site in a range that still have change rows, highest
    first: a backward index scan per CRR, so the cost follows the versions that exist, not the
    width of the range (a range of 2**53 versions holding three costs three)."""
    st = conn_state(conn)
    filters = _filters(conn, site_id, (("db_version", min_version, max_version),))
    if filters is None:
        return []
    clauses, params = filters
    where = " AND ".join((_NOT_PROVISIONAL, *clauses))
    found: set[int] = set()
    for info in st.crrs(conn).values():
        found.update(
            v
            for (v,) in conn.execute(
                f"SELECT DISTINCT c.db_version FROM {info.clock} c WHERE {where} "
                "ORDER BY c.db_version DESC LIMIT ?",
                [*params, limit],
            )
        )
    return sorted(found, reverse=True)[:limit]
