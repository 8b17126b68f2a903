"""SWIM push-pull over TCP: two nodes exchange their full member lists on one stream.

Rules:

- A side's list is a run of length-prefixed frames (wire/framing.py), each one SWIM ``Feed``
  packet (wire/swim.py) of at most ``MAX_RUMOURS`` members, closed by an empty frame. The
  client sends its list first; the server merges it, then answers with its own list taken
  *after* the merge, so a member the client held dead answers with its refutation.
- A list is bounded (``MAX_FRAMES`` frames of ``MAX_FRAME`` bytes) and the whole exchange has a
  deadline; a frame that does not decode, belongs to another cluster or is not a Feed ends the
  exchange, is counted in the membership's ``stats`` and changes nothing.
- The TCP listener is the gossip port's (net/port.py): its first frame tells a push-pull (a
  SWIM tag) from a sync session, and a push-pull goes to ``Membership.serve_push_pull`` with
  that frame already read.
- With a `GossipSecurity` the stream is sealed (net/secure.py) before the first frame: the
  client opens it with the handshake, the server's listener has done so before dispatching.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeAlias

import trio

from corrosion_py.addr import Addr
from corrosion_py.net.secure import GossipSecurity
from corrosion_py.swim import Swim
from corrosion_py.wire.errors import DecodeError
from corrosion_py.wire.framing import FrameReader, frame
from corrosion_py.wire.swim import MAX_RUMOURS, Feed, Packet, Rumour, decode_packet, encode_packet

MAX_FRAME = 64 * 1024
"""A Feed of MAX_RUMOURS members with the longest hosts stays below this."""
MAX_FRAMES = 64
"""Frames in one list: 64 · 255 members is above SwimConfig.max_members' default."""
TIMEOUT = 10.0
"""Deadline of a whole exchange, either side."""


Merge: TypeAlias = Callable[[Addr, Sequence[Rumour]], Awaitable[None]]
"""Hands a peer's list to the core (``Swim.handle_push_pull``) and carries out the effects."""


class PushPullError(Exception):
    """The peer's list was malformed, from another cluster, or too long."""


def list_frames(core: Swim) -> bytes:
    """This node's member list as frames, closed by the empty frame."""
    members = core.push_pull_state()
    out = []
    for start in range(0, len(members), MAX_RUMOURS):
        chunk = tuple(members[start : start + MAX_RUMOURS])
        packet = Packet(core.cluster_id, core.node, core.incarnation, Feed(chunk))
        out.append(frame(encode_packet(packet, check=False)))
    out.append(frame(b""))
    return b"".join(out)


async def read_list(
    stream: trio.abc.ReceiveStream, reader: FrameReader, cluster_id: int, pending: list[bytes]
) -> list[Rumour]:
    """Read one side's list; ``pending`` holds frame payloads already taken from ``reader``."""
    members: list[Rumour] = []
    frames = 0
    while True:
        while not pending:
            data = await stream.receive_some(MAX_FRAME)
            if not data:
                raise PushPullError("stream closed before the end of the member list")
            pending = reader.feed(bytes(data))
        payload = pending.pop(0)
        if payload == b"":
            if pending:
                raise PushPullError("data after the end of the member list")
            return members
        frames += 1
        if frames > MAX_FRAMES:
            raise PushPullError(f"member list longer than {MAX_FRAMES} frames")
        try:
            packet = decode_packet(payload, max_size=MAX_FRAME)
        except DecodeError as e:
            raise PushPullError(f"undecodable frame: {e}") from e
        if packet.cluster_id != cluster_id:
            raise PushPullError(f"cluster id {packet.cluster_id}, expected {cluster_id}")
        if not isinstance(packet.body, Feed):
            raise PushPullError(f"expected a Feed, got {type(packet.body).__name__}")
        members.extend(packet.body.members)


async def request(
    addr: Addr, core: Swim, merge: Merge, security: GossipSecurity | None = None
) -> None:
    """Client side: send our list to ``addr``, merge the answer. Raises OSError,
    trio.TooSlowError, trio.BrokenResourceError or PushPullError; the caller counts them."""
    with trio.fail_after(TIMEOUT):
        raw = await trio.open_tcp_stream(*addr)
        async with raw:
            stream: trio.abc.Stream = raw
            if security is not None:
                stream = await security.client(raw, addr)
            await stream.send_all(list_frames(core))
            reader = FrameReader(MAX_FRAME)
            members = await read_list(stream, reader, core.cluster_id, [])
    await merge(addr, members)


async def serve(
    stream: trio.abc.Stream,
    reader: FrameReader,
    pending: list[bytes],
    core: Swim,
    merge: Merge,
    peer: Addr,
) -> None:
    """Server side, after a dispatcher took the first frames (``pending``) from ``reader``."""
    with trio.fail_after(TIMEOUT):
        members = await read_list(stream, reader, core.cluster_id, pending)
        await merge(peer, members)
        await stream.send_all(list_frames(core))
