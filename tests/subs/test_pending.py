"""The subscription engine's pending changes (`corrosion_py.subs.pending`), without trio: only
watched tables collect keys, each key once, bounded, with a full refresh past the bound."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from corrosion_py.crdt import pack_pk
from corrosion_py.subs.pending import PendingChanges


def pk(*values: object) -> bytes:
    return pack_pk(list(values))


def test_only_watched_tables_collect_each_key_once() -> None:
    pending = PendingChanges(max_keys=100)
    pending.watch(["a", "b"], +1)
    for key in (1, 2, 1):
        pending.add("a", pk(key))
    pending.add("b", pk("x", 2))
    pending.add("c", pk(1))  # nobody reads c
    batch = pending.take()
    assert batch.keys == {"a": {(1,), (2,)}, "b": {("x", 2)}} and batch.full == set()
    empty = pending.take()  # taking starts an empty batch
    assert empty.keys == {} and empty.full == set()


def test_watch_counts_subscriptions_per_table() -> None:
    pending = PendingChanges(max_keys=100)
    pending.watch(["a"], +1)
    pending.watch(["a", "b"], +1)
    pending.watch(["a"], -1)
    assert pending.watched == {"a", "b"}
    pending.watch(["a", "b"], -1)
    assert pending.watched == set() and not pending.watches("a")
    assert pending.add("a", pk(1)) is False and pending.take().keys == {}


def test_past_the_bound_a_table_falls_back_to_a_full_refresh() -> None:
    pending = PendingChanges(max_keys=3)
    pending.watch(["a", "b"], +1)
    pending.add("b", pk(1))
    assert [pending.add("a", pk(k)) for k in range(3)] == [False, False, True]
    # a's keys are gone (memory back under the bound), b's stay; a collects nothing more
    assert pending.add("a", pk(9)) is False
    assert pending.add("b", pk(2)) is False and pending.add("b", pk(3)) is False
    batch = pending.take()
    assert batch.keys == {"b": {(1,), (2,), (3,)}} and batch.full == {"a"}


def test_a_schema_change_refreshes_every_watched_table_in_full() -> None:
    pending = PendingChanges(max_keys=10)
    pending.watch(["a", "b"], +1)
    pending.add("a", pk(1))
    pending.refresh_all()
    pending.add("b", pk(2))  # already marked: no key kept
    batch = pending.take()
    assert batch.full == {"a", "b"} and batch.keys == {"a": {(1,)}}


@given(
    st.integers(min_value=1, max_value=20),
    st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 30)), max_size=200),
)
def test_keys_never_pass_the_bound_and_no_change_is_lost(
    max_keys: int, changes: list[tuple[str, int]]
) -> None:
    pending = PendingChanges(max_keys)
    pending.watch(["a", "b"], +1)
    for table, key in changes:
        pending.add(table, pk(key))
    batch = pending.take()
    assert sum(len(keys) for keys in batch.keys.values()) <= max_keys
    for table, key in changes:  # every change of a watched table is in the batch somehow
        if table in ("a", "b"):
            assert table in batch.full or (key,) in batch.keys[table]
    assert not batch.keys.keys() & batch.full
