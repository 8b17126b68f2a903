"""SWIM on real UDP, one OS process per node on 127.0.0.1, LOCAL timing:
time for 50 nodes to agree on the member list, `kill -9` detection delays, false deaths under
1% injected loss, and the CPU an idle node uses.

Run with `make bench` (or `python bench/swim_udp_bench.py --quick`).
"""

from __future__ import annotations

import statistics
import time

import common

from corrosion_py.testing.swim_process import detection_delays, local_cluster, wait_converged


def main() -> None:
    scale = common.start(__doc__)
    n = 50 // scale if scale > 1 else 50
    with local_cluster(max(n, 5)) as nodes:
        converged = wait_converged(nodes, timeout=60)
        print(f"{len(nodes)} nodes agree on the member list after {converged:.2f}s "
              "(target <= 5 s)")  # fmt: skip
        idle = nodes[1]
        before, t0 = idle.cpu_seconds(), time.monotonic()
        time.sleep(10 / scale)
        share = (idle.cpu_seconds() - before) / (time.monotonic() - t0)
        print(f"idle node CPU: {share * 100:.1f}% of a core (target < 3%)")
        victim = nodes[-1]
        victim.kill()
        delays = detection_delays(nodes[:-1], victim.actor, time.monotonic(), timeout=30)
        print(
            f"kill -9: {len(delays)} of {len(nodes) - 1} saw it down; "
            f"p50 {statistics.median(delays):.2f}s max {max(delays):.2f}s "
            "(target p50 <= 2 s, max <= 4 s)"
        )
    minutes = 5 / scale
    with local_cluster(20 // (scale // 5 or 1), loss=0.01) as nodes:
        wait_converged(nodes, timeout=60)
        time.sleep(minutes * 60)
        false_deaths = sum(event["event"] == "down" for node in nodes for event in node.events(0.5))
        print(f"{len(nodes)} nodes, 1% loss, {minutes:.1f} min: {false_deaths} false deaths "
              "(target 0)")  # fmt: skip


if __name__ == "__main__":
    main()
