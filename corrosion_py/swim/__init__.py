"""SWIM + Lifeguard membership as a sans-IO state machine (no trio, no sockets).

    swim = Swim(actor_id=aid, addr=("10.0.0.1", 7946), cluster_id=7, rng=random.Random(seed),
                config=LAN)
    effects = swim.join(now, [("10.0.0.2", 7946)])        # or join(now, []) to found a cluster
    effects = swim.handle_bytes(now, src_addr, datagram)   # or handle_datagram with a Packet
    effects = swim.handle_timer(now, token)                # a token from an earlier SetTimer
    for e in effects: Send -> encode_packet + sendto; SetTimer -> call back later; Notify -> app;
        PushPull -> stream e.members to e.addr, then swim.handle_push_pull(now, addr, answer)

Modules, one concern each (memberlist's layout): ``core`` (the protocol: probing, relays,
join, leave, refutation, dissemination), ``members`` (states, precedence, probe order),
``suspicion`` (the Lifeguard timer), ``awareness`` (local health), ``rumours`` (the transmit-
limited queue), ``config`` (knobs, presets, scaling formulas), ``events`` (effects, timers and
events). Packets and their bytes are in ``corrosion_py.wire.swim``.
"""

from corrosion_py.addr import Addr
from corrosion_py.swim.core import Swim
from corrosion_py.swim.events import (
    Effect,
    GossipTick,
    Joined,
    JoinRetry,
    LeaveComplete,
    LeaveDone,
    MemberDown,
    MemberInfo,
    MemberLeft,
    MemberRecovered,
    MemberRejoined,
    MembershipEvent,
    MemberSuspect,
    MemberUp,
    Notify,
    ProbeTick,
    ProbeTimeout,
    PushPull,
    PushPullTick,
    ReconnectTick,
    RelayTimeout,
    RemoveDown,
    Send,
    SetTimer,
    SuspectTimeout,
    Timer,
)
from corrosion_py.swim.presets import LAN, LOCAL, WAN, SwimConfig
from corrosion_py.wire.swim import MemberState, NodeId, Packet, Rumour

__all__ = [
    "LAN",
    "LOCAL",
    "WAN",
    "Addr",
    "Effect",
    "GossipTick",
    "JoinRetry",
    "Joined",
    "LeaveComplete",
    "LeaveDone",
    "MemberDown",
    "MemberInfo",
    "MemberLeft",
    "MemberRecovered",
    "MemberRejoined",
    "MemberState",
    "MemberSuspect",
    "MemberUp",
    "MembershipEvent",
    "NodeId",
    "Notify",
    "Packet",
    "ProbeTick",
    "ProbeTimeout",
    "PushPull",
    "PushPullTick",
    "ReconnectTick",
    "RelayTimeout",
    "RemoveDown",
    "Rumour",
    "Send",
    "SetTimer",
    "SuspectTimeout",
    "Swim",
    "SwimConfig",
    "Timer",
]
