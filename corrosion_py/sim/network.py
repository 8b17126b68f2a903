"""The network model: which datagrams arrive, when, and how many times.

Why a separate object: scenarios change the network (partitions, blocks, crashes, slow nodes)
while the simulator only asks one question per datagram, ``arrivals(src, dst)``: the delays
after which copies of it reach ``dst`` (none: lost). All randomness comes from the model's own
seeded ``random.Random``, drawn in send order, so the same seed gives the same fate to every
datagram.

Rules, in the order they are applied:

- a crashed sender sends nothing and a crashed receiver gets nothing (the receiver is checked
  again on arrival, since it may crash while the datagram is in flight);
- a partition is a list of groups: two nodes in different groups cannot talk; nodes in no
  group form one more group of their own (so "split off these nodes" is one group);
- a one-way block ``(src, dst)`` drops datagrams from ``src`` to ``dst`` only;
- loss is per link (``Link.loss``), drawn independently for every copy;
- delay is ``Link.delay`` plus uniform jitter in [0, ``Link.jitter``]; reordering is what jitter
  does to datagrams sent close together;
- with probability ``Link.duplicate`` a datagram is sent twice (each copy has its own loss and
  delay);
- a slow (CPU-starved) receiver sees every inbound datagram later by a uniform draw in its
  ``(low, high)`` range, while its timers keep firing on time.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import attrs


@attrs.frozen
class Link:
    """Fault parameters of one directed link (seconds and probabilities)."""

    loss: float = 0.0
    delay: float = 0.001
    jitter: float = 0.004
    duplicate: float = 0.0

    def __attrs_post_init__(self) -> None:
        if not (0.0 <= self.loss <= 1.0 and 0.0 <= self.duplicate <= 1.0):
            raise ValueError("loss and duplicate are probabilities in [0, 1]")
        if self.delay < 0 or self.jitter < 0:
            raise ValueError("delay and jitter cannot be negative")


class Network:
    """Seeded fault model for nodes numbered 0..n-1."""

    def __init__(self, rng: random.Random, default: Link) -> None:
        self.default = default
        self.links: dict[tuple[int, int], Link] = {}
        """Overrides of ``default`` per directed link (src, dst)."""
        self.crashed: set[int] = set()
        self.blocked: set[tuple[int, int]] = set()
        """One-way blocks: datagrams from src to dst are dropped."""
        self.slow: dict[int, tuple[float, float]] = {}
        """Slow receivers: extra inbound delay, uniform in (low, high) seconds."""
        self._rng = rng
        self._group: dict[int, int] = {}

    def partition(self, groups: Iterable[Iterable[int]]) -> None:
        """Split the network into ``groups``; nodes listed nowhere form one more group."""
        self._group = {node: g + 1 for g, members in enumerate(groups) for node in members}

    def heal(self) -> None:
        """End the partition (blocks, crashes and slow nodes stay as they are)."""
        self._group = {}

    def connected(self, a: int, b: int) -> bool:
        """Whether a datagram from ``a`` can reach ``b`` at all (ignoring loss)."""
        group = self._group
        return (
            a not in self.crashed
            and b not in self.crashed
            and group.get(a, 0) == group.get(b, 0)
            and (a, b) not in self.blocked
        )

    def arrivals(self, src: int, dst: int) -> list[float]:
        """Delays after which copies of one datagram from ``src`` reach ``dst``."""
        if not self.connected(src, dst):
            return []
        link = self.links.get((src, dst), self.default)
        rand = self._rng.random
        copies = 2 if link.duplicate and rand() < link.duplicate else 1
        out: list[float] = []
        for _ in range(copies):
            if link.loss and rand() < link.loss:
                continue
            delay = link.delay + link.jitter * rand()
            slow = self.slow.get(dst)
            if slow is not None:
                delay += slow[0] + (slow[1] - slow[0]) * rand()
            out.append(delay)
        return out
