"""The member list: each member's state, which rumour may change it, and probe order.

Precedence (SWIM §4.2, memberlist ``aliveNode``/``suspectNode``/``deadNode``): a rumour about a
member at incarnation ``i`` replaces what we hold at incarnation ``j`` when

    rumour \\ held   ALIVE    SUSPECT   DEAD or LEFT
    ALIVE            i > j    i > j     i > j          (the member refuted, or came back)
    SUSPECT          i >= j   i > j     never          (same i: a confirmation, see below)
    DEAD or LEFT     i >= j   i >= j    never

- Only the member itself raises its incarnation (to refute, or after learning its old one on
  rejoin), so "higher incarnation alive" is the only way back from suspect, dead or left.
- A suspect rumour at the incarnation already suspected does not replace the state; it is a
  confirmation for the Lifeguard timer (suspicion.py). At a higher incarnation it replaces the
  suspicion with a fresh one.
- Rumours about unknown members add them only when alive: a node never learns a member from
  an accusation.
- Dead and left members stay listed (for ``remove_down_after``) so that stale alive rumours at
  their old incarnation cannot bring them back.

Probe order (SWIM §4.3): round-robin over the live members, shuffled again at every wrap-around;
a new member goes to a random place in the rest of the current round. Every live member is
probed once per round, which bounds the time to first detection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from corrosion_py.swim.events import MemberInfo
from corrosion_py.swim.suspicion import Suspicion
from corrosion_py.wire.swim import MemberState, NodeId, Rumour

if TYPE_CHECKING:
    import random

ALIVE, SUSPECT, DEAD, LEFT = MemberState
_DOWN = (DEAD, LEFT)
_LIVE = (ALIVE, SUSPECT)

# (rumour state, held state) -> the incarnation test; missing pairs never win.
_GT, _GE = ">", ">="
_WINS: dict[tuple[MemberState, MemberState], str] = {
    (ALIVE, ALIVE): _GT,
    (ALIVE, SUSPECT): _GT,
    (ALIVE, DEAD): _GT,
    (ALIVE, LEFT): _GT,
    (SUSPECT, ALIVE): _GE,
    (SUSPECT, SUSPECT): _GT,
    (DEAD, ALIVE): _GE,
    (DEAD, SUSPECT): _GE,
    (LEFT, ALIVE): _GE,
    (LEFT, SUSPECT): _GE,
}


def supersedes(rumour: MemberState, rumour_inc: int, held: MemberState, held_inc: int) -> bool:
    """Whether a rumour (state, incarnation) replaces the held (state, incarnation)."""
    test = _WINS.get((rumour, held))
    if test == _GT:
        return rumour_inc > held_inc
    if test == _GE:
        return rumour_inc >= held_inc
    return False


@attrs.define
class Member:
    """What this node holds about one other member."""

    node: NodeId
    incarnation: int
    state: MemberState
    source: bytes
    """Who said so: the accuser for suspect and dead, the member itself otherwise."""
    state_change: float
    suspicion: Suspicion | None = None
    suspicion_serial: int = 0
    _rumour: Rumour | None = attrs.field(default=None, init=False, repr=False, eq=False)

    def info(self) -> MemberInfo:
        """An immutable snapshot for events and callers."""
        return MemberInfo(self.node.actor_id, self.node.addr, self.incarnation, self.state)

    def rumour(self) -> Rumour:
        """The rumour that describes this member as held: one object for as long as the member
        does not change, since push-pulls list every member and a rumour encodes only once."""
        r = self._rumour
        if r is None or not self._describes(r):
            r = self._rumour = Rumour(self.state, self.node, self.incarnation, self.source)
        return r

    def adopt(self, r: Rumour) -> None:
        """Take ``r`` as this member's rumour if it says exactly what is held, so that one
        rumour object (and its encoding) passes from node to node."""
        if self._describes(r):
            self._rumour = r

    def _describes(self, r: Rumour) -> bool:
        return (
            r.state is self.state
            and r.incarnation == self.incarnation
            and r.source == self.source
            and (r.node is self.node or r.node == self.node)
        )


class MemberList:
    """Other members by actor id (this node is not listed), with the probe rotation."""

    def __init__(self) -> None:
        self._members: dict[bytes, Member] = {}
        self.get: Callable[[bytes], Member | None] = self._members.get
        """The member with an actor id, if listed (the dict's own method: it is called for
        every rumour of every packet)."""
        self._order: list[bytes] = []
        self._next = 0
        self._live = 0
        self.changes = 0
        """Bumped when a member is added or removed, changes its address, or changes state other
        than between alive and suspect: a list of members filtered by state stays valid while
        this stays put."""

    def __len__(self) -> int:
        return len(self._members)

    def all(self) -> list[Member]:
        """Every listed member, in the order they were learned."""
        return list(self._members.values())

    @property
    def live_count(self) -> int:
        """How many members are alive or suspect (kept up to date, read on every send)."""
        return self._live

    def live(self) -> list[Member]:
        """Alive and suspect members, in the order they were learned."""
        return [m for m in self._members.values() if m.state in _LIVE]

    def add(self, member: Member, rng: random.Random) -> None:
        """List a new member and give it a random place in the rest of this probe round."""
        self._members[member.node.actor_id] = member
        self._live += member.state in _LIVE
        self.changes += 1
        self._order.insert(rng.randint(self._next, len(self._order)), member.node.actor_id)

    def remove(self, actor_id: bytes) -> None:
        """Forget a member (the rotation skips it from now on)."""
        self._live -= self._members.pop(actor_id).state in _LIVE
        self.changes += 1

    def set_state(self, member: Member, state: MemberState) -> None:
        """Move a listed member to ``state`` (every state change goes through here)."""
        was_live, live = member.state in _LIVE, state in _LIVE
        self._live += live - was_live
        if state is not member.state and not (live and was_live):
            self.changes += 1
        member.state = state

    def evictable(self) -> Member | None:
        """The down member that changed state longest ago, to make room for a new one."""
        down = [m for m in self._members.values() if m.state in _DOWN]
        return min(down, key=lambda m: m.state_change) if down else None

    def next_probe_target(self, rng: random.Random) -> Member | None:
        """The next live member in the shuffled round-robin, or None if there is none."""
        for _ in range(2):
            while self._next < len(self._order):
                member = self._members.get(self._order[self._next])
                self._next += 1
                if member is not None and member.state in _LIVE:
                    return member
            self._order = [m.node.actor_id for m in self.live()]
            rng.shuffle(self._order)
            self._next = 0
        return None
