"""The server around the routes: bearer auth, concurrency limits, JSON errors for every
refusal (404, 405, 413, 500), and a clean start and stop on a real port."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import httpx
import pytest
import trio
from api_harness import HANG, api_node, api_with_config, client_for, node_config, rows, stream

from corrosion_py.agent import Agent
from corrosion_py.api.limits import ApiConfig
from corrosion_py.api.server import serve_api
from corrosion_py.runner import NodeConfig, open_node

ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"
INSERT = ["INSERT INTO kv (k, v) VALUES (1, 'x')"]


async def test_bearer_token_is_required_on_every_route(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with api_node(tmp_path, token="s3cret") as (agent, client):
            assert (await client.get("/v1/health")).status_code == 200
            r = await client.post("/v1/transactions", json=INSERT)
            assert r.status_code == 200
            base = str(client.base_url)
            for headers in [{}, {"authorization": "Bearer wrong"}, {"authorization": "s3cret"},
                            {"authorization": "Basic s3cret"}]:  # fmt: skip
                async with httpx.AsyncClient(base_url=base, headers=headers) as anonymous:
                    for method, path, body in [
                        ("GET", "/v1/health", None),
                        ("POST", "/v1/transactions", ["DELETE FROM kv"]),
                        ("POST", "/v1/queries", "SELECT 1"),
                        ("POST", "/v1/table_stats", {"tables": ["kv"]}),
                        ("POST", "/v1/migrations", ["CREATE TABLE t (a INTEGER PRIMARY KEY)"]),
                        ("POST", "/v1/subscriptions", "SELECT k FROM kv"),
                        ("GET", "/v1/unknown", None),
                    ]:
                        r = await anonymous.request(method, path, json=body)
                        assert r.status_code == 401, (headers, path)
                        assert r.headers["www-authenticate"] == "Bearer"
                        assert r.json()["code"] == "unauthorized"
                        assert "bearer token" in r.json()["error"]
            assert await rows(agent) == [(1, "x", None, None)]


async def test_concurrency_limits_answer_503_at_once(tmp_path: Path) -> None:
    """A stream counts until it ends; a request over a limit is refused at once."""
    per_route = ApiConfig(max_concurrency=2, max_concurrency_per_route=1)
    with trio.fail_after(HANG):
        async with api_with_config(tmp_path / "a", per_route) as (_, client):
            async with stream(client, "POST", "/v1/queries", json=ENDLESS) as held:
                assert (await held.next()) == {"columns": ["x"]}
                r = await client.post("/v1/queries", json="SELECT 1")
                assert r.status_code == 503
                assert r.json() == {
                    "error": "too many requests in progress (1 requests on /v1/queries): retry",
                    "code": "overloaded",
                }
                assert (await client.get("/v1/health")).status_code == 200  # another route
            # the client left: once the server noticed, the route is free again
            while True:
                r = await client.post("/v1/queries", json="SELECT 1")
                if r.status_code != 503:
                    break
                await trio.sleep(0.01)
            assert r.status_code == 200
    total = ApiConfig(max_concurrency=2, max_concurrency_per_route=2)
    with trio.fail_after(HANG):
        async with (
            api_with_config(tmp_path / "b", total) as (_, client),
            stream(client, "POST", "/v1/queries", json=ENDLESS) as first,
            stream(client, "POST", "/v1/queries", json=ENDLESS) as second,
        ):
            assert await first.next() == await second.next() == {"columns": ["x"]}
            r = await client.get("/v1/health")
            assert r.status_code == 503
            assert r.json() == {
                "error": "too many requests in progress (2 requests in all): retry",
                "code": "overloaded",
            }


async def test_json_errors_for_unknown_routes_methods_and_big_bodies(tmp_path: Path) -> None:
    config = ApiConfig(max_body_bytes=100)
    with trio.fail_after(HANG):
        async with api_with_config(tmp_path, config) as (agent, client):
            r = await client.get("/v1/nope")
            assert r.status_code == 404
            assert r.headers["content-type"] == "application/json"
            assert r.json() == {"error": "not found: no route for /v1/nope", "code": "not_found"}
            assert (await client.post("/", json=[])).status_code == 404
            for method, path, allowed in [
                ("GET", "/v1/transactions", "POST"),
                ("PUT", "/v1/queries", "POST"),
                ("POST", "/v1/health", "GET, HEAD"),
                ("DELETE", "/v1/migrations", "POST"),
                ("GET", "/v1/table_stats", "POST"),
            ]:
                r = await client.request(method, path)
                assert r.status_code == 405, (method, path)
                given = r.headers["allow"]  # (starlette's order of several methods varies)
                assert sorted(given.split(", ")) == sorted(allowed.split(", "))
                assert r.json() == {
                    "error": f"method {method} not allowed on {path} (allowed: {given})",
                    "code": "method_not_allowed",
                }
            big = ["INSERT INTO kv (k, v) VALUES (1, '" + "x" * 200 + "')"]
            r = await client.post("/v1/transactions", json=big)
            assert r.status_code == 413
            assert "too large (limit 100 bytes)" in r.json()["error"]
            assert r.json()["code"] == "too_large"
            r = await client.post("/v1/queries", json="SELECT '" + "x" * 200 + "'")
            assert r.status_code == 413 and r.json()["code"] == "too_large"
            assert await rows(agent) == []


async def test_unexpected_errors_are_500_without_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(window: float = 120.0) -> float | None:
        raise RuntimeError("secret internals")

    with trio.fail_after(HANG):
        async with api_node(tmp_path) as (agent, client):
            agent.p99_lag = broken  # type: ignore[method-assign]
            with caplog.at_level(logging.ERROR, logger="corrosion_py.api"):
                r = await client.get("/v1/health")
            assert r.status_code == 500
            assert r.json() == {"error": "internal error: RuntimeError", "code": "internal"}
            assert "secret" not in r.text
            logged = [rec for rec in caplog.records if rec.name == "corrosion_py.api"]
            assert logged and logged[0].exc_info is not None
            # the server keeps serving
            r = await client.post("/v1/transactions", json=INSERT)
            assert r.status_code == 200


async def test_serve_api_reports_its_port_and_stops_cleanly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Cancelled with an idle keep-alive connection and an endless stream open, the server
    ends the stream, stops without a lifespan error or traceback, and frees its port."""
    with trio.fail_after(HANG), caplog.at_level(logging.INFO):
        async with Agent.open(node_config(tmp_path)) as agent:
            async with trio.open_nursery() as nursery:
                host, port = await nursery.start(serve_api, agent, ("127.0.0.1", 0), None)
                assert host == "127.0.0.1" and port > 0
                async with client_for((host, port)) as client:
                    assert (await client.get("/v1/health")).status_code == 200  # kept alive
                    async with stream(client, "POST", "/v1/queries", json=ENDLESS) as lines:
                        assert await lines.next() == {"columns": ["x"]}
                        nursery.cancel_scope.cancel()
                        with pytest.raises(httpx.HTTPError):  # cut short: no final chunk
                            await lines.rest()
            with pytest.raises(httpx.ConnectError):
                async with client_for((host, port)) as client:
                    await client.get("/v1/health")
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert problems == [], [r.getMessage() for r in problems]


async def test_the_runner_serves_the_api_and_stops_cleanly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(HANG), caplog.at_level(logging.INFO):
        config = NodeConfig(node_config(tmp_path), api_addr=("127.0.0.1", 0))
        async with open_node(config) as node:
            assert node.api_addr is not None and node.api_addr[1] > 0
            assert node.api_addr[0] == "127.0.0.1" and node.admin_path is None
            async with client_for(node.api_addr) as client:
                assert (await client.post("/v1/transactions", json=INSERT)).status_code == 200
                held = stream(client, "POST", "/v1/queries", json=ENDLESS)
                lines = await held.__aenter__()
                assert await lines.next() == {"columns": ["x"]}
        # the agent has stopped with the stream open; the client sees it cut
        with pytest.raises(httpx.HTTPError):
            await lines.rest()
        await held.__aexit__(None, None, None)
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert problems == [], [r.getMessage() for r in problems]


async def test_a_refused_bind_is_a_plain_oserror(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with trio.fail_after(HANG):
            async with (
                Agent.open(node_config(tmp_path)) as agent,
                trio.open_nursery() as nursery,
            ):
                with pytest.raises(OSError):
                    await nursery.start(serve_api, agent, ("127.0.0.1", port), None)
