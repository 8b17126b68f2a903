"""Anti-entropy planning without the network (Corrosion's sync rules): which peers to sync
with, what to ask each of them for, and how long to wait between rounds.

Rules (everything that decides who is asked for what lives in this file):

- **Peer choice.** ``desired = clamp(len(candidates) // 100, 3, 10)``; ``2·desired`` candidates
  are sampled at random, sorted by the number of versions *we* miss from the candidate's own
  actor (most first), then by the time of the last successful sync with it (never synced first,
  then oldest first), and the first ``desired`` are kept.
- **What a server can give** is decided by the store's ``compute_needs`` (our gaps and partial
  versions it holds, and everything past our head), never re-derived here.
- **No double asking.** In one round a version (Full) or a seq of a version (Partial) is asked
  from exactly one server. Each piece of work goes to the server that covers most of it; ties go
  to the server with the fewest needs planned so far, then to the earlier server in the mapping
  (so equal servers are served round-robin; the caller shuffles the mapping to vary the order).
- **Chunking.** Full ranges are cut into chunks of ``FULL_NEED_VERSIONS`` (10) versions, newest
  first, so the newest changes arrive first and no single need is large; when everything wanted
  would take more than ``MAX_ROUND_NEEDS`` chunks, chunks grow to ``ceil(wanted /
  MAX_ROUND_NEEDS)`` versions, so a node far behind still asks for everything it can in one
  round.
- **Bounded rounds.** A round asks at most ``MAX_ROUND_NEEDS`` needs over all servers: partial
  needs first (they finish versions already half here), then full chunks taken round-robin over
  the actors, newest first; the rest waits for the next round. Chunks are cut lazily, so
  planning costs O(ranges + needs), never O(versions).

Theory of operation: a round (``replication.sync_client.SyncRound``) gathers the chosen peers'
``SyncState``s, calls ``plan_requests`` once, and gives each server its list.
Time and randomness are passed in; nothing here reads a clock or a global rng.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from corrosion_py.aliases import Range
from corrosion_py.replication.needs import FULL_NEED_VERSIONS, compute_needs
from corrosion_py.replication.ranges import RangeSet
from corrosion_py.wire.messages import Need, NeedFull, NeedPartial, SyncState

if TYPE_CHECKING:
    import random

K = TypeVar("K", bound=Hashable)
P = TypeVar("P", bound=Hashable)

MIN_PEERS = 3
MAX_PEERS = 10
MIN_INTERVAL = 1.0  # seconds between rounds (Corrosion's min_sync_backoff)
MAX_INTERVAL = 15.0  # (max_sync_backoff)
MAX_ROUND_NEEDS = 1_024  # needs one round asks for, over all its servers

Plan = dict[P, list[tuple[bytes, list[Need]]]]
"""Per server: (actor, needs) pairs, one per actor, needs newest first."""


# -- peer choice --------------------------------------------------------------------------------


def desired_peers(candidates: int) -> int:
    """How many peers one round syncs with: clamp(candidates / 100, 3, 10)."""
    return max(MIN_PEERS, min(MAX_PEERS, candidates // 100))


def missing_versions(ours: SyncState) -> dict[bytes, int]:
    """Per actor, how many of its versions we lack (in gaps, or only partly received): the
    ``missing`` input of ``choose_peers`` when candidates are actor ids."""
    out: dict[bytes, int] = {}
    for actor, gaps in ours.need.items():
        out[actor] = out.get(actor, 0) + sum(end - start + 1 for start, end in gaps)
    for actor, partials in ours.partial_need.items():
        out[actor] = out.get(actor, 0) + len(partials)
    return out


def choose_peers(
    candidates: Sequence[K],
    *,
    rng: random.Random,
    missing: Mapping[K, int],
    last_sync: Mapping[K, float],
) -> list[K]:
    """The peers of one round, best first (see the module rules).

    ``candidates`` are members other than this node, in our cluster; ``missing[c]`` is how many
    versions of ``c``'s own actor we lack; ``last_sync[c]`` the time of the last successful sync
    with ``c`` (absent: never).
    """
    desired = desired_peers(len(candidates))
    sample = rng.sample(list(candidates), min(len(candidates), 2 * desired))
    sample.sort(key=lambda c: (-missing.get(c, 0), last_sync.get(c, float("-inf"))))
    return sample[:desired]


def jittered_interval(
    rng: random.Random, low: float = MIN_INTERVAL, high: float = MAX_INTERVAL
) -> float:
    """Seconds to wait before the next round: uniform in [low, high]."""
    return rng.uniform(low, high)


# -- request planning ---------------------------------------------------------------------------


def _coverage(offer: RangeSet, wanted: RangeSet) -> list[Range]:
    return [r for start, end in wanted for r in offer.intersection(start, end)]


def _count(ranges: list[Range]) -> int:
    return sum(end - start + 1 for start, end in ranges)


def _assign(
    wanted: RangeSet, offers: dict[int, RangeSet], load: list[int]
) -> list[tuple[int, list[Range]]]:
    """Split ``wanted`` among the servers of ``offers`` (index -> what it holds): repeatedly the
    server covering most of what is left, ties to the least loaded, then the lowest index."""
    out: list[tuple[int, list[Range]]] = []
    left = wanted.copy()
    while left:
        best, best_cover = -1, []
        best_key: tuple[int, int, int] | None = None
        for index, offer in offers.items():
            cover = _coverage(offer, left)
            if not cover:
                continue
            key = (-_count(cover), load[index], index)
            if best_key is None or key < best_key:
                best, best_cover, best_key = index, cover, key
        if best < 0:
            break  # nobody holds the rest
        out.append((best, best_cover))
        load[best] += 1
        for start, end in best_cover:
            left.remove(start, end)
    return out


def _chunks(ranges: RangeSet, size: int) -> Iterator[Range]:
    """``ranges`` cut into chunks of ``size`` versions, newest first, one at a time."""
    for start, end in reversed(list(ranges)):
        for hi in range(end, start - 1, -size):
            yield (max(start, hi - size + 1), hi)


def plan_requests(
    ours: SyncState, theirs: Mapping[P, SyncState], budget: int = MAX_ROUND_NEEDS
) -> Plan[P]:
    """What to ask each server for in this round, given our state and theirs (see the rules):
    at most ``budget`` needs in all.

    Every server of ``theirs`` is a key of the result (with an empty list when it has nothing
    for us), so the caller can close every session the same way.
    """
    servers = list(theirs)
    # what each server can give: actor -> server index -> versions / (version -> seqs)
    full: dict[bytes, dict[int, RangeSet]] = {}
    partial: dict[bytes, dict[int, dict[int, RangeSet]]] = {}
    for index, server in enumerate(servers):
        for actor, needs in compute_needs(ours, theirs[server]).items():
            for need in needs:
                if isinstance(need, NeedFull):
                    offer = full.setdefault(actor, {}).setdefault(index, RangeSet())
                    offer.add(*need.versions)
                else:
                    by_server = partial.setdefault(actor, {}).setdefault(need.version, {})
                    seqs = by_server.setdefault(index, RangeSet())
                    for start, end in need.seqs:
                        seqs.add(start, end)

    load = [0] * len(servers)
    left = budget
    partial_plan: list[dict[bytes, list[Need]]] = [{} for _ in servers]
    for actor, versions in partial.items():
        for version in sorted(versions, reverse=True):
            offers_v = versions[version]
            union = RangeSet.from_ranges(r for offer in offers_v.values() for r in offer)
            for index, ranges in _assign(union, offers_v, load):
                if left <= 0:
                    break
                left -= 1
                partial_plan[index].setdefault(actor, []).append(
                    NeedPartial(version, tuple(ranges))
                )
    full_plan: list[dict[bytes, list[Need]]] = [{} for _ in servers]
    unions = {
        actor: RangeSet.from_ranges(r for offer in offers.values() for r in offer)
        for actor, offers in full.items()
    }
    wanted = sum(union.count() for union in unions.values())
    size = max(FULL_NEED_VERSIONS, -(-wanted // max(1, budget)))
    turns = [(actor, _chunks(union, size)) for actor, union in unions.items()]
    while turns and left > 0:  # round-robin over the actors, newest chunks first
        still = []
        for actor, chunks in turns:
            chunk = next(chunks, None)
            if chunk is None or left <= 0:
                continue
            still.append((actor, chunks))
            for index, ranges in _assign(RangeSet([chunk]), full[actor], load):
                needs = full_plan[index].setdefault(actor, [])
                needs += [NeedFull(r) for r in sorted(ranges, reverse=True)]
                left -= len(ranges)
        turns = still
    planned: list[dict[bytes, list[Need]]] = [{} for _ in servers]
    for index in range(len(servers)):
        for part in (full_plan[index], partial_plan[index]):
            for actor, needs in part.items():
                planned[index].setdefault(actor, []).extend(needs)
    return {server: list(planned[index].items()) for index, server in enumerate(servers)}
