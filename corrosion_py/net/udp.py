"""The node's one UDP socket: membership packets and changeset broadcasts share it (the message
kind is in each packet's envelope), with fault injection on the sending side.

Every queue is bounded: inbound datagrams wait in a memory channel of `queue_size`; when it is
full the datagram is dropped and counted (gossip repeats and sync repairs what is lost). Datagrams
larger than `max_datagram` are refused on send and dropped on receive, and counted.

With a `GossipSecurity` (net/secure.py) every datagram is sealed on send and opened on receive
before anything else reads it; what does not open is dropped and counted by reason there. The
room a sender has for its payload is then ``max_payload`` = ``max_datagram`` minus the sealing
overhead, and payloads above it are refused on send.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from corrosion_py.addr import Addr
from corrosion_py.net.faults import FaultPlan, deliveries
from corrosion_py.net.secure import GossipSecurity

MAX_DATAGRAM = 1_200  # payload bytes; fits an IPv4 path MTU of 1,280 with headers to spare


@attrs.define
class UdpStats:
    sent: int = 0
    received: int = 0
    lost_by_fault: int = 0
    duplicated_by_fault: int = 0
    dropped_queue_full: int = 0
    dropped_too_large: int = 0
    dropped_unsealed: int = 0
    """Datagrams that did not open (reasons in GossipSecurity.dropped)."""
    send_errors: int = 0


class UdpEndpoint:
    """A bound UDP socket with a bounded inbound queue. Use `UdpEndpoint.open` in a nursery."""

    def __init__(
        self,
        sock: trio.socket.SocketType,
        nursery: trio.Nursery,
        *,
        faults: FaultPlan,
        rng: random.Random,
        queue_size: int,
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
        self._inbox_send, self._inbox = trio.open_memory_channel[tuple[Addr, bytes]](queue_size)
        host, port = sock.getsockname()[:2]
        self.addr: Addr = (host, port)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        faults: FaultPlan | None = None,
        seed: int | None = None,
        queue_size: int = 1024,
        max_datagram: int = MAX_DATAGRAM,
        security: GossipSecurity | None = None,
    ) -> AsyncIterator[UdpEndpoint]:
        """Bind, run the receive loop, and close everything when the block exits."""
        with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
            await sock.bind((host, port))
            async with trio.open_nursery() as nursery:
                endpoint = cls(
                    sock,
                    nursery,
                    faults=faults or FaultPlan(),
                    rng=random.Random(seed),
                    queue_size=queue_size,
                    max_datagram=max_datagram,
                    security=security,
                )
                nursery.start_soon(endpoint._receive_loop)
                try:
                    yield endpoint
                finally:
                    nursery.cancel_scope.cancel()

    async def _receive_loop(self) -> None:
        while True:
            data, addr = await self._sock.recvfrom(65_536)
            if len(data) > self.max_datagram:
                self.stats.dropped_too_large += 1
                continue
            if self.security is not None:
                opened = self.security.open((addr[0], addr[1]), data, time.time())
                if opened is None:
                    self.stats.dropped_unsealed += 1
                    continue
                data = opened
            try:
                self._inbox_send.send_nowait(((addr[0], addr[1]), data))
            except trio.WouldBlock:
                self.stats.dropped_queue_full += 1
            else:
                self.stats.received += 1

    async def receive(self) -> tuple[Addr, bytes]:
        """The next datagram: (sender address, payload)."""
        return await self._inbox.receive()

    @property
    def max_payload(self) -> int:
        """The largest payload ``send`` takes: the datagram limit less the sealing overhead."""
        return self.max_datagram - (self.security.overhead if self.security is not None else 0)

    async def send(self, addr: Addr, data: bytes) -> bool:
        """Send one datagram (sealed, then through the fault plan, so a duplicate is the same
        bytes); False if it was refused as larger than ``max_payload``."""
        if len(data) > self.max_payload:
            self.stats.dropped_too_large += 1
            return False
        if self.security is not None:
            data = self.security.seal(addr, data, time.time())
        if not self.faults.active:
            await self._send_now(addr, data)
            return True
        copies = deliveries(self.faults, self._rng, self.addr, addr)
        if not copies:
            self.stats.lost_by_fault += 1
        self.stats.duplicated_by_fault += max(0, len(copies) - 1)
        for delay in copies:
            if delay > 0:
                self._nursery.start_soon(self._send_later, delay, addr, data)
            else:
                await self._send_now(addr, data)
        return True

    async def _send_later(self, delay: float, addr: Addr, data: bytes) -> None:
        await trio.sleep(delay)
        await self._send_now(addr, data)

    async def _send_now(self, addr: Addr, data: bytes) -> None:
        try:
            await self._sock.sendto(data, addr)
        except OSError:  # e.g. ECONNREFUSED from an earlier ICMP: UDP is best effort
            self.stats.send_errors += 1
        else:
            self.stats.sent += 1
