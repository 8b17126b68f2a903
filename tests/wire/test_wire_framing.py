"""Length-prefixed frames: any split of a stream gives the same frames; oversize fails early."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corrosion_py import wire


def test_frame_layout() -> None:
    assert wire.frame(b"") == b"\x00\x00\x00\x00"
    assert wire.frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert wire.frame(bytes(300))[:4] == b"\x00\x00\x01\x2c"


@given(
    st.lists(st.binary(max_size=50), max_size=10),
    st.lists(st.integers(0, 60), max_size=20),
)
def test_any_split_gives_the_same_frames(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(wire.frame(p) for p in payloads)
    points = sorted({min(c * 3, len(stream)) for c in cuts} | {0, len(stream)})
    reader = wire.FrameReader(max_frame=50)
    got: list[bytes] = []
    for a, b in itertools.pairwise(points):
        got += reader.feed(stream[a:b])
    assert got == payloads
    assert reader.buffered == 0
    reader.end()


def test_byte_by_byte_and_all_at_once() -> None:
    payloads = [b"x" * n for n in (0, 1, 2, 255, 256, 1000)]
    stream = b"".join(wire.frame(p) for p in payloads)
    reader = wire.FrameReader(max_frame=1000)
    got = [f for i in range(len(stream)) for f in reader.feed(stream[i : i + 1])]
    assert got == payloads
    assert wire.FrameReader(max_frame=1000).feed(stream) == payloads


def test_frames_carry_messages() -> None:
    msgs: list[wire.Message] = [wire.SyncStart(bytes(16)), wire.SyncClock(5), wire.SyncDone()]
    stream = b"".join(wire.frame(wire.encode(m, cluster_id=1)) for m in msgs)
    reader = wire.FrameReader(max_frame=wire.MAX_MESSAGE_SIZE)
    assert [wire.decode(p, cluster_id=1) for p in reader.feed(stream)] == msgs


def test_oversize_frame_is_refused_from_its_header() -> None:
    reader = wire.FrameReader(max_frame=10)
    assert reader.feed(wire.frame(b"0123456789")) == [b"0123456789"]
    # the header alone triggers the error: the payload is never buffered
    with pytest.raises(wire.FrameTooLarge) as info:
        reader.feed(b"\x00\x00\x00\x0b")
    assert (info.value.size, info.value.limit) == (11, 10)
    assert isinstance(info.value, wire.DecodeError)
    assert reader.buffered == 0
    # the stream cannot be resynchronised: the reader stays failed
    with pytest.raises(wire.FrameTooLarge):
        reader.feed(wire.frame(b"ok"))
    with pytest.raises(wire.FrameTooLarge):
        reader.end()


def test_oversize_frame_after_good_ones_in_the_same_chunk() -> None:
    reader = wire.FrameReader(max_frame=4)
    with pytest.raises(wire.FrameTooLarge):
        reader.feed(wire.frame(b"ab") + b"\xff\xff\xff\xff")


def test_huge_announced_length_is_refused_with_little_data() -> None:
    reader = wire.FrameReader(max_frame=1 << 20)
    with pytest.raises(wire.FrameTooLarge):
        reader.feed(b"\xff\xff\xff\xff" + b"x" * 10)


def test_end_inside_a_frame() -> None:
    reader = wire.FrameReader(max_frame=10)
    assert reader.feed(b"\x00\x00") == []
    with pytest.raises(wire.DecodeError):
        reader.end()
    reader = wire.FrameReader(max_frame=10)
    assert reader.feed(b"\x00\x00\x00\x05ab") == []
    assert reader.buffered == 2
    with pytest.raises(wire.DecodeError):
        reader.end()
    assert reader.feed(b"cde") == [b"abcde"]
    reader.end()


def test_bad_limits() -> None:
    with pytest.raises(ValueError):
        wire.FrameReader(max_frame=-1)
    with pytest.raises(ValueError):
        wire.FrameReader(max_frame=2**32)
    wire.FrameReader(max_frame=2**32 - 1)
