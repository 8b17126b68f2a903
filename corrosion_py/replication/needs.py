"""What to ask a peer for, and what one session was served: the sans-IO half of anti-entropy.

This node's sync state (heads, gaps, partial versions) is read off the bookkeeping; a peer's
state gives the needs. What a peer's state may make us ask for is bounded (docs/limits.md): its
head for an actor is believed only up to our ``ceiling()`` for that actor (``MAX_VERSION_JUMP``
past what we know), our own actor is never asked for, and needs stay whole ranges (the planner
cuts them into requests lazily), so computing them is O(ranges) in time and memory, whatever the
number of versions the ranges span. One session never gets a version twice (``Served``).
"""

from __future__ import annotations

from corrosion_py.aliases import Range
from corrosion_py.crdt.limits import MAX_CLOCK
from corrosion_py.replication.booked import MAX_VERSION_JUMP, BookedVersions
from corrosion_py.replication.ranges import RangeSet
from corrosion_py.wire.messages import NeedFull, NeedPartial, SyncState

FULL_NEED_VERSIONS = 10  # versions per Full need (Corrosion's chunking of requests)
MAX_SESSION_NEEDS = 4_096  # needs one sync session may send (a client's round sends <= 1,024)

Need = NeedFull | NeedPartial


def sync_state(actor_id: bytes, bookie: dict[bytes, BookedVersions]) -> SyncState:
    """What we advertise. Bookkeeping written before the limits existed may hold versions past
    MAX_CLOCK; they are cut there, so the state stays one every peer decodes."""
    heads = {actor: min(b.max, MAX_CLOCK) for actor, b in bookie.items() if b.max > 0}
    need = {
        actor: tuple(b.gaps.intersection(1, MAX_CLOCK))
        for actor, b in bookie.items()
        if b.gaps.overlaps(1, MAX_CLOCK)
    }
    partial_need = {
        actor: {
            v: tuple(p.seqs.missing(0, min(p.last_seq, MAX_CLOCK)))
            for v, p in b.partials.items()
            if v <= MAX_CLOCK
        }
        for actor, b in bookie.items()
        if b.partials
    }
    return SyncState(actor_id, heads, need, partial_need)


def believed_head(ours: SyncState, actor: bytes, claimed: int) -> int:
    """A peer's head for ``actor`` as far as we believe it: at most our ceiling for the actor
    (``BookedVersions.ceiling``: MAX_VERSION_JUMP past our own head, never past MAX_CLOCK)."""
    return min(claimed, ours.heads.get(actor, 0) + MAX_VERSION_JUMP, MAX_CLOCK)


def compute_needs(ours: SyncState, theirs: SyncState) -> dict[bytes, list[Need]]:
    """What to ask the peer whose state is ``theirs`` for, actor by actor (newest first): our
    gaps it can fill and the versions past our head up to its believed head, as whole ranges,
    and the missing seqs of our partial versions (the whole version when it holds it)."""
    out: dict[bytes, list[Need]] = {}
    for actor, claimed in theirs.heads.items():
        if actor == ours.actor_id or claimed <= 0:
            continue
        their_head = believed_head(ours, actor, claimed)
        their_partials = theirs.partial_need.get(actor, {})
        lacking = RangeSet.from_ranges(
            [*theirs.need.get(actor, ()), *((v, v) for v in their_partials)]
        )
        has = RangeSet.from_ranges(lacking.missing(1, their_head))
        wanted: list[Range] = []
        for start, end in ours.need.get(actor, ()):  # our gaps the peer can fill
            wanted += has.intersection(start, end)
        our_head = ours.heads.get(actor, 0)
        if their_head > our_head:
            wanted += has.intersection(our_head + 1, their_head)
        needs: list[Need] = [NeedFull(r) for r in sorted(wanted, reverse=True)]
        for version, missing in ours.partial_need.get(actor, {}).items():
            if has.contains(version):
                needs.append(NeedPartial(version, tuple(missing)))
            elif version in their_partials:
                # they hold what they are not missing: ask for our missing minus theirs
                theirs_missing = RangeSet.from_ranges(their_partials[version])
                ask = [r for s, e in missing for r in theirs_missing.missing(s, e)]
                if ask:
                    needs.append(NeedPartial(version, tuple(ask)))
        if needs:
            out[actor] = needs
    return out


class Served:
    """What one sync session was served already: versions (per actor) and partial versions.
    Memory is O(needs of the session), bounded by MAX_SESSION_NEEDS."""

    def __init__(self) -> None:
        self.full: dict[bytes, RangeSet] = {}
        self.partial: set[tuple[bytes, int]] = set()

    def take_full(self, actor: bytes, start: int, end: int) -> list[Range]:
        """The parts of start..=end not served yet (now counted as served), ascending."""
        served = self.full.setdefault(actor, RangeSet())
        parts = served.missing(start, end)
        served.add(start, end)
        return parts

    def take_partial(self, actor: bytes, version: int) -> bool:
        """Whether a partial need for ``version`` is to be served (only once per session)."""
        served = self.full.get(actor)
        if (actor, version) in self.partial or (served is not None and served.contains(version)):
            return False
        self.partial.add((actor, version))
        return True
