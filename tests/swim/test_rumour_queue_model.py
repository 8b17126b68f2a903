"""The bucketed rumour queue behaves exactly like the plain rule it implements: fewest
transmissions first, newest first among equals, skip what does not fit, drop the most-sent
(oldest among those) on overflow. The model below is that rule written the slow, obvious way."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from corrosion_py.swim.rumours import RumourQueue
from corrosion_py.wire.swim import MemberState, NodeId, Rumour, rumour_size


class Model:
    def __init__(self, max_size: int) -> None:
        self.max, self.serial, self.dropped = max_size, 0, 0
        self.entries: dict[bytes, list[object]] = {}  # actor -> [rumour, size, serial, sent]

    def push(self, r: Rumour) -> None:
        self.serial += 1
        self.entries.pop(r.node.actor_id, None)
        self.entries[r.node.actor_id] = [r, rumour_size(r), self.serial, 0]
        if len(self.entries) > self.max:
            worst = max(self.entries.values(), key=lambda e: (e[3], -e[2]))  # type: ignore[operator]
            del self.entries[worst[0].node.actor_id]  # type: ignore[attr-defined]
            self.dropped += 1

    def take(self, budget: int, limit: int, max_count: int) -> list[Rumour]:
        out: list[Rumour] = []
        for e in sorted(self.entries.values(), key=lambda e: (e[3], -e[2])):  # type: ignore[operator]
            if len(out) >= max_count:
                break
            if budget < e[1]:  # type: ignore[operator]
                continue
            budget -= e[1]  # type: ignore[operator]
            out.append(e[0])  # type: ignore[arg-type]
            e[3] += 1  # type: ignore[operator]
            if e[3] >= limit:  # type: ignore[operator]
                del self.entries[e[0].node.actor_id]  # type: ignore[attr-defined]
        return out


def rumour(member: int, inc: int, host_len: int) -> Rumour:
    node = NodeId(bytes([member]) * 16, ("h" * host_len, 7000 + member))
    return Rumour(MemberState.ALIVE, node, inc, node.actor_id)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(0, 12), st.integers(0, 5), st.integers(1, 40)),
        st.tuples(st.just("take"), st.integers(0, 400), st.integers(1, 4), st.integers(1, 6)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(max_size=st.integers(1, 10), steps=ops)
def test_queue_matches_the_model(max_size: int, steps: list[tuple[str, int, int, int]]) -> None:
    queue, model = RumourQueue(max_size), Model(max_size)
    for op, a, b, c in steps:
        if op == "push":
            r = rumour(a, b, c)
            queue.push(r)
            model.push(r)
        else:
            assert queue.take(a, b, c) == model.take(a, b, c)
        assert len(queue) == len(model.entries) and queue.dropped == model.dropped
