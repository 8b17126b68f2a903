"""What a node believes of a changeset it receives, before it is relayed or queued for apply.

Everything that decides whether a received claim is believed at the door lives in this file
(the store's apply rules check again what they can: own actor, version jumps, partial bounds;
docs/limits.md lists every bound). A refusal is a reason string the host counts.

Broadcast (``broadcast_refusal``), for a datagram that decoded and that the bookkeeping does not
already hold (a known piece, such as our own changeset relayed back, is a duplicate, not a
refusal):

- **Own actor** ("own_actor"): a node is the only authority on its own versions. Nothing about
  them is believed, nor relayed (a relayed forgery about our future versions would make peers
  skip our real writes).
- **Empty ranges** ("broadcast_empty"): an ``EmptyChangeset`` marks versions known *without*
  data, the one claim that can hide real writes. Nothing originates empties by broadcast (they
  come from sync servers answering needs), so a broadcast one is a forgery or a bug.
- **Unknown actor** ("unknown_actor"): the actor must be a member (any state) or already in the
  bookkeeping (learnt through sync with a member). A new member's first writes may arrive
  before its join; sync brings them.
- **Version jump** ("version_jump"): the version must be at most the actor's ``ceiling()`` (its
  highest known version + MAX_VERSION_JUMP). A node that far behind catches up by sync.

Sync (``Solicited``): a session believes only answers to what it asked that server for. A
changeset must be of a version it asked (a full range, or a partial version); an empty range is
cut to the versions it asked in full ("unsolicited" counts what is dropped). Since needs are
planned from heads clamped to our ceiling, nothing a server sends can reach past it, and a
lying server can at most mark as cleared the versions we asked it for.

Sans-IO: pure functions of the bookkeeping snapshot and the plan; the agent's gossiper and sync
client, and the simulator, call them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from corrosion_py.replication.booked import MAX_VERSION_JUMP, BookedVersions
from corrosion_py.replication.ranges import RangeSet
from corrosion_py.wire.messages import EmptyChangeset, Item, Need, NeedFull


def broadcast_refusal(
    item: Item,
    *,
    own_actor: bytes,
    booked: BookedVersions | None,
    is_member: Callable[[bytes], bool],
) -> str | None:
    """Why a broadcast item is not believed (see the module rules), or None to take it;
    ``booked`` is the bookkeeping of the item's actor."""
    if item.actor_id == own_actor:
        return "own_actor"
    if isinstance(item, EmptyChangeset):
        return "broadcast_empty"
    if booked is None and not is_member(item.actor_id):
        return "unknown_actor"
    ceiling = booked.ceiling() if booked is not None else MAX_VERSION_JUMP
    if item.version > ceiling:
        return "version_jump"
    return None


class Solicited:
    """What one sync session asked its server for: the only answers it believes.

    Memory is O(needs sent), which the planner bounds per round.
    """

    def __init__(self, plan: Sequence[tuple[bytes, Sequence[Need]]]) -> None:
        self.full: dict[bytes, RangeSet] = {}
        self.partial: set[tuple[bytes, int]] = set()
        for actor, needs in plan:
            for need in needs:
                if isinstance(need, NeedFull):
                    self.full.setdefault(actor, RangeSet()).add(*need.versions)
                else:
                    self.partial.add((actor, need.version))

    def admit(self, item: Item) -> list[Item]:
        """The parts of ``item`` that answer a need of this session (empty when none do)."""
        asked = self.full.get(item.actor_id)
        if isinstance(item, EmptyChangeset):
            if asked is None:
                return []
            parts = asked.intersection(*item.versions)
            if parts == [item.versions]:
                return [item]
            return [EmptyChangeset(item.actor_id, part, item.ts) for part in parts]
        if (item.actor_id, item.version) in self.partial:
            return [item]
        return [item] if asked is not None and asked.contains(item.version) else []
