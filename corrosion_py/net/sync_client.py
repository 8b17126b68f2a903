"""The client side of anti-entropy sync over TCP: one round with a few peers in parallel. The
round's state machine (states gathered, the plan, the requests, what to believe, deliveries) is
sans-IO, in ``corrosion_py.replication.sync_client``; this file moves its frames.

Rules (the protocol itself is in net/sync_server.py):

- Connect and handshake with every peer in parallel (sealing the connection first with a
  `GossipSecurity`, net/secure.py); plan once every handshake ended; then, per server in
  parallel, one task sends the requests and ``SyncDone`` while the session reads changesets
  and hands them to ``deliver`` in batches. Awaiting ``deliver`` before reading on is the
  backpressure: a slow apply queue slows the server down through TCP.
- A server's ``SyncState`` frame may be at most ``MAX_STATE_FRAME`` bytes, checked before it is
  decoded; other frames at most ``max_frame`` (16 MiB: a changeset with a large value). A
  rejection may come in any cluster id; a state must be of ours and not our own.
- Every step has a timeout and the whole round a bound (``round_timeout``). A peer that fails
  (refused, rejected, stalled, broken frames) gets an error in its report and the others carry
  on: ``sync_with`` never raises for a peer's failure.
- No SQLite transaction or lock is held across a network await (the bookkeeping snapshot and
  the clock are in-memory, thread-safe store calls).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from corrosion_py.addr import Addr
from corrosion_py.net.framed import Framed, SessionError, describe
from corrosion_py.net.secure import GossipSecurity
from corrosion_py.net.sync_server import clock_now, observe_clock
from corrosion_py.replication.sync_client import Session, SyncClient
from corrosion_py.store.store import Store
from corrosion_py.wire.codec import decode_envelope
from corrosion_py.wire.errors import DecodeError, UnknownMessageError
from corrosion_py.wire.messages import (
    Changeset,
    EmptyChangeset,
    Item,
    SyncClock,
    SyncDone,
    SyncRejection,
    SyncStart,
    SyncState,
)

log = logging.getLogger(__name__)

Deliver = Callable[[list[Item]], Awaitable[None]]

MAX_FRAME = 16 * 1024 * 1024  # what a client accepts (a changeset with a large value)
MAX_STATE_FRAME = 4 * 1024 * 1024  # a server's SyncState, checked before decoding

REJECTION_TEXT = {
    "different_cluster": "rejected: the peer belongs to a different cluster",
    "max_concurrency": "rejected: the peer already serves its maximum of concurrent syncs",
    "not_member": "rejected: the peer does not hold this node as a live member (yet)",
    "already_syncing": "rejected: the peer is already serving this node a sync session",
}


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
class _Peer:
    """One peer's connection, as the client sees it."""

    report: PeerReport
    framed: Framed | None = None
    started: float = 0.0


async def sync_with(
    store: Store,
    cluster_id: int,
    peers: Sequence[Addr],
    deliver: Deliver,
    *,
    rng: random.Random | None = None,
    client: SyncClient[Addr] | None = None,
    connect_timeout: float = 3.0,
    handshake_timeout: float = 2.0,
    receive_timeout: float = 30.0,
    send_timeout: float = 10.0,
    round_timeout: float = 300.0,
    max_frame: int = MAX_FRAME,
    security: GossipSecurity | None = None,
) -> SyncReport:
    """One anti-entropy round with ``peers`` (already chosen, e.g. by ``SyncClient.choose``).

    ``client`` is the node's sync client: it learns what each server advertises and records
    the sessions that ended well; without one, a fresh client drawing from ``rng`` runs the
    round. Changesets are handed to ``deliver`` in batches (awaiting it is the backpressure).
    Never raises for a peer's failure: see ``SyncReport``.
    """
    if client is None:
        if rng is None:
            raise TypeError("sync_with needs the node's sync client, or an rng for a fresh one")
        client = SyncClient(rng)
    sync_round = client.round(peers)
    started = trio.current_time()
    conns = {addr: _Peer(PeerReport(addr)) for addr in dict.fromkeys(peers)}
    for conn in conns.values():
        conn.report.error = "round timed out"

    async def handshake(conn: _Peer) -> None:
        conn.started = trio.current_time()
        try:
            state = await _handshake(
                store, cluster_id, conn, connect_timeout, handshake_timeout, send_timeout,
                max_frame, security,
            )  # fmt: skip
        except Exception as exc:
            _fail(conn, exc)
        else:
            sync_round.answered(conn.report.addr, state)

    async def session(conn: _Peer, plan: Session) -> None:
        assert conn.framed is not None
        try:
            await _run_session(
                conn.framed, conn.report, plan, deliver, receive_timeout, send_timeout
            )
        except Exception as exc:
            _fail(conn, exc)
        else:
            conn.report.ok, conn.report.error = True, None
            conn.report.duration = trio.current_time() - conn.started
            client.completed(trio.current_time(), conn.report.addr)

    try:
        with trio.move_on_after(round_timeout):
            async with trio.open_nursery() as nursery:
                for conn in conns.values():
                    nursery.start_soon(handshake, conn)
            sessions = sync_round.plan(store.sync_state())
            async with trio.open_nursery() as nursery:
                for addr, plan in sessions.items():
                    nursery.start_soon(session, conns[addr], plan)
    finally:
        for conn in conns.values():
            if conn.framed is not None:
                conn.report.bytes_received = conn.framed.bytes_received
                with trio.CancelScope(shield=True):  # or a cancelled round leaks the others
                    await trio.aclose_forcefully(conn.framed.stream)
            if not conn.report.ok and not conn.report.duration:
                conn.report.duration = trio.current_time() - (conn.started or started)
    return SyncReport([conns[addr].report for addr in peers], trio.current_time() - started)


def _fail(conn: _Peer, exc: Exception) -> None:
    conn.report.ok = False
    conn.report.error = describe(exc)
    conn.report.duration = trio.current_time() - conn.started
    log.debug("sync with %s failed: %s", conn.report.addr, conn.report.error)


async def _handshake(
    store: Store,
    cluster_id: int,
    conn: _Peer,
    connect_timeout: float,
    handshake_timeout: float,
    send_timeout: float,
    max_frame: int,
    security: GossipSecurity | None,
) -> SyncState:
    host, port = conn.report.addr
    raw: trio.SocketStream | None = None
    with trio.move_on_after(connect_timeout):
        raw = await trio.open_tcp_stream(host, port)
    if raw is None:
        raise SessionError(f"timed out after {connect_timeout:g} s connecting")
    stream: trio.abc.Stream = raw
    if security is not None:
        try:
            stream = await security.client(raw, (host, port))
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(raw)
            raise
    conn.framed = framed = Framed(stream, cluster_id, max_frame)
    await framed.send([SyncStart(store.actor_id), SyncClock(clock_now(store))], send_timeout)
    payload = await framed.receive_payload(handshake_timeout, "the peer's SyncState")
    if payload is None:
        raise SessionError("connection closed before the peer's SyncState")
    if len(payload) > MAX_STATE_FRAME:
        raise SessionError(f"the peer's SyncState is larger than {MAX_STATE_FRAME} bytes")
    envelope = decode_envelope(payload, max_size=max_frame)  # a rejection may be in any cluster
    reply = envelope.message
    if isinstance(reply, SyncRejection):
        raise SessionError(REJECTION_TEXT.get(reply.reason, f"rejected: {reply.reason}"))
    if envelope.cluster_id != cluster_id:
        raise SessionError(f"the peer answered for cluster {envelope.cluster_id}")
    if not isinstance(reply, SyncState):
        raise DecodeError(f"expected SyncState, got {type(reply).__name__}")
    if reply.actor_id == store.actor_id:
        raise SessionError("the peer is this node")
    clock = await framed.receive(handshake_timeout, "the peer's SyncClock")
    if not isinstance(clock, SyncClock):
        raise DecodeError(f"expected SyncClock, got {type(clock).__name__}")
    conn.report.clock_drift = not observe_clock(store, clock.ts)
    conn.report.actor_id = reply.actor_id
    return reply


async def _run_session(
    framed: Framed,
    report: PeerReport,
    session: Session,
    deliver: Deliver,
    receive_timeout: float,
    send_timeout: float,
) -> None:
    """Send the session's requests (then SyncDone) while receiving and delivering changesets."""

    async def send_requests() -> None:
        for request in session.requests():
            await framed.send([request], send_timeout)
            report.needs_sent += sum(len(needs) for _, needs in request.needs)
        await framed.send([SyncDone()], send_timeout)

    async def hand_on(batch: list[Item]) -> None:
        await deliver(batch)
        report.changesets += len(batch)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_requests)
            while True:
                before = framed.bytes_received
                try:
                    msg = await framed.receive(receive_timeout, "changesets")
                except UnknownMessageError:
                    continue  # a newer peer's message: skip it
                if isinstance(msg, SyncDone):
                    break
                if not isinstance(msg, Changeset | EmptyChangeset):
                    raise DecodeError(f"expected a changeset, got {type(msg).__name__}")
                batch = session.receive(msg, framed.bytes_received - before)
                if batch:
                    await hand_on(batch)
            rest = session.finish()
            if rest:
                await hand_on(rest)
    finally:
        report.unsolicited = session.unsolicited
