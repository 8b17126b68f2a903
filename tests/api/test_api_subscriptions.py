"""Golden tests of the subscription endpoints' shapes (Corrosion's, docs/api.md) against
a real agent's HTTP server: headers, NDJSON lines, attach by id, ``from``, ``skip_rows``, the
refusals, table update notifications and a slow listener's last line."""

from __future__ import annotations

import re
from pathlib import Path

import trio
from api_harness import HANG, api_node, stream

from corrosion_py.subs import SubsConfig

SQL = "SELECT k, v FROM kv WHERE n > 0"


async def test_subscribe_then_changes_in_corrosions_shapes(tmp_path: Path) -> None:
    async with api_node(tmp_path) as (agent, client):
        await agent.transaction(["INSERT INTO kv (k, v, n) VALUES (1, 'a', 1.5)"])
        with trio.fail_after(HANG):
            async with stream(client, "POST", "/v1/subscriptions", json=SQL) as lines:
                headers = lines.response.headers
                assert lines.response.status_code == 200
                assert headers["content-type"].startswith("application/x-ndjson")
                assert re.fullmatch(r"[0-9a-f]{32}", headers["corro-query-id"])
                assert re.fullmatch(r"[0-9a-f]{16}", headers["corro-query-hash"])
                assert await lines.next() == {"columns": ["k", "v"]}
                assert await lines.next() == {"row": [1, [1, "a"]]}
                eoq = await lines.next()
                assert set(eoq) == {"eoq"} and eoq["eoq"]["change_id"] == 0
                assert isinstance(eoq["eoq"]["time"], float)
                await agent.transaction(["UPDATE kv SET v = 'b' WHERE k = 1"])
                assert await lines.next() == {"change": ["update", 1, [1, "b"], 1]}
                await agent.transaction(["INSERT INTO kv (k, v, n) VALUES (2, 'c', 2)"])
                assert await lines.next() == {"change": ["insert", 2, [2, "c"], 2]}
                await agent.transaction(["UPDATE kv SET n = 0 WHERE k = 1"])
                assert await lines.next() == {"change": ["delete", 1, [1, "b"], 3]}
                sub_id = headers["corro-query-id"]

                # the same SQL (params inlined) is the same subscription
                body = ["SELECT k, v FROM kv WHERE n > ?", [0]]
                async with stream(client, "POST", "/v1/subscriptions", json=body) as again:
                    assert again.response.headers["corro-query-id"] == sub_id
                    assert await again.next() == {"columns": ["k", "v"]}
                    assert await again.next() == {"row": [2, [2, "c"]]}
                    assert (await again.next())["eoq"]["change_id"] == 3

                # attach by id, resume after change 1, skip the rows
                url = f"/v1/subscriptions/{sub_id}"
                async with stream(client, "GET", url, params={"from": 1}) as resumed:
                    assert (
                        resumed.response.headers["corro-query-hash"] == headers["corro-query-hash"]
                    )
                    assert await resumed.next() == {"change": ["insert", 2, [2, "c"], 2]}
                    assert await resumed.next() == {"change": ["delete", 1, [1, "b"], 3]}
                async with stream(client, "GET", url, params={"skip_rows": "true"}) as skipped:
                    await agent.transaction(["INSERT INTO kv (k, v, n) VALUES (3, 'd', 1)"])
                    assert await skipped.next() == {"change": ["insert", 3, [3, "d"], 4]}
                    assert await lines.next() == {"change": ["insert", 3, [3, "d"], 4]}


async def test_subscription_refusals(tmp_path: Path) -> None:
    async with api_node(tmp_path) as (agent, client):
        with trio.fail_after(HANG):
            for body, expected in [
                ("INSERT INTO kv (k) VALUES (1)", "only a read-only SELECT"),
                ("SELECT * FROM nope", "no such table"),
                ("SELECT * FROM __corro_members", "not a replicated table"),
                ("SELECT 1; SELECT 2", "one statement"),
                (["SELECT * FROM kv WHERE k = ?", []], "binding"),
                ({"sql": "SELECT 1"}, ""),
            ]:
                r = await client.post("/v1/subscriptions", json=body)
                assert r.status_code == 400, (body, r.text)
                assert expected.lower() in r.json()["error"].lower(), (body, r.text)
            r = await client.post("/v1/subscriptions", content=b"{nope")
            assert r.status_code == 400 and "error" in r.json()
            r = await client.post("/v1/subscriptions", params={"from": 1}, json=SQL)
            assert r.status_code == 400
            assert "no existing subscription" in r.json()["error"]
            r = await client.get("/v1/subscriptions/0123456789abcdef0123456789abcdef")
            assert r.status_code == 404
            assert r.json() == {
                "error": "could not find subscription with id 0123456789abcdef0123456789abcdef"
            }
            r = await client.post("/v1/subscriptions", params={"from": "x"}, json=SQL)
            assert r.status_code == 400
            assert len(agent.subs) == 0
            async with stream(client, "POST", "/v1/subscriptions", json=SQL) as lines:
                sub_id = lines.response.headers["corro-query-id"]
                await lines.next()
                r = await client.get(f"/v1/subscriptions/{sub_id}", params={"from": 5})
                assert r.status_code == 400 and "ahead" in r.json()["error"]
            assert await agent.query("SELECT count(*) FROM kv") == [(0,)]


async def test_changes_too_old_and_a_slow_listener(tmp_path: Path) -> None:
    subs = SubsConfig(retention=2, listener_buffer=2)
    async with api_node(tmp_path, subs=subs) as (agent, client):
        with trio.fail_after(HANG):
            async with stream(client, "POST", "/v1/subscriptions", json=SQL) as lines:
                sub_id = lines.response.headers["corro-query-id"]
                assert await lines.next() == {"columns": ["k", "v"]}
                assert "eoq" in await lines.next()  # no rows yet
                # one transaction, five result changes published at once: a buffer of 2
                values = ", ".join(f"({k}, 'x', 1)" for k in range(5))
                await agent.transaction([f"INSERT INTO kv (k, v, n) VALUES {values}"])
                rest = await lines.rest()
            got = [line["change"][3] for line in rest[:-1]]
            assert 2 <= len(got) < 5  # the buffer (and a waiting reader) held a few
            assert got == list(range(1, len(got) + 1))
            assert rest[-1] == {
                "error": "subscriber fell too far behind and was disconnected; "
                f"resume with from={len(got)}"
            }
            r = await client.get(f"/v1/subscriptions/{sub_id}", params={"from": 1})
            assert r.status_code == 400
            assert r.json() == {
                "error": "subscription already deleted older changes, min change id: 4"
            }


async def test_table_updates_notify_in_corrosions_shape(tmp_path: Path) -> None:
    async with api_node(tmp_path) as (agent, client):
        with trio.fail_after(HANG):
            r = await client.post("/v1/updates/nope")
            assert r.status_code == 400 and "error" in r.json()
            async with stream(client, "POST", "/v1/updates/other") as lines:
                assert lines.response.status_code == 200
                assert re.fullmatch(r"[0-9a-f-]{36}", lines.response.headers["corro-query-id"])
                await agent.transaction(["INSERT INTO other (id, x) VALUES ('a', 1)"])
                await agent.transaction(["DELETE FROM other WHERE id = 'a'"])
                assert await lines.next() == {"notify": ["update", ["a"]]}
                assert await lines.next() == {"notify": ["delete", ["a"]]}


async def test_a_subscription_survives_an_agent_restart(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with (
            api_node(tmp_path) as (agent, client),
            stream(client, "POST", "/v1/subscriptions", json=SQL) as lines,
        ):
            sub_id = lines.response.headers["corro-query-id"]
            await lines.next()
            await lines.next()  # eoq
            await agent.transaction(["INSERT INTO kv (k, v, n) VALUES (1, 'a', 1)"])
            assert await lines.next() == {"change": ["insert", 1, [1, "a"], 1]}
        async with api_node(tmp_path) as (agent, client):  # same database, new process state
            await agent.transaction(["UPDATE kv SET v = 'b' WHERE k = 1"])
            url = f"/v1/subscriptions/{sub_id}"
            async with stream(client, "GET", url, params={"from": 1}) as lines:
                assert await lines.next() == {"change": ["update", 1, [1, "b"], 2]}
