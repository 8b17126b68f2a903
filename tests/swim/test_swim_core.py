"""One core driven by hand: each protocol rule, and each known pitfall of SWIM implementations
that is the core's (a higher-incarnation Suspect starts a fresh timer, and the like)."""

from __future__ import annotations

import random

import attrs
import pytest
from swim_harness import CLUSTER_ID, actor, addr

from corrosion_py.swim import (
    LAN,
    Effect,
    GossipTick,
    JoinRetry,
    MemberState,
    Notify,
    ProbeTick,
    ProbeTimeout,
    PushPull,
    PushPullTick,
    ReconnectTick,
    RelayTimeout,
    Send,
    SetTimer,
    SuspectTimeout,
    Swim,
    SwimConfig,
)
from corrosion_py.wire.swim import (
    Ack,
    Body,
    Feed,
    Gossip,
    Join,
    Nack,
    NodeId,
    Packet,
    Ping,
    PingReq,
    Rumour,
    encode_packet,
)

A, S, D, L = MemberState
ME = 0


def node(i: int) -> NodeId:
    return NodeId(actor(i), addr(i))


def pkt(i: int, body: Body, *rumours: Rumour, inc: int = 0, cluster: int = CLUSTER_ID) -> Packet:
    return Packet(cluster, node(i), inc, body, rumours)


def core(peers: int = 0, config: SwimConfig = LAN) -> Swim:
    """Node 0, started, knowing peers 1..peers (alive at incarnation 0)."""
    s = Swim(
        actor_id=actor(ME),
        addr=addr(ME),
        cluster_id=CLUSTER_ID,
        rng=random.Random(0),
        config=config,
    )
    s.join(0.0, [])
    for i in range(1, peers + 1):
        s.handle_datagram(0.0, addr(i), pkt(i, Gossip()))
    return s


def sends(effects: list[Effect]) -> list[Send]:
    return [e for e in effects if isinstance(e, Send)]


def events(effects: list[Effect]) -> list[str]:
    return [type(e.event).__name__ for e in effects if isinstance(e, Notify)]


def timers(effects: list[Effect], kind: type) -> list[SetTimer]:
    return [e for e in effects if isinstance(e, SetTimer) and isinstance(e.token, kind)]


def test_ping_is_acked_and_headers_teach_members() -> None:
    s = core()
    out = s.handle_datagram(1.0, addr(1), pkt(1, Ping(9, actor(ME))))
    assert events(out) == ["MemberUp"]
    (ack,) = sends(out)
    assert ack.addr == addr(1) and ack.packet.body == Ack(9)
    assert s.member(actor(1)) is not None


def test_misdirected_ping_is_not_acked() -> None:
    s = core()
    assert not sends(s.handle_datagram(1.0, addr(1), pkt(1, Ping(9, actor(42)))))
    assert s.stats["dropped_misdirected_ping"] == 1


def test_bad_input_is_dropped_and_counted() -> None:
    s = core()
    assert s.handle_datagram(1.0, addr(1), pkt(1, Ping(1, actor(ME)), cluster=8)) == []
    assert s.handle_bytes(1.0, addr(1), b"\xff\x00garbage") == []
    assert s.handle_datagram(1.0, addr(1), attrs.evolve(pkt(1, Gossip()), sender=node(ME))) == []
    assert s.stats["dropped_wrong_cluster"] == 1
    assert s.stats["dropped_malformed"] == 1
    assert s.stats["dropped_from_self"] == 1
    assert s.members() == []


def _probe(s: Swim, now: float) -> tuple[int, list[Effect]]:
    out = s.handle_timer(now, ProbeTick())
    (ping,) = [p for p in sends(out) if isinstance(p.packet.body, Ping)]
    assert isinstance(ping.packet.body, Ping)
    return ping.packet.body.seq, out


def test_failed_probe_asks_k_relays_then_suspects_and_counts_missing_nacks() -> None:
    s = core(peers=5)
    seq, out = _probe(s, 1.0)
    assert timers(out, ProbeTimeout)[0].delay == LAN.probe_timeout
    out = s.handle_timer(1.5, ProbeTimeout(seq))
    reqs = [p for p in sends(out) if isinstance(p.packet.body, PingReq)]
    assert len(reqs) == LAN.indirect_checks
    body = reqs[0].packet.body
    assert isinstance(body, PingReq)
    target = body.target
    assert all(r.addr != target.addr for r in reqs)
    s.handle_datagram(1.7, reqs[0].addr, pkt(int(reqs[0].addr[0].split(".")[-1]), Nack(seq)))
    out = s.handle_timer(2.0, ProbeTick())
    assert "MemberSuspect" in events(out)
    assert s.awareness.score == 2  # three relays asked, one nacked
    assert s.member(target.actor_id).state is S  # type: ignore[union-attr]


def test_ack_through_a_relay_counts_as_success() -> None:
    s = core(peers=5)
    s.awareness.apply(3)
    seq, _ = _probe(s, 1.0)
    s.handle_timer(1.5, ProbeTimeout(seq))
    s.handle_datagram(1.8, addr(2), pkt(2, Ack(seq)))
    assert "MemberSuspect" not in events(s.handle_timer(5.0, ProbeTick()))
    assert s.awareness.score == 2


def test_ack_that_arrived_before_the_tick_counts() -> None:
    """Pitfall: the host delivers a datagram due with a timer first; the core then sees it."""
    s = core(peers=2)
    seq, _ = _probe(s, 1.0)
    s.handle_datagram(2.0, addr(1), pkt(1, Ack(seq)))
    assert "MemberSuspect" not in events(s.handle_timer(2.0, ProbeTick()))


def test_relay_pings_forwards_the_ack_and_nacks_inside_the_window() -> None:
    s = core(peers=2)
    out = s.handle_datagram(1.0, addr(1), pkt(1, PingReq(77, node(2))))
    (ping,) = sends(out)
    assert ping.addr == addr(2) and isinstance(ping.packet.body, Ping)
    (nack_timer,) = timers(out, RelayTimeout)
    # pitfall: the nack must reach the requester before its indirect window closes
    assert nack_timer.delay < LAN.probe_interval - LAN.probe_timeout
    out = s.handle_datagram(1.1, addr(2), pkt(2, Ack(ping.packet.body.seq)))
    assert [(p.addr, p.packet.body) for p in sends(out)] == [(addr(1), Ack(77))]
    assert s.handle_timer(1.4, nack_timer.token) == []  # stale: already answered
    out = s.handle_datagram(2.0, addr(1), pkt(1, PingReq(78, node(2))))
    (nack_timer,) = timers(out, RelayTimeout)
    out = s.handle_timer(2.4, nack_timer.token)
    assert [(p.addr, p.packet.body) for p in sends(out)] == [(addr(1), Nack(78))]


def test_suspected_node_refutes_with_a_higher_incarnation() -> None:
    s = core(peers=1)
    accusation = Rumour(S, node(ME), 0, actor(1))
    out = s.handle_datagram(1.0, addr(1), pkt(1, Ping(3, actor(ME)), accusation))
    assert s.incarnation == 1 and s.stats["refutations"] == 1
    assert s.awareness.score == 1  # being accused is evidence we are slow
    (ack,) = sends(out)
    assert ack.packet.incarnation == 1
    assert Rumour(A, node(ME), 1, actor(ME)) in ack.packet.rumours


def test_buddy_ping_to_a_suspect_carries_the_suspicion_first() -> None:
    s = core(peers=1)
    s.handle_datagram(1.0, addr(1), pkt(1, Gossip(), Rumour(S, node(1), 0, actor(9))))
    _, out = _probe(s, 2.0)
    (ping,) = sends(out)
    assert ping.packet.rumours[0] == Rumour(S, node(1), 0, actor(9))


def _suspect(s: Swim, now: float, inc: int, by: int) -> list[Effect]:
    return s.handle_datagram(now, addr(by), pkt(by, Gossip(), Rumour(S, node(1), inc, actor(by))))


def test_confirmations_shorten_the_suspicion_and_the_timer_declares_death() -> None:
    s = core(peers=5)
    (t0,) = timers(_suspect(s, 10.0, 0, by=2), SuspectTimeout)
    low, high = LAN.suspicion_timeouts(6)
    assert t0.delay == pytest.approx(high)
    (t1,) = timers(_suspect(s, 11.0, 0, by=3), SuspectTimeout)
    (t2,) = timers(_suspect(s, 12.0, 0, by=4), SuspectTimeout)
    assert t2.delay == pytest.approx(10.0 + low - 12.0)
    assert timers(_suspect(s, 12.5, 0, by=5), SuspectTimeout) == []  # beyond K
    assert s.handle_timer(10.0 + high, t0.token) == []  # stale serial
    assert s.handle_timer(12.0 + t1.delay, t1.token) == []
    out = s.handle_timer(12.0 + t2.delay, t2.token)
    assert events(out) == ["MemberDown"]
    assert s.member(actor(1)).state is D  # type: ignore[union-attr]


def test_higher_incarnation_suspicion_starts_a_fresh_timer() -> None:
    """Pitfall: a timer from before a refutation must not kill the refuted member."""
    s = core(peers=3)
    (old,) = timers(_suspect(s, 0.0, 0, by=2), SuspectTimeout)
    out = s.handle_datagram(1.0, addr(1), pkt(1, Gossip(), inc=1))
    assert events(out) == ["MemberRecovered"]
    (new,) = timers(_suspect(s, 5.0, 1, by=3), SuspectTimeout)
    assert s.handle_timer(old.delay, old.token) == []
    assert s.member(actor(1)).state is S  # type: ignore[union-attr]
    assert events(s.handle_timer(5.0 + new.delay, new.token)) == ["MemberDown"]


def test_tiny_cluster_uses_the_minimum_timeout() -> None:
    s = core(peers=1)
    (t,) = timers(_suspect(s, 0.0, 0, by=1), SuspectTimeout)
    assert t.delay == pytest.approx(LAN.suspicion_timeouts(2)[0])


def test_packets_never_exceed_the_cap_and_leftover_rumours_wait() -> None:
    s = core()
    for i in range(1, 80):
        s.handle_datagram(0.0, addr(i), pkt(i, Gossip()))
    assert s.rumours_queued > 30
    queued = s.rumours_queued
    out = s.handle_timer(1.0, GossipTick())
    gossip = sends(out)
    assert gossip
    for g in gossip:
        assert len(encode_packet(g.packet)) <= LAN.max_packet_size
    assert s.rumours_queued == queued  # one packet's worth sent; nothing spent yet


def test_join_retries_with_backoff_until_a_feed_arrives() -> None:
    s = Swim(actor_id=actor(ME), addr=addr(ME), cluster_id=CLUSTER_ID, rng=random.Random(0))
    out = s.join(0.0, [addr(1), addr(2)])
    assert [p.addr for p in sends(out)] == [addr(1), addr(2)]
    (r1,) = timers(out, JoinRetry)
    out = s.handle_timer(r1.delay, r1.token)
    (r2,) = timers(out, JoinRetry)
    assert len(sends(out)) == 2 and r2.delay == 2 * r1.delay
    feed = Feed((Rumour(A, node(3), 4, actor(3)),))
    out = s.handle_datagram(3.0, addr(1), pkt(1, feed))
    assert sorted(events(out)) == ["Joined", "MemberUp", "MemberUp"]
    assert s.joined
    assert s.handle_timer(3.0 + r2.delay, r2.token) == []


def test_feed_answers_join_with_the_joiner_first_and_merges_dead_as_suspect() -> None:
    s = core(peers=3)
    s.handle_datagram(1.0, addr(2), pkt(2, Gossip(), Rumour(D, node(1), 0, actor(2))))
    out = s.handle_datagram(2.0, addr(1), pkt(1, Join()))  # node 1 restarted at incarnation 0
    (feed,) = sends(out)
    assert isinstance(feed.packet.body, Feed)
    assert feed.packet.body.members[0] == Rumour(D, node(1), 0, actor(2))
    joiner = Swim(actor_id=actor(1), addr=addr(1), cluster_id=CLUSTER_ID, rng=random.Random(1))
    joiner.join(2.0, [addr(ME)])
    joiner.handle_datagram(2.1, addr(ME), feed.packet)
    assert joiner.incarnation == 1  # learned its old incarnation, came back above it
    # a remote dead is only a suspicion here (memberlist's merge rule)
    fresh = core(peers=0)
    fresh.handle_datagram(1.0, addr(4), pkt(4, Gossip()))
    fresh.handle_datagram(2.0, addr(2), pkt(2, Feed((Rumour(D, node(4), 0, actor(2)),))))
    assert fresh.member(actor(4)).state is S  # type: ignore[union-attr]


def test_leave_spreads_left_and_is_not_reported_down() -> None:
    s = core(peers=3)
    out = s.leave(5.0)
    left = Rumour(L, node(ME), 0, actor(ME))
    assert sends(out) and all(left in p.packet.rumours for p in sends(out))
    other = Swim(actor_id=actor(9), addr=addr(9), cluster_id=CLUSTER_ID, rng=random.Random(9))
    other.join(0.0, [])
    other.handle_datagram(1.0, addr(ME), pkt(ME, Gossip()))
    told = events(other.handle_datagram(5.1, addr(ME), sends(out)[0].packet))
    assert "MemberLeft" in told and "MemberDown" not in told
    assert other.member(actor(ME)).state is L  # type: ignore[union-attr]
    # a leaving node does not refute, and stops probing
    s.handle_datagram(5.2, addr(1), pkt(1, Gossip(), Rumour(S, node(ME), 0, actor(1))))
    assert s.incarnation == 0
    assert not sends(s.handle_timer(6.0, ProbeTick()))
    finished = []
    for k in range(1, 40):
        finished += events(s.handle_timer(5.0 + 0.2 * k, GossipTick()))
    assert finished == ["LeaveComplete"]
    assert s.handle_datagram(20.0, addr(1), pkt(1, Ping(1, actor(ME)))) == []


def test_restart_learns_a_newer_alive_of_itself_and_moves_above_it() -> None:
    s = core(peers=1)
    s.handle_datagram(1.0, addr(1), pkt(1, Gossip(), Rumour(A, node(ME), 5, actor(ME))))
    assert s.incarnation == 6


def push_pulls(effects: list[Effect]) -> list[PushPull]:
    return [e for e in effects if isinstance(e, PushPull)]


def test_push_pull_tick_sends_the_full_list_to_one_alive_member() -> None:
    s = core(peers=4)
    s.handle_datagram(1.0, addr(1), pkt(1, Gossip(), Rumour(D, node(2), 0, actor(1))))
    for _ in range(20):
        (pp,) = push_pulls(s.handle_timer(2.0, PushPullTick()))
        assert pp.addr in (addr(1), addr(3), addr(4))  # never the dead one
        assert pp.members[0] == Rumour(A, node(ME), 0, actor(ME))
        assert {r.node.actor_id for r in pp.members} == {actor(i) for i in range(5)}


def test_reconnect_tick_push_pulls_a_member_held_dead_and_heals() -> None:
    """After a partition each side holds the other dead; gossip alone never crosses again."""
    s = core(peers=2)
    s.handle_datagram(1.0, addr(2), pkt(2, Gossip(), Rumour(D, node(1), 0, actor(2))))
    (pp,) = push_pulls(s.handle_timer(2.0, ReconnectTick()))
    assert pp.addr == addr(1)
    # node 1 merged our list (it was held dead at 0), refuted, and answers with incarnation 1
    answer = [Rumour(A, node(1), 1, actor(1)), Rumour(A, node(ME), 0, actor(ME))]
    out = s.handle_push_pull(2.1, addr(1), answer)
    assert events(out) == ["MemberRejoined"]
    assert s.member(actor(1)).state is A  # type: ignore[union-attr]
    assert push_pulls(core(peers=2).handle_timer(2.0, ReconnectTick())) == []  # nobody dead


def test_push_pull_merge_refutes_and_turns_remote_dead_into_suspect() -> None:
    s = core(peers=1)
    out = s.handle_push_pull(
        1.0, addr(1), [Rumour(D, node(ME), 0, actor(1)), Rumour(D, node(1), 0, actor(9))]
    )
    assert s.incarnation == 1  # held dead by the peer: refuted before answering
    assert s.push_pull_state()[0] == Rumour(A, node(ME), 1, actor(ME))
    assert s.member(actor(1)).state is S  # type: ignore[union-attr]
    assert events(out) == ["MemberSuspect"]


def test_first_feed_of_a_join_is_followed_by_a_push_pull() -> None:
    s = Swim(actor_id=actor(ME), addr=addr(ME), cluster_id=CLUSTER_ID, rng=random.Random(0))
    s.join(0.0, [addr(1)])
    out = s.handle_datagram(0.1, addr(1), pkt(1, Feed((Rumour(A, node(1), 0, actor(1)),))))
    assert events(out) == ["MemberUp", "Joined"]
    (pp,) = push_pulls(out)
    assert pp.addr == addr(1)
    feed_again = s.handle_datagram(0.2, addr(1), pkt(1, Feed((Rumour(A, node(2), 0, actor(2)),))))
    assert push_pulls(feed_again) == []


def test_lifeguard_off_is_plain_swim() -> None:
    off = attrs.evolve(LAN, lifeguard=False)
    s = core(peers=5, config=off)
    seq, _ = _probe(s, 1.0)
    s.handle_timer(1.5, ProbeTimeout(seq))
    s.handle_timer(2.0, ProbeTick())
    assert s.awareness.score == 0  # no local health
    s = core(peers=5, config=off)
    (t,) = timers(_suspect(s, 10.0, 0, by=2), SuspectTimeout)
    assert t.delay == pytest.approx(off.suspicion_timeouts(6)[0])  # fixed at the minimum
    assert timers(_suspect(s, 11.0, 0, by=3), SuspectTimeout) == []  # confirmations change nothing
    for _ in range(10):  # spend the queued rumours
        s.handle_timer(12.0, GossipTick())
    pings = []
    for t in range(6):  # one probe round: node 1 (the suspect) is probed once
        pings += [p for p in sends(s.handle_timer(13.0 + t, ProbeTick())) if p.addr == addr(1)]
    (ping,) = pings
    assert ping.packet.rumours == ()  # no buddy rumour: the suspect is not told
    out = s.handle_datagram(20.0, addr(3), pkt(3, PingReq(5, node(4))))
    (nack_timer,) = timers(out, RelayTimeout)
    assert sends(s.handle_timer(20.4, nack_timer.token)) == []  # no nack


def test_cluster_size_follows_every_state_change() -> None:
    s = core(peers=4)
    assert s.cluster_size() == 5
    s.handle_datagram(1.0, addr(1), pkt(1, Gossip(), Rumour(S, node(2), 0, actor(1))))
    assert s.cluster_size() == 5  # suspects still count
    s.handle_datagram(1.0, addr(1), pkt(1, Gossip(), Rumour(D, node(2), 0, actor(1))))
    s.handle_datagram(1.0, addr(1), pkt(1, Gossip(), Rumour(L, node(3), 0, actor(3))))
    assert s.cluster_size() == 3
    s.handle_datagram(1.0, addr(2), pkt(2, Gossip(), inc=1))
    assert s.cluster_size() == 4
    assert s.cluster_size() == 1 + sum(m.state in (A, S) for m in s.members())
