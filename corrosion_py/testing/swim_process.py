"""Membership nodes as OS processes (`python -m corrosion_py.testing.swim_node`), for tests,
benchmarks and trying a cluster out by hand. Whoever starts them stops them: `local_cluster`
kills its own processes by PID on exit, whatever happened inside.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from corrosion_py.testing.child import Child


class NodeProcess:
    """One node process and the JSON events it prints (each stamped with our monotonic time)."""

    def __init__(
        self, seed: int, join: list[str], preset: str = "local", loss: float = 0.0
    ) -> None:
        args = [
            sys.executable, "-m", "corrosion_py.testing.swim_node", "--seed", str(seed),
            "--preset", preset, "--loss", str(loss), "--join", *join,
        ]  # fmt: skip
        self.child = Child(args, stamp=True)
        try:
            hello = self.child.expect("listening")
        except BaseException:
            self.child.kill()
            raise
        self.addr, self.actor = str(hello["addr"]), str(hello["actor"])

    def events(self, timeout: float) -> Iterator[dict[str, object]]:
        """Events as they come, until ``timeout`` seconds have passed."""
        return self.child.lines_until(timeout)

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used (Linux /proc)."""
        return self.child.cpu_seconds()

    def kill(self) -> None:
        """``kill -9`` by PID, then reap."""
        self.child.kill()


@contextmanager
def local_cluster(n: int, preset: str = "local", loss: float = 0.0) -> Iterator[list[NodeProcess]]:
    """n node processes on 127.0.0.1, all joining through the first; ``loss`` is the share of
    datagrams each node's transport drops on send."""
    nodes: list[NodeProcess] = []
    try:
        nodes.append(NodeProcess(0, [], preset, loss))
        for seed in range(1, n):
            nodes.append(NodeProcess(seed, [nodes[0].addr], preset, loss))
        yield nodes
    finally:
        for node in nodes:
            node.kill()


def wait_converged(nodes: list[NodeProcess], timeout: float) -> float:
    """Seconds until every node reported every other one up; raises TimeoutError."""
    start = time.monotonic()
    actors = {node.actor for node in nodes}
    for node in nodes:
        seen = {node.actor}
        for event in node.events(max(0.0, timeout - (time.monotonic() - start))):
            if event["event"] == "up":
                seen.add(str(event["actor"]))
            if seen == actors:
                break
        if seen != actors:
            raise TimeoutError(f"{node.addr} saw {len(seen) - 1} of {len(actors) - 1} others")
    return time.monotonic() - start


def detection_delays(
    survivors: list[NodeProcess], victim: str, killed_at: float, timeout: float
) -> list[float]:
    """Seconds from the kill until each survivor reported ``victim`` down (within ``timeout``)."""
    delays = []
    for node in survivors:
        for event in node.events(max(0.0, timeout - (time.monotonic() - killed_at))):
            if event["event"] == "down" and event["actor"] == victim:
                delays.append(float(str(event["seen"])) - killed_at)
                break
    return delays
