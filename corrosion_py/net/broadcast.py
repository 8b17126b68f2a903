"""The trio shell of changeset broadcast: drives one node's sans-IO ``replication.Gossip`` (all
of its rules: pieces, decoding, claims, dedupe, relays) over the shared UDP endpoint.

- Local: a committed changeset's first rounds go out at once (``local``).
- Received: the port routes broadcast datagrams to ``handle_datagram``; what the core returns
  for apply goes to ``enqueue`` (never waiting: the apply queue drops its oldest on overflow),
  and the relay rounds it returns are sent at once.
- One task sleeps until the core's next deadline (or until a call moved it), then ticks it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import trio

from corrosion_py.addr import Addr
from corrosion_py.net.udp import UdpEndpoint
from corrosion_py.replication.broadcast import Broadcaster, Send
from corrosion_py.replication.gossip import Gossip
from corrosion_py.wire.messages import Changeset, Item

Enqueue = Callable[[Sequence[Item]], None]

if TYPE_CHECKING:  # its type only: the agent, which owns the queue, imports this module
    pass


class Gossiper:
    """Broadcast of one node's changesets over the shared UDP endpoint."""

    def __init__(
        self,
        core: Gossip,
        endpoint: UdpEndpoint,
        *,
        enqueue: Enqueue,
    ) -> None:
        self.core = core
        self.endpoint = endpoint
        self.enqueue = enqueue
        self._wake = trio.Event()

    @property
    def broadcaster(self) -> Broadcaster:
        return self.core.broadcaster

    @property
    def stats(self) -> Counter[str]:
        """The core's counters (``Gossip.stats``)."""
        return self.core.stats

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Tick the core at its deadlines until cancelled."""
        task_status.started()
        while True:
            deadline = self.core.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else float("inf")):
                await self._wake.wait()
            self._wake = trio.Event()
            await self._send(self.core.tick(trio.current_time()))

    async def local(self, changeset: Changeset) -> None:
        """Broadcast a changeset committed on this node."""
        await self._send(self.core.local(trio.current_time(), changeset))
        self._wake.set()

    async def handle_datagram(self, addr: Addr, data: bytes) -> None:
        """A broadcast datagram arrived (the port routed it here by its tag)."""
        received = self.core.datagram(trio.current_time(), data)
        if received.item is not None:
            self.enqueue([received.item])
            await self._send(received.sends)
            self._wake.set()

    async def _send(self, sends: Sequence[Send]) -> None:
        for send in sends:
            await self.endpoint.send(send.addr, send.data)
