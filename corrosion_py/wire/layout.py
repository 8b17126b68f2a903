"""The wire layout of each message type, and the rules a decoded message must meet.

Everything about *which array a message becomes* lives in this file; the envelope around it
(protocol version, cluster id, tag), cbor2's settings and the size limits live in codec.py.

Layout (after ``[protocol_version, cluster_id, tag]``; ``R`` is a range ``[start, end]``):

    tag  message          fields
    1    Changeset        actor_id, version, [change, ...], R seqs, last_seq, ts
                          change = [table, pk, cid, val, col_version, db_version, site_id, cl, seq]
    2    EmptyChangeset   actor_id, R versions, ts
    3    SyncState        actor_id, [[actor, head], ...], [[actor, [R, ...]], ...],
                          [[actor, [[version, [R, ...]], ...]], ...]      (sorted by key)
    4    SyncRequest      [[actor, [need, ...]], ...]
                          need = [0, R versions] (NeedFull) | [1, version, [R seqs, ...]]
    5    SyncStart        actor_id
    6    SyncClock        ts
    7    SyncRejection    reason code (index in REJECTION_REASONS)
    8    SyncDone         (no fields)
    9    Broadcast        [piece, ...], [[actor, [R, ...]], ...] ihave, [[actor, [R, ...]], ...]
                          graft, prune, join   (piece: an encoded Changeset/EmptyChangeset)

Rules: arrays have exactly the listed number of items (extra fields need a new protocol
version); actor ids are 16-byte strings; versions are in [1, MAX_CLOCK] (a head may be 0);
seqs, last_seq, col_version and db_version in [0, MAX_CLOCK], cl in [1, MAX_CLOCK] (MAX_CLOCK =
2**53 - 1, the CRR engine's limit: nothing above it can be stored or bumped safely); ranges have
start <= end; last_seq >= seqs end; ts in [0, 2**64-1]; integers are never bools; a value is
None, an int in [-2**63, 2**63-1], a float, a str or bytes; no map repeats an actor (or a
version inside partial_need). Every violation raises DecodeError with a readable reason.

Claims a message makes about itself must agree: every change of a Changeset belongs to it (its
site_id is the changeset's actor, its db_version the changeset's version, its seq inside the
changeset's seqs). Sizes are bounded so no message can make a node build an unbounded structure:
a SyncState names at most MAX_STATE_ACTORS actors and MAX_STATE_RANGES ranges and partial
versions in all; a SyncRequest carries at most MAX_REQUEST_NEEDS needs and MAX_REQUEST_RANGES
seq ranges in all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from corrosion_py.aliases import Range, SqlValue
from corrosion_py.crdt import Change
from corrosion_py.crdt.limits import MAX_CLOCK
from corrosion_py.wire.errors import DecodeError
from corrosion_py.wire.messages import (
    REJECTION_REASONS,
    Broadcast,
    Changeset,
    EmptyChangeset,
    Message,
    Need,
    NeedFull,
    NeedPartial,
    SyncClock,
    SyncDone,
    SyncRejection,
    SyncRequest,
    SyncStart,
    SyncState,
)

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
U64_MAX = 2**64 - 1
ACTOR_ID_LEN = 16

MAX_STATE_ACTORS = 65_536
"""Actors one SyncState may name (heads, need and partial_need each)."""
MAX_STATE_RANGES = 262_144
"""Version ranges, partial versions and seq ranges one SyncState may hold in all."""
MAX_REQUEST_NEEDS = 256
"""Needs one SyncRequest may carry (clients send 10)."""
MAX_REQUEST_RANGES = 4_096
"""Seq ranges the partial needs of one SyncRequest may carry in all."""
MAX_BROADCAST_PIECES = 256
"""Pieces one Broadcast datagram may carry."""
MAX_BROADCAST_RANGES = 1_024
"""Version ranges the announcements and grafts of one Broadcast may carry in all."""

# Wire tags; never reuse a number, add new types at the end.
CHANGESET = 1
EMPTY_CHANGESET = 2
SYNC_STATE = 3
SYNC_REQUEST = 4
SYNC_START = 5
SYNC_CLOCK = 6
SYNC_REJECTION = 7
SYNC_DONE = 8
BROADCAST = 9

_NEED_FULL = 0
_NEED_PARTIAL = 1


# ---------------------------------------------------------------------------------------------
# Field rules: each takes a decoded CBOR item and returns it typed, or raises DecodeError.


def _kind(x: object) -> str:
    """How to show an offending item in an error without printing a megabyte of it."""
    return repr(x) if type(x) is int else type(x).__name__


def _array(x: object, n: int, what: str) -> list[Any]:
    if type(x) is not list or len(x) != n:
        shape = f"{len(x)} items" if type(x) is list else _kind(x)
        raise DecodeError(f"{what} must be an array of {n} items, got {shape}")
    return x


def _list(x: object, what: str) -> list[Any]:
    if type(x) is not list:
        raise DecodeError(f"{what} must be an array, got {_kind(x)}")
    return x


def _int(x: object, lo: int, hi: int, what: str) -> int:
    if type(x) is not int or not lo <= x <= hi:
        raise DecodeError(f"{what} must be an integer in [{lo}, {hi}], got {_kind(x)}")
    return x


def _version(x: object, what: str = "version") -> int:
    return _int(x, 1, MAX_CLOCK, what)


def _seq(x: object, what: str = "seq") -> int:
    return _int(x, 0, MAX_CLOCK, what)


def _ts(x: object) -> int:
    return _int(x, 0, U64_MAX, "ts")


def _str(x: object, what: str) -> str:
    if type(x) is not str:
        raise DecodeError(f"{what} must be a text string, got {_kind(x)}")
    return x


def _bytes(x: object, what: str) -> bytes:
    if type(x) is not bytes:
        raise DecodeError(f"{what} must be a byte string, got {_kind(x)}")
    return x


def _actor(x: object, what: str = "actor id") -> bytes:
    if type(x) is not bytes or len(x) != ACTOR_ID_LEN:
        shape = f"{len(x)} bytes" if type(x) is bytes else _kind(x)
        raise DecodeError(f"{what} must be {ACTOR_ID_LEN} bytes, got {shape}")
    return x


def _range(x: object, lo: int, what: str) -> Range:
    start, end = _array(x, 2, what)
    start = _int(start, lo, MAX_CLOCK, f"{what} start")
    end = _int(end, lo, MAX_CLOCK, f"{what} end")
    if start > end:
        raise DecodeError(f"{what} has start {start} > end {end}")
    return (start, end)


class _Budget:
    """How many more items a message may hold; decoding stops at the first one past it."""

    def __init__(self, left: int, what: str) -> None:
        self.left, self.what = left, what

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise DecodeError(f"{self.what}: too many items")


def _ranges(x: object, lo: int, what: str, budget: _Budget) -> tuple[Range, ...]:
    items = _list(x, f"{what} list")
    budget.take(len(items))
    return tuple(_range(r, lo, what) for r in items)


def _value(x: object) -> SqlValue:
    if x is None or type(x) is str or type(x) is bytes or type(x) is float:
        return x
    if type(x) is int and I64_MIN <= x <= I64_MAX:
        return x
    raise DecodeError(
        f"value must be NULL, a 64-bit integer, a float, text or a blob, got {_kind(x)}"
    )


# ---------------------------------------------------------------------------------------------
# Changes


def change_to_wire(c: Change) -> list[object]:
    """The 9-item array of a change, in crsql_changes' column order."""
    return [c.table, c.pk, c.cid, c.val, c.col_version, c.db_version, c.site_id, c.cl, c.seq]


def change_from_wire(x: object) -> Change:
    """A change from its array; every field checked (this is the hot path of decoding)."""
    table, pk, cid, val, cv, dbv, site_id, cl, seq = _array(x, 9, "change")
    # One combined test for the common case, then the precise checks for the message.
    if not (
        type(table) is str
        and type(pk) is bytes
        and type(cid) is str
        and type(site_id) is bytes
        and len(site_id) == ACTOR_ID_LEN
        and type(cv) is int
        and type(dbv) is int
        and type(cl) is int
        and type(seq) is int
        and 0 <= cv <= MAX_CLOCK
        and 0 <= dbv <= MAX_CLOCK
        and 1 <= cl <= MAX_CLOCK
        and 0 <= seq <= MAX_CLOCK
    ):
        _str(table, "change table")
        _bytes(pk, "change pk")
        _str(cid, "change cid")
        _int(cv, 0, MAX_CLOCK, "change col_version")
        _int(dbv, 0, MAX_CLOCK, "change db_version")
        _actor(site_id, "change site_id")
        _int(cl, 1, MAX_CLOCK, "change cl")
        _int(seq, 0, MAX_CLOCK, "change seq")
    return Change(table, pk, cid, _value(val), cv, dbv, site_id, cl, seq)


# ---------------------------------------------------------------------------------------------
# Messages: to_wire returns the fields after the tag; from_wire checks and builds the message.


def _changeset_to(m: Changeset) -> list[object]:
    changes = [change_to_wire(c) for c in m.changes]
    return [m.actor_id, m.version, changes, list(m.seqs), m.last_seq, m.ts]


def _changeset_from(f: list[Any]) -> Changeset:
    actor_id, version, changes, seqs, last_seq, ts = f
    seq_range = _range(seqs, 0, "changeset seqs")
    last = _seq(last_seq, "last_seq")
    if last < seq_range[1]:
        raise DecodeError(f"last_seq {last} is below the end of seqs {seq_range}")
    actor, v = _actor(actor_id), _version(version)
    rows = tuple(change_from_wire(c) for c in _list(changes, "changes"))
    lo, hi = seq_range
    for ch in rows:
        if ch.site_id != actor or ch.db_version != v or not lo <= ch.seq <= hi:
            raise DecodeError(
                f"a change (site, db_version {ch.db_version}, seq {ch.seq}) does not belong to "
                f"the changeset (version {v}, seqs {lo}..{hi})"
            )
    return Changeset(actor_id=actor, version=v, changes=rows, seqs=seq_range, last_seq=last,
                     ts=_ts(ts))  # fmt: skip


def _empty_to(m: EmptyChangeset) -> list[object]:
    return [m.actor_id, list(m.versions), m.ts]


def _empty_from(f: list[Any]) -> EmptyChangeset:
    actor_id, versions, ts = f
    return EmptyChangeset(_actor(actor_id), _range(versions, 1, "cleared versions"), _ts(ts))


def _state_to(m: SyncState) -> list[object]:
    heads = [[a, h] for a, h in sorted(m.heads.items())]
    need = [[a, [list(r) for r in rs]] for a, rs in sorted(m.need.items())]
    partial = [
        [a, [[v, [list(r) for r in rs]] for v, rs in sorted(per.items())]]
        for a, per in sorted(m.partial_need.items())
    ]
    return [m.actor_id, heads, need, partial]


def _pairs(x: object, what: str) -> list[tuple[Any, Any]]:
    """A list of [key, value] pairs, as maps travel (arrays keep the format compact)."""
    out = []
    for item in _list(x, what):
        k, v = _array(item, 2, f"{what} entry")
        out.append((k, v))
    return out


def _unique(d: dict[Any, Any], key: object, what: str) -> None:
    if key in d:
        raise DecodeError(f"{what} repeats a key")


def _state_from(f: list[Any]) -> SyncState:
    actor_id, heads_w, need_w, partial_w = f
    budget = _Budget(MAX_STATE_RANGES, f"a sync state holds at most {MAX_STATE_RANGES} ranges")
    heads: dict[bytes, int] = {}
    for a, h in _actors(heads_w, "heads"):
        _unique(heads, _actor(a), "heads")
        heads[a] = _int(h, 0, MAX_CLOCK, "head")
    need: dict[bytes, tuple[Range, ...]] = {}
    for a, rs in _actors(need_w, "need"):
        _unique(need, _actor(a), "need")
        need[a] = _ranges(rs, 1, "needed versions", budget)
    partial: dict[bytes, dict[int, tuple[Range, ...]]] = {}
    for a, per_w in _actors(partial_w, "partial_need"):
        _unique(partial, _actor(a), "partial_need")
        per: dict[int, tuple[Range, ...]] = {}
        for v, rs in _pairs(per_w, "partial_need versions"):
            budget.take(1)
            _unique(per, _version(v), "partial_need versions")
            per[v] = _ranges(rs, 0, "needed seqs", budget)
        partial[a] = per
    return SyncState(_actor(actor_id), heads, need, partial)


def _actors(x: object, what: str) -> list[tuple[Any, Any]]:
    """The per-actor pairs of a sync state, at most MAX_STATE_ACTORS of them."""
    if type(x) is list and len(x) > MAX_STATE_ACTORS:
        raise DecodeError(f"{what} names more than {MAX_STATE_ACTORS} actors")
    return _pairs(x, what)


def _need_to(n: Need) -> list[object]:
    if isinstance(n, NeedFull):
        return [_NEED_FULL, list(n.versions)]
    if isinstance(n, NeedPartial):
        return [_NEED_PARTIAL, n.version, [list(r) for r in n.seqs]]
    raise DecodeError(f"a need must be NeedFull or NeedPartial, got {type(n).__name__}")


def _need_from(x: object, budget: _Budget) -> Need:
    items = _list(x, "need")
    kind = items[0] if items else None
    if type(kind) is int and kind == _NEED_FULL:
        _, versions = _array(items, 2, "full need")
        return NeedFull(_range(versions, 1, "needed versions"))
    if type(kind) is int and kind == _NEED_PARTIAL:
        _, version, seqs = _array(items, 3, "partial need")
        return NeedPartial(_version(version), _ranges(seqs, 0, "needed seqs", budget))
    raise DecodeError(f"a need must start with {_NEED_FULL} or {_NEED_PARTIAL}, got {_kind(kind)}")


def _request_to(m: SyncRequest) -> list[object]:
    return [[[a, [_need_to(n) for n in needs]] for a, needs in m.needs]]


def _request_from(f: list[Any]) -> SyncRequest:
    (needs_w,) = f
    count = _Budget(MAX_REQUEST_NEEDS, f"a sync request holds at most {MAX_REQUEST_NEEDS} needs")
    seqs = _Budget(MAX_REQUEST_RANGES, f"a sync request holds at most {MAX_REQUEST_RANGES} ranges")
    needs = []
    for a, ns in _pairs(needs_w, "request"):
        items = _list(ns, "needs")
        count.take(max(1, len(items)))
        needs.append((_actor(a), tuple(_need_from(n, seqs) for n in items)))
    return SyncRequest(tuple(needs))


def _rejection_to(m: SyncRejection) -> list[object]:
    if m.reason not in REJECTION_REASONS:
        raise DecodeError(f"unknown rejection reason {m.reason!r}")
    return [REJECTION_REASONS.index(m.reason)]


def _rejection_from(f: list[Any]) -> SyncRejection:
    (code,) = f
    return SyncRejection(REJECTION_REASONS[_int(code, 0, len(REJECTION_REASONS) - 1, "reason")])


def _broadcast_to(m: Broadcast) -> list[object]:
    def entries(x: tuple[tuple[bytes, tuple[Range, ...]], ...]) -> list[object]:
        return [[a, [list(r) for r in rs]] for a, rs in x]

    return [list(m.gossip), entries(m.ihave), entries(m.graft), m.prune, m.join]


def _version_entries(
    x: object, what: str, budget: _Budget
) -> tuple[tuple[bytes, tuple[Range, ...]], ...]:
    out = []
    for a, rs in _pairs(x, what):
        budget.take(1)
        out.append((_actor(a), _ranges(rs, 1, f"{what} versions", budget)))
    return tuple(out)


def _broadcast_from(f: list[Any]) -> Broadcast:
    gossip_w, ihave_w, graft_w, prune, join = f
    pieces = _list(gossip_w, "broadcast pieces")
    if len(pieces) > MAX_BROADCAST_PIECES:
        raise DecodeError(f"a broadcast carries at most {MAX_BROADCAST_PIECES} pieces")
    if type(prune) is not bool or type(join) is not bool:
        raise DecodeError("broadcast prune and join must be booleans")
    budget = _Budget(
        MAX_BROADCAST_RANGES, f"a broadcast holds at most {MAX_BROADCAST_RANGES} ranges"
    )
    return Broadcast(
        tuple(_bytes(p, "broadcast piece") for p in pieces),
        _version_entries(ihave_w, "ihave", budget),
        _version_entries(graft_w, "graft", budget),
        prune,
        join,
    )


# tag -> (class, number of fields, to_wire, from_wire)
_Codec = tuple[type, int, Callable[[Any], list[object]], Callable[[list[Any]], Message]]
CODECS: dict[int, _Codec] = {
    CHANGESET: (Changeset, 6, _changeset_to, _changeset_from),
    EMPTY_CHANGESET: (EmptyChangeset, 3, _empty_to, _empty_from),
    SYNC_STATE: (SyncState, 4, _state_to, _state_from),
    SYNC_REQUEST: (SyncRequest, 1, _request_to, _request_from),
    SYNC_START: (SyncStart, 1, lambda m: [m.actor_id], lambda f: SyncStart(_actor(f[0]))),
    SYNC_CLOCK: (SyncClock, 1, lambda m: [m.ts], lambda f: SyncClock(_ts(f[0]))),
    SYNC_REJECTION: (SyncRejection, 1, _rejection_to, _rejection_from),
    SYNC_DONE: (SyncDone, 0, lambda m: [], lambda f: SyncDone()),
    BROADCAST: (Broadcast, 5, _broadcast_to, _broadcast_from),
}
TAGS: dict[type, int] = {cls: tag for tag, (cls, *_) in CODECS.items()}


def to_wire(msg: Message) -> tuple[int, list[object]]:
    """The tag and field arrays of a message (no checks: see ``from_wire``)."""
    tag = TAGS.get(type(msg))
    if tag is None:
        raise DecodeError(f"{type(msg).__name__} is not a wire message")
    return tag, CODECS[tag][2](msg)


def from_wire(tag: int, fields: list[Any]) -> Message:
    """The message of a known tag from its fields, every rule checked."""
    cls, n, _, build = CODECS[tag]
    if len(fields) != n:
        raise DecodeError(f"{cls.__name__} has {n} fields, got {len(fields)}")
    return build(fields)
