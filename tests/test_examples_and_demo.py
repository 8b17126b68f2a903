"""The demo and the examples run as they are, as a new user would run them (each in its own
process; the timeouts only catch hangs)."""

from __future__ import annotations

import importlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner

from corrosion_py import __version__
from corrosion_py.cli import main
from corrosion_py.swim import LOCAL
from corrosion_py.testing.agent_process import AgentProcess

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CLUSTER = EXAMPLES / "cluster"
SCHEMA = EXAMPLES / "routing" / "schema.sql"


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def gone(pid: int) -> bool:
    """Whether no process ``pid`` runs any more (or the PID now belongs to someone else)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return True
    return b"corrosion_py" not in cmdline


def test_demo() -> None:
    done = run("-m", "corrosion_py.demo")
    out = done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in out + done.stderr and done.stderr == ""
    # three nodes, every event of the writes on node1 and node2 arrived on node3
    assert len(re.findall(r"^     node\d  pid \d+", out, re.M)) == 3
    assert re.search(r"every node seals its gossip with key id [0-9a-f]{8}", out)
    for line in (
        "node3 got insert  m-ams-1  web  ams  [fdaa::1:1]:8080  started",
        "node3 got insert  m-ord-2  web  ord  [fdaa::2:2]:8080  started",
        "node3 got update  m-ord-2  web  ord  [fdaa::2:2]:8080  stopping",
        "node3 got delete  m-ams-2  api  ams  [fdaa::1:2]:8080  started",
        "node3 got insert  m-ams-3  web  ams  [fdaa::1:3]:8080  started",
    ):
        assert line in out
    assert re.search(r"after the commit\n", out)
    assert re.search(r"propagation over 6 events: min \d+ ms, median \d+ ms, max \d+ ms", out)
    # the member list, then node2 killed and declared dead by both others
    members = out.split("node1's member list")[1]
    assert re.search(r"node2  actor \w+  gossip [\d.:]+\s+alive", members)
    assert re.search(r"node3  actor \w+  gossip [\d.:]+\s+alive", members)
    assert re.search(r"kill -9 \d+ \(node2\)", out)
    assert re.search(r"node1: node2 (suspected after [\d.]+ s, )?declared dead after", out)
    assert re.search(r"node3: node2 (suspected after [\d.]+ s, )?declared dead after", out)
    after_kill = out.split("kill -9")[1]
    assert re.search(r"node2  actor \w+  gossip [\d.:]+\s+dead", after_kill)
    assert "the subscription on node3 still works without node2" in out
    # a clean stop: no process and no file left behind
    assert "node1 stopped cleanly" in out and "node3 stopped cleanly" in out
    assert "all nodes stopped cleanly, temporary files removed" in out
    pids = [int(p) for p in re.findall(r"pid (\d+)", out)]
    assert len(pids) == 3 and all(gone(pid) for pid in pids)
    data = re.search(r"data in (\S+)", out)
    assert data is not None and not Path(data.group(1)).exists()


def test_routing_example() -> None:
    done = run("examples/routing/run.py")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    expected = [
        "web -> nowhere",
        "ams1 starts two web machines and one api machine on node1",
        "    web -> [fdaa:0:1::1]:8080, [fdaa:0:1::2]:8080",
        "    api -> [fdaa:0:1::3]:8080",
        "ord1 starts a web machine on node2",
        "    web -> [fdaa:0:1::1]:8080, [fdaa:0:1::2]:8080, [fdaa:0:2::1]:8080",
        "    a web request landing in ord goes to [fdaa:0:2::1]:8080",
        "ams1 stops ams1-m1",
        "    web -> [fdaa:0:1::2]:8080, [fdaa:0:2::1]:8080",
        "ord1 destroys ord1-m1",
        "    web -> [fdaa:0:1::2]:8080",
        "ams1 starts ams1-m1 again and stops its api machine",
        "    web -> [fdaa:0:1::1]:8080, [fdaa:0:1::2]:8080",
        "    api -> nowhere",
        "all nodes stopped.",
    ]
    lines = [re.sub(r" \(the proxy knew \d+ ms later\)$", "", line) for line in out.splitlines()]
    at = 0
    for line in expected:  # each present, in this order
        assert line in lines[at:], f"{line!r} missing after line {at}:\n{out}"
        at = lines.index(line, at) + 1


def test_routing_worker_and_proxy_commands(tmp_path: Path) -> None:
    """worker.py and proxy.py as commands, against one node."""
    node = AgentProcess(tmp_path / "node.db", SCHEMA, api="127.0.0.1:0")
    proxy: subprocess.Popen[str] | None = None
    try:
        assert node.api is not None
        worker = ["examples/routing/worker.py", "--api", node.api, "--name", "ams1"]
        done = run(*worker, "--region", "ams", "start", "web", timeout=60)
        assert done.returncode == 0 and done.stdout == "ams1-m1\n", done.stderr
        proxy = subprocess.Popen(
            [sys.executable, "examples/routing/proxy.py", "--api", node.api, "web", "api"],
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        assert proxy.stdout is not None
        assert proxy.stdout.readline() == "web -> [fdaa:0:1::1]:8080\n"
        assert proxy.stdout.readline() == "api -> nowhere\n"
        done = run(*worker, "state", "ams1-m1", "stopped", timeout=60)
        assert done.returncode == 0, done.stderr
        assert proxy.stdout.readline() == "web -> nowhere\n"
        assert proxy.stdout.readline() == "api -> nowhere\n"
        done = run(*worker, "list", timeout=60)
        assert done.stdout == "ams1-m1  web  [fdaa:0:1::1]:8080  stopped\n"
        done = run(*worker, "destroy", "nope", timeout=60)
        assert done.returncode == 1 and done.stderr == "worker: worker ams1 has no machine 'nope'\n"
        proxy.send_signal(signal.SIGINT)
        assert proxy.wait(timeout=30) == 0
    finally:
        if proxy is not None:
            if proxy.poll() is None:
                proxy.kill()
            proxy.communicate()
        node.kill()


def test_embedded_example() -> None:
    done = run("examples/embedded.py")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for line in (
        "  scheduler: insert ams1-m2 -> {'api': 1, 'web': 1}",
        "query: [('ams1-m1', 'web', 'started'), ('ams1-m2', 'api', 'started')]",
        "  scheduler: insert ord1-m1 -> {'api': 1, 'web': 2}",
        "  scheduler: delete ams1-m2 -> {'web': 2}",
        "done",
    ):
        assert line in out.splitlines()
    assert re.search(r"^member up: \w+ at 127\.0\.0\.1:\d+$", out, re.M)
    assert re.search(r"^member left: \w+$", out, re.M)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_cluster_config(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/cluster/node<n>.toml, read by the config loader, is the node it says."""
    try:
        config = importlib.import_module("corrosion_py.config")
    except ImportError:
        pytest.skip("the config loader (corrosion_py.config.load_config) is missing")
    for name in list(os.environ):
        if name.startswith("CORROSION_"):
            monkeypatch.delenv(name)
    loaded = config.load_config(CLUSTER / f"node{n}.toml")
    node = loaded.node_config()
    agent = node.agent
    assert agent.db_path.resolve() == CLUSTER / "data" / f"node{n}.db"
    assert [p.resolve() for p in agent.schema_paths] == [SCHEMA]
    assert agent.gossip_addr == ("127.0.0.1", 8786 + n)
    assert agent.bootstrap == (() if n == 1 else (("127.0.0.1", 8787),))
    assert agent.cluster_id == 0
    assert attrs.evolve(agent.swim, max_packet_size=LOCAL.max_packet_size) == LOCAL
    assert node.api_addr == ("127.0.0.1", 8079 + n)
    assert node.admin_path is not None
    assert node.admin_path.resolve() == CLUSTER / "data" / f"node{n}.admin.sock"
    assert (loaded.log.format, loaded.log.level) == ("plaintext", "info")


def test_two_replicas_example() -> None:
    done = run("examples/two_replicas.py")
    assert done.returncode == 0, done.stderr
    assert "a: [('m1', 'api', 'ord')]" in done.stdout


def test_cli_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output
