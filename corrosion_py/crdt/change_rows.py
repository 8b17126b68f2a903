"""Reading change rows: cr-sqlite's ``crsql_changes`` as a query over clock, lookaside and base."""

from __future__ import annotations

import sqlite3

import attrs

from corrosion_py.crdt.pk import SqlValue
from corrosion_py.crdt.schema import TableInfo, lit, q
from corrosion_py.crdt.state import conn_state


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


def table_changes_sql(info: TableInfo, conditions: tuple[str, ...] = ()) -> str:
    """SELECT of one CRR's change rows (the 9 columns), optionally filtered on the clock ``c``."""
    where = "WHERE " + " AND ".join((_NOT_PROVISIONAL, *conditions))
    pk_cols = ", ".join(f"k.{q(p)}" for p in info.pks)
    join_base = " AND ".join(f"b.{q(p)} IS k.{q(p)}" for p in info.pks)
    if info.cols:
        cases = " ".join(f"WHEN {lit(col)} THEN b.{q(col)}" for col in info.cols)
        val = f"CASE c.col_name {cases} END"
    else:
        val = "NULL"
    return (
        f'SELECT {lit(info.name)} AS "table", crsql_internal_pack({pk_cols}) AS pk, '
        f"c.col_name AS cid, {val} AS val, c.col_version AS col_version, "
        "c.db_version AS db_version, s.site_id AS site_id, "
        "COALESCE(sn.col_version, 1) AS cl, c.seq AS seq "
        f"FROM {info.clock} c JOIN {info.lookaside} k ON k.__crsql_key = c.key "
        f"LEFT JOIN {q(info.name)} b ON {join_base} "
        "LEFT JOIN crsql_site_id s ON s.ordinal = c.site_id "
        f"LEFT JOIN {info.clock} sn ON sn.key = c.key AND sn.col_name = '-1' {where}"
    )


def changes_sql(infos: list[TableInfo], conditions: tuple[str, ...] = ()) -> str:
    if not infos:
        return (
            'SELECT NULL AS "table", NULL AS pk, NULL AS cid, NULL AS val, NULL AS col_version, '
            "NULL AS db_version, NULL AS site_id, NULL AS cl, NULL AS seq WHERE 0"
        )
    return " UNION ALL ".join(table_changes_sql(i, conditions) for i in infos)


def changes(
    conn: sqlite3.Connection,
    *,
    site_id: bytes | None = None,
    min_version: int | None = None,
    max_version: int | None = None,
) -> list[Change]:
    """Change rows in (db_version, seq) order, optionally only one site's versions in a range.

    Merged rows keep their origin's db_version and seq, so a site's range is an index lookup.
    """
    st = conn_state(conn)
    clauses: list[str] = []
    params: list[object] = []
    if site_id is not None:
        row = conn.execute(
            "SELECT ordinal FROM crsql_site_id WHERE site_id = ?", (bytes(site_id),)
        ).fetchone()
        if row is None:
            return []
        clauses.append("c.site_id = ?")
        params.append(row[0])
    if min_version is not None:
        clauses.append("c.db_version >= ?")
        params.append(min_version)
    if max_version is not None:
        clauses.append("c.db_version <= ?")
        params.append(max_version)
    infos = list(st.crrs(conn).values())
    if not infos:
        return []
    sql = (
        f"SELECT * FROM ({changes_sql(infos, tuple(clauses))}) "
        'ORDER BY db_version, seq, site_id, "table", pk, cid'
    )
    all_params = params * len(infos)
    return [
        Change(r[0], bytes(r[1]), r[2], r[3], r[4], r[5], bytes(r[6]), r[7], r[8])
        for r in conn.execute(sql, all_params)
    ]
