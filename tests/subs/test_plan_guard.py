"""A subscription's SQL under the node's rules for user SQL: checked as sent, and checked again
as it will run once rewritten (parameters inlined, keys appended, restricted variants)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from corrosion_py.store.connections import open_reader
from corrosion_py.store.store import Store
from corrosion_py.subs.plan import Plan, Restricted, SubscriptionSqlError, _check_rewritten, plan


@pytest.fixture
def conn(store: Store) -> Iterator[sqlite3.Connection]:
    """A read-only connection of its own, as the subscription manager has."""
    conn = open_reader(store.path)
    try:
        yield conn
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("sql", "params", "needle"),
    [
        ("SELECT id, crsql_next_db_version(9) FROM apps", (), "crsql_next_db_version"),
        ("SELECT id FROM apps WHERE name = fts3_tokenizer('simple')", (), "fts3_tokenizer"),
        ("SELECT a.id FROM apps a JOIN __corro_state s ON 1", (), "__corro_state"),
        ("SELECT id FROM apps WHERE name = ?", ["\udc80"], "parameter 1 is not valid UTF-8"),
        ("SELECT id FROM apps WHERE name = '\udc80'", (), "the SQL text is not valid UTF-8"),
    ],
)
async def test_refused_as_sent(
    conn: sqlite3.Connection, sql: str, params: list[str], needle: str
) -> None:
    with pytest.raises(SubscriptionSqlError, match=needle):
        plan(conn, sql, params)


async def test_the_statements_that_run_are_checked_too(conn: sqlite3.Connection) -> None:
    """Whatever the rewrite produces is checked again: a refused call that appeared only in
    the rewritten text (here put there by hand) is still refused."""
    good = plan(conn, "SELECT id, name FROM apps WHERE region = ?", ["ams"])
    assert good.mode == "incremental"
    _check_rewritten(conn, good)  # what plan() itself runs: no refusal
    variant = Restricted(
        "SELECT id FROM apps WHERE crsql_increment_and_get_seq() >= 0 AND __corro_keys__",
        ("id",),
    )
    for bad in [
        Plan("SELECT id, crsql_next_db_version(1) FROM apps", (), "x", frozenset(), "full", ""),
        Plan(good.sql, (), "y", frozenset(), "incremental", "", good.refs, good.partition,
             (variant,)),
    ]:  # fmt: skip
        with pytest.raises(SubscriptionSqlError, match="engine function crsql_"):
            _check_rewritten(conn, bad)
