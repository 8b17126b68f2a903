"""What the core asks of its host (effects), the timers it sets, and the events it reports.

A core method returns a list of effects, in order (foca's three outputs):

- ``Send(addr, packet)``: encode ``packet`` (``wire.swim.encode_packet``) and send it to
  ``addr``; it already fits ``max_packet_size``.
- ``SetTimer(delay, token)``: call ``handle_timer(now, token)`` once, ``delay`` seconds from now.
  Every timer must be delivered eventually (late is fine, lost is not); the core ignores tokens
  that went stale meanwhile, so a host never cancels anything. A host that finds a datagram and a
  timer both due must hand over the datagram first, or it misreads an ack already received.
- ``Notify(event)``: a membership event for the application.
- ``PushPull(addr, members)``: open a stream to ``addr``, send ``members`` (this node's full
  list), and hand the peer's answer to ``handle_push_pull``. The serving side calls
  ``handle_push_pull`` with what it received *first*, then answers with ``push_pull_state()``,
  so a member that learns it is held dead answers with its refutation. A host without streams
  may drop the effect: UDP join and gossip still work, partitions just heal slower.
"""

from __future__ import annotations

from typing import TypeAlias

import attrs

from corrosion_py.addr import Addr
from corrosion_py.wire.swim import MemberState, Packet, Rumour


@attrs.frozen
class MemberInfo:
    """A snapshot of one member as this node sees it."""

    actor_id: bytes
    addr: Addr
    incarnation: int
    state: MemberState


# Events -------------------------------------------------------------------------------------


@attrs.frozen
class MemberUp:
    """A member this node did not know is alive."""

    member: MemberInfo


@attrs.frozen
class MemberSuspect:
    """A live member is suspected (it may still refute)."""

    member: MemberInfo


@attrs.frozen
class MemberRecovered:
    """A suspected member refuted the suspicion with a higher incarnation."""

    member: MemberInfo


@attrs.frozen
class MemberDown:
    """A member was declared dead."""

    member: MemberInfo


@attrs.frozen
class MemberLeft:
    """A member left gracefully (never reported as down)."""

    member: MemberInfo


@attrs.frozen
class MemberRejoined:
    """A member that was down or had left is alive again at a higher incarnation."""

    member: MemberInfo


@attrs.frozen
class Joined:
    """This node received a member list from a bootstrap address."""

    via: Addr


@attrs.frozen
class LeaveComplete:
    """This node's leave has been told; the host can stop it now."""


MembershipEvent: TypeAlias = (
    MemberUp
    | MemberSuspect
    | MemberRecovered
    | MemberDown
    | MemberLeft
    | MemberRejoined
    | Joined
    | LeaveComplete
)


# Timers -------------------------------------------------------------------------------------


@attrs.frozen
class ProbeTick:
    """Judge the last probe, start the next one."""


@attrs.frozen
class ProbeTimeout:
    """The direct ack of probe ``seq`` is late: ask relays."""

    seq: int


@attrs.frozen
class RelayTimeout:
    """As a relay, our ping ``seq`` got no ack: nack the requester."""

    seq: int


@attrs.frozen
class SuspectTimeout:
    """Declare the member dead if this is still its current suspicion."""

    actor_id: bytes
    incarnation: int
    serial: int


@attrs.frozen
class GossipTick:
    """Send queued rumours to a few members."""


@attrs.frozen
class JoinRetry:
    """Ask the bootstrap addresses again unless a member list arrived."""

    attempt: int


@attrs.frozen
class RemoveDown:
    """Forget a dead or left member if it has not changed since."""

    actor_id: bytes
    incarnation: int
    state_change: float


@attrs.frozen
class LeaveDone:
    """Stop lingering after a leave."""


@attrs.frozen
class PushPullTick:
    """Exchange full member lists with one random alive member."""


@attrs.frozen
class ReconnectTick:
    """Exchange full member lists with one random member held dead (partition healing)."""


Timer: TypeAlias = (
    ProbeTick
    | ProbeTimeout
    | RelayTimeout
    | SuspectTimeout
    | GossipTick
    | JoinRetry
    | RemoveDown
    | LeaveDone
    | PushPullTick
    | ReconnectTick
)


# Effects ------------------------------------------------------------------------------------


@attrs.frozen
class Send:
    """Send ``packet`` to ``addr``."""

    addr: Addr
    packet: Packet


@attrs.frozen
class SetTimer:
    """Deliver ``token`` back through ``handle_timer`` after ``delay`` seconds."""

    delay: float
    token: Timer


@attrs.frozen
class Notify:
    """Report ``event`` to the application."""

    event: MembershipEvent


@attrs.frozen
class PushPull:
    """Exchange full member lists with ``addr`` over a stream (see the module doc)."""

    addr: Addr
    members: tuple[Rumour, ...]


Effect: TypeAlias = Send | SetTimer | Notify | PushPull
