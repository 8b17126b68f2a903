"""GET /v1/health, POST /v1/table_stats and the admin POST /v1/migrations against a real
agent: exact shapes, health thresholds from real bookkeeping, migrations by the schema rules."""

from __future__ import annotations

from pathlib import Path

import attrs
import trio
from api_harness import HANG, SCHEMA, api_node, ndjson

from corrosion_py.agent import Agent
from corrosion_py.store.store import Store
from corrosion_py.wire import Changeset


async def feed_remote_versions(agent: Agent, tmp: Path) -> bytes:
    """Another actor writes versions 1..6; this node gets 3 and 6 whole and one piece of 5:
    gaps 1, 2, 4 and a partial 5, so 4 versions missing. Returns the actor."""
    (tmp / "peer.sql").write_text(SCHEMA)
    peer = Store.open(tmp / "peer.db", schema_paths=[tmp / "peer.sql"])
    try:
        sets: dict[int, Changeset] = {}
        for k in range(1, 7):
            result = peer.transaction_sync([("INSERT INTO kv VALUES (?, 'x', NULL, 1.0)", [k])])
            assert result.changeset is not None and result.version == k
            sets[k] = result.changeset
    finally:
        peer.close()
    five = sets[5]
    assert len(five.changes) > 1
    piece = attrs.evolve(five, changes=five.changes[:1], seqs=(0, five.changes[0].seq))
    await trio.sleep(0.05)  # so the apply lag is clearly above 0
    await agent.apply_queue.put([sets[3], sets[6], piece])
    await agent.apply_queue.drained()
    return five.actor_id


async def test_health_golden_and_thresholds(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (agent, client):
            r = await client.get("/v1/health")
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/json"
            assert r.json() == {
                "response": {"gaps": 0, "members": 1, "p99_lag": None, "queue_size": 0,
                             "faults": [], "sync": {"last_ok_ago": None, "failures": 0}}
            }  # fmt: skip
            # a lag threshold before any remote change: no information, unhealthy
            r = await client.get("/v1/health?p99_lag=1")
            assert r.status_code == 503
            assert r.json() == {"error": "no p99 lag information available", "code": "no_lag_info"}
            r = await client.get("/v1/health?p99_lag=1&failure_status=429")
            assert r.status_code == 429
            assert (await client.get("/v1/health?gaps=0&max_queue=0")).status_code == 200

            actor = await feed_remote_versions(agent, tmp_path)
            # an actor neither a member nor advertised by one: its claims count for nothing
            r = await client.get("/v1/health?gaps=0")
            assert r.status_code == 200 and r.json()["response"]["gaps"] == 0
            agent.syncer.learnt[actor] = None  # as when a member's sync state advertises it
            r = await client.get("/v1/health")
            assert r.status_code == 200
            body = r.json()["response"]
            assert set(body) == {"gaps", "members", "p99_lag", "queue_size", "faults", "sync"}
            assert body["gaps"] == 4 and body["members"] == 1 and body["queue_size"] == 0
            lag = body["p99_lag"]
            assert type(lag) is float and 0.05 <= lag < HANG
            for query, status in [
                ("gaps=4", 200),
                ("gaps=3", 503),
                ("gaps=3&failure_status=500", 500),
                ("max_queue=0", 200),
                (f"p99_lag={HANG}", 200),
                ("p99_lag=0.001", 503),
                ("p99_lag=0.001&queue_size=0", 200),  # lag counts only with a queue over 0
                ("p99_lag=0.001&failure_status=418", 418),
            ]:
                r = await client.get(f"/v1/health?{query}")
                assert r.status_code == status, query
                assert r.json() == {"response": body}, query
            for query in ["gaps=x", "gaps=-1", "p99_lag=nan", "failure_status=99",
                          "failure_status=600", "max_queue=1.5"]:  # fmt: skip
                r = await client.get(f"/v1/health?{query}")
                assert r.status_code == 400, query
                assert r.json()["code"] == "bad_request" and set(r.json()) == {"error", "code"}


async def test_table_stats(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (agent, client):
            await agent.transaction(
                [f"INSERT INTO kv (k) VALUES ({k})" for k in range(5)]
                + ["INSERT INTO other (id) VALUES ('a')", "INSERT INTO other (id) VALUES ('b')"]
            )
            r = await client.post("/v1/table_stats", json={"tables": ["kv", "nope"]})
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/json"
            assert r.json() == {"total_row_count": 5, "invalid_tables": ["nope"]}
            r = await client.post(
                "/v1/table_stats",
                json={"tables": ["other", "kv", "kv", "KV", "__corro_members", "crsql_site_id",
                                 "kv__crsql_clock", "sqlite_master", "nope", "nope"]},
            )  # fmt: skip
            assert r.json() == {
                "total_row_count": 7,
                "invalid_tables": ["KV", "__corro_members", "crsql_site_id", "kv__crsql_clock",
                                   "sqlite_master", "nope"],
            }  # fmt: skip
            r = await client.post("/v1/table_stats", json={"tables": []})
            assert r.json() == {"total_row_count": 0, "invalid_tables": []}
            for body, needle in [
                (["kv"], '{"tables"'),
                ({}, '{"tables"'),
                ({"tables": "kv"}, "array of table names"),
                ({"tables": [1]}, "array of table names"),
                ({"tables": [], "x": 1}, "unknown key 'x'"),
            ]:
                r = await client.post("/v1/table_stats", json=body)
                assert r.status_code == 400, body
                assert needle in r.json()["error"]


async def test_migrations_add_tables_columns_and_indexes(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (agent, client):
            r = await client.post(
                "/v1/migrations",
                json=[
                    "CREATE TABLE IF NOT EXISTS todo (id INTEGER PRIMARY KEY NOT NULL, "
                    "title TEXT NOT NULL DEFAULT '') -- a comment",
                    "CREATE INDEX todo_title ON todo (title);",
                    # kv's full definition with one more column at the end
                    "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT, b BLOB, n REAL, "
                    "extra TEXT)",
                ],
            )
            assert r.status_code == 200, r.text
            body = r.json()
            assert set(body) == {"results", "time", "version", "actor_id", "schema"}
            assert body["results"] == [{"rows_affected": 0, "time": 0.0}] * 3
            assert body["version"] is None and body["actor_id"] == agent.actor_id.hex()
            assert body["schema"] == {
                "created_tables": ["todo"],
                "added_columns": [["kv", "extra"]],
                "created_indexes": ["todo_title"],
            }
            r = await client.post(
                "/v1/transactions",
                json=["INSERT INTO todo (id, title) VALUES (1, 'x')",
                      "INSERT INTO kv (k, extra) VALUES (1, 'e')"],
            )  # fmt: skip
            assert r.status_code == 200 and r.json()["version"] == 1
            r = await client.post("/v1/queries", json="SELECT t.title, kv.extra FROM todo t, kv")
            assert ndjson(r.text)[1] == {"row": [1, ["x", "e"]]}
            r = await client.post("/v1/table_stats", json={"tables": ["todo"]})
            assert r.json() == {"total_row_count": 1, "invalid_tables": []}
            # the same statements again change nothing
            again = await client.post(
                "/v1/migrations", json=["CREATE INDEX todo_title ON todo (title)"]
            )
            assert again.status_code == 200
            assert again.json()["schema"] == {
                "created_tables": [], "added_columns": [], "created_indexes": []
            }  # fmt: skip


async def test_refused_migrations_change_nothing(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (agent, client):
            schema = await agent.store.query("SELECT type, name, sql FROM sqlite_master")
            recorded = await agent.store.query("SELECT * FROM __corro_schema")
            for statements, needle in [
                (["CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v INTEGER, b BLOB, n REAL)"],
                 "column 'v' changed"),
                (["CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT)"], "dropped"),
                (["CREATE TABLE fresh (id INTEGER PRIMARY KEY NOT NULL)", "DROP TABLE kv"],
                 "DROP TABLE statements are not allowed"),
                (["CREATE TABLE fresh (id INTEGER PRIMARY KEY NOT NULL)",
                  "CREATE UNIQUE INDEX fresh_id ON fresh (id)"], "unique indexes"),
                (["CREATE TABLE bad (id INTEGER PRIMARY KEY NOT NULL, "
                  "o TEXT REFERENCES other (id))"], "foreign keys"),
                (["CREATE TABLE fresh (id INTEGER PRIMARY KEY NOT NULL",], "incomplete"),
                (["CREATE TABLE fresh (id INTEGER PRIMARY KEY NOT NULL)",
                  "CREATE TABLE fresh (id INTEGER PRIMARY KEY NOT NULL)"], "defined twice"),
                (["INSERT INTO kv (k) VALUES (1)"], "INSERT statements are not allowed"),
            ]:  # fmt: skip
                r = await client.post("/v1/migrations", json=statements)
                assert r.status_code == 400, statements
                body = r.json()
                assert set(body) == {"results", "time", "version", "actor_id", "error", "code"}
                assert body["results"] == [{"error": body["error"]}]
                assert body["code"] == "bad_request"
                assert body["version"] is None
                assert needle in body["error"], body["error"]
                assert body["error"].startswith("<api>:1: ")
            for body_json, needle in [
                ([], "at least 1 statement is required"),
                ({"statements": []}, "JSON array of schema statements"),
                ([["CREATE TABLE x (id INTEGER PRIMARY KEY NOT NULL)"]], "JSON array of schema"),
            ]:
                r = await client.post("/v1/migrations", json=body_json)
                assert r.status_code == 400
                assert needle in r.json()["error"]
            r = await client.post("/v1/migrations", content=b"[")
            assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
            assert await agent.store.query("SELECT type, name, sql FROM sqlite_master") == schema
            assert await agent.store.query("SELECT * FROM __corro_schema") == recorded
            assert await agent.store.query("SELECT count(*) FROM kv") == [(0,)]
