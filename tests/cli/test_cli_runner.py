"""The `corrosion` command through click's CliRunner: config and usage errors as one line, and
exec / query / subscribe / the admin commands / backup and restore against a real agent run in
this process (a thread of its own, with its HTTP API and admin socket)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import SCHEMA, ThreadAgent, corrosion, poll, short_dir
from click.testing import CliRunner, Result

from corrosion_py.admin import admin_request
from corrosion_py.cli import main
from corrosion_py.cli.http import split_sql
from corrosion_py.client import CorrosionClient

TOKEN = "s3cret"


@pytest.fixture(autouse=True)
def no_corrosion_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CORROSION_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def node() -> Iterator[ThreadAgent]:
    with short_dir() as directory, ThreadAgent(directory, token=TOKEN) as agent:
        config = directory / "corrosion.toml"
        config.write_text(
            f'[db]\npath = "node.db"\n[api]\naddr = "{agent.api}"\n'
            f'[api.authz]\nbearer-token = "{TOKEN}"\n[admin]\npath = "admin.sock"\n'
        )
        yield agent


def run(node: ThreadAgent | None, *args: str, input: str | None = None, **env: str) -> Result:
    config = ["-c", str(node.directory / "corrosion.toml")] if node is not None else []
    return CliRunner().invoke(main, [*config, *args], input=input, env=env or None)


def one_error_line(result: Result, code: int = 1) -> str:
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# -- errors without an agent ---------------------------------------------------------------------


def test_config_errors_are_one_line_naming_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[gossip]\nadr = "x:1"\n')
    line = one_error_line(CliRunner().invoke(main, ["-c", str(config), "agent"]))
    assert f"{config}: gossip.adr: unknown key (did you mean 'addr'?" in line
    config.write_text("[gossip]\ncluster_id = 'one'\n")
    line = one_error_line(CliRunner().invoke(main, ["exec", "-c", str(config), "SELECT 1"]))
    assert f"{config}: gossip.cluster_id: expected an integer, got 'one'" in line
    missing = tmp_path / "missing.toml"
    line = one_error_line(CliRunner().invoke(main, ["-c", str(missing), "query", "SELECT 1"]))
    assert line == f"Error: config file {missing} does not exist"


def test_bad_environment_and_option_overrides_are_named(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main, ["-c", str(tmp_path / "none.toml"), "query", "x"], env={"CORROSION_CONFIG": "x"}
    )
    assert "none.toml does not exist" in one_error_line(result)  # -c wins over the variable
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    result = runner.invoke(
        main, ["-c", str(empty), "query", "SELECT 1"], env={"CORROSION_API_ADDR": "nowhere"}
    )
    assert "environment variable CORROSION_API_ADDR (sets api.addr): expected an address" in (
        one_error_line(result)
    )
    result = runner.invoke(main, ["-c", str(empty), "query", "SELECT 1", "--api-addr", "x"])
    assert "option --api-addr (sets api.addr): expected an address" in one_error_line(result)


def test_usage_errors_are_one_line_too(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["exec", "--timeout", "abc", "SELECT 1"])
    line = one_error_line(result, code=2)
    assert "'--timeout'" in line and "exec --help`)" in line
    result = CliRunner().invoke(main, ["restore", str(tmp_path / "nope.db")])
    assert "does not exist" in one_error_line(result, code=2)


def test_connection_refused_and_no_admin_socket_give_hints(tmp_path: Path) -> None:
    empty = tmp_path / "c.toml"
    empty.write_text(f'[api]\naddr = "127.0.0.1:1"\n[admin]\npath = "{tmp_path}/a.sock"\n')
    line = one_error_line(CliRunner().invoke(main, ["-c", str(empty), "exec", "SELECT 1"]))
    assert "cannot talk to http://127.0.0.1:1/v1/transactions" in line
    assert "is an agent running there? Start one with `corrosion agent`" in line
    line = one_error_line(CliRunner().invoke(main, ["-c", str(empty), "cluster", "members"]))
    assert line == (
        f"Error: no agent is running at {tmp_path}/a.sock (start one with `corrosion agent`)"
    )


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in ("agent", "exec", "query", "subscribe", "cluster", "sync", "reload", "subs",
                 "backup", "restore", "dev-cluster", "demo", "sim"):  # fmt: skip
        assert f"  {name} " in result.output, name


def test_split_sql_keeps_semicolons_inside_strings_and_triggers() -> None:
    text = """
        INSERT INTO kv VALUES (1, 'a;b');  -- first
        /* nothing */ ;
        CREATE TRIGGER t AFTER INSERT ON kv BEGIN SELECT 1; SELECT 2; END;
        UPDATE kv SET v = 'x'
    """
    assert split_sql(text) == [
        "INSERT INTO kv VALUES (1, 'a;b');",
        "CREATE TRIGGER t AFTER INSERT ON kv BEGIN SELECT 1; SELECT 2; END;",
        "UPDATE kv SET v = 'x'",
    ]
    assert split_sql("-- only a comment\n") == []


# -- against an agent ----------------------------------------------------------------------------


def test_exec_from_arguments_params_and_stdin(node: ThreadAgent) -> None:
    result = run(
        node, "exec", "INSERT INTO kv VALUES (1, 'one')", "INSERT INTO kv VALUES (2, 'two')"
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:2] == ["Rows affected: 1", "Rows affected: 1"]
    assert lines[2].startswith("Version: ") and " ms" in lines[2]

    result = run(node, "exec", "INSERT INTO kv VALUES (?, ?)", "--param", "3", "--param", "x;y")
    assert result.exit_code == 0 and "Rows affected: 1" in result.stdout
    result = run(
        node,
        "exec",
        "-",
        input="UPDATE kv SET v = 'a;b' WHERE k = 1;\nDELETE FROM kv WHERE k = 2;\n",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:2] == ["Rows affected: 1", "Rows affected: 1"]
    result = run(node, "exec", "UPDATE kv SET v = v WHERE k = 99")
    assert "Version: none (nothing replicated changed)" in result.stdout

    result = run(
        node, "query", "SELECT k, v FROM kv WHERE k IN (1, 3) ORDER BY k", "--format", "json"
    )
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"k": 1, "v": "a;b"}, {"k": 3, "v": "x;y"},
    ]  # fmt: skip


def test_exec_errors(node: ThreadAgent) -> None:
    line = one_error_line(run(node, "exec", "INSERT INTO nope VALUES (1)"))
    assert "no such table: nope" in line and "(400 from http://" in line
    line = one_error_line(run(node, "exec", "SELECT 1", "SELECT 2", "--param", "1"), code=2)
    assert "--param needs exactly one statement" in line
    config = node.directory / "notoken.toml"
    config.write_text(f'[api]\naddr = "{node.api}"\n')
    line = one_error_line(CliRunner().invoke(main, ["-c", str(config), "exec", "SELECT 1"]))
    assert "401" in line and "bearer-token" in line


def test_internals_and_bad_text_are_refused_in_one_line(node: ThreadAgent) -> None:
    def state() -> object:
        with CorrosionClient(node.api, token=TOKEN) as client:
            with client.query("SELECT crsql_db_version()") as rows:
                version = list(rows)
            with client.query("SELECT * FROM kv ORDER BY k") as rows:
                return version, list(rows)

    before = state()
    for args, needle in [
        (["exec", "DELETE FROM kv__crsql_clock"], "writing the internal table kv__crsql_clock"),
        (["exec", "SELECT crsql_next_db_version(9223372036854775807)"], "crsql_next_db_version"),
        (["query", "SELECT fts3_tokenizer('simple')"], "calling fts3_tokenizer is not allowed"),
        (["query", "SELECT * FROM __corro_state"], "reading the internal table __corro_state"),
        (["exec", "INSERT INTO kv VALUES (?, ?)", "--param", "95", "--param", "\udcff"],
         "parameter 2 is not valid UTF-8 text (lone surrogate)"),
    ]:  # fmt: skip
        line = one_error_line(run(node, *args))
        assert needle in line and "(400 from http://" in line, line
    # a real command line whose bytes are not UTF-8 (Python hands them over as surrogates)
    config = node.directory / "corrosion.toml"
    for args, needle in [
        (["exec", "INSERT INTO kv VALUES (96, '\udcff')"], "the SQL text is not valid UTF-8"),
        (["query", "SELECT CAST(x'ff' AS TEXT) AS t"], "column t: the value is not valid UTF-8"),
    ]:
        done = corrosion(*args, config=config)
        assert done.returncode == 1, (done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], lines
    assert state() == before


def test_query_formats(node: ThreadAgent) -> None:
    run(node, "exec", "INSERT OR REPLACE INTO kv VALUES (10, 'ten'), (11, NULL)")
    sql = "SELECT k, v, x'00ff' AS b FROM kv WHERE k BETWEEN 10 AND 11 ORDER BY k"
    table = run(node, "query", sql)
    assert table.exit_code == 0, table.output
    assert "│ 10 │ ten  │ x'00ff' │" in table.stdout and "│ 11 │ NULL │" in table.stdout
    assert "2 rows (" in table.stdout
    csv = run(node, "query", sql, "--format", "csv")
    assert csv.stdout == "k,v,b\n10,ten,x'00ff'\n11,,x'00ff'\n"
    js = run(node, "query", sql, "--format", "json")
    assert js.stdout.splitlines() == [
        '{"k": 10, "v": "ten", "b": [0, 255]}', '{"k": 11, "v": null, "b": [0, 255]}',
    ]  # fmt: skip
    params = run(node, "query", "SELECT ? AS a, ? AS b, ? AS c", "--param", "1", "--param",
                 '"1"', "--param", "null", "--format", "json")  # fmt: skip
    assert json.loads(params.stdout) == {"a": 1, "b": "1", "c": None}
    line = one_error_line(run(node, "query", "SELECT * FROM nope"))
    assert "no such table: nope" in line


def _write_when_listened(node: ThreadAgent, statements: list[str]) -> threading.Thread:
    """Once a subscription has a listener, write ``statements`` (one transaction each)."""

    def listeners() -> int:
        return sum(s["listeners"] for s in admin_request(node.admin_path, {"Subs": "List"}))

    poll(lambda: listeners() == 0)  # the previous subscriber is gone

    def write() -> None:
        poll(listeners)
        with CorrosionClient(node.api, token=TOKEN) as client:
            for statement in statements:
                client.transaction([statement])

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_subscribe_prints_rows_then_changes(node: ThreadAgent) -> None:
    run(node, "exec", "INSERT OR REPLACE INTO kv VALUES (20, 'sub')")
    sql = "SELECT k, v FROM kv WHERE k >= 20 AND k < 30"
    writer = _write_when_listened(node, ["INSERT INTO kv VALUES (21, 'new')",
                                         "UPDATE kv SET v = 'upd' WHERE k = 20"])  # fmt: skip
    result = run(node, "subscribe", sql, "--count", "2")
    writer.join()
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "columns: k | v"
    assert lines[1].startswith("row ") and lines[1].endswith(": 20 | sub")
    assert lines[2].startswith("end of query (change id ")
    # two transactions committed close together can be matched in one batch, whose changes
    # come in the result's order: the insert and the update, in either order
    changes = sorted(lines[3:5])
    assert changes[0].startswith("insert row ") and changes[0].endswith(": 21 | new")
    assert changes[1].startswith("update row ") and changes[1].endswith(": 20 | upd")
    assert result.stderr.startswith("subscription ")

    writer = _write_when_listened(node, ["DELETE FROM kv WHERE k = 21"])
    result = run(node, "subscribe", sql, "--format", "json", "--skip-rows", "--count", "1")
    writer.join()
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(events) == 1 and events[0]["change"][:1] == ["delete"]
    assert events[0]["change"][2] == [21, "new"]
    last = events[0]["change"][3]

    # --from: the changes after that id of the (same) subscription, at once
    writer = _write_when_listened(node, ["INSERT INTO kv VALUES (22, 'more')"])
    result = run(node, "subscribe", sql, "--format", "json", "--from", str(last - 1),
                 "--count", "2")  # fmt: skip
    writer.join()
    changes = [json.loads(line)["change"] for line in result.stdout.splitlines()]
    assert [c[3] for c in changes] == [last, last + 1] and changes[1][2] == [22, "more"]


def test_admin_commands(node: ThreadAgent) -> None:
    members = run(node, "cluster", "members", "--format", "json")
    assert members.exit_code == 0, members.output
    (me,) = json.loads(members.stdout)
    assert me["this_node"] is True and me["state"] == "alive" and me["last_seen"] is None
    table = run(node, "cluster", "members")
    assert me["actor_id"] in table.stdout and "(this node)" in table.stdout

    state = json.loads(run(node, "sync", "generate").stdout)
    assert state["actor_id"] == me["actor_id"] and state["need"] == {}
    assert state["heads"][me["actor_id"]] >= 1

    assert run(node, "reload").stdout == "schema unchanged\n"
    (node.directory / "schema.sql").write_text(SCHEMA + "CREATE INDEX kv_v ON kv (v);\n")
    assert run(node, "reload").stdout == "schema reloaded; created indexes: kv_v\n"
    (node.directory / "schema.sql").write_text("CREATE TABLE other (k INTEGER PRIMARY KEY);\n")
    line = one_error_line(run(node, "reload"))
    assert "schema.sql" in line  # the schema's refusal (kv would be dropped), nothing changed
    (node.directory / "schema.sql").write_text(SCHEMA + "CREATE INDEX kv_v ON kv (v);\n")

    subs = json.loads(run(node, "subs", "list", "--format", "json").stdout)
    assert all({"id", "hash", "sql", "listeners", "change_id"} <= set(s) for s in subs)
    assert run(node, "subs", "list").exit_code == 0


def test_backup_and_restore(node: ThreadAgent, tmp_path: Path) -> None:
    run(node, "exec", "INSERT OR REPLACE INTO kv VALUES (40, 'backed up')")
    dest = tmp_path / "backup.db"
    result = run(node, "backup", str(dest))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"backed up {node.db_path} to {dest}\n" and dest.exists()

    line = one_error_line(run(node, "restore", str(dest)))  # the agent runs on that database
    assert "a node is running on" in line

    target = tmp_path / "restored.db"
    result = run(node, "--db-path", str(target), "restore", str(dest))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"restored {dest} into {target}; actor id ")
    actor = "12345678123456781234567812345678"
    again = tmp_path / "again.db"
    result = run(node, "restore", str(dest), "--db-path", str(again), "--actor-id", actor)
    assert result.exit_code == 0 and result.stdout.endswith(f"actor id {actor}\n"), result.output
    line = one_error_line(run(node, "restore", str(dest), "--actor-id", "nope"), code=2)
    assert "is not a UUID" in line
    line = one_error_line(
        run(node, "restore", str(dest), "--actor-id", actor, "--self-actor-id"), code=2
    )
    assert "cannot be used together" in line
