"""``Agent``'s facade, the only door of the HTTP API, the admin socket and the CLI, on a real
agent (real UDP and TCP sockets on 127.0.0.1, real SQLite files): each method does what its
callers rely on, and refuses what it must without changing anything."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import trio

from corrosion_py.agent import Agent, AgentConfig, SchemaError
from corrosion_py.errors import QueryError, StatementError
from corrosion_py.store.cursor import NOT_READONLY
from corrosion_py.store.store import Store
from corrosion_py.subs import NoSuchSubscription, SubscriptionError
from corrosion_py.swim import LOCAL

SCHEMA = "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT);\n"
SLOW = (
    "SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
    "WHERE x < 1000000000) SELECT x FROM c)"
)
HANG = 30.0  # seconds: only catches hangs


def config(tmp: Path, name: str = "n", **kw: object) -> AgentConfig:
    schema = tmp / "schema.sql"
    if not schema.exists():
        schema.write_text(SCHEMA)
    base = AgentConfig(
        db_path=tmp / f"{name}.db", schema_paths=[schema], swim=LOCAL, shutdown_timeout=3.0
    )
    return attrs.evolve(base, **kw)  # type: ignore[arg-type]


async def test_a_transaction_timeout_rolls_it_back_and_never_lengthens_the_node_bound(
    tmp_path: Path,
) -> None:
    with trio.fail_after(HANG):
        async with Agent.open(config(tmp_path, sql_tx_timeout=30.0)) as agent:
            with pytest.raises(StatementError, match=r"timed out after 0\.2 s"):
                await agent.transaction(["INSERT INTO kv VALUES (1, 'late')", SLOW], timeout=0.2)
            assert await agent.query("SELECT k FROM kv") == []
            result = await agent.transaction(["INSERT INTO kv VALUES (2, 'ok')"], timeout=5)
            assert result.version == 1
        async with Agent.open(config(tmp_path, "short", sql_tx_timeout=0.2)) as short:
            with pytest.raises(StatementError, match=r"timed out after 0\.2 s"):
                await short.transaction([SLOW], timeout=3600)


async def test_a_read_cursor_streams_rows_in_steps_and_refuses_writes(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with Agent.open(config(tmp_path)) as agent:
            await agent.transaction(
                [("INSERT INTO kv VALUES (?, ?)", [k, f"v{k}"]) for k in range(10)]
            )
            cursor = agent.read_cursor("SELECT k, v FROM kv ORDER BY k", (), timeout=None)
            try:
                assert await trio.to_thread.run_sync(cursor.open) == ["k", "v"]
                first = await trio.to_thread.run_sync(cursor.fetch, 4)
                rest = await trio.to_thread.run_sync(cursor.fetch, 100)
            finally:
                await trio.to_thread.run_sync(cursor.close)
            assert first == [(k, f"v{k}") for k in range(4)]
            assert rest == [(k, f"v{k}") for k in range(4, 10)]  # fewer than asked: the end
            assert cursor.elapsed > 0

            refused = [
                ("DELETE FROM kv", NOT_READONLY),
                ("SELECT * FROM __corro_state", "__corro_state"),
                ("SELECT 1; SELECT 2", "one statement"),
            ]
            for sql, message in refused:
                cursor = agent.read_cursor(sql, (), timeout=None)
                with pytest.raises(QueryError, match=message):
                    await trio.to_thread.run_sync(cursor.open)
                await trio.to_thread.run_sync(cursor.close)
            assert len(await agent.query("SELECT k FROM kv")) == 10


async def test_a_read_cursor_stops_at_its_deadline_or_when_stopped(tmp_path: Path) -> None:
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"
    with trio.fail_after(HANG):
        async with Agent.open(config(tmp_path)) as agent:
            cursor = agent.read_cursor(SLOW, (), timeout=0.2)
            with pytest.raises(QueryError, match=r"query timed out after 0\.2 s"):
                await trio.to_thread.run_sync(cursor.open)
            await trio.to_thread.run_sync(cursor.close)
            assert cursor.timeout_message == "query timed out after 0.2 s"

            cursor = agent.read_cursor(endless, (), timeout=None)
            await trio.to_thread.run_sync(cursor.open)
            assert len(await trio.to_thread.run_sync(cursor.fetch, 64) or []) == 64
            cursor.stop()
            assert await trio.to_thread.run_sync(cursor.fetch, 64) is None
            await trio.to_thread.run_sync(cursor.close)


async def test_subscriptions_are_found_by_query_and_id_and_listed(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with Agent.open(config(tmp_path)) as agent:
            with pytest.raises(NoSuchSubscription):
                await agent.subscription("SELECT k FROM kv", existing_only=True)
            assert agent.subscriptions() == []
            sub = await agent.subscription("SELECT k FROM kv")
            assert await agent.subscription("SELECT k FROM kv", existing_only=True) is sub
            assert agent.get_subscription(sub.id) is sub
            assert agent.get_subscription("nope") is None
            assert agent.subscriptions() == [sub]
            with pytest.raises(SubscriptionError):
                await agent.subscription("SELECT nope FROM nowhere")
            assert agent.subscriptions() == [sub]


async def test_table_updates_tell_each_write_of_a_replicated_table(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with Agent.open(config(tmp_path)) as agent:
            with pytest.raises(SubscriptionError, match="not a replicated table"):
                async with agent.table_updates("nope"):
                    pass
            async with agent.table_updates("kv") as notes:
                await agent.transaction(["INSERT INTO kv VALUES (7, 'x')"])
                await agent.transaction(["DELETE FROM kv WHERE k = 7"])
                seen = [await anext(notes), await anext(notes)]
            assert [(n.kind, n.pk) for n in seen] == [("update", (7,)), ("delete", (7,))]


async def test_health_sync_state_and_missing_versions_read_the_bookkeeping(
    tmp_path: Path,
) -> None:
    """A changeset of an actor this node never heard of, three versions ahead: two versions are
    missing, but health does not count them (the actor is not vouched for)."""
    node = config(tmp_path)  # writes the schema file
    other = Store.open(tmp_path / "other.db", schema_paths=node.schema_paths)
    with other:
        sets = [other.transaction_sync([f"INSERT INTO kv VALUES ({k}, 'o')"]) for k in range(3)]
    with trio.fail_after(HANG):
        async with Agent.open(node) as agent:
            health = agent.health()
            assert (health.gaps, health.members, health.queue_size) == (0, 1, 0)
            assert health.p99_lag is None and health.faults == []
            assert set(health.sync) == {"last_ok_ago", "failures"}
            await agent.transaction(["INSERT INTO kv VALUES (100, 'mine')"])
            state = await agent.sync_state()
            assert state.actor_id == agent.actor_id and state.heads[agent.actor_id] == 1
            assert await agent.missing_versions() == 0

            changeset = sets[2].changeset
            assert changeset is not None
            await agent.store.apply([changeset])
            state = await agent.sync_state()
            assert state.need == {other.actor_id: ((1, 2),)}
            assert await agent.missing_versions() == 2
            assert agent.health().gaps == 0


async def test_migrate_applies_schema_statements_or_changes_nothing(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with Agent.open(config(tmp_path)) as agent:
            sub = await agent.subscription("SELECT k FROM kv")
            result = await agent.migrate(["CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL)"])
            assert result.changed and list(result.created_tables) == ["t"]
            await agent.transaction(["INSERT INTO t VALUES (1)", "INSERT INTO kv VALUES (1, 'a')"])
            with pytest.raises(SchemaError):
                await agent.migrate(["CREATE TABLE u (id INTEGER)"])  # no primary key
            assert await agent.query("SELECT name FROM sqlite_master WHERE name = 'u'") == []
            assert agent.get_subscription(sub.id) is sub  # its query still runs

            stats = await agent.table_stats(["kv", "t", "nope", "kv", "__corro_state"])
            assert stats.total_row_count == 2
            assert stats.invalid_tables == ["nope", "__corro_state"]


async def test_reload_schema_reads_the_files_again(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with Agent.open(config(tmp_path)) as agent:
            assert not (await agent.reload_schema()).changed
            (tmp_path / "schema.sql").write_text(
                SCHEMA + "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL);\n"
            )
            result = await agent.reload_schema()
            assert result.changed and list(result.created_tables) == ["t"]


async def test_the_incarnation_grows_with_each_restart(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with Agent.open(config(tmp_path)) as agent:
            assert agent.incarnation == 0
        async with Agent.open(config(tmp_path)) as agent:
            assert agent.incarnation == 1
