"""The apply queue's policy, sans-IO: linger then batch, one batch in flight, broadcast overflow
drops the oldest, sync puts wait for room, and the retry state machine after storage faults
(transient: kept and retried with a doubling backoff; corrupt: dropped; a bug: dropped)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corrosion_py.crdt import Change
from corrosion_py.replication.apply_queue import CORRUPT, ERROR, TRANSIENT, ApplyQueue, cost
from corrosion_py.wire.messages import Changeset, EmptyChangeset, Item

ACTOR = b"\x02" * 16


def cs(version: int, changes: int = 1) -> Changeset:
    rows = tuple(
        Change("kv", b"\x01\x09\x01", "v", "x", 1, version, ACTOR, 1, s) for s in range(changes)
    )
    return Changeset(ACTOR, version, rows, (0, changes - 1), changes - 1, 0)


def versions(batch: list[Item] | None) -> list[int]:
    assert batch is not None
    return [item.version for item in batch if isinstance(item, Changeset)]


def test_the_first_put_lingers_then_everything_waiting_goes_as_one_batch() -> None:
    q = ApplyQueue(linger=0.01)
    assert q.idle and q.next_deadline() is None and q.tick(5.0) is None
    q.offer(1.0, [cs(1)])
    q.offer(1.005, [cs(2), cs(3)])  # within the linger: same batch, same deadline
    assert q.next_deadline() == pytest.approx(1.01)
    assert q.tick(1.009) is None
    assert versions(q.tick(1.01)) == [1, 2, 3]
    assert q.depth == 0 and not q.idle


def test_one_batch_in_flight_and_the_next_lingers_from_the_end_of_the_apply() -> None:
    q = ApplyQueue(linger=0.01, max_batch=2)
    q.offer(0.0, [cs(v) for v in range(1, 6)])
    assert q.next_deadline() == 0.0  # a full batch waits: no linger
    assert versions(q.tick(0.0)) == [1, 2]
    assert q.next_deadline() is None and q.tick(10.0) is None  # one in flight at a time
    q.applied(0.5)
    assert versions(q.tick(0.5)) == [3, 4]  # still a full batch: at once
    q.applied(0.6)
    assert q.next_deadline() == pytest.approx(0.61)  # one left: it lingers from the apply's end
    assert versions(q.tick(0.61)) == [5]
    q.applied(0.7)
    assert q.idle and q.stats["batches"] == 3 and q.stats["applied_changesets"] == 5


def test_broadcast_overflow_drops_the_oldest_by_count_and_by_changes() -> None:
    q = ApplyQueue(max_items=3, max_changes=10)
    assert q.offer(0.0, [cs(1), cs(2), cs(3)]) == 0
    assert q.offer(0.0, [cs(4)]) == 1  # over max_items: version 1 goes
    assert q.offer(0.0, [cs(5, changes=9)]) == 2  # 2 goes for the count, 3 for the changes
    assert versions(q.tick(1.0)) == [4, 5]
    assert q.stats["dropped_overflow"] == 3 and q.stats["queued"] == 5
    q.applied(1.0)
    assert q.offer(2.0, [cs(6, changes=50)]) == 0  # larger than the bound: fits an empty queue
    assert q.depth == 1


def test_sync_puts_wait_for_room_which_a_batch_taken_makes() -> None:
    q = ApplyQueue(max_items=2, linger=0.0)
    for v in (1, 2):
        assert q.has_room(cs(v))
        q.push(0.0, cs(v))
    assert not q.has_room(cs(3))
    with pytest.raises(ValueError, match="wait until has_room"):
        q.push(0.0, cs(3))
    assert q.depth == 2 and q.stats["dropped_overflow"] == 0  # a sync put never drops
    assert versions(q.tick(0.0)) == [1, 2]
    assert q.has_room(cs(3))


def test_a_transient_fault_keeps_the_rest_and_retries_with_a_doubling_backoff() -> None:
    q = ApplyQueue(linger=0.0, max_batch=4, retry_first=0.1, retry_max=0.35)
    q.offer(0.0, [cs(v) for v in range(1, 5)])
    batch = q.tick(0.0)
    assert q.failed(0.0, TRANSIENT, batch[1:]) == 0  # type: ignore[index]
    assert q.stats["applied_changesets"] == 1  # the part before the fault committed
    waits = []
    now = 0.0
    for _ in range(4):
        deadline = q.next_deadline()
        assert deadline is not None
        waits.append(round(deadline - now, 6))
        now = deadline
        assert q.tick(now - 1e-9) is None
        batch = q.tick(now)
        assert versions(batch) == [2, 3, 4]  # the rest, in order, at the front
        q.failed(now, TRANSIENT, batch)  # type: ignore[arg-type]
    assert waits == [0.1, 0.2, 0.35, 0.35]  # doubling, capped
    assert q.stats["apply_retries"] == 5
    now = q.next_deadline()  # type: ignore[assignment]
    q.tick(now)
    q.applied(now)  # a batch committed whole: the next fault waits 0.1 s again
    q.offer(now, [cs(9)])
    q.failed(now, TRANSIENT, q.tick(now))  # type: ignore[arg-type]
    assert q.next_deadline() == pytest.approx(now + 0.1)


def test_what_a_transient_fault_puts_back_stays_within_the_bounds() -> None:
    q = ApplyQueue(max_items=3, linger=0.0)
    q.offer(0.0, [cs(1), cs(2), cs(3)])
    batch = q.tick(0.0)
    q.offer(0.0, [cs(4), cs(5)])  # broadcasts keep coming while the batch is in flight
    assert q.failed(0.0, TRANSIENT, batch) == 2  # type: ignore[arg-type]
    assert versions(q.tick(1.0)) == [3, 4, 5]  # the oldest went over the bound first
    assert q.stats["dropped_overflow"] == 2


def test_a_corrupt_file_or_a_bug_drops_what_did_not_commit() -> None:
    q = ApplyQueue(linger=0.0)
    q.offer(0.0, [cs(1), cs(2), cs(3)])
    batch = q.tick(0.0)
    assert q.failed(0.0, CORRUPT, batch[2:]) == 1  # type: ignore[index]
    assert q.stats["dropped_corrupt"] == 1 and q.stats["applied_changesets"] == 2
    q.offer(1.0, [cs(4), cs(5)])
    batch = q.tick(1.0)
    assert q.failed(1.0, ERROR, batch) == 2  # type: ignore[arg-type]
    assert q.stats["apply_errors"] == 1 and q.stats["dropped_error"] == 2
    assert q.idle and q.next_deadline() is None  # no retry: sync brings them again


def test_reports_without_a_batch_in_flight_are_refused() -> None:
    q = ApplyQueue()
    with pytest.raises(ValueError, match="no batch is in flight"):
        q.applied(0.0)
    q.offer(0.0, [cs(1)])
    batch = q.tick(1.0)
    with pytest.raises(ValueError, match="more items failed"):
        q.failed(1.0, TRANSIENT, [*batch, cs(2)])  # type: ignore[misc]


ops = st.lists(
    st.one_of(
        st.tuples(st.just("offer"), st.lists(st.integers(1, 6), min_size=1, max_size=5)),
        st.tuples(st.just("push"), st.integers(1, 6)),
        st.tuples(st.just("tick"), st.floats(0.0, 0.5)),
        st.tuples(st.just("end"), st.sampled_from(["ok", TRANSIENT, CORRUPT, ERROR])),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops=ops)
def test_bounds_hold_and_every_item_is_accounted_for(ops: list[tuple[str, object]]) -> None:
    q = ApplyQueue(max_items=5, max_changes=12, max_batch=3, linger=0.05)
    now, serial, in_flight = 0.0, 0, None
    for op, arg in ops:
        if op == "offer":
            items: list[Item] = []
            for size in arg:  # type: ignore[attr-defined]
                serial += 1
                items.append(cs(serial, size) if size < 6 else EmptyChangeset(ACTOR, (1, 2), 0))
            q.offer(now, items)
        elif op == "push":
            serial += 1
            item = cs(serial, arg)  # type: ignore[arg-type]
            if q.has_room(item):
                q.push(now, item)
        elif op == "tick":
            now += arg  # type: ignore[operator]
            batch = q.tick(now)
            if batch is not None:
                assert in_flight is None and len(batch) <= 3
                in_flight = batch
        elif in_flight is not None:
            if arg == "ok":
                q.applied(now)
            else:
                q.failed(now, arg, in_flight[len(in_flight) // 2 :])  # type: ignore[arg-type]
            in_flight = None
        waiting = q.depth
        changes = sum(cost(item) for item in q._items)
        assert waiting <= 5 and (changes <= 12 or waiting == 1)
        s = q.stats
        gone = s["applied_changesets"] + s["dropped_overflow"] + s["dropped_corrupt"]
        gone += s["dropped_error"]
        assert s["queued"] == gone + waiting + (len(in_flight) if in_flight else 0)
