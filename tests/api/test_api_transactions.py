"""POST /v1/transactions against a real agent: the exact response shapes, every statement
shape and parameter type, rollback, refusals and the timeout."""

from __future__ import annotations

import re
from pathlib import Path

import trio
from api_harness import HANG, api_node, rows

TX = "/v1/transactions"


def assert_exec_ok(body: dict[str, object], n: int) -> None:
    assert set(body) == {"results", "time", "version", "actor_id"}
    results = body["results"]
    assert isinstance(results, list) and len(results) == n
    for result in results:
        assert set(result) == {"rows_affected", "time"}
        assert type(result["rows_affected"]) is int and result["rows_affected"] >= 0
        assert type(result["time"]) is float and result["time"] >= 0
    assert type(body["time"]) is float
    assert isinstance(body["actor_id"], str) and re.fullmatch("[0-9a-f]{32}", body["actor_id"])


def assert_exec_error(body: dict[str, object], needle: str) -> str:
    assert set(body) == {"results", "time", "version", "actor_id", "error", "code"}
    assert body["code"] == "bad_request"
    assert body["version"] is None
    assert body["results"] == [{"error": body["error"]}]
    message = body["error"]
    assert isinstance(message, str) and needle in message, message
    return message


async def test_golden_success_shape_and_headers(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (agent, client):
            r = await client.post(
                TX,
                json=[
                    "INSERT INTO kv (k, v) VALUES (1, 'a')",
                    ["INSERT INTO kv (k, v) VALUES (?, ?)", [2, "b"]],
                    "UPDATE kv SET v = 'c'",
                ],
            )
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/json"
            body = r.json()
            assert_exec_ok(body, 3)
            assert [x["rows_affected"] for x in body["results"]] == [1, 1, 2]
            assert body["version"] == 1
            assert body["actor_id"] == agent.actor_id.hex()
            # a transaction that changes nothing replicated gets no version
            r = await client.post(TX, json=["UPDATE kv SET v = 'c' WHERE k = 99"])
            assert r.status_code == 200
            assert r.json()["version"] is None
            assert r.json()["results"][0]["rows_affected"] == 0
            r = await client.post(TX, json=["DELETE FROM kv WHERE k = 2"])
            assert r.json()["version"] == 2
            assert await rows(agent) == [(1, "c", None, None)]


async def test_all_statement_shapes_and_param_types(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (agent, client):
            ins = "INSERT INTO kv (k, v, b, n) VALUES (?, ?, ?, ?)"
            r = await client.post(
                TX,
                json=[
                    "INSERT INTO kv (k, v) VALUES (1, 'plain')",
                    [ins, [2, "text", [0, 1, 254, 255], 1.5]],
                    [ins, [3, None, [], None]],
                    [ins, [4, True, False, 2**70]],
                    [ins, [5, {"a": [1, "x"]}, [1, "mixed"], -7]],
                    [ins, [6, "ünïcødé ☃", [256], 0.25]],
                    ["INSERT INTO kv (k, v) VALUES (:k, :v)", {":k": 7, ":v": "colon"}],
                    ["INSERT INTO kv (k, v) VALUES (@k, @v)", {"@k": 8, "@v": "at"}],
                    ["INSERT INTO kv (k, v) VALUES ($k, $v)", {"$k": 9, "$v": "dollar"}],
                    ["INSERT INTO kv (k, v) VALUES (:k, :v)", {"k": 10, "v": "bare"}],
                    {"query": ins, "params": [11, "verbose", None, 3]},
                    {"query": "INSERT INTO kv (k, v) VALUES (:k, 'named')", "named_params":
                        {":k": 12}},
                    {"query": "INSERT INTO kv (k, v) VALUES (13, 'none')", "params": None,
                     "named_params": None},
                    {"query": "INSERT INTO kv (k, v) VALUES (14, 'bare verbose')"},
                ],
            )  # fmt: skip
            assert r.status_code == 200, r.text
            assert_exec_ok(r.json(), 14)
            assert r.json()["version"] == 1  # one transaction, one version
            got = await agent.store.query(
                "SELECT k, v, typeof(v), b, typeof(b), n, typeof(n) FROM kv ORDER BY k"
            )
            assert got == [
                (1, "plain", "text", None, "null", None, "null"),
                (2, "text", "text", b"\x00\x01\xfe\xff", "blob", 1.5, "real"),
                (3, None, "null", b"", "blob", None, "null"),
                (4, "1", "text", 0, "integer", float(2**70), "real"),  # TEXT affinity
                (5, '{"a":[1,"x"]}', "text", '[1,"mixed"]', "text", -7.0, "real"),
                (6, "ünïcødé ☃", "text", "[256]", "text", 0.25, "real"),
                (7, "colon", "text", None, "null", None, "null"),
                (8, "at", "text", None, "null", None, "null"),
                (9, "dollar", "text", None, "null", None, "null"),
                (10, "bare", "text", None, "null", None, "null"),
                (11, "verbose", "text", None, "null", 3.0, "real"),
                (12, "named", "text", None, "null", None, "null"),
                (13, "none", "text", None, "null", None, "null"),
                (14, "bare verbose", "text", None, "null", None, "null"),
            ]


async def test_failing_statement_rolls_back_everything(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (agent, client):
            r = await client.post(TX, json=["INSERT INTO kv (k, v) VALUES (1, 'kept')"])
            assert r.json()["version"] == 1
            r = await client.post(
                TX,
                json=[
                    "INSERT INTO kv (k, v) VALUES (2, 'lost')",
                    "UPDATE kv SET v = 'lost too' WHERE k = 1",
                    "INSERT INTO kv (k, v) VALUES (1, 'duplicate')",
                ],
            )
            assert r.status_code == 400
            assert r.headers["content-type"] == "application/json"
            message = assert_exec_error(r.json(), "UNIQUE constraint failed")
            assert "statement 2" in message
            assert r.json()["actor_id"] == agent.actor_id.hex()
            assert await rows(agent) == [(1, "kept", None, None)]
            # no version was used up by the failed transaction
            r = await client.post(TX, json=["INSERT INTO kv (k, v) VALUES (3, 'next')"])
            assert r.json()["version"] == 2
            r = await client.post(TX, json=["INSERT INTO nope VALUES (1)"])
            assert_exec_error(r.json(), "no such table: nope")
            r = await client.post(TX, json=[["INSERT INTO kv (k, v) VALUES (?, ?)", [1]]])
            assert r.status_code == 400
            assert_exec_error(r.json(), "bindings")
            r = await client.post(TX, json=["INSERT INTO kv (k) VALUES (4); DELETE FROM kv"])
            assert r.status_code == 400
            assert_exec_error(r.json(), "one statement")
            assert len(await rows(agent)) == 2


async def test_refused_statement_kinds_change_nothing(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (agent, client):
            schema = await agent.store.query("SELECT sql FROM sqlite_master ORDER BY name")
            for sql in [
                "COMMIT",
                "BEGIN",
                "ROLLBACK",
                "SAVEPOINT x",
                "RELEASE x",
                "CREATE TABLE t (a)",
                "CREATE TEMP TABLE t (a)",
                "DROP TABLE kv",
                "ALTER TABLE kv ADD COLUMN z",
                "ATTACH ':memory:' AS m",
                "PRAGMA user_version = 3",
                "VACUUM",
                "  /* comment */ -- line\n drop table kv",
            ]:
                r = await client.post(TX, json=["INSERT INTO kv (k, v) VALUES (1, 'x')", sql])
                assert r.status_code == 400, sql
                assert_exec_error(r.json(), "not allowed in a transaction")
            assert await rows(agent) == []
            assert await agent.store.query("SELECT sql FROM sqlite_master ORDER BY name") == schema
            assert await agent.store.query("PRAGMA user_version") == [(0,)]
            # the writer is still healthy
            r = await client.post(TX, json=["INSERT INTO kv (k, v) VALUES (1, 'x')"])
            assert r.status_code == 200 and r.json()["version"] == 1


async def test_bad_bodies_are_refused_in_the_exec_shape(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (agent, client):
            cases: list[tuple[object, str]] = [
                ([], "at least 1 statement is required"),
                ({"query": "INSERT INTO kv (k) VALUES (1)"}, "must be a JSON array"),
                ("INSERT INTO kv (k) VALUES (1)", "must be a JSON array"),
                (["INSERT INTO kv (k) VALUES (1)", 5], "statement 1"),
                ([["INSERT INTO kv (k) VALUES (1)"]], "an array of 1 items"),
                ([["INSERT INTO kv (k) VALUES (?)", 5]], "must be an array or an object"),
                ([["INSERT INTO kv (k) VALUES (?)", None]], "must be an array or an object"),
                ([[5, [1]]], "statement 0"),
                ([{"query": 5}], '"query" must be a string'),
                ([{"sql": "SELECT 1"}], "unknown key 'sql'"),
                ([{"query": "SELECT 1", "params": [], "named_params": {}}], "not both"),
                ([{"query": "SELECT 1", "params": {"a": 1}}], '"params" must be an array'),
                ([{"query": "SELECT 1", "named_params": [1]}], '"named_params" must be an'),
                ([["SELECT :a", {":a": 1, "$a": 2}]], "given twice"),
                ([["SELECT ?", [10**400]]], "out of range"),
            ]
            for body, needle in cases:
                r = await client.post(TX, json=body)
                assert r.status_code == 400, body
                assert_exec_error(r.json(), needle)
            for raw, needle in [
                (b"[", "malformed JSON"),
                (b"", "empty"),
                (b'["SELECT 1"', "malformed JSON"),
                (b"[NaN]", "malformed JSON"),
                (b"\xff\xfe\x00", "malformed JSON"),
            ]:
                r = await client.post(TX, content=raw)
                assert r.status_code == 400, raw
                assert_exec_error(r.json(), needle)
            for query in ["timeout=abc", "timeout=-1", "timeout=inf"]:
                r = await client.post(f"{TX}?{query}", json=["INSERT INTO kv (k) VALUES (1)"])
                assert r.status_code == 400, query
                assert_exec_error(r.json(), "timeout")
            assert await rows(agent) == []


async def test_timeout_interrupts_and_rolls_back(tmp_path: Path) -> None:
    slow = (
        "SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
        "WHERE x < 1000000000) SELECT x FROM c)"
    )
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (agent, client):
            r = await client.post(
                f"{TX}?timeout=0.2", json=["INSERT INTO kv (k, v) VALUES (1, 'x')", slow]
            )
            assert r.status_code == 400
            assert_exec_error(r.json(), "timed out after 0.2 s")
            assert await rows(agent) == []
            # a timeout that is not reached changes nothing; 0 means no limit
            for query in ["timeout=30", "timeout=0"]:
                r = await client.post(
                    f"{TX}?{query}", json=["INSERT OR REPLACE INTO kv (k) VALUES (1)"]
                )
                assert r.status_code == 200, r.text
            assert len(await rows(agent)) == 1
