"""The trio shell around the SWIM core: feeds it datagrams and timers and carries out its
effects (through ``swim.host.carry_out``, the dispatch every host shares).

The core is sans-IO (`corrosion_py.swim`); this module owns the I/O only: the monotonic clock
(`trio.current_time`), its timers (entries of the node's one timer heap, net/timers.py; the
core ignores stale timer tokens, so none is ever cancelled), encoding and sending packets
(datagrams are handled synchronously, in the endpoint's receive loop), handing events to the
application through a bounded channel (when nobody reads and it is full, events are dropped and
counted: the member list itself is always available from `members()`), and push-pulls over TCP
(net/pushpull.py): at most ``MAX_PUSH_PULLS`` run at once, further requests are skipped and
counted (the core asks again at its next tick). The gossip port (net/port.py) routes SWIM
datagrams to ``handle_datagram`` and push-pull connections to ``serve_push_pull``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import partial

import trio

from corrosion_py.addr import Addr
from corrosion_py.net import pushpull
from corrosion_py.net.secure import GossipSecurity
from corrosion_py.net.timers import Timers
from corrosion_py.net.udp import UdpEndpoint
from corrosion_py.swim import Swim
from corrosion_py.swim.events import MemberInfo, MembershipEvent, Timer
from corrosion_py.swim.host import carry_out
from corrosion_py.wire.errors import FrameTooLarge
from corrosion_py.wire.framing import FrameReader
from corrosion_py.wire.swim import Packet, Rumour, encode_packet

MAX_PUSH_PULLS = 4


class Membership:
    """Runs one SWIM core over one UDP endpoint. Start `run` in a nursery (`nursery.start`)."""

    def __init__(
        self,
        core: Swim,
        endpoint: UdpEndpoint,
        timers: Timers | None = None,
        *,
        events_size: int = 1024,
        security: GossipSecurity | None = None,
    ) -> None:
        """``security``: push-pull streams are sealed (the endpoint's datagrams are sealed by
        the endpoint itself)."""
        self.core = core
        self.endpoint = endpoint
        self._own_timers = timers is None
        self.timers = timers if timers is not None else Timers()
        """The node's timer heap (without one given, this membership runs its own)."""
        self.security = security
        self._events_send, self.events = trio.open_memory_channel[MembershipEvent](events_size)
        self.events_dropped = 0
        self.push_pull_stats: Counter[str] = Counter()
        """Push-pulls by outcome: ok, failed (with the error kind), skipped, served."""
        self._push_pulls = 0
        self._nursery: trio.Nursery | None = None

    def members(self) -> list[MemberInfo]:
        return self.core.members()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the core's timers and push-pulls until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self._own_timers:
                await nursery.start(self.timers.run)
            task_status.started()
            await trio.sleep_forever()

    def handle_datagram(self, addr: Addr, data: bytes) -> None:
        """Hand one SWIM datagram to the core (in the endpoint's receive loop)."""
        carry_out(self.core.handle_bytes(trio.current_time(), addr, data), self)

    async def join(self, addrs: Sequence[Addr]) -> None:
        """Join through bootstrap addresses (none: found a new cluster); the core retries."""
        carry_out(self.core.join(trio.current_time(), list(addrs)), self)
        await trio.lowlevel.checkpoint()

    async def leave(self) -> None:
        """Announce a graceful leave; the core keeps answering until its rumour is spread."""
        carry_out(self.core.leave(trio.current_time()), self)
        await trio.lowlevel.checkpoint()

    # -- swim.host.Host ---------------------------------------------------------------------------

    def send(self, addr: Addr, packet: Packet) -> None:
        self.endpoint.send(addr, encode_packet(packet, check=False))

    def set_timer(self, delay: float, token: Timer) -> None:
        self.timers.call_later(delay, partial(self._timer, token))

    def notify(self, event: MembershipEvent) -> None:
        try:
            self._events_send.send_nowait(event)
        except trio.WouldBlock:
            self.events_dropped += 1

    def push_pull(self, addr: Addr, members: tuple[Rumour, ...]) -> None:
        assert self._nursery is not None, "run() must be started first"
        if self._push_pulls >= MAX_PUSH_PULLS:
            self.push_pull_stats["skipped"] += 1
        else:
            self._push_pulls += 1
            self._nursery.start_soon(self._push_pull, addr)

    # -- push-pull --------------------------------------------------------------------------------

    async def merge(self, addr: Addr, members: Sequence[Rumour]) -> None:
        """Hand a peer's full member list to the core (either side of a push-pull)."""
        carry_out(self.core.handle_push_pull(trio.current_time(), addr, members), self)
        await trio.lowlevel.checkpoint()

    async def serve_push_pull(self, stream: trio.abc.Stream, first: bytes, peer: Addr) -> None:
        """Answer a push-pull whose first frame the gossip port read (its route handler)."""
        try:
            reader = FrameReader(pushpull.MAX_FRAME)
            await pushpull.serve(stream, reader, [first], self.core, self.merge, peer)
            self.push_pull_stats["served"] += 1
        except (OSError, trio.BrokenResourceError, trio.TooSlowError, pushpull.PushPullError,
                FrameTooLarge) as e:  # fmt: skip
            self.push_pull_stats[f"serve_failed_{type(e).__name__}"] += 1

    async def _push_pull(self, addr: Addr) -> None:
        if (self.endpoint.addr, addr) in self.endpoint.faults.blocked:
            self.push_pull_stats["failed_blocked"] += 1  # the fault layer cuts streams too
            self._push_pulls -= 1
            return
        try:
            await pushpull.request(addr, self.core, self.merge, self.security)
            self.push_pull_stats["ok"] += 1
        except (OSError, trio.BrokenResourceError, trio.TooSlowError, pushpull.PushPullError,
                FrameTooLarge) as e:  # fmt: skip
            self.push_pull_stats[f"failed_{type(e).__name__}"] += 1
        finally:
            self._push_pulls -= 1

    def _timer(self, token: Timer) -> None:
        carry_out(self.core.handle_timer(trio.current_time(), token), self)
