"""The trio shell around the SWIM core: feeds it datagrams and timers from a UDP endpoint and
carries out its effects.

The core is sans-IO (`corrosion_py.swim`); this module owns the I/O only: the monotonic clock
(`trio.current_time`), one task per pending timer (the core ignores stale timer tokens, so none
is ever cancelled), encoding and sending packets, and handing events to the application through
a bounded channel (when nobody reads and it is full, events are dropped and counted: the member
list itself is always available from `members()`).
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from corrosion_py.net.udp import UdpEndpoint
from corrosion_py.swim import Swim
from corrosion_py.swim.events import Effect, Event, MemberInfo, Notify, Send, SetTimer, Timer
from corrosion_py.wire.swim import Addr, encode_packet


class Membership:
    """Runs one SWIM core on one UDP endpoint. Start `run` in a nursery (`nursery.start`)."""

    def __init__(self, core: Swim, endpoint: UdpEndpoint, *, events_size: int = 1024) -> None:
        self.core = core
        self.endpoint = endpoint
        self._events_send, self.events = trio.open_memory_channel[Event](events_size)
        self.events_dropped = 0
        self._nursery: trio.Nursery | None = None

    def members(self) -> list[MemberInfo]:
        return self.core.members()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Receive and dispatch until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                addr, data = await self.endpoint.receive()
                await self._carry_out(self.core.handle_bytes(trio.current_time(), addr, data))

    async def join(self, addrs: Sequence[Addr]) -> None:
        """Join through bootstrap addresses (none: found a new cluster); the core retries."""
        await self._carry_out(self.core.join(trio.current_time(), list(addrs)))

    async def leave(self) -> None:
        """Announce a graceful leave; the core keeps answering until its rumour is spread."""
        await self._carry_out(self.core.leave(trio.current_time()))

    async def _carry_out(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                await self.endpoint.send(effect.addr, encode_packet(effect.packet, check=False))
            elif isinstance(effect, SetTimer):
                assert self._nursery is not None, "run() must be started first"
                self._nursery.start_soon(self._timer, effect.delay, effect.token)
            elif isinstance(effect, Notify):
                try:
                    self._events_send.send_nowait(effect.event)
                except trio.WouldBlock:
                    self.events_dropped += 1

    async def _timer(self, delay: float, token: Timer) -> None:
        await trio.sleep(delay)
        await self._carry_out(self.core.handle_timer(trio.current_time(), token))
