"""User SQL never touches internals, through the real HTTP API of a real agent (and through
`Agent.transaction` / `Agent.query`): writes of every internal table, the engine's functions,
``fts3_tokenizer`` and reads of ``__corro_state`` are answered 400 naming the table or function,
and nothing changes (every table of the file compared, versions included); a normal write
afterwards still replicates. Text that is not UTF-8 gets a clear 400 at each door, and a slow
statement in a transaction is interrupted by the node's default bound."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from api_harness import HANG, api_node, ndjson, stream

from corrosion_py.agent import Agent
from corrosion_py.errors import QueryError, StatementError

TX, Q, SUB = "/v1/transactions", "/v1/queries", "/v1/subscriptions"

INTERNAL_TABLES = [
    "kv__crsql_clock", "kv__crsql_pks", "crsql_master", "crsql_site_id", "crsql_db_versions",
    "crsql_tracked_peers", "__corro_members", "__corro_schema", "__corro_state",
    "__corro_bookkeeping_gaps", "__corro_seq_bookkeeping", "__corro_buffered_changes",
    "__corro_quarantine",
]  # fmt: skip
ENGINE_CALLS = {
    "crsql_next_db_version": "crsql_next_db_version(9223372036854775807)",
    "crsql_increment_and_get_seq": "crsql_increment_and_get_seq()",
    "crsql_get_seq": "crsql_get_seq()",
    "crsql_internal_next_db_version": "crsql_internal_next_db_version()",
    "crsql_internal_next_seq": "crsql_internal_next_seq()",
    "crsql_internal_reserve_seq": "crsql_internal_reserve_seq(1000)",
    "crsql_internal_sync_bit": "crsql_internal_sync_bit()",
    "crsql_as_crr": "crsql_as_crr('other')",
}
SLOW = (
    "SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
    "WHERE x < 1000000000000) SELECT x FROM c)"
)


def everything(path: Path) -> dict[str, list[Any]]:
    """Every row of every table of the database file, read on a connection of its own."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {t: sorted(conn.execute(f'SELECT * FROM "{t}"'), key=repr) for (t,) in names}
    finally:
        conn.close()


def columns(path: Path, table: str) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
    finally:
        conn.close()


def writes(path: Path, table: str) -> list[str]:
    col = '"' + columns(path, table)[0] + '"'
    values = ", ".join("NULL" for _ in columns(path, table))
    return [
        f"INSERT INTO {table} VALUES ({values})",
        f"UPDATE {table} SET {col} = {col}",
        f"DELETE FROM {table}",
        f"INSERT OR REPLACE INTO {table} SELECT * FROM {table}",
        f"WITH x AS (SELECT 1) DELETE FROM {table.upper()} WHERE 1 IN (SELECT * FROM x)",
    ]


async def refused_400(client: httpx.AsyncClient, route: str, body: Any, needle: str) -> None:
    if route == SUB:
        async with stream(client, "POST", route, json=body) as lines:
            status = lines.response.status_code
            answer = await lines.next()
    else:
        r = await client.post(route, json=body)
        status, answer = r.status_code, r.json()
    assert status == 400, (route, body, answer)
    assert needle in answer["error"], (route, body, answer)


async def write_one(client: httpx.AsyncClient, k: int) -> int:
    r = await client.post(TX, json=[["INSERT INTO kv (k, v) VALUES (?, ?)", [k, f"v{k}"]]])
    assert r.status_code == 200, r.text
    version = r.json()["version"]
    assert isinstance(version, int)
    return version


async def test_internal_tables_are_never_written(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (agent, client):
            await write_one(client, 1)
            before = everything(agent.store.path)
            for table in INTERNAL_TABLES:
                # SQLite names the table as the statement spells it; __corro_state may not
                # even be read, and SQLite may ask about a read before the write
                verb = "reading or writing" if table == "__corro_state" else "writing"
                for sql in writes(agent.store.path, table):
                    r = await client.post(TX, json=["INSERT INTO kv (k) VALUES (50)", sql])
                    assert r.status_code == 400, (sql, r.text)
                    error = r.json()["error"].lower()
                    assert error.startswith("statement 1 failed: "), error
                    reason = error.removeprefix("statement 1 failed: ").split(" the ")[0]
                    assert reason in verb.split(" or "), error
                    assert f"the internal table {table} is not allowed" in error, (sql, error)
                    await refused_400(client, Q, sql, "the internal table")
            # the crsql_changes view of a query's connection merges on INSERT: refused too
            await refused_400(
                client,
                Q,
                "INSERT INTO crsql_changes VALUES ('kv', x'010901', 'v', 'x', 9, 9, "
                "randomblob(16), 1, 0)",
                "writing the internal table crsql_changes",
            )
            assert everything(agent.store.path) == before
            assert await write_one(client, 2) == 2


async def test_engine_functions_and_fts3_tokenizer_are_refused_at_every_door(
    tmp_path: Path,
) -> None:
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (agent, client):
            await write_one(client, 1)
            before = everything(agent.store.path)
            calls = [
                *((f"engine function {name}", call) for name, call in ENGINE_CALLS.items()),
                ("calling fts3_tokenizer is not allowed", "fts3_tokenizer('simple')"),
                ("calling fts3_tokenizer is not allowed", "fts3_tokenizer('simple', x'00')"),
            ]
            for needle, call in calls:
                # the writer has only the functions the triggers need: the others do not exist
                tx_needle = "no such function" if call.startswith("crsql_as_crr") else needle
                r = await client.post(TX, json=["INSERT INTO kv (k) VALUES (7)", f"SELECT {call}"])
                assert r.status_code == 400 and tx_needle in r.json()["error"], (call, r.text)
                await refused_400(client, TX, [f"UPDATE kv SET v = {call}"], tx_needle)
                await refused_400(client, Q, f"SELECT {call}", needle)
                await refused_400(client, Q, f"SELECT k FROM kv WHERE v = {call}", needle)
                await refused_400(client, SUB, f"SELECT k, {call} FROM kv", needle)
            assert everything(agent.store.path) == before
            assert await agent.store.query("SELECT crsql_db_version()") == [(1,)]
            assert await write_one(client, 2) == 2


async def test_migrations_cannot_create_or_index_internal_names(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (agent, client):
            before = everything(agent.store.path)
            for statement, needle in [
                ("CREATE INDEX i ON kv__crsql_clock (db_version)", "no such table"),
                ("CREATE INDEX crsql_i ON kv (v)", "'crsql_i' is reserved"),
                ("CREATE TABLE __corro_x (a INTEGER PRIMARY KEY NOT NULL)", "is reserved"),
                ("CREATE TABLE t__crsql_clock (a INTEGER PRIMARY KEY NOT NULL)", "is reserved"),
            ]:
                r = await client.post("/v1/migrations", json=[statement])
                assert r.status_code == 400 and needle in r.json()["error"], r.text
            assert everything(agent.store.path) == before


async def test_replication_metadata_is_readable_and_the_agents_state_is_not(
    tmp_path: Path,
) -> None:
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (agent, client):
            await write_one(client, 1)
            for sql, expected in [
                ("SELECT count(*) FROM crsql_changes", [[1, [3]]]),
                ("SELECT db_version FROM crsql_db_versions", [[1, [1]]]),
                ("SELECT count(*) FROM kv__crsql_clock WHERE db_version = 1", [[1, [3]]]),
                ("SELECT count(*) > 0 FROM crsql_site_id", [[1, [1]]]),
                ("SELECT count(*) FROM __corro_members", [[1, [0]]]),
                ("SELECT crsql_db_version(), length(crsql_site_id())", [[1, [1, 16]]]),
            ]:
                r = await client.post(Q, json=sql)
                assert r.status_code == 200, (sql, r.text)
                assert [line["row"] for line in ndjson(r.text) if "row" in line] == expected, sql
            needle = "reading the internal table __corro_state is not allowed"
            await refused_400(client, Q, "SELECT * FROM __corro_state", needle)
            await refused_400(client, Q, "SELECT (SELECT count(*) FROM __corro_state)", needle)
            await refused_400(client, TX, ["SELECT value FROM __corro_state"], needle)
            with pytest.raises(QueryError, match=needle):
                await agent.query("SELECT key FROM __corro_state")


async def test_a_refused_node_still_replicates_its_next_write(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with (
            api_node(tmp_path, name="a") as (a, client_a),
            api_node(tmp_path, name="b", bootstrap=[a.gossip_addr]) as (b, _),
        ):
            for body in [
                ["DELETE FROM kv__crsql_clock"],
                ["SELECT crsql_next_db_version(9223372036854775807)"],
                ["UPDATE crsql_master SET value = 'x'"],
                ["DELETE FROM crsql_db_versions"],
            ]:
                r = await client_a.post(TX, json=body)
                assert r.status_code == 400, r.text
            assert await write_one(client_a, 1) == 1
            while await b.query("SELECT k, v FROM kv") != [(1, "v1")]:  # noqa: ASYNC110
                await trio.sleep(0.05)
            assert b.store.bookie_snapshot()[a.actor_id].max == 1


async def test_agent_transaction_and_query_raise_typed_errors(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (agent, _):
            before = everything(agent.store.path)
            for statements, index, needle in [
                (["DELETE FROM __corro_members"], 0, "writing the internal table __corro_members"),
                (["SELECT 1", "SELECT crsql_next_db_version(5)"], 1, "crsql_next_db_version"),
                ([("SELECT ?", ["\udc80"])], 0, "parameter 1 is not valid UTF-8 text"),
                (
                    ["INSERT INTO kv (k, v) VALUES (1, CAST(x'c3' AS TEXT))"],
                    0,
                    "column kv.v: the value is not valid UTF-8 text; cast it to BLOB",
                ),
            ]:
                with pytest.raises(StatementError) as err:
                    await agent.transaction(statements)  # type: ignore[arg-type]
                assert err.value.index == index and needle in err.value.message
            assert everything(agent.store.path) == before
            for sql, params, needle in [
                ("SELECT fts3_tokenizer('simple')", (), "calling fts3_tokenizer"),
                ("SELECT ?", ("\ud800",), "parameter 1 is not valid UTF-8 text"),
                ("SELECT CAST(x'ff' AS TEXT) AS x", (), "column x: the value is not valid"),
            ]:
                with pytest.raises(QueryError, match=needle):
                    await agent.query(sql, params)


async def test_bad_text_is_a_clear_400_at_every_door(tmp_path: Path) -> None:
    """Lone surrogates arrive as JSON escapes; TEXT that is not UTF-8 is made by a CAST."""
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (agent, client):
            await write_one(client, 1)
            before = everything(agent.store.path)

            async def raw(route: str, body: bytes) -> httpx.Response:
                return await client.post(route, content=body)

            insert = '"INSERT INTO kv (k, v) VALUES (?, ?)"'
            for body, needle in [
                (f'[[{insert}, [2, "ok\\udc80"]]]', "parameter 2 is not valid UTF-8 text"),
                ('[["INSERT INTO kv (k, v) VALUES (:k, :v)", {":k": 2, ":v": "\\ud800"}]]',
                 "parameter 'v' is not valid UTF-8 text"),
                ('["INSERT INTO kv (k, v) VALUES (2, \'\\udfff\')"]',
                 "the SQL text is not valid UTF-8"),
                ('["SELECT 1", "INSERT INTO kv (k, v) VALUES (2, CAST(x\'fffe80\' AS TEXT))"]',
                 "statement 1 failed: column kv.v: the value is not valid UTF-8 text; "
                 "cast it to BLOB"),
                ('["INSERT INTO other (id, x) VALUES (CAST(x\'80\' AS TEXT), 1)"]',
                 "column other.id: the value is not valid UTF-8 text"),
            ]:  # fmt: skip
                r = await raw(TX, body.encode())
                assert r.status_code == 400, (body, r.text)
                assert needle in r.json()["error"], (body, r.text)
                assert r.json()["version"] is None
            for body, needle in [
                ('["SELECT ?", ["\\udc80"]]', "parameter 1 is not valid UTF-8 text"),
                ("\"SELECT '\\udc80'\"", "the SQL text is not valid UTF-8"),
            ]:
                r = await raw(Q, body.encode())
                assert r.status_code == 400, (body, r.text)
                assert needle in r.json()["error"]
                async with stream(client, "POST", SUB, content=body.encode()) as lines:
                    assert lines.response.status_code == 400
                    assert needle in (await lines.next())["error"]
            # a value that is not UTF-8, found while streaming: the error line names the column
            r = await client.post(Q, json="SELECT k, CAST(x'fffe80' AS TEXT) AS bad FROM kv")
            assert r.status_code == 200
            assert ndjson(r.text)[-1] == {
                "error": "column bad: the value is not valid UTF-8 text; cast it to BLOB"
            }
            await refused_400(
                client,
                SUB,
                "SELECT k, CAST(x'fffe80' AS TEXT) AS bad FROM kv",
                "column bad: the value is not valid UTF-8 text; cast it to BLOB",
            )
            assert everything(agent.store.path) == before


async def test_a_slow_read_in_a_transaction_is_interrupted_by_the_default_bound(
    tmp_path: Path,
) -> None:
    """No ``?timeout=``: the node's ``sql_tx_timeout`` (small here) ends a statement that would
    otherwise run for hours, and a write waiting behind it commits. (A transaction's bound
    counts its wait for the writer, so the write is sent late enough to have time left.)"""
    with trio.fail_after(HANG):
        async with api_node(tmp_path, sql_tx_timeout=2.0) as (agent, client):
            answers: dict[str, httpx.Response] = {}

            async def post(name: str, body: Any, query: str = "") -> None:
                answers[name] = await client.post(TX + query, json=body)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(post, "slow", ["INSERT INTO kv (k) VALUES (1)", SLOW])
                await trio.sleep(1.4)  # the next two wait for the writer
                nursery.start_soon(post, "write", ["INSERT INTO kv (k) VALUES (2)"])
                await trio.sleep(0.1)  # queued after the write (the queue is first come first)
                # asking for more than the node allows changes nothing
                nursery.start_soon(post, "long", [SLOW], "?timeout=3600")
            slow = answers["slow"]
            assert slow.status_code == 400
            assert "interrupted: the transaction timed out after 2 s" in slow.json()["error"]
            assert answers["long"].status_code == 400
            assert "timed out after 2 s" in answers["long"].json()["error"]
            assert answers["write"].status_code == 200, answers["write"].text
            assert answers["write"].json()["version"] == 1
            assert await write_one(client, 3) == 2
            assert await agent.query("SELECT k FROM kv ORDER BY k") == [(2,), (3,)]


async def test_the_default_bound_is_sixty_seconds(tmp_path: Path) -> None:
    async with api_node(tmp_path) as (agent, _):
        assert isinstance(agent, Agent)
        assert agent.config.sql_tx_timeout == 60.0
        assert agent.store.tx_timeout == 60.0
