"""Deciding the fate of a datagram: lost, delivered once or twice, and after what delay.

The kernel here has no netem, and the simulator needs the same faults, so they are injected in
our own transport. Sans-IO: the decision takes a seeded `random.Random`, so a run is repeatable.
"""

from __future__ import annotations

import random

import attrs

from corrosion_py.addr import Addr


def _probability(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a probability in [0, 1], got {value}")


@attrs.frozen
class FaultPlan:
    """Faults applied to outgoing datagrams. `blocked` holds one-way (src, dst) links that drop
    everything; `delay` is a (min, max) seconds range, drawn uniformly per copy."""

    loss: float = attrs.field(default=0.0, validator=_probability)
    duplicate: float = attrs.field(default=0.0, validator=_probability)
    delay: tuple[float, float] = (0.0, 0.0)
    blocked: frozenset[tuple[Addr, Addr]] = frozenset()

    @property
    def active(self) -> bool:
        return bool(self.loss or self.duplicate or self.delay[1] > 0 or self.blocked)


def deliveries(plan: FaultPlan, rng: random.Random, src: Addr, dst: Addr) -> list[float]:
    """The delays (seconds) of the copies of one datagram that arrive; empty when it is lost."""
    if (src, dst) in plan.blocked or rng.random() < plan.loss:
        return []
    copies = 2 if rng.random() < plan.duplicate else 1
    low, high = plan.delay
    return [rng.uniform(low, high) if high > 0 else 0.0 for _ in range(copies)]
