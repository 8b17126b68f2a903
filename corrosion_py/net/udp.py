"""The node's one UDP socket: membership packets and changeset broadcasts share it (the message
kind is in each packet's envelope), with fault injection on the sending side.

Cost per datagram is the design input here:

- **Receive in bursts, dispatch inline.** One task waits until the socket is readable, then reads
  every datagram already there (up to ``MAX_BURST``) with plain non-blocking ``recvfrom`` calls
  and hands each to ``handler`` at once: no per-datagram task switch, channel or await. After
  the burst, ``on_burst_end`` runs (the broadcast flushes what the burst queued, so datagrams
  bound for one peer share packets). The kernel's receive buffer is the inbound queue
  (``RECEIVE_BUFFER`` bytes asked for; what overflows it is lost, as UDP is, and repaired by
  broadcast and sync).
- **Send without waiting.** ``send`` is a plain non-blocking ``sendto``: a datagram the kernel
  cannot take now is dropped and counted (``send_errors``), never queued.
- A handler that raises is a bug: the datagram is dropped, counted in ``handler_errors`` and
  logged at most once a minute; the loop goes on (no datagram can stop a node).

Datagrams larger than ``max_datagram`` are refused on send and dropped on receive, and counted.
With a `GossipSecurity` (net/secure.py) every datagram is sealed on send and opened on receive
before anything else reads it; what does not open is dropped and counted by reason there. The
room a sender has for its payload is then ``max_payload`` = ``max_datagram`` minus the sealing
overhead.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from corrosion_py.addr import Addr
from corrosion_py.net.faults import FaultPlan, deliveries
from corrosion_py.net.secure import GossipSecurity

log = logging.getLogger(__name__)

MAX_DATAGRAM = 1_200  # payload bytes; fits an IPv4 path MTU of 1,280 with headers to spare
MAX_BURST = 256
"""Datagrams read per wake-up before other tasks get a turn."""
RECEIVE_BUFFER = 4 * 1024 * 1024
"""Bytes of kernel receive buffer asked for (the kernel may cap it)."""
ERROR_LOG_INTERVAL = 60.0

Handler = Callable[[Addr, bytes], None]


@attrs.define
class UdpStats:
    sent: int = 0
    received: int = 0
    lost_by_fault: int = 0
    duplicated_by_fault: int = 0
    dropped_too_large: int = 0
    dropped_unsealed: int = 0
    """Datagrams that did not open (reasons in GossipSecurity.dropped)."""
    send_errors: int = 0
    receive_errors: int = 0
    handler_errors: int = 0
    unhandled: int = 0
    """Datagrams that arrived before a handler was set."""


class UdpEndpoint:
    """A bound UDP socket. Use `UdpEndpoint.open` in a nursery; set ``handler``."""

    def __init__(
        self,
        sock: socket.socket,
        nursery: trio.Nursery,
        *,
        faults: FaultPlan,
        rng: random.Random,
        max_datagram: int,
        security: GossipSecurity | None = None,
    ) -> None:
        self._sock = sock
        self._nursery = nursery
        self.faults = faults
        self._rng = rng
        self.max_datagram = max_datagram
        self.security = security
        self.stats = UdpStats()
        self.handler: Handler | None = None
        """Where each datagram goes (synchronous; it must not block)."""
        self.on_burst_end: Callable[[], None] | None = None
        """Called after each burst of datagrams was handed over."""
        host, port = sock.getsockname()[:2]
        self.addr: Addr = (host, port)
        self._last_error_log = -ERROR_LOG_INTERVAL

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        faults: FaultPlan | None = None,
        seed: int | None = None,
        max_datagram: int = MAX_DATAGRAM,
        security: GossipSecurity | None = None,
    ) -> AsyncIterator[UdpEndpoint]:
        """Bind, run the receive loop, and close everything when the block exits."""
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, _, _, _, sockaddr = infos[0]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            with contextlib.suppress(OSError):  # else the kernel's default
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.bind(sockaddr)
            async with trio.open_nursery() as nursery:
                endpoint = cls(
                    sock,
                    nursery,
                    faults=faults or FaultPlan(),
                    rng=random.Random(seed),
                    max_datagram=max_datagram,
                    security=security,
                )
                nursery.start_soon(endpoint._receive_loop)
                try:
                    yield endpoint
                finally:
                    nursery.cancel_scope.cancel()

    async def _receive_loop(self) -> None:
        sock, stats, limit = self._sock, self.stats, self.max_datagram
        while True:
            await trio.lowlevel.wait_readable(sock)
            now = time.time()
            for _ in range(MAX_BURST):
                try:
                    data, sockaddr = sock.recvfrom(65_536)
                except BlockingIOError:
                    break
                except OSError:  # e.g. ECONNREFUSED from an ICMP error of an earlier send
                    stats.receive_errors += 1
                    continue
                if len(data) > limit:
                    stats.dropped_too_large += 1
                    continue
                addr: Addr = (sockaddr[0], sockaddr[1])
                if self.security is not None:
                    opened = self.security.open(addr, data, now)
                    if opened is None:
                        stats.dropped_unsealed += 1
                        continue
                    data = opened
                stats.received += 1
                self._dispatch(addr, data)
            else:
                await trio.lowlevel.checkpoint()  # a full burst: let other tasks run
            if self.on_burst_end is not None:
                self._call(self.on_burst_end)

    def _dispatch(self, addr: Addr, data: bytes) -> None:
        handler = self.handler
        if handler is None:
            self.stats.unhandled += 1
            return
        try:
            handler(addr, data)
        except Exception:
            self.stats.handler_errors += 1
            self._log_error()

    def _call(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            self.stats.handler_errors += 1
            self._log_error()

    def _log_error(self) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.exception("handling a datagram failed (%d so far)", self.stats.handler_errors)

    def kernel_drops(self) -> int | None:
        """Datagrams the kernel dropped for this socket because its receive buffer was full
        (the ``drops`` column of /proc/net/udp; None where that cannot be read)."""
        family = "udp6" if self._sock.family == socket.AF_INET6 else "udp"
        port = f":{self.addr[1]:04X} "
        try:
            lines = Path(f"/proc/net/{family}").read_text().splitlines()[1:]
        except OSError:
            return None
        for line in lines:
            fields = line.split()
            if len(fields) > 12 and (fields[1] + " ").endswith(port):
                return int(fields[-1])
        return None

    @property
    def max_payload(self) -> int:
        """The largest payload ``send`` takes: the datagram limit less the sealing overhead."""
        return self.max_datagram - (self.security.overhead if self.security is not None else 0)

    def send(self, addr: Addr, data: bytes) -> bool:
        """Send one datagram now (sealed, then through the fault plan, so a duplicate is the
        same bytes); False if it was refused as larger than ``max_payload``."""
        if len(data) > self.max_payload:
            self.stats.dropped_too_large += 1
            return False
        if self.security is not None:
            data = self.security.seal(addr, data, time.time())
        if not self.faults.active:
            self._send_now(addr, data)
            return True
        copies = deliveries(self.faults, self._rng, self.addr, addr)
        if not copies:
            self.stats.lost_by_fault += 1
        self.stats.duplicated_by_fault += max(0, len(copies) - 1)
        for delay in copies:
            if delay > 0:
                self._nursery.start_soon(self._send_later, delay, addr, data)
            else:
                self._send_now(addr, data)
        return True

    async def _send_later(self, delay: float, addr: Addr, data: bytes) -> None:
        await trio.sleep(delay)
        self._send_now(addr, data)

    def _send_now(self, addr: Addr, data: bytes) -> None:
        try:
            self._sock.sendto(data, addr)
        except OSError:  # a full buffer, or ECONNREFUSED from an earlier ICMP: best effort
            self.stats.send_errors += 1
        else:
            self.stats.sent += 1
