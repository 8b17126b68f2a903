"""The TOML configuration (corrosion_py.config): defaults, every section, relative paths,
environment and command-line overrides, and one-line refusals naming the file and the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from corrosion_py.config import (
    Config,
    ConfigError,
    Override,
    env_names,
    load_config,
)
from corrosion_py.swim import LAN, LOCAL, WAN

ROOT = Path(__file__).resolve().parent.parent

FULL = """\
[db]
path = "data/node.db"
schema_paths = ["schema.sql", "/abs/schemas"]
subscriptions_path = "subs/node.subs.db"

[gossip]
addr = "127.0.0.1:9787"
bootstrap = ["127.0.0.1:9788", "node2.internal:9787"]
cluster_id = 7
preset = "local"
max_packet_size = 1000
keyring_file = "keys/gossip.keys"

[api]
addr = "127.0.0.1:9080"

[api.authz]
bearer-token = "secret"

[admin]
path = "run/admin.sock"

[log]
format = "json"
level = "debug"

[perf]
min_sync_backoff = 0.5
max_sync_backoff = 2
apply_queue_len = 500
"""


def write(tmp_path: Path, text: str, name: str = "corrosion.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def refused(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env or {})
    message = str(info.value)
    assert "\n" not in message
    return info.value


# -- defaults and sections -----------------------------------------------------------------------


def test_defaults_work_on_one_machine(tmp_path: Path) -> None:
    config = load_config(None, {}, cwd=tmp_path)
    assert config.file is None
    assert config.db.path == tmp_path / "corrosion.db"
    assert config.db.schema_paths == ()
    assert config.subscriptions_path == tmp_path / "corrosion.db.subs.db"
    assert config.admin_path == tmp_path / "corrosion.db.admin.sock"
    assert config.gossip.addr == "127.0.0.1:8787" and config.gossip.bootstrap == ()
    assert (config.gossip.cluster_id, config.gossip.preset) == (0, "lan")
    assert config.gossip.max_packet_size == 1200
    assert config.api.addr == "127.0.0.1:8080" and config.api.authz.bearer_token is None
    assert (config.log.format, config.log.level) == ("plaintext", "info")
    assert (config.perf.min_sync_backoff, config.perf.max_sync_backoff) == (1.0, 15.0)
    assert config.perf.apply_queue_len == 20_000

    node = config.node_config()
    agent = node.agent
    assert agent == config.agent_config()
    assert agent.db_path == tmp_path / "corrosion.db"
    assert agent.gossip_addr == ("127.0.0.1", 8787) and node.api_addr == ("127.0.0.1", 8080)
    assert agent.swim == LAN and node.api_token is None
    assert node.admin_path == tmp_path / "corrosion.db.admin.sock"
    assert agent.sync_interval == (1.0, 15.0) and agent.apply_queue_len == 20_000
    assert agent.subscriptions_path == tmp_path / "corrosion.db.subs.db"
    assert agent.keyring_file is None and not agent.plaintext  # loopback: plaintext allowed


def test_every_section_is_read_and_mapped_to_the_agent(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    config = load_config(path, {})
    assert config.file == path
    assert config.db.path == tmp_path / "data/node.db"
    assert config.db.schema_paths == (tmp_path / "schema.sql", Path("/abs/schemas"))
    assert config.subscriptions_path == tmp_path / "subs/node.subs.db"
    assert config.admin_path == tmp_path / "run/admin.sock"
    assert config.gossip.bootstrap == ("127.0.0.1:9788", "node2.internal:9787")
    assert config.api.authz.bearer_token == "secret"
    assert (config.log.format, config.log.level) == ("json", "debug")
    assert config.perf.max_sync_backoff == 2.0 and isinstance(config.perf.max_sync_backoff, float)

    node = config.node_config()
    agent = node.agent
    assert agent.db_path == tmp_path / "data/node.db"
    assert agent.schema_paths == (tmp_path / "schema.sql", Path("/abs/schemas"))
    assert agent.subscriptions_path == tmp_path / "subs/node.subs.db"
    assert agent.gossip_addr == ("127.0.0.1", 9787)
    assert agent.bootstrap == (("127.0.0.1", 9788), ("node2.internal", 9787))
    assert agent.cluster_id == 7
    assert agent.swim.max_packet_size == 1000
    assert agent.swim.probe_interval == LOCAL.probe_interval  # the preset, packet size evolved
    assert node.api_addr == ("127.0.0.1", 9080) and node.api_token == "secret"
    assert node.admin_path == tmp_path / "run/admin.sock"
    assert agent.sync_interval == (0.5, 2.0) and agent.apply_queue_len == 500
    assert agent.keyring_file == tmp_path / "keys/gossip.keys" and not agent.plaintext


@pytest.mark.parametrize(("name", "preset"), [("local", LOCAL), ("lan", LAN), ("wan", WAN)])
def test_presets(tmp_path: Path, name: str, preset: object) -> None:
    config = load_config(write(tmp_path, f'[gossip]\npreset = "{name}"\n'), {})
    assert config.agent_config().swim == preset


def test_relative_paths_are_relative_to_the_file_and_derived_defaults_follow_db_path(
    tmp_path: Path,
) -> None:
    (tmp_path / "conf").mkdir()
    path = write(tmp_path / "conf", '[db]\npath = "../var/n1.db"\nschema_paths = ["s"]\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = load_config(path.relative_to(tmp_path), {}, cwd=tmp_path)  # a relative -c
    assert config.file == path
    assert config.db.path == tmp_path / "conf/../var/n1.db"
    assert config.db.schema_paths == (tmp_path / "conf/s",)
    assert config.subscriptions_path == tmp_path / "conf/../var/n1.db.subs.db"
    assert config.admin_path == tmp_path / "conf/../var/n1.db.admin.sock"
    assert load_config(path, {}, cwd=elsewhere).db.path == config.db.path


def test_corrosion_toml_of_the_current_directory_is_used_when_no_file_is_given(
    tmp_path: Path,
) -> None:
    write(tmp_path, "[gossip]\ncluster_id = 3\n")
    config = load_config(None, {}, cwd=tmp_path)
    assert config.file == tmp_path / "corrosion.toml" and config.gossip.cluster_id == 3


def test_a_missing_explicit_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*nope\.toml does not exist"):
        load_config(tmp_path / "nope.toml", {})


def test_an_empty_file_is_all_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), {}).gossip == Config().gossip


# -- environment and command-line overrides ------------------------------------------------------


def test_environment_overrides_keys(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    env = {
        "CORROSION_GOSSIP_ADDR": "127.0.0.1:0",
        "CORROSION_GOSSIP_BOOTSTRAP": '["a:1", "b:2"]',
        "CORROSION_GOSSIP_CLUSTER_ID": "12",
        "CORROSION_API_AUTHZ_BEARER_TOKEN": "12345",  # a string key keeps the text
        "CORROSION_LOG_LEVEL": "warning",  # not TOML: taken as text
        "CORROSION_PERF_MAX_SYNC_BACKOFF": "3.5",
        "CORROSION_DB_PATH": "rel/env.db",
        "CORROSION_CONFIG": "ignored here (the CLI reads it)",
        "CORROSIONX": "not ours",
    }
    config = load_config(path, env, cwd=tmp_path / "cwd")
    assert config.gossip.addr == "127.0.0.1:0"
    assert config.gossip.bootstrap == ("a:1", "b:2")
    assert config.gossip.cluster_id == 12
    assert config.api.authz.bearer_token == "12345"
    assert config.log.level == "warning"
    assert config.perf.max_sync_backoff == 3.5
    assert config.db.path == tmp_path / "cwd/rel/env.db"  # env paths: relative to the cwd
    assert config.gossip.preset == "local"  # the file's other keys stay


def test_gossip_keys_or_plaintext_off_loopback(tmp_path: Path) -> None:
    """A key file, or an explicit plaintext, lets gossip listen beyond loopback; on loopback
    neither is needed (local development); relative key files follow the config file."""
    keyed = load_config(
        write(tmp_path, '[gossip]\naddr = "0.0.0.0:8787"\nkeyring_file = "k"\n'), {}
    )
    assert keyed.agent_config().keyring_file == tmp_path / "k"
    plain = load_config(write(tmp_path, '[gossip]\naddr = "0.0.0.0:8787"\nplaintext = true\n'), {})
    assert plain.agent_config().plaintext is True
    env = {"CORROSION_GOSSIP_ADDR": "10.0.0.5:8787", "CORROSION_GOSSIP_PLAINTEXT": "true"}
    assert load_config(None, env, cwd=tmp_path).gossip.plaintext is True
    for host in ("localhost", "127.0.0.2", "[::1]"):
        load_config(write(tmp_path, f'[gossip]\naddr = "{host}:8787"\n'), {})


def test_every_key_has_its_environment_variable() -> None:
    names = env_names()
    assert names["api.authz.bearer-token"] == "CORROSION_API_AUTHZ_BEARER_TOKEN"
    assert names["db.schema_paths"] == "CORROSION_DB_SCHEMA_PATHS"
    assert names["perf.apply_queue_len"] == "CORROSION_PERF_APPLY_QUEUE_LEN"
    assert names["perf.sql_tx_timeout"] == "CORROSION_PERF_SQL_TX_TIMEOUT"
    assert len(names) == 21


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"CORROSION_GOSSIP_CLUSTER_ID": "abc"},
            r"^environment variable CORROSION_GOSSIP_CLUSTER_ID \(sets gossip\.cluster_id\): "
            r"expected an integer, got 'abc'",
        ),
        (
            {"CORROSION_GOSSIP_BOOTSTRAP": "a:1"},
            r"CORROSION_GOSSIP_BOOTSTRAP \(sets gossip\.bootstrap\): expected an array",
        ),
        (
            {"CORROSION_GOSSIP_BOOTSTRAP": '["a:1", "nope"]'},
            r"CORROSION_GOSSIP_BOOTSTRAP \(sets gossip\.bootstrap\[1\]\): expected an address",
        ),
        (
            {"CORROSION_GOSSIP_ADR": "x:1"},
            r"CORROSION_GOSSIP_ADR names no configuration key \(did you mean "
            r"CORROSION_GOSSIP_ADDR\?\)",
        ),
        (
            {"CORROSION_PERF_MAX_SYNC_BACKOFF": "0.1"},
            r"CORROSION_PERF_MAX_SYNC_BACKOFF \(sets perf\.max_sync_backoff\): must be >= ",
        ),
    ],
)
def test_a_bad_environment_override_names_the_variable(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env, cwd=tmp_path)
    assert re.search(expected, str(info.value)), str(info.value)
    assert str(tmp_path) not in str(info.value)  # no file was involved


def test_command_line_overrides_come_last_and_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    config = load_config(
        path,
        {"CORROSION_API_ADDR": "127.0.0.1:1"},
        overrides=[
            Override("api.addr", "127.0.0.1:2", "option --api-addr"),
            Override("db.path", "x.db", "option --db-path"),
        ],
        cwd=tmp_path / "cwd",
    )
    assert config.api.addr == "127.0.0.1:2"
    assert config.db.path == tmp_path / "cwd/x.db"
    assert config.admin_path == tmp_path / "run/admin.sock"  # set by the file: stays
    with pytest.raises(ConfigError, match=r"^option --api-addr \(sets api\.addr\): expected"):
        load_config(path, {}, overrides=[Override("api.addr", "nope", "option --api-addr")])


def test_admin_and_subscriptions_defaults_follow_an_overridden_db_path(tmp_path: Path) -> None:
    config = load_config(None, {"CORROSION_DB_PATH": "/var/lib/n.db"}, cwd=tmp_path)
    assert config.admin_path == Path("/var/lib/n.db.admin.sock")
    assert config.subscriptions_path == Path("/var/lib/n.db.subs.db")


# -- refusals ------------------------------------------------------------------------------------


def test_unknown_key_names_file_key_and_the_close_match(tmp_path: Path) -> None:
    error = refused(tmp_path, '[gossip]\nadr = "127.0.0.1:1"\n')
    text = str(error)
    assert text.startswith(f"{tmp_path / 'corrosion.toml'}: gossip.adr: unknown key")
    assert "did you mean 'addr'?" in text and "known: addr, bootstrap" in text
    assert error.key == "gossip.adr" and error.file == tmp_path / "corrosion.toml"


def test_unknown_section_and_dashed_key_spelled_with_underscore(tmp_path: Path) -> None:
    assert "gosip: unknown section (did you mean 'gossip'?" in str(
        refused(tmp_path, "[gosip]\naddr = 1\n")
    )
    text = str(refused(tmp_path, '[api.authz]\nbearer_token = "x"\n'))
    assert "api.authz.bearer_token: unknown key (did you mean 'bearer-token'?" in text
    assert "file" in str(refused(tmp_path, 'file = "x"\n'))  # not a key of the file


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('[gossip]\ncluster_id = "5"\n', "gossip.cluster_id", "expected an integer, got '5'"),
        ("[gossip]\ncluster_id = true\n", "gossip.cluster_id", "expected an integer, got True"),
        ("[gossip]\ncluster_id = 1.5\n", "gossip.cluster_id", "expected an integer, got 1.5"),
        ("[db]\npath = 5\n", "db.path", "expected a path (a string), got 5 (an integer)"),
        ('[db]\nschema_paths = "s.sql"\n', "db.schema_paths", "expected an array of paths"),
        ('[db]\nschema_paths = ["a", 1]\n', "db.schema_paths[1]", "expected a path"),
        ('[perf]\nmin_sync_backoff = "1s"\n', "perf.min_sync_backoff", "expected a number"),
        ('[gossip]\npreset = "fast"\n', "gossip.preset",
         'expected one of "local", "lan", "wan", got \'fast\''),
        ('[log]\nformat = "xml"\n', "log.format", 'expected one of "plaintext", "json"'),
        ('[log]\nlevel = "trace"\n', "log.level", 'expected one of "debug", "info"'),
        ('[gossip]\naddr = "localhost"\n', "gossip.addr",
         "expected an address \"HOST:PORT\" (port 0..65535), got 'localhost'"),
        ('[gossip]\naddr = "h:99999"\n', "gossip.addr", "expected an address"),
        ("[api]\naddr = 8080\n", "api.addr", "expected an address \"HOST:PORT\" (a string)"),
        ('[gossip]\nbootstrap = ["a:1", "b"]\n', "gossip.bootstrap[1]", "expected an address"),
        ('[gossip]\nbootstrap = ["a:0"]\n', "gossip.bootstrap[0]", "port 0 cannot be joined"),
        ("[gossip]\nmax_packet_size = 1500\n", "gossip.max_packet_size",
         "must be in 512..1200 (the UDP endpoint's limit), got 1500"),
        ("[gossip]\ncluster_id = 70000\n", "gossip.cluster_id", "must be in 0..65535"),
        ("[perf]\nmin_sync_backoff = 0\n", "perf.min_sync_backoff", "must be > 0"),
        ("[perf]\napply_queue_len = 0\n", "perf.apply_queue_len", "must be at least 1"),
        ('[api.authz]\nbearer-token = ""\n', "api.authz.bearer-token", "must not be empty"),
        ('[gossip]\nplaintext = "yes"\n', "gossip.plaintext", "expected true or false, got 'yes'"),
        ('[gossip]\nplaintext = true\nkeyring_file = "k"\n', "gossip.plaintext",
         "cannot be true while gossip.keyring_file is set"),
        ('[gossip]\naddr = "0.0.0.0:8787"\n', "gossip.keyring_file",
         "required: gossip.addr 0.0.0.0:8787 is not a loopback address"),
        ('[gossip]\naddr = "[fdaa::3]:8787"\n', "gossip.keyring_file", "corrosion keygen"),
        ('gossip = "x"\n', "gossip", "expected a table, got 'x'"),
        ("[api]\nauthz = 1\n", "api.authz", "expected a table"),
    ],
)  # fmt: skip
def test_wrong_values_are_refused_naming_file_and_key(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    error = refused(tmp_path, text)
    assert str(error) == f"{tmp_path / 'corrosion.toml'}: {key}: {str(error).split(': ', 2)[2]}"
    assert f": {key}: " in str(error) and expected in str(error), str(error)
    assert error.key == key


def test_several_problems_are_reported_on_one_line(tmp_path: Path) -> None:
    text = str(refused(tmp_path, '[gossip]\naddr = 1\ncluster_id = "x"\npreset = 2\n'))
    assert "gossip.addr:" in text and "gossip.cluster_id:" in text and "gossip.preset:" in text
    assert text.count(str(tmp_path)) == 1


def test_invalid_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    text = str(refused(tmp_path, "[gossip]\naddr = \n"))
    assert text.startswith(f"{tmp_path / 'corrosion.toml'}: invalid TOML:") and "line 2" in text


def test_docs_list_every_key_and_variable() -> None:
    docs = (ROOT / "docs/config.md").read_text()
    for key, env in env_names().items():
        name = key.rpartition(".")[2]
        assert f"`{name}`" in docs and env in docs, key
