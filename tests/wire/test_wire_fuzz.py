"""Whatever the bytes, decode returns a valid message or raises a DecodeError (invariant 7)."""

from __future__ import annotations

import cbor2
from hypothesis import example, given, settings
from hypothesis import strategies as st
from wire_strategies import messages

from corrosion_py import wire


def _decode_or_decode_error(data: bytes, cluster_id: int | None = 7) -> wire.Message | None:
    """decode; any exception but DecodeError fails the test (hypothesis reports it)."""
    try:
        msg = wire.decode(data, cluster_id=cluster_id, max_size=1 << 16)
    except wire.DecodeError as e:
        assert "unexpected error" not in str(e), f"a bug of ours showed as DecodeError: {e}"
        return None
    # what decode accepts, the sender would accept too, and it survives another round trip
    again = wire.encode(msg, cluster_id=7)
    assert wire.encode(wire.decode(again), cluster_id=7) == again
    return msg


@given(st.binary(max_size=300))
@example(b"")
@example(b"\x83\x01\x07")
@example(b"\x83\x01\x07\x08")
@example(b"\x9b" + b"\xff" * 8)
@example(b"\xc2\x5b" + b"\xff" * 8)
@settings(max_examples=300)
def test_random_bytes(data: bytes) -> None:
    _decode_or_decode_error(data)


@given(st.binary(max_size=200))
def test_random_bytes_after_a_valid_envelope_prefix(tail: bytes) -> None:
    for n in range(3, 10):  # arrays of n items starting [1, 7, tag]
        for tag in range(1, 9):
            _decode_or_decode_error(bytes([0x80 | n, 1, 7, tag]) + tail)


# Encoded CBOR items that make decoders work hard or stray from plain data
_nasty_items = st.sampled_from(
    [
        cbor2.dumps(item)
        for item in [
            cbor2.CBORTag(2, b"\xff" * 16),
            cbor2.CBORTag(5, [2**63, 3]),
            cbor2.CBORTag(28, [1]),
            cbor2.CBORTag(29, 0),
            cbor2.CBORTag(258, [1]),
            cbor2.CBORTag(999, None),
            cbor2.undefined,
            cbor2.CBORSimpleValue(100),
            {"k": "v"},
            {b"k": [1]},
            2**64 - 1,
            -(2**64),
            float("nan"),
            True,
            None,
            "",
            b"",
            [],
        ]
    ]
)


@st.composite
def mutated_encodings(draw: st.DrawFn) -> bytes:
    data = bytearray(wire.encode(draw(messages), cluster_id=7))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["truncate", "flip", "append", "insert", "delete", "splice"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "truncate":
            del data[i:]
        elif op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=20))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 4))]
        elif op == "splice":  # replace some bytes with a whole CBOR item
            data[i : i + draw(st.integers(0, 3))] = draw(_nasty_items)
    return bytes(data)


@given(mutated_encodings())
@settings(max_examples=400)
def test_mutated_valid_encodings(data: bytes) -> None:
    _decode_or_decode_error(data)


@given(messages, st.integers(0, 20))
def test_every_truncation_is_refused(msg: wire.Message, cut: int) -> None:
    data = wire.encode(msg, cluster_id=7)
    for end in range(max(0, len(data) - cut - 1), len(data)):
        assert _decode_or_decode_error(data[:end]) is None
