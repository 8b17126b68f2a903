"""The server side of anti-entropy sync over TCP (Corrosion's sync protocol): answers one
session per connection. What to send comes from the store (``Store.stream_sync``); this file
only moves frames and keeps the slots fair.

Protocol (one session per TCP connection; every message is one frame holding one envelope,
net/framed.py)::

    client                                   server
    SyncStart(actor) SyncClock(ts)        ─▶  (reads both before answering)
                                          ◀─  SyncState SyncClock(ts)  |  SyncRejection + close
    SyncRequest(≤10 needs) ... SyncDone   ─▶
                                          ◀─  Changeset | EmptyChangeset ... SyncDone + close

Rules:

- The server reads the whole hello (SyncStart, then SyncClock) before it answers, so a rejection
  never races unread bytes into a TCP reset. A hello for another cluster is answered with
  ``SyncRejection("different_cluster")`` (in the client's cluster id, so the client can read it).
- Fair service: a session is a slot of its peer, in this order: only a member SWIM holds alive
  or suspect gets one (``is_member``; else ``"not_member"``), at most one per peer actor at a
  time (else ``"already_syncing"``), and at most ``max_concurrent`` in all (else
  ``"max_concurrency"``). A peer that sends no request for ``idle_timeout`` seconds (shorter
  than a sync interval) loses its slot: a request without needs is no activity. A rejected
  hello moves no clock.
- Both clocks move forward at the handshake; a peer's clock too far ahead is counted
  (``clock_drift``), never fatal.
- Requests are answered as they arrive (up to ``REQUESTS_PER_READ`` queued requests are served
  together), newest versions first, and ``SyncDone`` goes out once the client's ``SyncDone``
  arrived and every request is answered. Needs the server cannot fill are skipped. A session is
  served each version at most once (``replication.needs.Served``), and a client sending more
  than ``MAX_SESSION_NEEDS`` needs loses the session (``too_many_needs``): what one client can
  make a server do is bounded by the versions that exist.
- Every step has a timeout (``session_timeout`` bounds a whole session, however busy); frames
  larger than ``max_frame`` (1 MiB: hellos and requests are small, so the read-ahead of
  ``REQUEST_QUEUE`` requests stays small) are refused from their header; any bad frame, timeout
  or disconnect ends that session only and is counted. Nothing a peer sends makes ``serve``
  raise.
- Backpressure: changesets go out with ``send_all`` (one batch at a time), and requests are
  read into a small bounded channel.
- The gossip port (net/port.py) reads the first frame, seals the stream first when keyed, and
  hands the connection here with that frame; ``serve`` alone reads the first frame itself.
- No SQLite transaction or lock is held across a network await: the bookkeeping snapshot and the
  clock update are in-memory, thread-safe store calls made before the result is sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import cast

import attrs
import trio

from corrosion_py.net.framed import Framed, SessionError, describe, read_first_frame
from corrosion_py.replication.hlc import ClockDriftError
from corrosion_py.replication.needs import MAX_SESSION_NEEDS, Served
from corrosion_py.store.store import Store
from corrosion_py.wire.codec import decode_envelope
from corrosion_py.wire.errors import DecodeError, UnknownMessageError
from corrosion_py.wire.messages import (
    Item,
    Message,
    Need,
    SyncClock,
    SyncDone,
    SyncRejection,
    SyncRequest,
    SyncStart,
)

log = logging.getLogger(__name__)

MAX_REQUEST_FRAME = 1024 * 1024  # what a server accepts: hellos and requests are small
REQUESTS_PER_READ = 10  # queued requests the server serves from one read of the store
REQUEST_QUEUE = 16  # requests read ahead by the server before it stops reading (backpressure)


def clock_now(store: Store) -> int:
    """A timestamp of our clock now (an in-memory, thread-safe store call)."""
    return store.hlc.now(time.time_ns())


def observe_clock(store: Store, ts: int) -> bool:
    """Move our clock past a peer's; False when the peer's clock is too far ahead."""
    try:
        store.hlc.update(ts, time.time_ns())
    except ClockDriftError:
        return False
    return True


@attrs.define
class ServerStats:
    """Counters of a SyncServer (cumulative), and the sessions running now."""

    connections: int = 0
    sessions: int = 0  # handshakes answered with a state
    completed: int = 0  # sessions that ended with SyncDone
    active: int = 0
    rejected_cluster: int = 0
    rejected_busy: int = 0
    rejected_not_member: int = 0
    rejected_duplicate: int = 0  # a second session of a peer that has one
    bad_frames: int = 0
    timeouts: int = 0  # idle peers included
    empty_requests: int = 0
    disconnects: int = 0
    internal_errors: int = 0
    clock_drift: int = 0
    unknown_messages: int = 0
    too_many_needs: int = 0
    changesets_sent: int = 0
    bytes_sent: int = 0


class SyncServer:
    """Answers sync sessions; ``serve`` is a handler for ``trio.serve_tcp`` too.

    ``is_member(actor)`` says whether an actor may hold a session (the agent asks SWIM)."""

    def __init__(
        self,
        store: Store,
        cluster_id: int,
        *,
        is_member: Callable[[bytes], bool],
        max_concurrent: int = 3,
        hello_timeout: float = 5.0,
        idle_timeout: float = 10.0,
        send_timeout: float = 10.0,
        session_timeout: float = 300.0,
        max_frame: int = MAX_REQUEST_FRAME,
    ) -> None:
        self.store = store
        self.cluster_id = cluster_id
        self.is_member = is_member
        self.max_concurrent = max_concurrent
        self.hello_timeout = hello_timeout
        self.idle_timeout = idle_timeout
        self.send_timeout = send_timeout
        self.session_timeout = session_timeout
        self.max_frame = max_frame
        self.stats = ServerStats()
        self._serving: set[bytes] = set()  # the peers holding a session now

    async def serve(self, stream: trio.abc.Stream, first: bytes | None = None) -> None:
        """One connection, start to end, then closed; ``first`` is its first frame when the
        caller read it already. Never raises (but for cancellation)."""
        self.stats.connections += 1
        try:
            if first is None:
                first = await read_first_frame(stream, self.max_frame, self.hello_timeout)
            with trio.move_on_after(self.session_timeout) as scope:
                await self._session(stream, first)
            if scope.cancelled_caught:
                raise SessionError(f"session longer than {self.session_timeout:g} s")
        except Exception as exc:
            self._count_failure(exc)
        finally:
            with trio.CancelScope(shield=True):  # a cancelled close must still close
                await trio.aclose_forcefully(stream)

    def _count_failure(self, exc: Exception) -> None:
        leaf: BaseException = exc
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        reason = describe(leaf)
        if isinstance(leaf, DecodeError):
            self.stats.bad_frames += 1
        elif isinstance(leaf, SessionError) and "timed out" in reason:
            self.stats.timeouts += 1
        elif isinstance(leaf, SessionError | trio.BrokenResourceError | OSError):
            self.stats.disconnects += 1
        else:
            self.stats.internal_errors += 1
            log.error("sync session failed unexpectedly", exc_info=exc)
            return
        log.debug("sync session ended: %s", reason)

    async def _session(self, stream: trio.abc.Stream, first: bytes) -> None:
        framed = Framed(stream, self.cluster_id, self.max_frame)
        hello = decode_envelope(first, max_size=self.max_frame)
        if not isinstance(hello.message, SyncStart):
            raise DecodeError(f"expected SyncStart, got {type(hello.message).__name__}")
        payload = await framed.receive_payload(self.hello_timeout, "SyncClock")
        if payload is None:
            raise SessionError("connection closed before SyncClock")
        clock = decode_envelope(payload, max_size=self.max_frame).message
        if not isinstance(clock, SyncClock):
            raise DecodeError(f"expected SyncClock, got {type(clock).__name__}")
        if hello.cluster_id != self.cluster_id:
            self.stats.rejected_cluster += 1
            reject = SyncRejection("different_cluster")
            await framed.send([reject], self.send_timeout, cluster_id=hello.cluster_id)
            return
        refusal = self._admit(hello.message.actor_id)
        if refusal is not None:
            await framed.send([refusal], self.send_timeout)
            return
        peer = hello.message.actor_id
        self._serving.add(peer)
        self.stats.active += 1
        try:
            if not observe_clock(self.store, clock.ts):
                self.stats.clock_drift += 1
            state = self.store.sync_state()
            ts = clock_now(self.store)
            await framed.send([state, SyncClock(ts)], self.send_timeout)
            self.stats.sessions += 1
            await self._answer(framed)
            self.stats.completed += 1
        finally:
            self.stats.active -= 1
            self._serving.discard(peer)

    def _admit(self, actor: bytes) -> SyncRejection | None:
        """Whether ``actor`` may have a session now: None, or the rejection to send."""
        if actor == self.store.actor_id or not self.is_member(actor):
            self.stats.rejected_not_member += 1
            return SyncRejection("not_member")
        if actor in self._serving:
            self.stats.rejected_duplicate += 1
            return SyncRejection("already_syncing")
        if len(self._serving) >= self.max_concurrent:
            self.stats.rejected_busy += 1
            return SyncRejection("max_concurrency")
        return None

    async def _answer(self, framed: Framed) -> None:
        """Serve requests as they arrive until the client's SyncDone, then send ours."""
        send_requests, requests = trio.open_memory_channel[SyncRequest](REQUEST_QUEUE)
        served = Served()

        async def read_requests() -> None:
            asked = 0  # needs of the whole session
            async with send_requests:
                idle_until = trio.current_time() + self.idle_timeout
                while True:
                    msg: Message | None = None
                    with trio.move_on_at(idle_until):
                        msg = await self._next_message(framed)
                    if msg is None:
                        raise SessionError(
                            f"timed out: no request for {self.idle_timeout:g} s (idle peer)"
                        )
                    if isinstance(msg, SyncDone):
                        return
                    if not isinstance(msg, SyncRequest):
                        raise DecodeError(f"expected SyncRequest, got {type(msg).__name__}")
                    if not any(needs for _, needs in msg.needs):
                        self.stats.empty_requests += 1  # no work asked: not activity
                        continue
                    asked += sum(len(actor_needs) for _, actor_needs in msg.needs)
                    if asked > MAX_SESSION_NEEDS:
                        self.stats.too_many_needs += 1
                        raise SessionError(f"more than {MAX_SESSION_NEEDS} needs")
                    await send_requests.send(msg)
                    idle_until = trio.current_time() + self.idle_timeout  # (our wait excluded)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_requests)
            async with requests:
                async for request in requests:
                    batch = [request]
                    while len(batch) < REQUESTS_PER_READ:
                        try:
                            batch.append(requests.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    await self._stream(framed, batch, served)
        await framed.send([SyncDone()], self.send_timeout)

    async def _next_message(self, framed: Framed) -> Message:
        """The client's next message of a known type (unknown ones are counted and skipped)."""
        while True:
            try:
                return await framed.receive(self.session_timeout, "a request")
            except UnknownMessageError:
                self.stats.unknown_messages += 1

    async def _stream(self, framed: Framed, batch: list[SyncRequest], served: Served) -> None:
        needs: dict[bytes, list[Need]] = {}
        for request in batch:
            for actor, actor_needs in request.needs:
                needs.setdefault(actor, []).extend(actor_needs)
        # stream_sync is an async generator (typed as an iterator): close it on every exit
        chunks = cast(
            "AsyncGenerator[list[Item], None]", self.store.stream_sync(needs, served=served)
        )
        async with aclosing(chunks):
            async for items in chunks:
                before = framed.bytes_sent
                await framed.send(items, self.send_timeout)
                self.stats.changesets_sent += len(items)
                self.stats.bytes_sent += framed.bytes_sent - before
