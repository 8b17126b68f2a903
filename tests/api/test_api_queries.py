"""POST /v1/queries against a real agent: the NDJSON stream, read-only refusals before it
starts, streaming without buffering, errors and timeouts mid-stream, and client disconnects
that free the query's slot and connection."""

from __future__ import annotations

from pathlib import Path

import trio
from api_harness import HANG, api_node, api_with_config, ndjson, rows, stream

from corrosion_py.api.limits import ApiConfig

Q = "/v1/queries"
ENDLESS = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x, 'row ' || x FROM c"
)


async def test_golden_stream(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (agent, client):
            await agent.transaction(
                [
                    ("INSERT INTO kv VALUES (?, ?, ?, ?)", [1, "a", b"\x00\xff", 1.5]),
                    ("INSERT INTO kv VALUES (?, ?, ?, ?)", [2, None, None, None]),
                    ("INSERT INTO kv VALUES (?, ?, ?, ?)", [3, "c", b"", -2.0]),
                ]
            )
            r = await client.post(Q, json="SELECT k, v, b, n, 1e999 AS inf FROM kv ORDER BY k")
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/x-ndjson"
            assert r.headers["transfer-encoding"] == "chunked"
            assert r.text.endswith("\n")
            lines = ndjson(r.text)
            assert lines[0] == {"columns": ["k", "v", "b", "n", "inf"]}
            assert lines[1:4] == [
                {"row": [1, [1, "a", [0, 255], 1.5, None]]},
                {"row": [2, [2, None, None, None, None]]},
                {"row": [3, [3, "c", [], -2.0, None]]},
            ]
            assert set(lines[4]) == {"eoq"} and set(lines[4]["eoq"]) == {"time"}
            assert type(lines[4]["eoq"]["time"]) is float
            assert len(lines) == 5
            # the row number is a 1-based counter, not the rowid
            r = await client.post(Q, json="SELECT k FROM kv WHERE k > 1 ORDER BY k DESC")
            assert ndjson(r.text)[1:3] == [{"row": [1, [3]]}, {"row": [2, [2]]}]
            # no rows: columns then eoq
            lines = ndjson((await client.post(Q, json="SELECT k FROM kv WHERE 0")).text)
            assert lines[0] == {"columns": ["k"]} and list(lines[1]) == ["eoq"]


async def test_params_in_every_shape(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (_, client):
            for statement in [
                ["SELECT ?, ?, ?", [1, "x", [7, 8]]],
                ["SELECT :a, @b, $c", {":a": 1, "@b": "x", "$c": [7, 8]}],
                {"query": "SELECT ?, ?, ?", "params": [1, "x", [7, 8]]},
                {"query": "SELECT :a, :b, :c", "named_params": {"a": 1, "b": "x", "c": [7, 8]}},
            ]:
                r = await client.post(Q, json=statement)
                assert r.status_code == 200, r.text
                assert ndjson(r.text)[1] == {"row": [1, [1, "x", [7, 8]]]}


async def test_writes_are_refused_before_streaming(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (agent, client):
            await agent.transaction(["INSERT INTO kv (k, v) VALUES (1, 'a')"])
            schema = await agent.store.query("SELECT sql FROM sqlite_master ORDER BY name")
            for sql in [
                "INSERT INTO kv (k) VALUES (2)",
                "UPDATE kv SET v = 'b'",
                "DELETE FROM kv",
                "REPLACE INTO kv (k) VALUES (1)",
                "WITH x AS (SELECT 1) INSERT INTO kv (k) SELECT 5 FROM x",
                "CREATE TABLE t (a)",
                "CREATE TEMP TABLE t (a)",
                "CREATE TEMP VIEW v AS SELECT 1",
                "CREATE INDEX kv_n ON kv (n)",
                "DROP TABLE kv",
                "DROP INDEX kv_v",
                "ALTER TABLE kv ADD COLUMN z",
                "ATTACH ':memory:' AS m",
                "DETACH m",
                "PRAGMA user_version = 3",
                "PRAGMA journal_mode = delete",
                "PRAGMA optimize",
                "BEGIN",
            ]:
                r = await client.post(Q, json=sql)
                assert r.status_code == 400, sql
                assert r.headers["content-type"] == "application/json"
                assert r.json() == {"error": "statement is not readonly", "code": "bad_request"}
            assert await rows(agent) == [(1, "a", None, None)]
            assert await agent.store.query("SELECT sql FROM sqlite_master ORDER BY name") == schema
            # reads of every kind are fine, read-only PRAGMAs included
            for sql in [
                "PRAGMA table_info(kv)",
                "PRAGMA user_version",
                "SELECT name FROM pragma_table_info('kv')",
                "SELECT count(*) FROM crsql_changes",
                "SELECT crsql_site_id()",
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3) "
                "SELECT x FROM c",
            ]:
                r = await client.post(Q, json=sql)
                assert r.status_code == 200, (sql, r.text)
                assert "eoq" in ndjson(r.text)[-1], sql


async def test_bad_statements_are_refused_with_json_errors(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (_, client):
            for body, needle in [
                ("SELEC 1", "syntax error"),
                ("SELECT * FROM nope", "no such table: nope"),
                ("SELECT 1; SELECT 2", "one statement"),
                ("", "empty"),
                ("  -- nothing\n", "empty"),
                (["SELECT ?", []], "bindings"),
                (["SELECT ?"], "an array of 1 items"),
                (["SELECT 1", "SELECT 2"], "must be an array or an object"),
                (5, "a statement is"),
                ({"query": "SELECT 1", "extra": 1}, "unknown key 'extra'"),
            ]:
                r = await client.post(Q, json=body)
                assert r.status_code == 400, body
                assert r.headers["content-type"] == "application/json"
                assert r.json()["code"] == "bad_request"
                assert needle in r.json()["error"], (body, r.json())
            r = await client.post(Q, content=b"{")
            assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
            r = await client.post(f"{Q}?timeout=x", json="SELECT 1")
            assert r.status_code == 400 and "timeout" in r.json()["error"]


async def test_first_lines_arrive_before_an_endless_query_ends(tmp_path: Path) -> None:
    """An endless result cannot be buffered: reading its first rows proves it streams. The
    client then leaves; with a pool of one query, the next query only runs if the endless one
    released its slot (and closed its connection)."""
    config = ApiConfig(query_pool=1, query_wait=10.0)
    with trio.fail_after(HANG):
        async with api_with_config(tmp_path, config) as (_, client):
            for _ in range(2):
                async with stream(client, "POST", Q, json=ENDLESS) as lines:
                    assert lines.response.status_code == 200
                    assert await lines.next() == {"columns": ["x", "'row ' || x"]}
                    for n in range(1, 2001):
                        assert await lines.next() == {"row": [n, [n, f"row {n}"]]}
            r = await client.post(Q, json="SELECT 42")
            assert r.status_code == 200
            assert ndjson(r.text)[1] == {"row": [1, [42]]}


async def test_error_mid_stream_is_the_last_line(tmp_path: Path) -> None:
    sql = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000) "
        "SELECT x, CASE WHEN x = 3000 THEN json('not json') ELSE x END FROM c"
    )
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (_, client):
            r = await client.post(Q, json=sql)
            assert r.status_code == 200
            lines = ndjson(r.text)
            assert list(lines[0]) == ["columns"]
            assert lines[-1] == {"error": "malformed JSON"}
            assert [line["row"][0] for line in lines[1:-1]] == list(range(1, len(lines) - 1))
            assert 1 < len(lines) - 2 < 3000
            assert not any("eoq" in line for line in lines)


async def test_timeout_ends_the_stream_with_an_error_line(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (_, client):
            r = await client.post(f"{Q}?timeout=0.3", json=ENDLESS)
            assert r.status_code == 200
            lines = ndjson(r.text)
            assert lines[0] == {"columns": ["x", "'row ' || x"]}
            assert lines[-1] == {"error": "query timed out after 0.3 s"}
            assert all("row" in line for line in lines[1:-1])
            # a statement that times out before its first row is refused outright
            slow = f"SELECT count(*) FROM ({ENDLESS})"
            r = await client.post(f"{Q}?timeout=0.2", json=slow)
            assert r.status_code == 400
            assert r.json() == {"error": "query timed out after 0.2 s", "code": "bad_request"}


async def test_query_pool_full_answers_503(tmp_path: Path) -> None:
    config = ApiConfig(query_pool=1, query_wait=0.1)
    with trio.fail_after(HANG):
        async with api_with_config(tmp_path, config) as (_, client):
            async with stream(client, "POST", Q, json=ENDLESS) as held:
                assert held.response.status_code == 200
                r = await client.post(Q, json="SELECT 1")
                assert r.status_code == 503
                assert r.json() == {
                    "error": "too many queries running (1): retry",
                    "code": "overloaded",
                }
            r = await client.post(Q, json="SELECT 1")
            assert r.status_code == 200
