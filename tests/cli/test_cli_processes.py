"""The `corrosion` command as real processes against real `corrosion agent` processes started
here (free ports, their own directories; each one stopped or killed by its own pid)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from cli_harness import (
    HANG,
    ROOT,
    SCHEMA,
    AgentRun,
    agents,
    clean_env,
    corrosion,
    poll,
    short_dir,
    write_config,
)

from corrosion_py.admin import admin_request


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    return done.stdout


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    return lines[0]


def test_exec_query_subscribe_then_a_clean_stop_on_sigterm() -> None:
    with short_dir() as directory:
        config = write_config(directory)
        with agents(config) as (agent,):
            assert agent.started["admin_path"] == str(directory / "admin.sock")
            assert agent.started["pid"] == agent.pid
            out = ok(corrosion("exec", "INSERT INTO kv VALUES (1, 'one'), (2, NULL)",
                               config=config))  # fmt: skip
            assert out.startswith("Rows affected: 2\nVersion: 1, actor ")

            sql = "SELECT k, v FROM kv ORDER BY k"
            table = ok(corrosion("query", sql, config=config))
            assert "│ 1 │ one  │" in table and "│ 2 │ NULL │" in table and "2 rows (" in table
            lines = ok(corrosion("query", sql, "--format", "json", config=config)).splitlines()
            assert [json.loads(x) for x in lines] == [{"k": 1, "v": "one"}, {"k": 2, "v": None}]
            assert ok(corrosion("query", sql, "--format", "csv", config=config)) == (
                "k,v\n1,one\n2,\n"
            )

            sub = subprocess.Popen(
                [sys.executable, "-m", "corrosion_py", "-c", str(config), "subscribe", sql,
                 "--format", "json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
                cwd=ROOT,
            )  # fmt: skip
            try:
                assert sub.stdout is not None
                seen = [json.loads(sub.stdout.readline()) for _ in range(4)]
                assert seen[0] == {"columns": ["k", "v"]} and "eoq" in seen[3]
                ok(corrosion("exec", "UPDATE kv SET v = 'uno' WHERE k = 1", config=config))
                change = json.loads(sub.stdout.readline())["change"]
                assert change[0] == "update" and change[2] == [1, "uno"]
                os.kill(sub.pid, signal.SIGINT)  # Ctrl-C
                assert sub.wait(timeout=HANG) == 0
                assert "Traceback" not in (sub.stderr.read() if sub.stderr else "")
            finally:
                if sub.poll() is None:
                    sub.kill()
                    sub.wait()
                for pipe in (sub.stdout, sub.stderr):
                    if pipe is not None:
                        pipe.close()

            assert agent.stop(signal.SIGTERM) == 0
            events = [e.get("event") for e in agent.log_events()]
            assert events[-2:] == ["stopping", "stopped"]
            assert not (directory / "admin.sock").exists()  # removed on exit
            line = error_line(corrosion("query", sql, config=config))
            assert "api.addr 127.0.0.1:0 has port 0, and no agent is running at" in line
            line = error_line(corrosion("query", sql, "--api-addr", agent.api, config=config))
            assert f"cannot talk to http://{agent.api}/v1/queries" in line


def test_a_second_agent_on_the_same_database_is_refused_in_one_line() -> None:
    with short_dir() as directory:
        config = write_config(directory, log_format="plaintext")
        with agents(config) as (agent,):
            log = agent.log_text()  # plaintext: one start line naming the addresses
            start = next(line for line in log.splitlines() if "agent started" in line)
            assert re.search(r"gossip 127\.0\.0\.1:\d+, api 127\.0\.0\.1:\d+, admin /", start)

            second = corrosion("agent", config=config)
            line = error_line(second)
            assert line == (
                f"Error: a node is running on {directory / 'node.db'} (pid {agent.pid}); "
                "stop it first"
            )
            # another database but the same admin socket: refused too, the socket untouched
            other = directory / "other.toml"
            other.write_text(
                config.read_text()
                .replace('"node.db"', '"other.db"')
                .replace('format = "plaintext"', 'format = "json"')
            )
            line = error_line(corrosion("agent", config=other))
            assert f"already answers on the admin socket {directory / 'admin.sock'}" in line
            assert admin_request(directory / "admin.sock", "Ping")[0]["pid"] == agent.pid
            assert agent.stop(signal.SIGINT) == 0
            assert "agent stopped" in agent.log_text()


def test_agent_start_errors_are_one_line() -> None:
    with short_dir() as directory:
        first = write_config(directory)
        with agents(first) as (agent,):
            second_dir = directory / "b"
            second_dir.mkdir()
            config = write_config(second_dir)
            config.write_text(
                config.read_text().replace(
                    'addr = "127.0.0.1:0"\nbootstrap', f'addr = "{agent.gossip}"\nbootstrap'
                )
            )
            line = error_line(corrosion("agent", config=config))
            assert line.startswith("Error: cannot listen: Address already in use (gossip ")
            third_dir = directory / "c"
            third_dir.mkdir()
            (third_dir / "schema.sql").write_text("CREATE TABLE t (a INTEGER);\n")  # no pk
            line = error_line(corrosion("agent", config=write_config(third_dir)))
            assert f"{third_dir / 'schema.sql'}:1: table 't'" in line


def test_two_nodes_cluster_members_sync_generate_and_reload() -> None:
    with short_dir() as directory:
        a_dir, b_dir = directory / "a", directory / "b"
        a_dir.mkdir()
        b_dir.mkdir()
        a_config = write_config(a_dir)
        with agents(a_config) as (a,):
            b_config = write_config(b_dir, bootstrap=[a.gossip])
            b = AgentRun(b_config)
            try:

                def both_alive() -> bool:
                    rows = admin_request(a.admin, {"Cluster": "Members"})
                    return len(rows) == 2 and all(r["state"] == "alive" for r in rows)

                poll(both_alive, timeout=HANG, interval=0.1)
                rows = json.loads(ok(corrosion("cluster", "members", "--format", "json",
                                               config=a_config)))  # fmt: skip
                assert rows[0]["actor_id"] == a.started["actor_id"] and rows[0]["this_node"]
                assert rows[1]["actor_id"] == b.started["actor_id"]
                assert rows[1]["addr"] == b.gossip and isinstance(rows[1]["last_seen"], float)
                table = ok(corrosion("cluster", "members", config=a_config))
                assert a.gossip in table and b.gossip in table and "s ago" in table

                ok(corrosion("exec", "INSERT INTO kv VALUES (1, 'x')", config=b_config))
                state = json.loads(ok(corrosion("sync", "generate", config=a_config)))
                assert state["actor_id"] == a.started["actor_id"]
                assert set(state) == {"actor_id", "heads", "need", "partial_need"}

                def replicated() -> bool:
                    (state,) = admin_request(a.admin, {"Sync": "Generate"})
                    return bool(state["heads"].get(b.started["actor_id"]) == 1)

                poll(replicated, interval=0.2)

                (a_dir / "schema.sql").write_text(
                    SCHEMA.replace("v TEXT", "v TEXT, note TEXT")
                )  # fmt: skip
                assert ok(corrosion("reload", config=a_config)) == (
                    "schema reloaded; added columns: kv.note\n"
                )
                ok(corrosion("exec", "UPDATE kv SET note = 'n' WHERE k = 1", config=a_config))
                (a_dir / "schema.sql").write_text("CREATE TABLE kv (k INTEGER PRIMARY KEY);\n")
                line = error_line(corrosion("reload", config=a_config))
                assert "schema.sql" in line
                assert b.stop() == 0
            finally:
                b.kill()
            assert a.stop() == 0


def _read_lines(stream: object, into: list[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.append(line)


def test_dev_cluster_starts_three_nodes_and_stops_them_on_ctrl_c() -> None:
    with short_dir() as directory:
        schema = directory / "schema.sql"
        schema.write_text(SCHEMA)
        proc = subprocess.Popen(
            [sys.executable, "-m", "corrosion_py", "dev-cluster", "3", "--schema", str(schema),
             "--base-dir", str(directory / "dev")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(), cwd=ROOT,
        )  # fmt: skip
        lines: list[str] = []
        assert proc.stdout is not None
        reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True)
        reader.start()
        pids: list[int] = []
        try:
            poll(lambda: any("Press Ctrl-C" in line for line in lines), timeout=HANG)
            nodes = [line.split() for line in lines if re.match(r"n\d  pid", line)]
            assert [n[0] for n in nodes] == ["n1", "n2", "n3"]
            pids = [int(n[2]) for n in nodes]
            admin = [n[n.index("admin") + 1] for n in nodes]
            assert all(Path(p).exists() for p in admin)

            def three() -> bool:
                rows = admin_request(admin[0], {"Cluster": "Members"})
                return len(rows) == 3 and all(r["state"] == "alive" for r in rows)

            poll(three, timeout=HANG, interval=0.2)
            api = nodes[0][nodes[0].index("api") + 1]
            ok(corrosion("--api-addr", api, "exec", "INSERT INTO kv VALUES (1, 'dev')"))

            os.kill(proc.pid, signal.SIGINT)
            assert proc.wait(timeout=HANG) == 0
            reader.join(timeout=HANG)
            assert lines[-1] == "all nodes stopped.\n"
            for pid in pids:  # each node was stopped (and reaped) by dev-cluster
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    continue
                raise AssertionError(f"node pid {pid} still runs")
            log = (directory / "dev/n2/agent.log").read_text()
            assert "agent stopped" in log
            assert "gossip encrypted: 1 key(s)" in log and "plaintext" not in log
            assert (directory / "dev/gossip.keys").stat().st_mode & 0o077 == 0
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    for pid in pids:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    proc.kill()
                    proc.wait()
            reader.join(timeout=10)
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
