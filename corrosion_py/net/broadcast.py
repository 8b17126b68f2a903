"""The trio shell of changeset broadcast: drives one node's sans-IO ``replication.Gossip`` (its
rules: pieces, decoding, claims, dedupe, the broadcast tree) over the shared UDP endpoint.

- Local: a committed changeset's pieces are pushed at once (``local``) and sent at the end of
  the scheduler's current batch of tasks: the transactions of one group commit resume together,
  so their pieces share datagrams.
- Received: the port hands broadcast datagrams to ``handle_datagram`` synchronously, inside the
  endpoint's receive loop; what the core returns for apply goes to ``enqueue`` (never waiting:
  the apply queue drops its oldest on overflow). What the datagrams queued to send goes out
  after the burst (``flush``), so pieces bound for one peer share datagrams.
- The core's deadlines (announcements, grafts) are entries of the node's timer heap
  (net/timers.py), one scheduled at a time: the earliest.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import trio

from corrosion_py.addr import Addr
from corrosion_py.net.timers import Timers
from corrosion_py.net.udp import UdpEndpoint
from corrosion_py.replication.gossip import Gossip
from corrosion_py.wire.messages import Changeset, Item

Enqueue = Callable[[Sequence[Item]], None]


class Gossiper:
    """Broadcast of one node's changesets over the shared UDP endpoint."""

    def __init__(
        self, core: Gossip, endpoint: UdpEndpoint, timers: Timers, *, enqueue: Enqueue
    ) -> None:
        self.core = core
        self.endpoint = endpoint
        self.timers = timers
        self.enqueue = enqueue
        self._scheduled = math.inf
        self._flush_soon = False

    @property
    def stats(self) -> Counter[str]:
        return self.core.stats

    def local(self, changeset: Changeset) -> None:
        """Broadcast a changeset committed on this node (sent once the tasks that are ready
        now have run)."""
        self.core.local(trio.current_time(), changeset)
        if not self._flush_soon:
            self._flush_soon = True
            trio.lowlevel.current_trio_token().run_sync_soon(self._flush_deferred)

    def _flush_deferred(self) -> None:
        self._flush_soon = False
        self.flush()

    def handle_datagram(self, addr: Addr, data: bytes) -> None:
        """A broadcast datagram arrived (the port routed it here by its tag)."""
        items = self.core.datagram(trio.current_time(), addr, data)
        if items:
            self.enqueue(items)

    def flush(self) -> None:
        """Send what is queued, and keep the timer at the core's next deadline."""
        for send in self.core.flush():
            self.endpoint.send(send.addr, send.data)
        deadline = self.core.next_deadline()
        if deadline is not None and deadline < self._scheduled:
            self._scheduled = deadline
            self.timers.call_at(deadline, self._tick)

    def _tick(self) -> None:
        self._scheduled = math.inf
        self.core.tick(trio.current_time())
        self.flush()
