"""The one effect dispatch every SWIM host shares: each effect to its method, in order, and an
object that is no effect refused loudly instead of skipped."""

from __future__ import annotations

import pytest

from corrosion_py.addr import Addr
from corrosion_py.swim import (
    LeaveComplete,
    MembershipEvent,
    MemberState,
    Notify,
    ProbeTick,
    PushPull,
    Send,
    SetTimer,
    Timer,
)
from corrosion_py.swim.host import carry_out
from corrosion_py.wire.swim import Join, NodeId, Packet, Rumour

ADDR = ("10.0.0.2", 7946)
NODE = NodeId(b"\x01" * 16, ("10.0.0.1", 7946))
PACKET = Packet(7, NODE, 0, Join())
RUMOURS = (Rumour(MemberState.ALIVE, NODE, 0, NODE.actor_id),)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def send(self, addr: Addr, packet: Packet) -> None:
        self.calls.append(("send", addr, packet))

    def set_timer(self, delay: float, token: Timer) -> None:
        self.calls.append(("set_timer", delay, token))

    def notify(self, event: MembershipEvent) -> None:
        self.calls.append(("notify", event))

    def push_pull(self, addr: Addr, members: tuple[Rumour, ...]) -> None:
        self.calls.append(("push_pull", addr, members))


def test_each_effect_goes_to_its_method_in_order() -> None:
    host = Recorder()
    carry_out(
        [
            SetTimer(0.5, ProbeTick()),
            Send(ADDR, PACKET),
            Notify(LeaveComplete()),
            PushPull(ADDR, RUMOURS),
            Send(ADDR, PACKET),
        ],
        host,
    )
    assert host.calls == [
        ("set_timer", 0.5, ProbeTick()),
        ("send", ADDR, PACKET),
        ("notify", LeaveComplete()),
        ("push_pull", ADDR, RUMOURS),
        ("send", ADDR, PACKET),
    ]


def test_what_is_no_effect_is_refused() -> None:
    host = Recorder()
    with pytest.raises(TypeError, match="not a SWIM effect"):
        carry_out([Send(ADDR, PACKET), ProbeTick()], host)  # type: ignore[list-item]
    assert host.calls == [("send", ADDR, PACKET)]
