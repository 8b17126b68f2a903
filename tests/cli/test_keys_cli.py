"""Gossip keys from the command line: `corrosion keygen`, key files refused in one line,
`corrosion keys list` / `keys reload` on a running `corrosion agent`, and the start-up rules
(no key off loopback refused, explicit plaintext warned)."""

from __future__ import annotations

import base64
import re
import signal
import stat
from pathlib import Path

from cli_harness import AgentRun, corrosion, short_dir, write_config
from click.testing import CliRunner
from test_cli_processes import error_line, ok

from corrosion_py.cli import main
from corrosion_py.wire.keyring import parse_keyring


def test_keygen_prints_a_new_key_each_time() -> None:
    keys = [CliRunner().invoke(main, ["keygen"]) for _ in range(2)]
    assert all(k.exit_code == 0 for k in keys)
    texts = [k.stdout.strip() for k in keys]
    assert texts[0] != texts[1]
    assert all(len(base64.b64decode(t, validate=True)) == 32 for t in texts)


def test_keygen_writes_a_private_key_file_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "gossip.keys"
    done = CliRunner().invoke(main, ["keygen", "--out", str(path)])
    assert done.exit_code == 0, done.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert len(parse_keyring(text).keys) == 1 and text.startswith("#")
    again = CliRunner().invoke(main, ["keygen", "--out", str(path)])
    assert again.exit_code == 1
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {path} exists; refusing to overwrite")
    assert path.read_text() == text


def keyed_config(directory: Path, keys: Path) -> Path:
    config = write_config(directory)
    text = config.read_text().replace(
        'preset = "local"', f'preset = "local"\nkeyring_file = "{keys}"'
    )
    config.write_text(text)
    return config


def test_agent_refuses_bad_or_missing_keys_in_one_line() -> None:
    with short_dir() as directory:
        keys = directory / "gossip.keys"
        keys.write_text("# keys\n" + base64.b64encode(bytes(32)).decode() + "\nshort==\n")
        line = error_line(corrosion("agent", config=keyed_config(directory, keys)))
        assert line.startswith(f"Error: keyring file {keys}: line 3: not base64")
        assert not (directory / "node.db").exists()
        config = write_config(directory)
        config.write_text(config.read_text().replace("127.0.0.1:0", "0.0.0.0:0", 1))
        line = error_line(corrosion("agent", config=config))
        assert line.startswith(f"Error: {config}: gossip.keyring_file: required: gossip.addr")
        assert "corrosion keygen --out FILE" in line


def test_explicit_plaintext_starts_with_a_warning() -> None:
    with short_dir() as directory:
        config = write_config(directory)
        config.write_text(
            config.read_text().replace('preset = "local"', 'preset = "local"\nplaintext = true')
        )
        agent = AgentRun(config)
        try:
            warnings = [e for e in agent.log_events() if e.get("level") == "warning"]
            assert any("PLAINTEXT" in e["msg"] for e in warnings), agent.log_text()
            assert ok(corrosion("keys", "list", config=config)).strip() == (
                "gossip runs in plaintext: no keys"
            )
            assert agent.stop(signal.SIGTERM) == 0
        finally:
            agent.kill()


def test_keys_list_and_reload_on_a_running_agent() -> None:
    with short_dir() as directory:
        keys = directory / "gossip.keys"
        ok(corrosion("keygen", "--out", str(keys)))
        config = keyed_config(directory, keys)
        agent = AgentRun(config)
        try:
            first = parse_keyring(keys.read_text()).primary.id_hex
            assert ok(corrosion("keys", "list", config=config)).splitlines() == [
                f"{first}  (primary)"
            ]
            assert any(
                "gossip encrypted" in e["msg"] and first in e["msg"] for e in agent.log_events()
            )
            new = ok(corrosion("keygen")).strip()
            old_lines = keys.read_text()
            keys.write_text(new + "\n" + old_lines)  # the new key first: primary
            out = ok(corrosion("keys", "reload", config=config)).splitlines()
            second = parse_keyring(keys.read_text()).primary.id_hex
            assert out == ["keys reloaded: 2 keys", f"{second}  (primary)", first]
            keys.write_text(old_lines + "\nnot-a-key\n")
            line = error_line(corrosion("keys", "reload", config=config))
            assert re.match(rf"Error: keyring file {re.escape(str(keys))}: line \d+: ", line)
            listed = ok(corrosion("keys", "list", config=config)).splitlines()
            assert listed == [f"{second}  (primary)", first]  # nothing changed
            assert new not in agent.log_text()  # key material is never logged
            assert agent.stop(signal.SIGTERM) == 0
        finally:
            agent.kill()
