"""SWIM with one OS process per node on 127.0.0.1: the nodes agree on the member list, and a
`kill -9` of one is seen as down by every other. Each test kills the processes it started."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

NODES = 6


class Node:
    def __init__(self, seed: int, join: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "corrosion_py.net.node", "--seed", str(seed), "--join", *join],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, object]] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        hello = self.lines.get(timeout=30)
        assert hello["event"] == "listening"
        self.addr, self.actor = str(hello["addr"]), str(hello["actor"])
        self.up: set[str] = set()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            event["seen"] = time.monotonic()
            self.lines.put(event)

    def events(self, timeout: float) -> Iterator[dict[str, object]]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                yield self.lines.get(timeout=left)
            except queue.Empty:
                return


@contextmanager
def cluster(n: int) -> Iterator[list[Node]]:
    nodes: list[Node] = []
    try:
        nodes.append(Node(0, []))
        for seed in range(1, n):
            nodes.append(Node(seed, [nodes[0].addr]))
        yield nodes
    finally:
        for node in nodes:  # our own processes, by their PIDs
            if node.proc.poll() is None:
                os.kill(node.proc.pid, signal.SIGKILL)
            node.proc.wait(timeout=10)
            node.reader.join(timeout=10)  # the pipe reached EOF
            assert node.proc.stdout is not None
            node.proc.stdout.close()


def test_processes_agree_then_detect_kill_9() -> None:
    with cluster(NODES) as nodes:
        actors = {node.actor for node in nodes}
        start = time.monotonic()
        for node in nodes:
            for event in node.events(30):
                if event["event"] == "up":
                    node.up.add(str(event["actor"]))
                if node.up | {node.actor} == actors:
                    break
            assert node.up | {node.actor} == actors, f"{node.addr} sees {len(node.up)} others"
        assert time.monotonic() - start < 30
        victim = nodes[-1]
        os.kill(victim.proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        delays = []
        for node in nodes[:-1]:
            for event in node.events(20):
                if event["event"] == "down" and event["actor"] == victim.actor:
                    delays.append(float(event["seen"]) - killed_at)  # type: ignore[arg-type]
                    break
        assert len(delays) == NODES - 1, f"only {len(delays)} of {NODES - 1} saw the kill"
        assert max(delays) < 20
