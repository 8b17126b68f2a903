"""Anti-entropy sync over TCP (Corrosion's sync sessions): the server that answers sessions and
the client round that runs them with a few peers in parallel. The planning is sans-IO, in
``corrosion_py.replication.sync_plan``; this file only moves frames.

Protocol rules (one session per TCP connection; every message is one frame, ``wire.framing``,
holding one envelope, ``wire.codec``)::

    client                                   server
    SyncStart(actor) SyncClock(ts)        ─▶  (reads both before answering)
                                          ◀─  SyncState SyncClock(ts)  |  SyncRejection + close
    SyncRequest(≤10 needs) ... SyncDone   ─▶
                                          ◀─  Changeset | EmptyChangeset ... SyncDone + close

- The server reads the whole hello (SyncStart, then SyncClock) before it answers, so a rejection
  never races unread bytes into a TCP reset. A hello for another cluster is answered with
  ``SyncRejection("different_cluster")`` (in the client's cluster id, so the client can read it).
- Fair service: a session is a slot of its peer, in this order: only a member SWIM holds alive
  or suspect gets one (``is_member``; else ``"not_member"``), at most one per peer actor at a
  time (else ``"already_syncing"``), and at most ``max_concurrent`` in all (else
  ``"max_concurrency"``). A peer that sends no request for ``idle_timeout`` seconds (shorter
  than a sync interval) loses its slot: a request without needs is no activity. A rejected
  hello moves no clock.
- The first frame may instead be a SWIM packet (its tag is in ``wire.swim.SWIM_TAGS``): with a
  ``push_pull`` callback the connection is handed to it, unread bytes and all (the first frame is
  read exactly, nothing past it); without one it is a bad frame.
- Both clocks move forward at the handshake; a peer's clock too far ahead is counted
  (``clock_drift``), never fatal.
- The server answers requests as they arrive (up to ``REQUESTS_PER_READ`` queued requests are
  served together), newest versions first, and sends ``SyncDone`` once the client's
  ``SyncDone`` arrived and every request is answered. Needs the server cannot fill are skipped.
  A session is served each version at most once (``replication.needs.Served``), and a client sending
  more than ``MAX_SESSION_NEEDS`` needs loses the session (counted in ``too_many_needs``): what
  one client can make a server do is bounded by the versions that exist.
- The client believes only what it asked for (``gossip.claims.Solicited``): a changeset of a
  version it did not ask that server for is dropped, an empty range is cut to the versions it
  asked in full (``PeerReport.unsolicited`` counts the drops). A server's ``SyncState`` frame
  may be at most ``MAX_STATE_FRAME`` bytes, checked before it is decoded.
- Every step has a timeout (``session_timeout`` bounds a whole session, however busy); frames
  larger than ``max_frame`` are refused from their header (the
  server reads only small frames, 1 MiB by default, so its read-ahead of ``REQUEST_QUEUE``
  requests stays small; the client accepts 16 MiB changeset frames); any bad frame, timeout or
  disconnect ends that session only and is counted. Nothing a peer sends makes ``serve`` raise.
- Backpressure: frames go out with ``send_all`` (one batch of changesets at a time), the server
  reads requests into a small bounded channel, and the client awaits ``deliver`` before reading
  on, so a slow apply queue slows the server down instead of growing a buffer.
- With a `GossipSecurity` (net/secure.py) the client seals its connection with the handshake
  before the hello; the server side is sealed by the gossip port's listener before ``serve``
  sees the stream, so a peer without the key never reaches this code.
- No SQLite transaction or lock is held across a network await: the bookkeeping snapshot and the
  clock update are in-memory, thread-safe store calls (``Store.bookie_snapshot``, ``HLC``) made
  before the result is sent.

Theory of operation of a client round (``sync_with``): connect and handshake with every peer in
parallel; plan once with every state gathered (``plan_requests``: nothing is asked twice); then,
per server in parallel, one task sends the requests and ``SyncDone`` while the session reads
changesets and hands them to ``deliver`` in batches. A peer that fails (refused, rejected,
stalled, broken frames) gets an error in the report and the others carry on.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import cast

import attrs
import trio

from corrosion_py.addr import Addr
from corrosion_py.errors import CorrosionError
from corrosion_py.net.secure import GossipSecurity
from corrosion_py.replication.claims import Solicited
from corrosion_py.replication.hlc import ClockDriftError
from corrosion_py.replication.needs import MAX_SESSION_NEEDS, Served
from corrosion_py.replication.sync_plan import plan_requests
from corrosion_py.store.store import Store
from corrosion_py.wire.codec import decode, decode_envelope, encode
from corrosion_py.wire.errors import DecodeError, FrameTooLarge, UnknownMessageError
from corrosion_py.wire.framing import HEADER, HEADER_SIZE, FrameReader, frame
from corrosion_py.wire.messages import (
    Changeset,
    EmptyChangeset,
    Item,
    Message,
    Need,
    SyncClock,
    SyncDone,
    SyncRejection,
    SyncRequest,
    SyncStart,
    SyncState,
)
from corrosion_py.wire.swim import SWIM_TAGS

log = logging.getLogger(__name__)

Deliver = Callable[[list[Item]], Awaitable[None]]
PushPull = Callable[[trio.abc.Stream, bytes], Awaitable[None]]

MAX_FRAME = 16 * 1024 * 1024  # what a client accepts (a changeset with a large value)
MAX_REQUEST_FRAME = 1024 * 1024  # what a server accepts: hellos and requests are small
MAX_STATE_FRAME = 4 * 1024 * 1024  # a server's SyncState, checked before decoding
NEEDS_PER_REQUEST = 10  # needs per SyncRequest frame (Corrosion: 10 needs per pass)
REQUESTS_PER_READ = 10  # queued requests the server serves from one read of the store
REQUEST_QUEUE = 16  # requests read ahead by the server before it stops reading (backpressure)
DELIVER_BATCH = 64  # changesets per deliver() call
DELIVER_BYTES = 1024 * 1024  # ... or fewer, once their frames reach this many bytes
RECEIVE_SIZE = 65_536

REJECTION_TEXT = {
    "different_cluster": "rejected: the peer belongs to a different cluster",
    "max_concurrency": "rejected: the peer already serves its maximum of concurrent syncs",
    "not_member": "rejected: the peer does not hold this node as a live member (yet)",
    "already_syncing": "rejected: the peer is already serving this node a sync session",
}


class SyncSessionError(CorrosionError):
    """A session failed in a way the report explains (the message is the readable reason)."""


# -- frames -------------------------------------------------------------------------------------


class _Framed:
    """A stream with a frame reader, a byte counter and timeouts on every receive and send."""

    def __init__(self, stream: trio.abc.Stream, cluster_id: int, max_frame: int) -> None:
        self.stream = stream
        self.cluster_id = cluster_id
        self.reader = FrameReader(max_frame)
        self.max_frame = max_frame
        self.pending: list[bytes] = []
        self.bytes_received = 0
        self.bytes_sent = 0

    async def receive_payload(self, within: float, what: str) -> bytes | None:
        """The next frame's payload, or None at a clean end of stream."""
        with trio.move_on_after(within):
            while not self.pending:
                data = await self.stream.receive_some(RECEIVE_SIZE)
                if not data:
                    self.reader.end()
                    return None
                self.pending = self.reader.feed(bytes(data))
            payload = self.pending.pop(0)
            self.bytes_received += HEADER_SIZE + len(payload)
            return payload
        raise SyncSessionError(f"timed out after {within:g} s waiting for {what}")

    async def receive(self, within: float, what: str) -> Message:
        payload = await self.receive_payload(within, what)
        if payload is None:
            raise SyncSessionError(f"connection closed while waiting for {what}")
        return decode(payload, cluster_id=self.cluster_id, max_size=self.max_frame)

    async def send(
        self, messages: Sequence[Message], within: float, *, cluster_id: int | None = None
    ) -> None:
        """Send ``messages`` in one write (in another ``cluster_id`` only for a rejection)."""
        cid = self.cluster_id if cluster_id is None else cluster_id
        data = b"".join(frame(encode(m, cluster_id=cid)) for m in messages)
        with trio.move_on_after(within):
            await self.stream.send_all(data)
            self.bytes_sent += len(data)
            return
        raise SyncSessionError(f"timed out after {within:g} s sending to the peer")


async def _read_exact(stream: trio.abc.Stream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = await stream.receive_some(n - len(buf))
        if not data:
            raise SyncSessionError("connection closed inside the first frame")
        buf += data
    return bytes(buf)


async def _read_first_frame(stream: trio.abc.Stream, max_frame: int) -> bytes:
    """The first frame's payload, reading nothing past it (the rest may belong to push_pull)."""
    (size,) = HEADER.unpack(await _read_exact(stream, HEADER_SIZE))
    if size > max_frame:
        raise FrameTooLarge(size, max_frame)
    return await _read_exact(stream, size)


# -- store access (in memory and thread-safe: cheap enough for the event loop) ---------------


def _clock_now(store: Store) -> int:
    return store.hlc.now(time.time_ns())


def _observe_clock(store: Store, ts: int) -> bool:
    """Move our clock past a peer's; False when the peer's clock is too far ahead."""
    try:
        store.hlc.update(ts, time.time_ns())
    except ClockDriftError:
        return False
    return True


def _describe(exc: BaseException) -> str:
    """A readable reason for a failed session (the first leaf of an exception group)."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    if isinstance(exc, SyncSessionError):
        return str(exc)
    if isinstance(exc, DecodeError):
        return f"bad frame from the peer: {exc}"
    if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
        return f"connection lost: {exc.__cause__ or exc}"
    if isinstance(exc, OSError):
        return f"connection failed: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


# -- server -------------------------------------------------------------------------------------


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
    handed_to_push_pull: int = 0
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
    """Answers sync sessions; ``serve`` is the handler for ``trio.serve_tcp``.

    ``is_member(actor)`` says whether an actor may hold a session (the agent asks SWIM)."""

    def __init__(
        self,
        store: Store,
        cluster_id: int,
        *,
        is_member: Callable[[bytes], bool],
        max_concurrent: int = 3,
        push_pull: PushPull | None = None,
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
        self.push_pull = push_pull
        self.hello_timeout = hello_timeout
        self.idle_timeout = idle_timeout
        self.send_timeout = send_timeout
        self.session_timeout = session_timeout
        self.max_frame = max_frame
        self.stats = ServerStats()
        self._serving: set[bytes] = set()  # the peers holding a session now

    async def serve(self, stream: trio.abc.Stream) -> None:
        """One connection, start to end. Never raises (but for cancellation)."""
        self.stats.connections += 1
        handed_over = False
        try:
            with trio.move_on_after(self.hello_timeout) as scope:
                first = await _read_first_frame(stream, self.max_frame)
            if scope.cancelled_caught:
                raise SyncSessionError("timed out waiting for the first frame")
            if self.push_pull is not None and _is_swim(first):
                handed_over = True
                self.stats.handed_to_push_pull += 1
                await self.push_pull(stream, first)
                return
            with trio.move_on_after(self.session_timeout) as scope:
                await self._session(stream, first)
            if scope.cancelled_caught:
                raise SyncSessionError(f"session longer than {self.session_timeout:g} s")
        except Exception as exc:
            self._count_failure(exc)
        finally:
            if not handed_over:
                with trio.CancelScope(shield=True):  # a cancelled close must still close
                    await trio.aclose_forcefully(stream)

    def _count_failure(self, exc: Exception) -> None:
        leaf: BaseException = exc
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        reason = _describe(leaf)
        if isinstance(leaf, DecodeError):
            self.stats.bad_frames += 1
        elif isinstance(leaf, SyncSessionError) and "timed out" in reason:
            self.stats.timeouts += 1
        elif isinstance(leaf, SyncSessionError | trio.BrokenResourceError | OSError):
            self.stats.disconnects += 1
        else:
            self.stats.internal_errors += 1
            log.error("sync session failed unexpectedly", exc_info=exc)
            return
        log.debug("sync session ended: %s", reason)

    async def _session(self, stream: trio.abc.Stream, first: bytes) -> None:
        framed = _Framed(stream, self.cluster_id, self.max_frame)
        hello = decode_envelope(first, max_size=self.max_frame)
        if not isinstance(hello.message, SyncStart):
            raise DecodeError(f"expected SyncStart, got {type(hello.message).__name__}")
        payload = await framed.receive_payload(self.hello_timeout, "SyncClock")
        if payload is None:
            raise SyncSessionError("connection closed before SyncClock")
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
            if not _observe_clock(self.store, clock.ts):
                self.stats.clock_drift += 1
            state = self.store.sync_state()
            ts = _clock_now(self.store)
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

    async def _answer(self, framed: _Framed) -> None:
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
                        raise SyncSessionError(
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
                        raise SyncSessionError(f"more than {MAX_SESSION_NEEDS} needs")
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

    async def _next_message(self, framed: _Framed) -> Message:
        """The client's next message of a known type (unknown ones are counted and skipped)."""
        while True:
            try:
                return await framed.receive(self.session_timeout, "a request")
            except UnknownMessageError:
                self.stats.unknown_messages += 1

    async def _stream(self, framed: _Framed, batch: list[SyncRequest], served: Served) -> None:
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


def _is_swim(payload: bytes) -> bool:
    """Whether a frame holds a SWIM packet (a valid envelope whose tag is a SWIM tag)."""
    try:
        decode_envelope(payload)
    except UnknownMessageError as exc:
        return exc.tag in SWIM_TAGS
    except DecodeError:
        return False
    return False


# -- client -------------------------------------------------------------------------------------


@attrs.define
class PeerReport:
    """How the session with one peer went."""

    addr: Addr
    ok: bool = False
    error: str | None = None
    actor_id: bytes | None = None
    needs_sent: int = 0
    changesets: int = 0
    unsolicited: int = 0
    bytes_received: int = 0
    duration: float = 0.0
    clock_drift: bool = False


@attrs.define
class SyncReport:
    """One round: a report per peer, in the order the peers were given."""

    peers: list[PeerReport]
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether at least one peer completed its session."""
        return any(p.ok for p in self.peers)

    @property
    def changesets(self) -> int:
        return sum(p.changesets for p in self.peers)

    def by_addr(self) -> dict[Addr, PeerReport]:
        return {p.addr: p for p in self.peers}


@attrs.define(eq=False)
class _Client:
    """One peer's session, as seen by the client."""

    report: PeerReport
    framed: _Framed | None = None
    state: SyncState | None = None
    started: float = 0.0


async def sync_with(
    store: Store,
    cluster_id: int,
    peers: Sequence[Addr],
    deliver: Deliver,
    *,
    rng: random.Random,
    connect_timeout: float = 3.0,
    handshake_timeout: float = 2.0,
    receive_timeout: float = 30.0,
    send_timeout: float = 10.0,
    round_timeout: float = 300.0,
    max_frame: int = MAX_FRAME,
    security: GossipSecurity | None = None,
    learn: Callable[[SyncState], None] | None = None,
) -> SyncReport:
    """One anti-entropy round with ``peers`` (already chosen, e.g. by ``choose_peers``).

    Changesets are handed to ``deliver`` in batches (awaiting it is the backpressure). Never
    raises for a peer's failure: see ``SyncReport``. ``rng`` shuffles the servers before
    planning, so equal peers share the work differently from round to round. ``learn`` gets
    each server's state once its handshake succeeded (what it advertises).
    """
    started = trio.current_time()
    clients = [_Client(PeerReport(addr)) for addr in peers]
    for client in clients:
        client.report.error = "round timed out"

    async def handshake(client: _Client) -> None:
        client.started = trio.current_time()
        try:
            client.state = await _handshake(
                store,
                cluster_id,
                client,
                connect_timeout,
                handshake_timeout,
                send_timeout,
                max_frame,
                security,
            )
        except Exception as exc:
            _fail(client, exc)

    async def session(client: _Client, plan: list[tuple[bytes, list[Need]]]) -> None:
        assert client.framed is not None
        try:
            await _run_session(
                client.framed, client.report, plan, deliver, receive_timeout, send_timeout
            )
        except Exception as exc:
            _fail(client, exc)
        else:
            client.report.ok, client.report.error = True, None
            client.report.duration = trio.current_time() - client.started

    try:
        with trio.move_on_after(round_timeout):
            async with trio.open_nursery() as nursery:
                for client in clients:
                    nursery.start_soon(handshake, client)
            ready = [c for c in clients if c.state is not None]
            if learn is not None:
                for client in ready:
                    assert client.state is not None
                    learn(client.state)
            order = list(range(len(ready)))
            rng.shuffle(order)
            ours = store.sync_state()
            theirs = {i: state for i in order if (state := ready[i].state) is not None}
            plan = plan_requests(ours, theirs)
            async with trio.open_nursery() as nursery:
                for i in order:
                    nursery.start_soon(session, ready[i], plan[i])
    finally:
        for client in clients:
            if client.framed is not None:
                client.report.bytes_received = client.framed.bytes_received
                with trio.CancelScope(shield=True):  # or a cancelled round leaks the others
                    await trio.aclose_forcefully(client.framed.stream)
            if not client.report.ok and not client.report.duration:
                client.report.duration = trio.current_time() - (client.started or started)
    return SyncReport([c.report for c in clients], trio.current_time() - started)


def _fail(client: _Client, exc: Exception) -> None:
    client.state = None
    client.report.ok = False
    client.report.error = _describe(exc)
    client.report.duration = trio.current_time() - client.started
    log.debug("sync with %s failed: %s", client.report.addr, client.report.error)


async def _handshake(
    store: Store,
    cluster_id: int,
    client: _Client,
    connect_timeout: float,
    handshake_timeout: float,
    send_timeout: float,
    max_frame: int,
    security: GossipSecurity | None,
) -> SyncState:
    host, port = client.report.addr
    raw: trio.SocketStream | None = None
    with trio.move_on_after(connect_timeout):
        raw = await trio.open_tcp_stream(host, port)
    if raw is None:
        raise SyncSessionError(f"timed out after {connect_timeout:g} s connecting")
    stream: trio.abc.Stream = raw
    if security is not None:
        try:
            stream = await security.client(raw, (host, port))
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(raw)
            raise
    client.framed = framed = _Framed(stream, cluster_id, max_frame)
    ts = _clock_now(store)
    await framed.send([SyncStart(store.actor_id), SyncClock(ts)], send_timeout)
    payload = await framed.receive_payload(handshake_timeout, "the peer's SyncState")
    if payload is None:
        raise SyncSessionError("connection closed before the peer's SyncState")
    if len(payload) > MAX_STATE_FRAME:
        raise SyncSessionError(f"the peer's SyncState is larger than {MAX_STATE_FRAME} bytes")
    envelope = decode_envelope(payload, max_size=max_frame)  # a rejection may be in any cluster
    reply = envelope.message
    if isinstance(reply, SyncRejection):
        raise SyncSessionError(REJECTION_TEXT.get(reply.reason, f"rejected: {reply.reason}"))
    if envelope.cluster_id != cluster_id:
        raise SyncSessionError(f"the peer answered for cluster {envelope.cluster_id}")
    if not isinstance(reply, SyncState):
        raise DecodeError(f"expected SyncState, got {type(reply).__name__}")
    if reply.actor_id == store.actor_id:
        raise SyncSessionError("the peer is this node")
    clock = await framed.receive(handshake_timeout, "the peer's SyncClock")
    if not isinstance(clock, SyncClock):
        raise DecodeError(f"expected SyncClock, got {type(clock).__name__}")
    client.report.clock_drift = not _observe_clock(store, clock.ts)
    client.report.actor_id = reply.actor_id
    return reply


async def _run_session(
    framed: _Framed,
    report: PeerReport,
    plan: list[tuple[bytes, list[Need]]],
    deliver: Deliver,
    receive_timeout: float,
    send_timeout: float,
) -> None:
    """Send the plan's requests (then SyncDone) while receiving and delivering changesets."""

    async def send_requests() -> None:
        for request in _requests(plan):
            await framed.send([request], send_timeout)
            report.needs_sent += sum(len(needs) for _, needs in request.needs)
        await framed.send([SyncDone()], send_timeout)

    solicited = Solicited(plan)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_requests)
        batch: list[Item] = []
        batch_bytes = framed.bytes_received
        while True:
            try:
                msg = await framed.receive(receive_timeout, "changesets")
            except UnknownMessageError:
                continue  # a newer peer's message: skip it
            if isinstance(msg, SyncDone):
                break
            if not isinstance(msg, Changeset | EmptyChangeset):
                raise DecodeError(f"expected a changeset, got {type(msg).__name__}")
            parts = solicited.admit(msg)
            if not parts:
                report.unsolicited += 1
                continue
            batch += parts
            if len(batch) >= DELIVER_BATCH or framed.bytes_received - batch_bytes >= DELIVER_BYTES:
                await deliver(batch)
                report.changesets += len(batch)
                batch, batch_bytes = [], framed.bytes_received
        if batch:
            await deliver(batch)
            report.changesets += len(batch)


def _requests(plan: list[tuple[bytes, list[Need]]]) -> list[SyncRequest]:
    """The plan cut into SyncRequest frames of at most NEEDS_PER_REQUEST needs each."""
    flat = [(actor, need) for actor, needs in plan for need in needs]
    out: list[SyncRequest] = []
    for start in range(0, len(flat), NEEDS_PER_REQUEST):
        grouped: list[tuple[bytes, list[Need]]] = []
        for actor, need in flat[start : start + NEEDS_PER_REQUEST]:
            if grouped and grouped[-1][0] == actor:
                grouped[-1][1].append(need)
            else:
                grouped.append((actor, [need]))
        out.append(SyncRequest(tuple((actor, tuple(needs)) for actor, needs in grouped)))
    return out


__all__ = [
    "MAX_FRAME",
    "MAX_REQUEST_FRAME",
    "PeerReport",
    "ServerStats",
    "SyncReport",
    "SyncServer",
    "SyncSessionError",
    "sync_with",
]
