"""Knobs of the SWIM core, their presets, and the formulas that scale them with cluster size.

Presets: ``LAN`` is memberlist's DefaultLANConfig; ``WAN`` overrides the fields memberlist's
DefaultWANConfig overrides; ``LOCAL`` is a fast timing (probe 200 ms, ack timeout 100 ms,
suspicion multiplier 3, gossip 100 ms) for tests and one-host clusters. The packet cap defaults
to a 1,200-byte UDP payload (QUIC's minimum datagram).

Formulas (memberlist ``util.go``), with n the number of live members including this node:

- suspicion minimum = suspicion_mult · max(1, log10(n)) · probe_interval; maximum =
  suspicion_max_timeout_mult · minimum (log10, not ln);
- rumour transmit limit = retransmit_mult · ⌈log10(n + 1)⌉ (the SWIM paper's λ·log n).
"""

from __future__ import annotations

import math

import attrs


@attrs.frozen
class SwimConfig:
    """Every knob of the core; durations are float seconds."""

    probe_interval: float = 1.0
    """Time between two probes, before local health stretches it."""
    probe_timeout: float = 0.5
    """Wait for a direct ack before asking relays (never stretched: waiting longer does not
    help UDP; the stretched interval gives the indirect phase more time instead)."""
    indirect_checks: int = 3
    """Relays asked to ping a target that missed its direct ack."""
    suspicion_mult: int = 4
    suspicion_max_timeout_mult: int = 6
    retransmit_mult: int = 4
    gossip_interval: float = 0.2
    """Dedicated gossip tick; nothing is sent while no rumour is queued."""
    gossip_nodes: int = 3
    gossip_to_the_dead_time: float = 30.0
    """Dead members keep getting gossip this long, so a live one can hear it and refute."""
    awareness_max_multiplier: int = 8
    max_packet_size: int = 1200
    """Cap of every packet this node sends; rumours that do not fit wait for the next one."""
    join_retry_interval: float = 1.0
    """First wait before asking the bootstrap addresses again; doubles up to ``join_retry_max``."""
    join_retry_max: float = 30.0
    leave_timeout: float = 5.0
    """A leaving node keeps answering and gossiping until its leave rumour is spent, or this."""
    remove_down_after: float = 24 * 3600.0
    """Dead and left members are remembered this long, so stale rumours cannot resurrect them."""
    max_members: int = 10_000
    """New members beyond this are dropped and counted (dead ones are evicted first)."""
    max_rumours: int = 4096
    """Rumour queue bound; over it the most-sent, oldest rumour is dropped."""
    max_relays: int = 256
    """Ping-req relays in flight; further requests are dropped and counted."""
    push_pull_interval: float = 30.0
    """Full member-list exchange (push-pull) with one random alive member, over a stream."""
    reconnect_interval: float = 30.0
    """Push-pull with one random member held dead (serf's reconnect), so partitions heal."""
    lifeguard: bool = True
    """Lifeguard's additions: local health awareness, the dynamic suspicion timeout with
    confirmations, nacks and the buddy system. Off gives plain SWIM (fixed suspicion timeout at
    the minimum, no nacks, no buddy), kept to measure what Lifeguard buys on the same seeds."""

    def __attrs_post_init__(self) -> None:
        if not 0 < self.probe_timeout < self.probe_interval:
            raise ValueError("probe_timeout must be positive and below probe_interval")
        periods = (
            self.gossip_interval,
            self.join_retry_interval,
            self.leave_timeout,
            self.push_pull_interval,
            self.reconnect_interval,
        )
        if min(periods) <= 0:
            raise ValueError(
                "gossip_interval, join_retry_interval, leave_timeout, push_pull_interval and "
                "reconnect_interval must be > 0"
            )
        if self.suspicion_mult < 1 or self.suspicion_max_timeout_mult < 1:
            raise ValueError("suspicion multipliers must be at least 1")
        if self.retransmit_mult < 1 or self.awareness_max_multiplier < 1:
            raise ValueError("retransmit_mult and awareness_max_multiplier must be at least 1")
        if self.indirect_checks < 0 or self.gossip_nodes < 0:
            raise ValueError("indirect_checks and gossip_nodes cannot be negative")
        if self.max_packet_size < 512:
            raise ValueError("max_packet_size below 512 bytes cannot carry a member feed")
        if min(self.max_members, self.max_rumours, self.max_relays) < 1:
            raise ValueError("max_members, max_rumours and max_relays must be at least 1")

    def suspicion_timeouts(self, n: int) -> tuple[float, float]:
        """(minimum, maximum) of the Lifeguard suspicion timeout for a cluster of ``n``."""
        low = self.suspicion_mult * max(1.0, math.log10(max(1, n))) * self.probe_interval
        return low, self.suspicion_max_timeout_mult * low

    def expected_confirmations(self, n: int) -> int:
        """Lifeguard's K: suspicion_mult - 2, or 0 when the cluster is too small to reach it
        (always 0 without Lifeguard: the timeout stays at its minimum)."""
        if not self.lifeguard:
            return 0
        k = self.suspicion_mult - 2
        return 0 if n - 2 < k else max(0, k)

    def retransmit_limit(self, n: int) -> int:
        """How many times each rumour is sent."""
        return self.retransmit_mult * math.ceil(math.log10(n + 1))


LAN = SwimConfig()
WAN = attrs.evolve(
    LAN,
    probe_interval=5.0,
    probe_timeout=3.0,
    suspicion_mult=6,
    gossip_interval=0.5,
    gossip_nodes=4,
    gossip_to_the_dead_time=60.0,
    join_retry_interval=5.0,
    push_pull_interval=60.0,
    leave_timeout=15.0,
)
LOCAL = attrs.evolve(
    LAN,
    probe_interval=0.2,
    probe_timeout=0.1,
    suspicion_mult=3,
    gossip_interval=0.1,
    gossip_to_the_dead_time=15.0,
    join_retry_interval=0.2,
    join_retry_max=2.0,
    leave_timeout=1.0,
    push_pull_interval=5.0,
    reconnect_interval=5.0,
)
PRESETS = {"local": LOCAL, "lan": LAN, "wan": WAN}
"""The presets by the names the config file and the command lines use."""
