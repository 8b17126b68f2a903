"""The clients against a real agent's HTTP API: transactions (every statement and parameter
shape, BLOBs), refusals, query streaming, health, table stats, migrations, auth and connection
errors. The blocking client runs in a worker thread while the agent runs in the trio loop."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from client_harness import HANG, agent_api, api, in_thread

from corrosion_py.client import (
    AsyncCorrosionClient,
    ClientError,
    CorrosionClient,
    ExecResult,
    QueryError,
    TableStats,
    TransactionError,
    TransportError,
    Unauthorized,
    Unhealthy,
    blob,
    decode_cells,
)

STATEMENTS = [
    "INSERT INTO kv (k, v) VALUES (1, 'plain')",
    ("INSERT INTO kv (k, v, note) VALUES (?, ?, ?)", [2, b"\x00\xffbin", None]),
    ("INSERT INTO kv (k, v, note) VALUES (:k, :v, :note)", {":k": 3, "v": 2.5, "$note": "n"}),
    {"query": "INSERT INTO kv (k, v) VALUES (?, ?)", "params": [4, True], "named_params": None},
    ["INSERT INTO kv (k, v) VALUES (?, ?)", [5, {"json": [1, 2]}]],
    ("INSERT INTO kv (k, v) VALUES (?, ?)", (6, bytearray(b""))),
]
EXPECTED = [
    (1, "plain", None),
    (2, b"\x00\xffbin", None),
    (3, 2.5, "n"),
    (4, 1, None),
    (5, '{"json":[1,2]}', None),
    (6, b"", None),
]


def check_exec(result: ExecResult, count: int) -> None:
    assert len(result.results) == count
    assert all(r.rows_affected == 1 and r.time >= 0 for r in result.results)
    assert result.version == 1
    assert len(result.actor_id) == 32


async def test_async_transaction_query_round_trip(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with agent_api(tmp_path) as agent, AsyncCorrosionClient(api(agent)) as c:
            result = await c.transaction(STATEMENTS)
            check_exec(result, len(STATEMENTS))
            assert result.actor_id == agent.actor_id.hex()
            async with c.query("SELECT k, v, note FROM kv ORDER BY k") as rows:
                assert rows.columns == ("k", "v", "note")
                got = [row async for row in rows]
            assert got == EXPECTED
            assert rows.time is not None and rows.closed
            # params, and iterating without `async with`
            got = [r async for r in c.query("SELECT k FROM kv WHERE k > ? ORDER BY k", [3])]
            assert got == [(4,), (5,), (6,)]
            # nothing replicated changed: no version
            nothing = await c.transaction("UPDATE kv SET v = 0 WHERE k = 99")
            assert nothing.version is None and nothing.results[0].rows_affected == 0


async def test_sync_transaction_query_round_trip(tmp_path: Path) -> None:
    async with agent_api(tmp_path) as agent:

        def work() -> tuple[ExecResult, tuple[str, ...], list[tuple[object, ...]]]:
            with CorrosionClient(api(agent)) as c:
                result = c.transaction(STATEMENTS)
                with c.query("SELECT k, v, note FROM kv ORDER BY k") as rows:
                    return result, rows.columns, list(rows)

        with trio.fail_after(HANG):
            result, columns, got = await in_thread(work)
        check_exec(result, len(STATEMENTS))
        assert columns == ("k", "v", "note")
        assert got == EXPECTED


async def test_blobs_can_stay_lists(tmp_path: Path) -> None:
    async with agent_api(tmp_path) as agent:
        async with AsyncCorrosionClient(api(agent), decode_blobs=False) as c:
            await c.transaction([("INSERT INTO kv (k, v) VALUES (1, ?)", [b"\x01\x02"])])
            [row] = [r async for r in c.query("SELECT k, v FROM kv")]
        assert row == (1, [1, 2])
        assert decode_cells(row) == (1, b"\x01\x02")
        assert blob([1, 2]) == b"\x01\x02" and blob("x") == "x"


async def test_refused_transactions_raise_with_the_servers_message(tmp_path: Path) -> None:
    async with agent_api(tmp_path) as agent, AsyncCorrosionClient(api(agent)) as c:
        with pytest.raises(TransactionError) as err:
            await c.transaction(["INSERT INTO kv (k) VALUES (1)", "INSERT INTO nope VALUES (1)"])
        assert err.value.status == 400
        assert "nope" in err.value.message
        assert err.value.results and "error" in err.value.results[0]
        assert "/v1/transactions" in str(err.value.url)
        # the whole transaction was rolled back
        assert [r async for r in c.query("SELECT count(*) FROM kv")] == [(0,)]
        with pytest.raises(TransactionError, match="at least 1 statement") as err:
            await c.transaction([])
        assert err.value.status == 400
        # a server-side timeout is sent as ?timeout= and still succeeds when it is enough
        ok = await c.transaction(["INSERT INTO kv (k) VALUES (7)"], timeout=10)
        assert ok.version == 1


async def test_sync_refused_transaction(tmp_path: Path) -> None:
    async with agent_api(tmp_path) as agent:

        def work() -> TransactionError:
            with CorrosionClient(api(agent)) as c, pytest.raises(TransactionError) as err:
                c.transaction(["INSERT INTO kv (k) VALUES ('not an integer')"])
            return err.value

        error = await in_thread(work)
    assert error.status == 400 and error.message


async def test_query_refusals_and_errors_mid_stream(tmp_path: Path) -> None:
    async with agent_api(tmp_path) as agent, AsyncCorrosionClient(api(agent)) as c:
        await c.transaction([f"INSERT INTO kv (k) VALUES ({k})" for k in range(1, 4)])
        with pytest.raises(QueryError, match="not readonly") as err:
            async with c.query("DELETE FROM kv"):
                pass
        assert err.value.status == 400
        with pytest.raises(QueryError) as err:
            async with c.query("SELECT * FROM missing"):
                pass
        assert err.value.status == 400 and "missing" in err.value.message
        # overflow on the second row: an error line after the columns and the first row
        sql = "SELECT k, CASE WHEN k = 2 THEN abs(-9223372036854775807 - 1) ELSE k END FROM kv"
        seen = []
        with pytest.raises(QueryError, match="overflow") as err:
            async with c.query(sql + " ORDER BY k") as rows:
                async for row in rows:
                    seen.append(row)
        assert err.value.status == 200
        assert rows.closed


async def test_sync_query_errors(tmp_path: Path) -> None:
    async with agent_api(tmp_path) as agent:

        def work() -> tuple[QueryError, list[tuple[object, ...]]]:
            with CorrosionClient(api(agent)) as c:
                c.transaction([f"INSERT INTO kv (k) VALUES ({k})" for k in range(1, 4)])
                with pytest.raises(QueryError) as err:
                    c.query("UPDATE kv SET v = 1")
                with c.query("SELECT k FROM kv ORDER BY k") as rows:
                    first = [next(rows)]  # closed early by `with`
                return err.value, first

        error, first = await in_thread(work)
    assert error.status == 400 and first == [(1,)]


async def test_health_table_stats_and_migrations(tmp_path: Path) -> None:
    async with agent_api(tmp_path) as agent, AsyncCorrosionClient(api(agent)) as c:
        health = await c.health()
        assert health["gaps"] == 0 and health["members"] == 1 and health["queue_size"] == 0
        assert await c.health(gaps=0, max_queue=10) == health
        with pytest.raises(Unhealthy, match="p99 lag") as err:
            await c.health(p99_lag=1.0, failure_status=418)
        assert err.value.status == 418

        await c.transaction([("INSERT INTO pairs VALUES (?, ?, ?)", ["x", 1, "v"])])
        stats = await c.table_stats(["kv", "pairs", "nope"])
        assert stats == TableStats(1, ["nope"]) and stats == (1, ["nope"])

        result = await c.migrate(["CREATE TABLE extra (id INTEGER PRIMARY KEY NOT NULL, t TEXT)"])
        assert result.schema is not None and result.schema["created_tables"] == ["extra"]
        await c.transaction(["INSERT INTO extra VALUES (1, 'one')"])
        assert (await c.table_stats(["extra"])).total_row_count == 1
        with pytest.raises(TransactionError) as err2:
            await c.migrate(["DROP TABLE extra"])
        assert err2.value.status == 400


async def test_sync_health_table_stats_and_migrations(tmp_path: Path) -> None:
    async with agent_api(tmp_path) as agent:

        def work() -> tuple[dict[str, object], TableStats, ExecResult]:
            with CorrosionClient(api(agent)) as c:
                migrated = c.migrate(["CREATE TABLE extra (id INTEGER PRIMARY KEY NOT NULL)"])
                return c.health(gaps=0), c.table_stats(["extra", "no"]), migrated

        health, stats, migrated = await in_thread(work)
    assert health["gaps"] == 0
    assert stats == (0, ["no"])
    assert migrated.version is None


async def test_bearer_token(tmp_path: Path) -> None:
    async with agent_api(tmp_path, api_token="s3cret") as agent:
        async with AsyncCorrosionClient(api(agent), token="s3cret") as c:
            assert (await c.health())["gaps"] == 0
        async with AsyncCorrosionClient(api(agent), token="wrong") as c:
            with pytest.raises(Unauthorized) as err:
                await c.transaction(["INSERT INTO kv (k) VALUES (1)"])
            assert err.value.status == 401
            with pytest.raises(Unauthorized):
                async with c.subscribe("SELECT k FROM kv"):
                    pass
        async with AsyncCorrosionClient(api(agent)) as c:
            with pytest.raises(Unauthorized, match="missing bearer token"):
                await c.query("SELECT 1").start()


async def test_connection_errors_name_the_url() -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        async with AsyncCorrosionClient(f"127.0.0.1:{port}") as c:
            with pytest.raises(TransportError, match=f"127.0.0.1:{port}") as err:
                await c.transaction(["SELECT 1"])
            assert err.value.status is None and err.value.url == url + "/v1/transactions"
            with pytest.raises(TransportError):
                async with c.subscribe("SELECT k FROM kv"):
                    pass

        def work() -> ClientError:
            with CorrosionClient(("127.0.0.1", port)) as c, pytest.raises(TransportError) as e:
                c.health()
            return e.value

        error = await in_thread(work)
    assert isinstance(error, ClientError) and url in str(error)


def test_addresses_and_statement_shapes() -> None:
    from corrosion_py.client.protocol import base_url, statement_json, statements_json

    assert base_url("localhost:8080") == "http://localhost:8080"
    assert base_url("https://corro.example/") == "https://corro.example"
    assert base_url(("::1", 80)) == "http://[::1]:80"
    assert statements_json("SELECT 1") == ["SELECT 1"]
    assert statement_json(("SELECT ?", [b"\x01", True])) == ["SELECT ?", [[1], True]]
    assert statement_json(("SELECT :a, @b", {"a": 1, "@b": 2})) == [
        "SELECT :a, @b",
        {":a": 1, "@b": 2},
    ]
    with pytest.raises(TypeError):
        statement_json(("SELECT ?", "not params"))
    with pytest.raises(TypeError):
        statement_json(42)  # type: ignore[arg-type]
