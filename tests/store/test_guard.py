"""The guard on user SQL, on a bare `Store` (real SQLite files): internal tables and engine
functions refused with a message naming them and nothing changed, reads of replication metadata
allowed, text that is not UTF-8 refused before it runs or reported by column, and a refused
statement never fails the other transactions committed with it."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio

from corrosion_py.errors import QueryError, StatementError
from corrosion_py.store.guard import decode_problem, refusal, text_problem
from corrosion_py.store.store import Store, TxResult

SCHEMA = "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT, b BLOB);\n"
SLOW = (
    "SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
    "WHERE x < 3000000) SELECT x FROM c)"
)


def open_store(tmp: Path) -> Store:
    (tmp / "s.sql").write_text(SCHEMA)
    return Store.open(tmp / "n.db", schema_paths=[tmp / "s.sql"])


def everything(path: Path) -> dict[str, list[Any]]:
    """Every row of every table of the file, read on a connection of its own."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {
            t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables
        }
    finally:
        conn.close()


# -- the policy as a function --------------------------------------------------------------------

W, R, F = sqlite3.SQLITE_INSERT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION


@pytest.mark.parametrize(
    ("action", "arg1", "arg2", "source", "needle"),
    [
        (W, "kv__crsql_clock", None, None, "writing the internal table kv__crsql_clock"),
        (sqlite3.SQLITE_DELETE, "KV__CRSQL_PKS", None, None, "internal table KV__CRSQL_PKS"),
        (sqlite3.SQLITE_UPDATE, "crsql_master", "value", None, "internal table crsql_master"),
        (W, "__corro_members", None, None, "internal table __corro_members"),
        (W, "crsql_changes", None, None, "internal table crsql_changes"),
        (R, "__corro_state", "value", None, "reading the internal table __corro_state"),
        (F, None, "crsql_next_db_version", None, "engine function crsql_next_db_version"),
        (F, None, "CRSQL_INCREMENT_AND_GET_SEQ", None, "crsql_increment_and_get_seq"),
        (F, None, "crsql_internal_next_seq", None, "crsql_internal_next_seq"),
        (F, None, "crsql_as_crr", None, "crsql_as_crr"),
        (F, None, "fts3_tokenizer", None, "fts3_tokenizer"),
        # fts3_tokenizer is refused even where a trigger seems to call it
        (F, None, "fts3_tokenizer", "kv__crsql_itrig", "fts3_tokenizer"),
        (F, None, "load_extension", None, "load_extension"),
        # a source that is not the engine's does not open the door
        (F, None, "crsql_next_db_version", "my_view", "crsql_next_db_version"),
        (W, "kv__crsql_clock", None, "evil", "kv__crsql_clock"),
    ],
)
def test_refused(
    action: int, arg1: str | None, arg2: str | None, source: str | None, needle: str
) -> None:
    reason = refusal(action, arg1, arg2, source)
    assert reason is not None and needle in reason


@pytest.mark.parametrize(
    ("action", "arg1", "arg2", "source"),
    [
        (W, "kv", None, None),  # a user table
        (R, "kv__crsql_clock", "db_version", None),  # replication metadata may be read
        (R, "crsql_db_versions", "db_version", None),
        (R, "__corro_members", "address", None),
        (F, None, "crsql_db_version", None),
        (F, None, "crsql_site_id", None),
        (F, None, "upper", None),
        # the engine's triggers and its crsql_changes view do what they must
        (W, "kv__crsql_clock", None, "kv__crsql_itrig"),
        (F, None, "crsql_internal_next_db_version", "kv__crsql_utrig"),
        (F, None, "crsql_internal_merge", "crsql_changes_insert"),
        (F, None, "crsql_internal_pack", "crsql_changes"),
    ],
)
def test_allowed(action: int, arg1: str | None, arg2: str | None, source: str | None) -> None:
    assert refusal(action, arg1, arg2, source) is None


def test_text_and_decode_messages() -> None:
    assert text_problem("SELECT ?", ["ok", "ünï"]) is None
    assert text_problem("SELECT '\udc80'") == (
        "the SQL text is not valid UTF-8 (it holds a lone surrogate)"
    )
    assert text_problem("SELECT ?, ?", [1, "a\ud800"]) == (
        "parameter 2 is not valid UTF-8 text (lone surrogate)"
    )
    assert text_problem("SELECT :v", {"v": "\udfff"}) == (
        "parameter 'v' is not valid UTF-8 text (lone surrogate)"
    )
    error = sqlite3.OperationalError("Could not decode to UTF-8 column 'v' with text 'x'")
    assert decode_problem(error) == ("column v: the value is not valid UTF-8 text; cast it to BLOB")
    assert decode_problem(sqlite3.OperationalError("no such table: x")) is None


# -- on a store ----------------------------------------------------------------------------------


def test_internal_writes_and_engine_calls_change_nothing(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.transaction_sync(["INSERT INTO kv (k, v) VALUES (1, 'a')"])
        before = everything(store.path)
        for sql, needle in [
            ("DELETE FROM kv__crsql_clock", "writing the internal table kv__crsql_clock"),
            ("UPDATE crsql_master SET value = 0", "writing the internal table crsql_master"),
            (
                "INSERT INTO crsql_db_versions VALUES (randomblob(16), 9223372036854775807)",
                "writing the internal table crsql_db_versions",
            ),
            ("DELETE FROM __corro_schema", "writing the internal table __corro_schema"),
            ("SELECT crsql_next_db_version(9223372036854775807)", "crsql_next_db_version"),
            ("SELECT * FROM __corro_state", "reading the internal table __corro_state"),
        ]:
            # after a write that succeeds in the same transaction: all of it rolls back
            with pytest.raises(StatementError) as err:
                store.transaction_sync(["INSERT INTO kv (k, v) VALUES (2, 'b')", sql])
            assert err.value.index == 1 and needle in err.value.message, err.value
        assert everything(store.path) == before
        assert store.transaction_sync(["INSERT INTO kv (k, v) VALUES (3, 'c')"]).version == 2


def test_engine_statement_text_is_checked_even_when_the_engine_prepared_it(
    tmp_path: Path,
) -> None:
    """Python caches prepared statements by their text, and a statement is authorized when
    prepared: a user statement spelled exactly like one the engine just ran unchecked must
    still be refused."""
    with open_store(tmp_path) as store:
        store.transaction_sync(["INSERT INTO kv (k, v) VALUES (1, 'a')"])
        engine_sql = (  # what every engine transaction runs on the writer to record its version
            "INSERT INTO crsql_db_versions (site_id, db_version) VALUES (?, ?) "
            "ON CONFLICT (site_id) DO UPDATE SET "
            "db_version = max(db_version, excluded.db_version)"
        )
        with pytest.raises(StatementError, match="internal table crsql_db_versions"):
            store.transaction_sync([(engine_sql, (store.actor_id, 2**62))])
        reader_sql = "SELECT db_version FROM crsql_db_versions WHERE site_id = ?"
        store.read_sync(lambda c: c.execute(reader_sql, (store.actor_id,)).fetchall())
        assert store.query_sync(reader_sql, (store.actor_id,)) == [(1,)]


def test_query_refusals_are_typed(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.transaction_sync(["INSERT INTO kv (k, v) VALUES (1, 'a')"])
        for sql, params, needle in [
            ("SELECT fts3_tokenizer('simple')", (), "calling fts3_tokenizer is not allowed"),
            ("SELECT crsql_next_db_version(5)", (), "engine function crsql_next_db_version"),
            ("SELECT * FROM __corro_state", (), "internal table __corro_state"),
            ("SELECT ?", ["\udc80"], "parameter 1 is not valid UTF-8 text (lone surrogate)"),
            ("SELECT '\udc80'", (), "the SQL text is not valid UTF-8"),
            ("SELECT CAST(x'fffe80' AS TEXT) AS t", (), "column t: the value is not valid"),
            ("DELETE FROM kv", (), "readonly"),
        ]:
            with pytest.raises(QueryError, match=re.escape(needle)):
                store.query_sync(sql, params)
        assert store.query_sync("SELECT count(*) FROM kv__crsql_clock") == [(2,)]
        assert store.query_sync("SELECT k, v FROM kv") == [(1, "a")]


def test_bad_text_names_the_statement_and_column(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        before = everything(store.path)
        with pytest.raises(StatementError) as err:
            store.transaction_sync(
                ["SELECT 1", ("INSERT INTO kv (k, v) VALUES (?, ?)", [1, "\udc80"])]
            )
        assert err.value.index == 1
        assert err.value.message == "parameter 2 is not valid UTF-8 text (lone surrogate)"
        with pytest.raises(StatementError) as err:
            store.transaction_sync(["INSERT INTO kv (k, v) VALUES (1, '\udc80')"])
        assert err.value.message == "the SQL text is not valid UTF-8 (it holds a lone surrogate)"
        # the statement is shown with its surrogate spelled out, so the message can be encoded
        assert str(err.value).endswith("(in: INSERT INTO kv (k, v) VALUES (1, '\\udc80'))")
        str(err.value).encode()
        with pytest.raises(StatementError) as err:
            store.transaction_sync(
                [
                    "INSERT INTO kv (k, v) VALUES (1, 'fine')",
                    "INSERT INTO kv (k, v, b) VALUES (2, CAST(x'fffe80' AS TEXT), x'ff')",
                    "INSERT INTO kv (k, v) VALUES (3, 'fine too')",
                ]
            )
        assert err.value.index == 1
        assert err.value.message == (
            "column kv.v: the value is not valid UTF-8 text; cast it to BLOB"
        )
        assert everything(store.path) == before
        # as a BLOB it is fine
        result = store.transaction_sync(["INSERT INTO kv (k, b) VALUES (2, x'fffe80')"])
        assert result.version == 1 and result.changeset is not None


async def test_a_bad_transaction_does_not_fail_the_others_of_its_group(tmp_path: Path) -> None:
    """Transactions submitted while the writer is busy commit together (group commit); one
    that writes text that is not UTF-8 is rolled back alone."""
    with open_store(tmp_path) as store:
        outcome: dict[str, TxResult | StatementError] = {}

        async def submit(name: str, statements: list[str]) -> None:
            try:
                outcome[name] = await store.transaction(statements, timeout=60)
            except StatementError as exc:
                outcome[name] = exc

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(submit, "slow", ["INSERT INTO kv (k) VALUES (0)", SLOW])
                await trio.sleep(0.05)  # the next three queue while the slow one writes
                nursery.start_soon(submit, "a", ["INSERT INTO kv (k, v) VALUES (1, 'a')"])
                nursery.start_soon(
                    submit, "bad", ["INSERT INTO kv (k, v) VALUES (2, CAST(x'80' AS TEXT))"]
                )
                nursery.start_soon(submit, "c", ["INSERT INTO kv (k, v) VALUES (3, 'c')"])
        assert isinstance(outcome["bad"], StatementError)
        assert "column kv.v" in str(outcome["bad"])
        assert await store.query("SELECT k, v FROM kv ORDER BY k") == [
            (0, None), (1, "a"), (3, "c"),
        ]  # fmt: skip
        versions = [r.version for r in outcome.values() if isinstance(r, TxResult)]
        assert sorted(v or 0 for v in versions) == [1, 2, 3]


async def test_the_store_bound_applies_without_a_caller_bound(tmp_path: Path) -> None:
    (tmp_path / "s.sql").write_text(SCHEMA)
    store = Store.open(tmp_path / "n.db", schema_paths=[tmp_path / "s.sql"], tx_timeout=0.3)
    with store, trio.fail_after(60):
        huge = SLOW.replace("3000000", "1000000000000")
        with pytest.raises(StatementError, match=r"timed out after 0\.3 s"):
            await store.transaction(["INSERT INTO kv (k) VALUES (1)", huge])
        # a caller may shorten the bound, never lengthen it
        with pytest.raises(StatementError, match=r"after 0\.3 s"):
            await store.transaction([huge], timeout=3600)
        with pytest.raises(StatementError, match=r"after 0\.1 s"):
            await store.transaction([huge], timeout=0.1)
        assert (await store.transaction(["INSERT INTO kv (k) VALUES (2)"])).version == 1
        assert await store.query("SELECT k FROM kv") == [(2,)]
