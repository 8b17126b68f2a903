"""The HTTP API and subscriptions, each against a baseline run in
the same process:

1. local commit -> subscription event at an HTTP client (p50, p99), against a bare ASGI
   NDJSON stream on the same HTTP server pushing a line (same process, same client);
2. 1,000 concurrent subscribers on one node (a separate agent process) while one write lands
   every 10 ms: do they all keep up (every change, no disconnect), with what lag;
3. /v1/queries streaming 1M rows: rows/s at the client and the server's peak RSS, against
   iterating the same rows with sqlite3 in this process;
4. /v1/transactions requests/s from one client, against a bare ASGI JSON endpoint on the same
   HTTP server (its own process, like the agent);
5. the HTTP layer's CPU per request: a tiny JSON POST answered with a small JSON body, from
   one raw keep-alive client, the server's CPU read from /proc/PID/stat, for each server and
   framework of `http_variants` and for a real agent (its route, SQLite and broadcast). With
   ``CORROSION_BASELINE_SRC=<a checkout of an older commit>``, the API on hypercorn and the
   agent of that checkout are measured in the same run, for a before/after.

Run with `make bench` (or `python bench/api_bench.py --quick`; `--http` runs section 5 alone).
"""

from __future__ import annotations

import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import common
import h11
import httpx
import trio

from corrosion_py.agent import AgentConfig
from corrosion_py.api.asgi import Receive, Scope, Send
from corrosion_py.api.http_server import HttpServer
from corrosion_py.api.limits import ApiConfig
from corrosion_py.runner import NodeConfig, open_node
from corrosion_py.swim import LOCAL
from corrosion_py.testing.agent_process import AgentProcess

SCHEMA = """
CREATE TABLE machines (id TEXT PRIMARY KEY NOT NULL, app_id INTEGER, state TEXT,
                       seq INTEGER);
CREATE TABLE big (id INTEGER PRIMARY KEY NOT NULL, name TEXT, value INTEGER);
"""
UPSERT = (
    "INSERT INTO machines (id, app_id, state, seq) VALUES (?, ?, 'started', ?) "
    "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq"
)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- 1. commit -> event latency ------------------------------------------------------------------


async def _stream_latency(url: str, body: Any, n: int, fire: Any) -> list[float]:
    """Open ``url`` as an NDJSON stream, wait for its initial lines, then ``n`` times: call
    ``fire(i)`` and time until the next line arrives."""
    lags = []
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client,
        client.stream("POST", url, json=body) as response,
    ):
        lines = response.aiter_lines()
        if body is not None:  # a subscription: skip columns, rows, eoq
            async for line in lines:
                if line.startswith('{"eoq"'):
                    break
        for i in range(n):
            await fire(i)
            fired = time.perf_counter()
            await lines.__anext__()
            lags.append(time.perf_counter() - fired)
            await trio.sleep(0.002)
    return lags


async def latency(n: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        schema = Path(tmp) / "schema.sql"
        schema.write_text(SCHEMA)
        config = AgentConfig(db_path=Path(tmp) / "n.db", schema_paths=[schema], swim=LOCAL)
        async with open_node(NodeConfig(config, api_addr=("127.0.0.1", 0))) as node:
            agent = node.agent
            assert node.api_addr is not None
            host, port = node.api_addr

            async def write(i: int) -> None:
                await agent.transaction([(UPSERT, [f"m{i}", 1, i])])

            ours = await _stream_latency(
                f"http://{host}:{port}/v1/subscriptions",
                "SELECT id, seq FROM machines WHERE app_id = 1",
                n,
                write,
            )

    send, receive = trio.open_memory_channel[bytes](100)

    async def stream(scope: Scope, asgi_receive: Receive, asgi_send: Send) -> None:
        """A bare NDJSON stream: each line pushed is sent as it comes."""
        headers = [(b"content-type", b"application/x-ndjson")]
        await asgi_send({"type": "http.response.start", "status": 200, "headers": headers})
        await asgi_send({"type": "http.response.body", "body": b"", "more_body": True})
        async for line in receive:
            await asgi_send({"type": "http.response.body", "body": line, "more_body": True})
        await asgi_send({"type": "http.response.body", "body": b""})

    sock = socket.create_server(("127.0.0.1", 0))
    host, port = sock.getsockname()[:2]
    server = HttpServer(stream, ApiConfig())
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, sock)

        async def push(i: int) -> None:
            await send.send(b'{"change":["update",1,["m1",%d],%d]}\n' % (i, i))

        bare = await _stream_latency(f"http://{host}:{port}/stream", None, n, push)
        send.close()
        server.stop()
    return ours, bare


# -- 2. many subscribers ---------------------------------------------------------------------------


class Subscriber:
    """One raw HTTP/1.1 subscription stream (h11 on a trio socket: 1,000 of them stay cheap)."""

    def __init__(self, host: str, port: int, sql: str) -> None:
        self.host, self.port, self.sql = host, port, sql
        self.lags: list[float] = []
        self.latest: dict[str, int] = {}
        """Machine id -> last seq seen: writes to one row close together may be merged into
        one change (a subscription follows the state, not every write)."""
        self.last_change = 0
        self.gaps = 0
        self.error: str | None = None
        self.ready = trio.Event()

    async def run(self, written: dict[int, float]) -> None:
        conn = h11.Connection(h11.CLIENT)
        body = json.dumps(self.sql).encode()
        async with await trio.open_tcp_stream(self.host, self.port) as stream:
            request = h11.Request(
                method="POST", target="/v1/subscriptions",
                headers=[("host", self.host), ("content-type", "application/json"),
                         ("content-length", str(len(body)))],
            )  # fmt: skip
            await stream.send_all(conn.send(request) + conn.send(h11.Data(data=body)))
            await stream.send_all(conn.send(h11.EndOfMessage()))
            buffer = b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        self.error = self.error or "connection closed"
                        return
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Response) and event.status_code != 200:
                    self.error = f"status {event.status_code}"
                elif isinstance(event, h11.Data):
                    buffer += event.data
                    *complete, buffer = buffer.split(b"\n")
                    now = time.perf_counter()
                    for line in complete:
                        self._line(json.loads(line), now, written)
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    self.error = self.error or "stream ended"
                    return

    def _line(self, obj: dict[str, Any], now: float, written: dict[int, float]) -> None:
        if "eoq" in obj:
            self.last_change = obj["eoq"]["change_id"]
            self.ready.set()
        elif "change" in obj:
            _, _, cells, change_id = obj["change"]
            if change_id != self.last_change + 1:
                self.gaps += 1
            self.last_change = change_id
            machine, seq = cells
            self.latest[machine] = seq
            if seq in written:
                self.lags.append(now - written[seq])
        elif "error" in obj:
            self.error = obj["error"]


async def fanout(subscribers: int, queries: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        schema = Path(tmp) / "schema.sql"
        schema.write_text(SCHEMA)
        server = AgentProcess(Path(tmp) / "n.db", schema, api="127.0.0.1:0")
        try:
            assert server.api is not None
            host, port = server.api.rsplit(":", 1)
            query = "SELECT id, seq FROM machines WHERE app_id = {}"
            subs = [
                Subscriber(host, int(port), query.format(i % queries)) for i in range(subscribers)
            ]
            written: dict[int, float] = {}
            expected: dict[int, dict[str, int]] = {q: {} for q in range(queries)}
            async with trio.open_nursery() as nursery:
                for sub in subs:
                    nursery.start_soon(sub.run, written)
                with trio.fail_after(120):
                    for sub in subs:
                        await sub.ready.wait()

                def writer() -> int:
                    rng = random.Random(1)
                    start = time.perf_counter()
                    seq = 0
                    while time.perf_counter() - start < seconds:
                        seq += 1
                        app = rng.randrange(queries)
                        machine = f"m{app}-{rng.randrange(20)}"
                        written[seq] = time.perf_counter()
                        server.write([[UPSERT, [machine, app, seq]]])
                        expected[app][machine] = seq
                        pause = start + seq * 0.01 - time.perf_counter()
                        if pause > 0:
                            time.sleep(pause)
                    return seq

                cpu_before = _cpu(server.proc.pid if server.proc else 0)
                started = time.perf_counter()
                writes = await trio.to_thread.run_sync(writer)
                elapsed = time.perf_counter() - started
                cpu = _cpu(server.proc.pid if server.proc else 0) - cpu_before
                with trio.move_on_after(60):
                    while not all(  # noqa: ASYNC110 (waits for the streams to drain)
                        expected[i % queries] == s.latest or s.error for i, s in enumerate(subs)
                    ):
                        await trio.sleep(0.1)
                nursery.cancel_scope.cancel()
            kept_up = sum(
                1 for i, s in enumerate(subs)
                if expected[i % queries] == s.latest and not s.error and not s.gaps
            )  # fmt: skip
            lags = [lag for s in subs for lag in s.lags]
            return {
                "writes": writes, "write_rate": writes / elapsed, "kept_up": kept_up,
                "events": len(lags), "p50": quantile(lags, 0.5), "p99": quantile(lags, 0.99),
                "max": max(lags, default=float("nan")), "server_cpu": cpu / elapsed,
                "errors": sorted({s.error for s in subs if s.error})[:3],
            }  # fmt: skip
        finally:
            server.stop()


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, clock ticks of 10 ms


# -- 3. streaming a big query ----------------------------------------------------------------------


def query_stream(rows: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        schema = Path(tmp) / "schema.sql"
        schema.write_text(SCHEMA)
        server = AgentProcess(Path(tmp) / "n.db", schema, api="127.0.0.1:0")
        try:
            assert server.api is not None and server.proc is not None
            filled = time.perf_counter()
            server.request(
                timeout=600,
                tx=[
                    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                    f"WHERE x < {rows}) INSERT INTO big SELECT x, 'row number ' || x, x * 7 FROM c"
                ],
            )
            filled = time.perf_counter() - filled
            pid = server.proc.pid
            idle = rss_mb(pid)
            peak = idle
            done = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, rss_mb(pid))
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample)
            sampler.start()
            count = 0
            started = time.perf_counter()
            with (
                httpx.Client(timeout=httpx.Timeout(10, read=None)) as client,
                client.stream(
                    "POST", f"http://{server.api}/v1/queries", json="SELECT * FROM big"
                ) as response,
            ):
                for line in response.iter_lines():
                    if line.startswith('{"row"'):
                        count += 1
            elapsed = time.perf_counter() - started
            done.set()
            sampler.join()
            assert count == rows, (count, rows)
            conn = sqlite3.connect(f"file:{Path(tmp) / 'n.db'}?mode=ro", uri=True)
            started = time.perf_counter()
            direct = sum(1 for _ in conn.execute("SELECT * FROM big"))
            direct_elapsed = time.perf_counter() - started
            conn.close()
            assert direct == rows
            return {
                "rows": rows, "fill_s": filled, "rows_per_s": rows / elapsed,
                "direct_rows_per_s": rows / direct_elapsed, "idle_rss": idle, "peak_rss": peak,
            }  # fmt: skip
        finally:
            server.stop()


# -- 4. transactions per second --------------------------------------------------------------------


def requests_per_second(url: str, seconds: float) -> float:
    n = 0
    with httpx.Client(timeout=10) as client:
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            r = client.post(url, json=[[UPSERT, [f"m{n % 1000}", 1, n]]])
            assert r.status_code == 200, r.text
            n += 1
        return n / (time.perf_counter() - started)


@contextmanager
def variant_server(name: str, src: str | None = None) -> Iterator[tuple[str, int]]:
    """One server of `http_variants` as a process (with ``src`` first on its path): its
    HOST:PORT and PID."""
    script = str(Path(__file__).with_name("http_variants.py"))
    env = None if src is None else {**os.environ, **_from(src)}
    proc = subprocess.Popen(
        [sys.executable, script, name], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        addr = proc.stdout.readline().strip()
        if not addr:
            raise RuntimeError(f"the {name} server did not start")
        yield addr, proc.pid
    finally:
        proc.terminate()
        proc.wait()


def transactions(seconds: float) -> tuple[float, float]:
    with variant_server("ours+bare") as (bare_addr, _):
        bare_rps = requests_per_second(f"http://{bare_addr}/v1/transactions", seconds)
    with tempfile.TemporaryDirectory() as tmp:
        schema = Path(tmp) / "schema.sql"
        schema.write_text(SCHEMA)
        server = AgentProcess(Path(tmp) / "n.db", schema, api="127.0.0.1:0")
        try:
            ours = requests_per_second(f"http://{server.api}/v1/transactions", seconds)
        finally:
            server.stop()
    return ours, bare_rps


# -- 5. the HTTP layer's CPU per request --------------------------------------------------------


class RawClient:
    """A keep-alive HTTP/1.1 client on a blocking socket: the least client-side CPU per
    request, so that the server is what the machine spends its time on."""

    def __init__(self, addr: str) -> None:
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.server = ""
        """The last answer's ``server`` header (hypercorn names itself, ours does not)."""

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nhost: bench\r\naccept: */*\r\n"
            "accept-encoding: gzip, deflate\r\nconnection: keep-alive\r\n"
            "user-agent: python-httpx/0.28.1\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + body)
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head_bytes, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head_bytes.split(b"\r\n")
        status = int(lines[0].split()[1])
        fields = dict(line.lower().split(b":", 1) for line in lines[1:])
        self.server = fields.get(b"server", b"").strip().decode()
        length = int(fields[b"content-length"])
        self.buffer = rest
        while len(self.buffer) < length:
            self._more()
        answer, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, answer

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data

    def close(self) -> None:
        self.sock.close()


def tx_body(n: int) -> bytes:
    return json.dumps([[UPSERT, [f"m{n % 1000}", 1, n]]]).encode()


def cpu_per_request(addr: str, pid: int, seconds: float) -> tuple[float, float, str]:
    """Requests/s from one sequential client, the server's CPU per request (µs) and the name
    it gives itself."""
    client = RawClient(addr)
    try:
        for n in range(200):  # warm up
            client.post("/v1/transactions", tx_body(n))
        before = _cpu(pid)
        started = time.perf_counter()
        n = 0
        while time.perf_counter() - started < seconds:
            status, _ = client.post("/v1/transactions", tx_body(n))
            assert status == 200, status
            n += 1
        elapsed = time.perf_counter() - started
        cpu = _cpu(pid) - before
    finally:
        client.close()
    return n / elapsed, cpu / n * 1e6, client.server


def idle_cpu(pid: int, seconds: float) -> float:
    before = _cpu(pid)
    time.sleep(seconds)
    return (_cpu(pid) - before) / seconds


def _from(src: str) -> dict[str, str]:
    """The environment of a child that imports corrosion_py from ``src``: first on its path,
    and not shadowed by the working directory (``python -m`` puts it first otherwise)."""
    return {"PYTHONPATH": src, "PYTHONSAFEPATH": "1"}


@contextmanager
def baseline_path(src: str | None) -> Iterator[None]:
    """Child processes started inside import corrosion_py from ``src`` (None: this tree)."""
    if src is None:
        yield
        return
    saved = {name: os.environ.get(name) for name in _from(src)}
    os.environ.update(_from(src))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def agent_cpu(seconds: float, src: str | None = None) -> tuple[str, float, float]:
    """A real agent: its label (server, idle CPU), requests/s and CPU per request (µs)."""
    with tempfile.TemporaryDirectory() as tmp:
        schema = Path(tmp) / "schema.sql"
        schema.write_text(SCHEMA)
        with baseline_path(src):
            server = AgentProcess(Path(tmp) / "n.db", schema, api="127.0.0.1:0")
        try:
            assert server.api is not None and server.pid is not None
            idle = idle_cpu(server.pid, 2.0)
            rps, cpu, name = cpu_per_request(server.api, server.pid, seconds)
            return f"agent ({name or 'own server'}; idle {idle:.1%} of a core)", rps, cpu
        finally:
            server.stop()


def http_overhead(seconds: float) -> list[tuple[str, float, float]]:
    """(variant, requests/s, server CPU µs per request) for each variant, then a real agent;
    the baseline's too when ``CORROSION_BASELINE_SRC`` names a checkout."""
    import http_variants

    src = os.environ.get("CORROSION_BASELINE_SRC")
    out = []
    if src is not None:
        with variant_server("hypercorn+app", src) as (addr, pid):
            rps, cpu, _ = cpu_per_request(addr, pid, seconds)
            out.append(("baseline: hypercorn+app", rps, cpu))
    for name in http_variants.VARIANTS:
        with variant_server(name) as (addr, pid):
            rps, cpu, _ = cpu_per_request(addr, pid, seconds)
            out.append((name, rps, cpu))
    if src is not None:
        label, rps, cpu = agent_cpu(seconds, src)
        out.append((f"baseline: {label}", rps, cpu))
    out.append(agent_cpu(seconds))
    return out


def main() -> None:
    divisor = common.start(
        __doc__.splitlines()[0] if __doc__ else None, {"--http": "run section 5 alone"}
    )
    http_seconds = 5.0 if divisor == 1 else 2.0
    if "--http" in common.FLAGS:
        http_section(http_seconds)
        return
    n = 1000 // divisor
    ours, bare = trio.run(latency, n)
    print(f"\n1. commit -> subscription event at an HTTP client, {n} writes (same process)")
    print(f"   ours: p50 {ms(quantile(ours, 0.5))}, p99 {ms(quantile(ours, 0.99))}, "
          f"max {ms(max(ours))}")  # fmt: skip
    ratio = quantile(ours, 0.99) / quantile(bare, 0.99)
    print(f"   bare ASGI stream on the same server: p50 {ms(quantile(bare, 0.5))}, "
          f"p99 {ms(quantile(bare, 0.99))}; ratio p99 {ratio:.1f}x")  # fmt: skip

    seconds = 20.0 / divisor * 2 if divisor > 1 else 20.0
    for subscribers, queries in ((1000 // divisor, 100 // divisor), (1000 // divisor, 1)):
        r = trio.run(fanout, subscribers, queries, seconds)
        print(f"\n2. {subscribers} subscribers on {queries} queries, one write per 10 ms for "
              f"{seconds:.0f} s (agent process)")  # fmt: skip
        print(f"   {r['writes']} writes ({r['write_rate']:.0f}/s), {r['events']} events delivered, "
              f"kept up: {r['kept_up']}/{subscribers}; lag write->event p50 {ms(r['p50'])}, "
              f"p99 {ms(r['p99'])}, max {ms(r['max'])}; server CPU {r['server_cpu']:.0%}"
              + (f"; errors: {r['errors']}" if r["errors"] else ""))  # fmt: skip

    for rows in (1_000_000 // divisor // 10, 1_000_000 // divisor):
        q = query_stream(rows)
        ratio = q["direct_rows_per_s"] / q["rows_per_s"]
        print(f"\n3. /v1/queries streaming {rows:,} rows (agent process; "
              f"filled in {q['fill_s']:.0f} s)")  # fmt: skip
        print(f"   {q['rows_per_s']:,.0f} rows/s at the client; sqlite3 alone "
              f"{q['direct_rows_per_s']:,.0f} rows/s (ratio {ratio:.1f}x); "
              f"server RSS {q['idle_rss']:.0f} MB idle, {q['peak_rss']:.0f} MB peak")  # fmt: skip

    ours_rps, bare_rps = transactions(10.0 / divisor)
    print("\n4. /v1/transactions, one client, sequential (httpx, keep-alive)")
    print(f"   ours {ours_rps:,.0f} req/s; bare ASGI JSON endpoint on the same server "
          f"{bare_rps:,.0f} req/s (ratio {bare_rps / ours_rps:.1f}x)")  # fmt: skip
    http_section(http_seconds)


def http_section(seconds: float) -> None:
    print(f"\n5. HTTP CPU per request: a tiny JSON POST, one raw keep-alive client, "
          f"{seconds:.0f} s each (server CPU from /proc)")  # fmt: skip
    for name, rps, cpu in http_overhead(seconds):
        print(f"   {name:<52} {rps:>7,.0f} req/s   {cpu:>6,.0f} µs CPU/request")


if __name__ == "__main__":
    main()
