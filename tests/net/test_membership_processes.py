"""SWIM with one OS process per node on 127.0.0.1: the nodes agree on the member list, and a
`kill -9` of one is seen as down by every other. The processes are killed by PID at the end."""

from __future__ import annotations

import time

from corrosion_py.testing.swim_process import detection_delays, local_cluster, wait_converged

NODES = 6


def test_processes_agree_then_detect_kill_9() -> None:
    with local_cluster(NODES) as nodes:
        assert wait_converged(nodes, timeout=30) < 30
        victim = nodes[-1]
        victim.kill()
        delays = detection_delays(nodes[:-1], victim.actor, time.monotonic(), timeout=20)
        assert len(delays) == NODES - 1, f"only {len(delays)} of {NODES - 1} saw the kill"
