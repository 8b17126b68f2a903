"""The gossip port: one number, UDP and TCP, and the two routers that share it out.

- **UDP router.** Each datagram (opened first when gossip is sealed, net/udp.py) goes by its
  envelope's tag (``wire.peek_tag``): SWIM tags to membership, any other tag to changeset
  broadcast (whose decoder counts what it cannot read). A datagram without a readable tag, or
  for a route the port does not have, is dropped and counted in ``udp_stats["unrouted"]``. The
  time of the last datagram from each address is kept for ``last_seen`` (the owner prunes it to
  the members with ``forget``; at most ``MAX_HEARD`` addresses, the least recently heard
  forgotten first).
- **TCP router.** With keys, a connection is sealed first: the client proves it holds a key
  before anything else is read (net/secure.py); at most ``MAX_HANDSHAKES`` handshakes run at
  once, further connections are closed at once and counted in the security's
  ``streams["refused_busy"]``. Without keys at most ``MAX_PLAINTEXT_STREAMS`` connections are
  served at once (each bounded in time by its handler), further ones closed and counted in
  ``tcp_stats["refused_busy"]``. Then the first frame, read exactly (nothing past it, at most
  ``MAX_FIRST_FRAME`` bytes, within ``FIRST_FRAME_TIMEOUT``), picks the handler: a SWIM packet
  goes to push-pull, anything else to the sync server (which refuses what is not a
  ``SyncStart``, counted in its own stats). A first frame that does not come, is too large or
  names a route the port does not have (a membership-only node) closes the connection,
  counted by reason in ``tcp_stats``. The router closes every connection when its handler
  returns.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import attrs
import trio

from corrosion_py.addr import Addr
from corrosion_py.net.faults import FaultPlan
from corrosion_py.net.framed import SessionError, read_first_frame
from corrosion_py.net.secure import GossipSecurity
from corrosion_py.net.udp import UdpEndpoint
from corrosion_py.wire.codec import decode_envelope, peek_tag
from corrosion_py.wire.errors import DecodeError, UnknownMessageError
from corrosion_py.wire.swim import SWIM_TAGS

MAX_HANDSHAKES = 64
"""Gossip TCP connections in their encryption handshake at once; more are closed at once and
counted (each handshake lasts at most the handshake timeout)."""
MAX_PLAINTEXT_STREAMS = 64
"""Without keys, gossip TCP connections served at once (push-pulls and sync sessions, each
bounded in time); more are closed at once and counted in ``tcp_stats["refused_busy"]``."""
MAX_FIRST_FRAME = 1024 * 1024
"""The largest first frame (a sync hello or a push-pull frame are far smaller)."""
FIRST_FRAME_TIMEOUT = 5.0
MAX_HEARD = 65_536

DatagramHandler = Callable[[Addr, bytes], None]
"""Takes one datagram, synchronously (it runs inside the receive loop: it must not block)."""
StreamHandler = Callable[[trio.abc.Stream, bytes, Addr], Awaitable[None]]
"""A connection, its first frame's payload and the peer's address."""


@attrs.frozen
class Routes:
    """Where the port hands what arrives (None: this node does not serve it)."""

    swim: DatagramHandler
    broadcast: DatagramHandler | None = None
    burst_end: Callable[[], None] | None = None
    """Called after each burst of datagrams (the broadcast flushes what the burst queued)."""
    push_pull: StreamHandler | None = None
    sync: StreamHandler | None = None


class GossipPort:
    """The UDP endpoint and TCP listeners of one gossip port, and their routers. Get one with
    ``open_gossip_port``; start ``serve`` in a nursery."""

    def __init__(
        self,
        endpoint: UdpEndpoint,
        listeners: list[trio.SocketListener],
    ) -> None:
        self.endpoint = endpoint
        self.listeners = listeners
        self.security = endpoint.security
        self.udp_stats: Counter[str] = Counter()
        """unrouted."""
        self.tcp_stats: Counter[str] = Counter()
        """refused_busy, gone (closed before it could be read), first_frame_timeout,
        bad_first_frame, no_route, push_pull, sync."""
        self._heard: dict[Addr, float] = {}  # insertion order is recency
        self._handshakes = 0
        self._plaintext_streams = 0
        self._routes: Routes | None = None

    @property
    def addr(self) -> Addr:
        return self.endpoint.addr

    def last_seen(self, addr: Addr) -> float | None:
        """Wall time of the last datagram from ``addr`` (None: none, or forgotten)."""
        return self._heard.get(addr)

    def forget(self, keep: Callable[[Addr], bool]) -> None:
        """Forget the addresses ``keep`` refuses (the owner keeps its members)."""
        for addr in [a for a in self._heard if not keep(a)]:
            del self._heard[addr]

    async def serve(
        self, routes: Routes, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Route datagrams and connections until cancelled."""
        self._routes = routes
        self.endpoint.handler = self._route_datagram
        self.endpoint.on_burst_end = routes.burst_end
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(trio.serve_listeners, partial(self._route_stream, routes), self.listeners)
            )
            task_status.started()

    def _route_datagram(self, addr: Addr, data: bytes) -> None:
        """One datagram, in the endpoint's receive loop: to SWIM or broadcast by its tag."""
        heard = self._heard
        heard.pop(addr, None)
        heard[addr] = time.time()
        if len(heard) > MAX_HEARD:
            del heard[next(iter(heard))]
        tag = peek_tag(data)
        routes = self._routes
        assert routes is not None
        if tag in SWIM_TAGS:
            routes.swim(addr, data)
        elif tag is not None and routes.broadcast is not None:
            routes.broadcast(addr, data)
        else:
            self.udp_stats["unrouted"] += 1

    async def _route_stream(self, routes: Routes, raw: trio.SocketStream) -> None:
        try:
            peer = _peer_of(raw)
            if peer is None:
                self.tcp_stats["gone"] += 1
            elif self.security is None:
                if self._plaintext_streams >= MAX_PLAINTEXT_STREAMS:
                    self.tcp_stats["refused_busy"] += 1
                    return
                self._plaintext_streams += 1
                try:
                    await self._dispatch(routes, raw, peer)
                finally:
                    self._plaintext_streams -= 1
            elif self._handshakes >= MAX_HANDSHAKES:
                self.security.streams["refused_busy"] += 1
            else:
                self._handshakes += 1
                try:
                    stream = await self.security.server(raw, peer)
                except (OSError, trio.BrokenResourceError):
                    self.security.streams["failed_io"] += 1
                    return
                finally:
                    self._handshakes -= 1
                if stream is not None:
                    await self._dispatch(routes, stream, peer)
        finally:
            with trio.CancelScope(shield=True):  # a cancelled close must still close
                await trio.aclose_forcefully(raw)

    async def _dispatch(self, routes: Routes, stream: trio.abc.Stream, peer: Addr) -> None:
        """Read the first frame and hand the connection to the handler it names."""
        try:
            first = await read_first_frame(stream, MAX_FIRST_FRAME, FIRST_FRAME_TIMEOUT)
        except SessionError as exc:
            self.tcp_stats["first_frame_timeout" if "timed out" in str(exc) else "gone"] += 1
            return
        except DecodeError:  # larger than MAX_FIRST_FRAME
            self.tcp_stats["bad_first_frame"] += 1
            return
        except (OSError, trio.BrokenResourceError):
            self.tcp_stats["gone"] += 1
            return
        handler = routes.push_pull if _is_swim(first) else routes.sync
        if handler is None:
            self.tcp_stats["no_route"] += 1
            return
        self.tcp_stats["push_pull" if handler is routes.push_pull else "sync"] += 1
        await handler(stream, first, peer)


def _peer_of(raw: trio.SocketStream) -> Addr | None:
    """The connection's remote address (None: the peer is already gone)."""
    try:
        host, port = raw.socket.getpeername()[:2]
    except OSError:
        return None
    return (host, port)


def _is_swim(payload: bytes) -> bool:
    """Whether a frame holds a SWIM packet (a valid envelope whose tag is a SWIM tag)."""
    try:
        decode_envelope(payload)
    except UnknownMessageError as exc:
        return exc.tag in SWIM_TAGS
    except DecodeError:
        return False
    return False


@asynccontextmanager
async def open_gossip_port(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    faults: FaultPlan | None = None,
    seed: int | None = None,
    attempts: int = 20,
    security: GossipSecurity | None = None,
) -> AsyncIterator[GossipPort]:
    """The gossip port: a UDP endpoint and TCP listeners on the same number.

    With ``port=0`` the UDP side picks a free port and TCP binds the same number; if TCP finds
    it taken, both are tried again on another port (``attempts`` times)."""
    for attempt in range(attempts):
        async with UdpEndpoint.open(host, port, faults=faults, seed=seed, security=security) as ep:
            try:
                listeners = await trio.open_tcp_listeners(ep.addr[1], host=ep.addr[0])
            except OSError:
                if port != 0 or attempt == attempts - 1:
                    raise
                continue
            try:
                yield GossipPort(ep, listeners)
            finally:
                for listener in listeners:
                    await listener.aclose()
            return
    raise AssertionError("unreachable")  # pragma: no cover
