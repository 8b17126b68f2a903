"""The simulator's parts on their own: scheduler order and the network model's rules."""

from __future__ import annotations

import random

import pytest

from corrosion_py.sim import Link, Network, Scheduler
from corrosion_py.sim.scheduler import DELIVERY, TIMER


def test_scheduler_runs_deliveries_before_timers_at_equal_times_then_in_insertion_order() -> None:
    s = Scheduler()
    seen: list[str] = []
    s.at(1.0, TIMER, seen.append, "timer")
    s.at(1.0, DELIVERY, seen.append, "delivery")
    s.at(0.5, TIMER, seen.append, "early")
    s.at(1.0, TIMER, seen.append, "timer2")
    s.at(2.0, TIMER, seen.append, "late")
    s.run_until(1.0)
    assert seen == ["early", "delivery", "timer", "timer2"]
    assert s.now == 1.0 and len(s) == 1
    s.at(0.0, TIMER, seen.append, "past")  # never runs before now
    s.run_until(5.0)
    assert seen[-2:] == ["past", "late"] and s.now == 5.0


def _net(link: Link) -> Network:
    return Network(random.Random(1), link)


def test_partition_groups_blocks_and_crashes_decide_who_hears_whom() -> None:
    net = _net(Link())
    net.partition([[0, 1]])
    assert net.connected(0, 1) and net.connected(2, 3)
    assert not net.connected(0, 2) and not net.arrivals(2, 0)
    net.heal()
    net.blocked.add((0, 1))
    assert not net.connected(0, 1) and net.connected(1, 0)
    net.crashed.add(3)
    assert not net.arrivals(3, 2) and not net.arrivals(2, 3)


def test_loss_delay_jitter_and_duplication_follow_the_link() -> None:
    net = _net(Link(loss=0.25, delay=0.01, jitter=0.02, duplicate=0.5))
    copies = [net.arrivals(0, 1) for _ in range(20_000)]
    delays = [d for c in copies for d in c]
    # each datagram: 1 or 2 copies, each lost with 0.25 -> mean copies 1.5 * 0.75
    assert len(delays) / len(copies) == pytest.approx(1.125, rel=0.03)
    assert min(delays) >= 0.01 and max(delays) <= 0.03
    net.links[(0, 1)] = Link(loss=1.0)
    assert not any(net.arrivals(0, 1) for _ in range(100))
    assert net.arrivals(1, 0)


def test_slow_receivers_get_inbound_late_but_send_on_time() -> None:
    net = _net(Link(delay=0.001, jitter=0.0))
    net.slow[1] = (0.5, 2.5)
    inbound = [net.arrivals(0, 1)[0] for _ in range(1000)]
    assert min(inbound) >= 0.501 and max(inbound) <= 2.501
    assert net.arrivals(1, 0) == [0.001]


def test_link_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Link(loss=1.5)
    with pytest.raises(ValueError):
        Link(delay=-1.0)
