"""The store pieces the API relies on, tested on a bare `Store`: per-statement times, the
transaction timeout (only the late transaction of a group commit is rolled back), statement
kinds a local transaction refuses, and schema statements applied as text on top of the
recorded schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from corrosion_py.errors import StatementError
from corrosion_py.store.migrations import SchemaError
from corrosion_py.store.store import Store

SCHEMA = "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT);\nCREATE INDEX kv_v ON kv (v);\n"
SLOW = (
    "SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
    "WHERE x < 1000000000) SELECT x FROM c)"
)


def open_store(tmp: Path) -> Store:
    (tmp / "s.sql").write_text(SCHEMA)
    return Store.open(tmp / "n.db", schema_paths=[tmp / "s.sql"])


def test_statement_times(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        result = store.transaction_sync(["INSERT INTO kv VALUES (1, 'a')", "SELECT 1"])
        assert len(result.times) == 2 and all(t >= 0 for t in result.times)
        assert sum(result.times) <= result.elapsed


async def test_timeout_rolls_back_only_the_late_transaction(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        outcome: dict[str, object] = {}

        async def late() -> None:
            try:
                await store.transaction(["INSERT INTO kv VALUES (1, 'late')", SLOW], timeout=0.2)
            except StatementError as exc:
                outcome["late"] = exc

        async def prompt() -> None:
            outcome["prompt"] = await store.transaction(
                ["INSERT INTO kv VALUES (2, 'ok')"], timeout=30
            )

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(late)
                nursery.start_soon(prompt)
        assert "timed out after 0.2 s" in str(outcome["late"])
        assert await store.query("SELECT k, v FROM kv") == [(2, "ok")]
        # a transaction without a timeout of its own has no limit (the store sets none)
        assert (await store.transaction(["INSERT INTO kv VALUES (3, 'c')"])).version == 2


@pytest.mark.parametrize(
    "sql",
    ["COMMIT", "end", "Begin immediate", "ROLLBACK", "SAVEPOINT s", "RELEASE s",
     "ATTACH 'x.db' AS x", "DETACH x", "CREATE TABLE t (a)", "DROP INDEX kv_v",
     "ALTER TABLE kv RENAME TO kv2", "PRAGMA foreign_keys = ON", "REINDEX", "ANALYZE",
     "VACUUM", "EXPLAIN SELECT 1", "/* c */ COMMIT"],
)  # fmt: skip
def test_refused_statement_kinds(tmp_path: Path, sql: str) -> None:
    with open_store(tmp_path) as store:
        with pytest.raises(StatementError, match="not allowed in a transaction"):
            store.transaction_sync(["INSERT INTO kv VALUES (1, 'a')", sql])
        assert store.reader().execute("SELECT count(*) FROM kv").fetchone() == (0,)
        ok = store.transaction_sync(
            ["WITH x(k) AS (VALUES (1)) INSERT INTO kv SELECT k, 'a' FROM x",
             "REPLACE INTO kv VALUES (1, 'b')", "UPDATE kv SET v = 'c'", "DELETE FROM kv",
             "VALUES (1)", "-- only a comment"]
        )  # fmt: skip
        assert ok.version == 1


def test_schema_statements_on_top_of_the_recorded_schema(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        result = store.apply_schema_statements_sync(
            ["CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT, w INTEGER)",
             "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL); CREATE INDEX t_id2 ON t (id)"]
        )  # fmt: skip
        assert result.added_columns == (("kv", "w"),)
        assert result.created_tables == ("t",)
        assert result.created_indexes == ("t_id2",)
        recorded = (
            store.reader()
            .execute("SELECT name, source FROM __corro_schema ORDER BY rowid")
            .fetchall()
        )
        assert recorded == [("kv", "<api>"), ("kv_v", str(tmp_path / "s.sql")),
                            ("t", "<api>"), ("t_id2", "<api>")]  # fmt: skip
        store.transaction_sync(["INSERT INTO kv VALUES (1, 'a', 2)", "INSERT INTO t VALUES (1)"])
        before = store.reader().execute("SELECT sql FROM sqlite_master").fetchall()
        with pytest.raises(SchemaError, match="<api>:1: table 'kv': column 'w' was dropped"):
            store.apply_schema_statements_sync(
                ["CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT)"]
            )
        with pytest.raises(SchemaError, match="index 'kv_v' changed"):
            store.apply_schema_statements_sync(["CREATE INDEX kv_v ON kv (w)"])
        assert store.reader().execute("SELECT sql FROM sqlite_master").fetchall() == before
