"""The host's side of the effect contract (events.py), written once: every host (the trio
runtime in net/membership.py, the simulator's SWIM host) implements `Host` and hands each list
of effects a core returns to ``carry_out``, which calls one method per effect, in order.

Dispatch is by exact type (effects are final attrs classes): cheaper than ``isinstance`` on the
simulator's hot path, and an effect type added later fails loudly instead of being skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from corrosion_py.addr import Addr
from corrosion_py.swim.events import (
    Effect,
    MembershipEvent,
    Notify,
    PushPull,
    Send,
    SetTimer,
    Timer,
)
from corrosion_py.wire.swim import Packet, Rumour


class Host(Protocol):
    """What a host does with each effect (see events.py for the rules of each)."""

    def send(self, addr: Addr, packet: Packet) -> None: ...

    def set_timer(self, delay: float, token: Timer) -> None: ...

    def notify(self, event: MembershipEvent) -> None: ...

    def push_pull(self, addr: Addr, members: tuple[Rumour, ...]) -> None: ...


def carry_out(effects: Iterable[Effect], host: Host) -> None:
    """Hand each effect to ``host``, in order."""
    for effect in effects:
        if type(effect) is Send:
            host.send(effect.addr, effect.packet)
        elif type(effect) is SetTimer:
            host.set_timer(effect.delay, effect.token)
        elif type(effect) is Notify:
            host.notify(effect.event)
        elif type(effect) is PushPull:
            host.push_pull(effect.addr, effect.members)
        else:
            raise TypeError(f"not a SWIM effect: {effect!r}")
