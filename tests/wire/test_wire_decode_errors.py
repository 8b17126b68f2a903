"""Bad input is refused with the right DecodeError subclass, and bad output with EncodeError."""

from __future__ import annotations

import contextlib
from typing import Any

import cbor2
import pytest

from corrosion_py import wire
from corrosion_py.crdt import Change
from corrosion_py.wire import layout

A = bytes(range(16))
I64_MAX = 2**63 - 1
CH: list[Any] = ["t", b"\x01\x09\x01", "c", 1, 1, 1, A, 1, 0]


def raw(*items: Any, protocol: int = 1, cluster: int = 7) -> bytes:
    """Hand-built wire bytes: [protocol, cluster, *items], canonical CBOR."""
    return cbor2.dumps([protocol, cluster, *items], canonical=True)


def changeset(*, changes: Any = None, **kw: Any) -> bytes:
    fields = {"actor": A, "version": 1, "seqs": [0, 0], "last_seq": 0, "ts": 0} | kw
    return raw(
        layout.CHANGESET,
        fields["actor"],
        fields["version"],
        [CH] if changes is None else changes,
        fields["seqs"],
        fields["last_seq"],
        fields["ts"],
    )


def with_change(**kw: Any) -> bytes:
    names = ["table", "pk", "cid", "val", "cv", "dbv", "site", "cl", "seq"]
    ch = [kw.get(n, v) for n, v in zip(names, CH, strict=True)]
    return changeset(changes=[ch])


def test_hand_built_changeset_is_valid() -> None:
    msg = wire.decode(changeset(), cluster_id=7)
    assert msg == wire.Changeset(A, 1, (Change(*CH),), (0, 0), 0, 0)


def test_wrong_cluster_id() -> None:
    data = wire.encode(wire.SyncDone(), cluster_id=7)
    with pytest.raises(wire.WrongClusterError) as info:
        wire.decode(data, cluster_id=8)
    assert (info.value.expected, info.value.received) == (8, 7)
    assert wire.decode(data) == wire.SyncDone()  # None accepts any cluster
    assert wire.decode_envelope(data).cluster_id == 7


@pytest.mark.parametrize("protocol", [0, 2, 255, -1, "1", 1.0, None, True])
def test_wrong_protocol_version(protocol: Any) -> None:
    data = cbor2.dumps([protocol, 7, layout.SYNC_DONE])
    with pytest.raises(wire.ProtocolVersionError):
        wire.decode(data, cluster_id=7)


def test_protocol_version_is_checked_before_the_rest() -> None:
    """Another version's layout is not interpreted: not even its cluster id or tag."""
    with pytest.raises(wire.ProtocolVersionError):
        wire.decode(cbor2.dumps([2, "anything", {"new": "layout"}]), cluster_id=7)


@pytest.mark.parametrize("tag", [0, 10, 100, 2**64 - 1])
def test_unknown_tag_is_its_own_error(tag: int) -> None:
    with pytest.raises(wire.UnknownMessageError) as info:
        wire.decode(raw(tag, "whatever", [1, 2]), cluster_id=7)
    assert info.value.tag == tag


def test_bad_envelopes() -> None:
    for data in [
        cbor2.dumps(1),
        cbor2.dumps([]),
        cbor2.dumps([1, 7]),
        cbor2.dumps({"a": 1}),
        raw("1"),  # tag not an int
        raw(-1),
        cbor2.dumps([1, -1, layout.SYNC_DONE]),
        cbor2.dumps([1, 65536, layout.SYNC_DONE]),
        cbor2.dumps([1, True, layout.SYNC_DONE]),
        b"",
    ]:
        with pytest.raises(wire.DecodeError):
            wire.decode(data, cluster_id=7)


def test_non_bytes_input_is_a_decode_error() -> None:
    for data in [None, 3, "text", object()]:
        with pytest.raises(wire.DecodeError):
            wire.decode(data, cluster_id=7)  # type: ignore[arg-type]
    assert wire.decode(bytearray(raw(layout.SYNC_DONE))) == wire.SyncDone()
    assert wire.decode(memoryview(raw(layout.SYNC_DONE))) == wire.SyncDone()


BAD = {
    # changeset fields
    "short actor": changeset(actor=A[:15]),
    "long actor": changeset(actor=A + b"x"),
    "text actor": changeset(actor="0" * 16),
    "version 0": changeset(version=0),
    "version negative": changeset(version=-1),
    "version > i64": changeset(version=2**63),
    "version > MAX_CLOCK": changeset(version=2**53),
    "version i64 max": changeset(version=2**63 - 1),
    "seqs end > MAX_CLOCK": changeset(seqs=[0, 2**53], last_seq=2**53),
    "last_seq > MAX_CLOCK": changeset(last_seq=2**53),
    "version bool": changeset(version=True),
    "version float": changeset(version=1.0),
    "seqs reversed": changeset(seqs=[2, 1], last_seq=5),
    "seqs negative": changeset(seqs=[-1, 0]),
    "seqs 3 items": changeset(seqs=[0, 0, 0]),
    "seqs not array": changeset(seqs=0),
    "last_seq below seqs": changeset(seqs=[0, 3], last_seq=2),
    "ts negative": changeset(ts=-1),
    "ts > u64": changeset(ts=2**64),
    "ts float": changeset(ts=1.5),
    "changes not array": changeset(changes=b"x"),
    "change not array": changeset(changes=[1]),
    "change 8 fields": changeset(changes=[CH[:8]]),
    "change 10 fields": changeset(changes=[[*CH, 0]]),
    "extra field": raw(layout.CHANGESET, A, 1, [CH], [0, 0], 0, 0, 0),
    "missing field": raw(layout.CHANGESET, A, 1, [CH], [0, 0], 0),
    # change fields
    "table bytes": with_change(table=b"t"),
    "pk text": with_change(pk="pk"),
    "cid int": with_change(cid=1),
    "val bool": with_change(val=True),
    "val > i64": with_change(val=2**63),
    "val < i64": with_change(val=-(2**63) - 1),
    "val array": with_change(val=[1]),
    "val map": with_change(val={"a": 1}),
    "val undefined": with_change(val=cbor2.undefined),
    "val simple": with_change(val=cbor2.CBORSimpleValue(16)),
    "col_version negative": with_change(cv=-1),
    "db_version negative": with_change(dbv=-1),
    "db_version bool": with_change(dbv=False),
    "site 15 bytes": with_change(site=A[:15]),
    "cl 0": with_change(cl=0),
    "cl > i64": with_change(cl=2**63),
    "cl > MAX_CLOCK": with_change(cl=2**53),
    "col_version > MAX_CLOCK": with_change(cv=2**53),
    "col_version i64 max": with_change(cv=2**63 - 1),
    "db_version > MAX_CLOCK": with_change(dbv=2**53),
    "seq negative": with_change(seq=-1),
    "seq > MAX_CLOCK": with_change(seq=2**53),
    # a change must belong to its changeset
    "change of another actor": with_change(site=bytes(16)),
    "change of another version": with_change(dbv=2),
    "change seq outside seqs": with_change(seq=1),
    # other messages
    "empty changeset versions from 0": raw(layout.EMPTY_CHANGESET, A, [0, 1], 0),
    "empty changeset reversed": raw(layout.EMPTY_CHANGESET, A, [3, 2], 0),
    "empty changeset to 2**63-1": raw(layout.EMPTY_CHANGESET, A, [1, 2**63 - 1], 0),
    "empty changeset past MAX_CLOCK": raw(layout.EMPTY_CHANGESET, A, [1, 2**53], 0),
    "state head > MAX_CLOCK": raw(layout.SYNC_STATE, A, [[A, 2**53]], [], []),
    "state too many actors": raw(
        layout.SYNC_STATE, A, [[i.to_bytes(16, "big"), 1] for i in range(65_537)], [], []
    ),
    "state too many ranges": raw(
        layout.SYNC_STATE, A, [], [[A, [[2 * i + 1, 2 * i + 1] for i in range(262_145)]]], []
    ),
    "state too many partial versions": raw(
        layout.SYNC_STATE, A, [], [], [[A, [[v, []] for v in range(1, 262_146)]]]
    ),
    "request too many needs": raw(layout.SYNC_REQUEST, [[A, [[0, [1, 1]]] * 257]]),
    "request too many seq ranges": raw(
        layout.SYNC_REQUEST, [[A, [[1, 1, [[i, i] for i in range(4_097)]]]]]
    ),
    "request need past MAX_CLOCK": raw(layout.SYNC_REQUEST, [[A, [[0, [1, 2**53]]]]]),
    "state head negative": raw(layout.SYNC_STATE, A, [[A, -1]], [], []),
    "state duplicate head": raw(layout.SYNC_STATE, A, [[A, 1], [A, 2]], [], []),
    "state head not pair": raw(layout.SYNC_STATE, A, [[A, 1, 2]], [], []),
    "state heads as map": raw(layout.SYNC_STATE, A, {A: 1}, [], []),
    "state need from 0": raw(layout.SYNC_STATE, A, [], [[A, [[0, 1]]]], []),
    "state duplicate need": raw(layout.SYNC_STATE, A, [], [[A, []], [A, []]], []),
    "state partial version 0": raw(layout.SYNC_STATE, A, [], [], [[A, [[0, []]]]]),
    "state partial dup version": raw(layout.SYNC_STATE, A, [], [], [[A, [[1, []], [1, []]]]]),
    "state partial dup actor": raw(layout.SYNC_STATE, A, [], [], [[A, []], [A, []]]),
    "state partial bad seqs": raw(layout.SYNC_STATE, A, [], [], [[A, [[1, [[2, 1]]]]]]),
    "request need kind 2": raw(layout.SYNC_REQUEST, [[A, [[2, [1, 1]]]]]),
    "request need kind text": raw(layout.SYNC_REQUEST, [[A, [["0", [1, 1]]]]]),
    "request need kind bool": raw(layout.SYNC_REQUEST, [[A, [[False, [1, 1]]]]]),
    "request need empty": raw(layout.SYNC_REQUEST, [[A, [[]]]]),
    "request full from 0": raw(layout.SYNC_REQUEST, [[A, [[0, [0, 1]]]]]),
    "request full extra": raw(layout.SYNC_REQUEST, [[A, [[0, [1, 1], 5]]]]),
    "request partial version 0": raw(layout.SYNC_REQUEST, [[A, [[1, 0, [[0, 1]]]]]]),
    "request partial bad range": raw(layout.SYNC_REQUEST, [[A, [[1, 1, [[1, 0]]]]]]),
    "request bad actor": raw(layout.SYNC_REQUEST, [[b"x", []]]),
    "start bad actor": raw(layout.SYNC_START, b""),
    "clock negative": raw(layout.SYNC_CLOCK, -5),
    "rejection unknown code": raw(layout.SYNC_REJECTION, len(wire.REJECTION_REASONS)),
    "rejection text": raw(layout.SYNC_REJECTION, "max_concurrency"),
    "done with field": raw(layout.SYNC_DONE, 0),
}


@pytest.mark.parametrize("name", list(BAD))
def test_rule_violations_are_refused(name: str) -> None:
    with pytest.raises(wire.DecodeError) as info:
        wire.decode(BAD[name], cluster_id=7)
    assert type(info.value) is wire.DecodeError, "a field error is a plain DecodeError"
    assert "unexpected" not in str(info.value)


def test_cbor_tags_are_refused() -> None:
    for tag, payload in [
        (2, b"\x01" * 9),  # bignum
        (3, b"\x01"),
        (5, [2**63, 1]),  # bigfloat: would compute 2**(2**63)
        (0, "2020-01-01T00:00:00Z"),
        (1, 0),
        (28, [1]),  # shareable
        (35, "a+"),  # regex
        (258, [1, 2]),  # set
        (55799, 1),  # self-describe
        (1000, 1),  # unknown to cbor2
    ]:
        data = raw(layout.SYNC_CLOCK, cbor2.CBORTag(tag, payload))
        with pytest.raises(wire.DecodeError):
            wire.decode(data, cluster_id=7)
        # also as the whole message
        with pytest.raises(wire.DecodeError):
            wire.decode(cbor2.dumps(cbor2.CBORTag(tag, payload)), cluster_id=7)


def test_builtin_tag_list_matches_cbor2() -> None:
    """If a cbor2 upgrade decodes more tags natively, the codec's refusal list must grow."""
    seen: list[int] = []

    def hook(tag: cbor2.CBORTag, immutable: bool) -> object:
        seen.append(tag.tag)
        return None

    candidates = [*range(2000), 43000, 55799, 55800, 2**16, 2**32, 2**64 - 1]
    for t in candidates:
        with contextlib.suppress(cbor2.CBORDecodeError):
            cbor2.loads(cbor2.dumps(cbor2.CBORTag(t, 0)), tag_hook=hook)
    builtin = sorted(set(candidates) - set(seen))
    from corrosion_py.wire import codec

    assert builtin == sorted(codec._CBOR2_BUILTIN_TAGS)


def test_indefinite_lengths_are_refused() -> None:
    # [_ 1, 7, 8] as an indefinite-length array
    with pytest.raises(wire.DecodeError):
        wire.decode(b"\x9f\x01\x07\x08\xff", cluster_id=7)
    # a valid SyncStart whose actor id is an indefinite byte string of two chunks
    data = b"\x84\x01\x07\x05\x5f\x48" + A[:8] + b"\x48" + A[8:] + b"\xff"
    with pytest.raises(wire.DecodeError):
        wire.decode(data, cluster_id=7)


def test_trailing_bytes_are_refused() -> None:
    data = wire.encode(wire.SyncDone(), cluster_id=7)
    for junk in (b"\x00", b"\xff", data):
        with pytest.raises(wire.DecodeError, match="junk"):
            wire.decode(data + junk, cluster_id=7)


def test_deep_nesting_is_refused_cheaply() -> None:
    deep = b"\x81" * 100_000 + b"\x00"
    with pytest.raises(wire.DecodeError):
        wire.decode(raw(layout.SYNC_CLOCK) + deep, cluster_id=7)
    with pytest.raises(wire.DecodeError):
        wire.decode(b"\x83\x01\x07\x06" + deep, cluster_id=7)


def test_maps_with_non_string_keys_are_refused() -> None:
    with pytest.raises(wire.DecodeError):
        wire.decode(raw(layout.SYNC_CLOCK, {1: 2, 3: 4}), cluster_id=7)


def test_invalid_utf8_is_refused() -> None:
    data = raw(layout.SYNC_REJECTION, "x")[:-2] + b"\x61\xff"  # text of 1 byte: 0xff
    with pytest.raises(wire.DecodeError):
        wire.decode(data, cluster_id=7)


def test_oversize_input_is_refused_before_decoding() -> None:
    data = wire.encode(wire.SyncStart(A), cluster_id=7)
    assert wire.decode(data, max_size=len(data)) == wire.SyncStart(A)
    with pytest.raises(wire.MessageTooLarge) as info:
        wire.decode(data, max_size=len(data) - 1)
    assert (info.value.size, info.value.limit) == (len(data), len(data) - 1)
    # refused by size alone: garbage of that size is not even parsed
    with pytest.raises(wire.MessageTooLarge):
        wire.decode(b"\xff" * (wire.MAX_MESSAGE_SIZE + 1))


def test_huge_length_claims_fail_fast() -> None:
    for header in (b"\x9b", b"\x5b", b"\x7b", b"\xbb"):  # array, bytes, text, map of 2**60
        data = b"\x83\x01\x07\x06" + header + (2**60).to_bytes(8, "big")
        with pytest.raises(wire.DecodeError):
            wire.decode(data, cluster_id=7)


# ---------------------------------------------------------------------------------------------
# The sender refuses what receivers would refuse


@pytest.mark.parametrize(
    "msg",
    [
        wire.Changeset(A[:15], 1, (), (0, 0), 0, 0),
        wire.Changeset(A, 0, (), (0, 0), 0, 0),
        wire.Changeset(A, 1, (), (0, 3), 2, 0),
        wire.Changeset(A, 1, (), (0, 0), 0, -1),
        wire.Changeset(A, 1, (Change("t", b"", "c", True, 1, 1, A, 1, 0),), (0, 0), 0, 0),
        wire.Changeset(A, 1, (Change("t", b"", "c", 2**63, 1, 1, A, 1, 0),), (0, 0), 0, 0),
        wire.Changeset(A, 1, (Change("t", bytearray(), "c", 1, 1, 1, A, 1, 0),), (0, 0), 0, 0),  # type: ignore[arg-type]
        wire.Changeset(A, 1, (Change("t", b"", "c", [1], 1, 1, A, 1, 0),), (0, 0), 0, 0),  # type: ignore[arg-type]
        wire.Changeset(A, 1, (Change("\ud800", b"", "c", 1, 1, 1, A, 1, 0),), (0, 0), 0, 0),
        wire.Changeset(A, 1, (Change("t", b"", "c", object(), 1, 1, A, 1, 0),), (0, 0), 0, 0),  # type: ignore[arg-type]
        wire.Changeset(A, 1, ("not a change",), (0, 0), 0, 0),  # type: ignore[arg-type]
        wire.EmptyChangeset(A, (2, 1), 0),
        wire.SyncState(A, {A: -1}, {}, {}),
        wire.SyncState(A, {A: 1, "x": 2}, {}, {}),  # type: ignore[dict-item]
        wire.SyncRequest(((A, ("need",)),)),  # type: ignore[arg-type]
        wire.SyncRequest(((A, (wire.NeedFull((0, 1)),)),)),
        wire.SyncRejection("busy"),  # type: ignore[arg-type]
        wire.SyncClock(2**64),
        "not a message",
    ],
    ids=repr,
)
def test_encode_refuses_invalid_messages(msg: Any) -> None:
    with pytest.raises(wire.EncodeError):
        wire.encode(msg, cluster_id=7)


@pytest.mark.parametrize("cluster_id", [-1, 65536, True, "7"])
def test_encode_refuses_bad_cluster_ids(cluster_id: Any) -> None:
    with pytest.raises(wire.EncodeError):
        wire.encode(wire.SyncDone(), cluster_id=cluster_id)
