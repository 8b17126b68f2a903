"""The clients decide by the server's error code, never by its message: against a scripted real
HTTP server, a lagged or stopping code resumes a subscription whatever the text, a code-less
line that reads like a lag does not, refusal codes pick the error type (with their structured
fields), every client error carries its code, and malformed lines end a stream with a typed
error."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from client_harness import HANG, in_thread
from scripted_server import Reply, Seen, json_reply, lines_reply, scripted

from corrosion_py.client import (
    AsyncCorrosionClient,
    Change,
    ChangesTooOld,
    ClientError,
    Columns,
    CorrosionClient,
    EndOfQuery,
    ErrorCode,
    Event,
    QueryError,
    ResumePolicy,
    Row,
    SubscriptionError,
    SubscriptionGone,
    TransactionError,
    Unauthorized,
    Unhealthy,
)

FAST = ResumePolicy(attempts=3, backoff=0.01, max_backoff=0.02)
IDS = {"corro-query-id": "s1", "corro-query-hash": "00ff00ff00ff00ff"}
HEAD: list[object] = [
    {"columns": ["k"]},
    {"row": [1, [1]]},
    {"eoq": {"time": 0.1, "change_id": 0}},
    {"change": ["update", 1, [2], 1]},
]
EXPECTED_HEAD: list[Event] = [
    Columns(("k",)),
    Row(1, (1,)),
    EndOfQuery(0.1, 0),
    Change("update", 1, (2,), 1),
]


def resume_script(ending: object) -> Any:
    """The first stream ends with ``ending``; a resume from change 1 gets change 1 again (to be
    dropped) and change 2."""

    def script(seen: Seen) -> Reply:
        if seen.method == "POST":
            return lines_reply([*HEAD, ending], IDS)
        if seen.query.get("from") == "1":
            return lines_reply([HEAD[-1], {"change": ["insert", 2, [3], 2]}], IDS)
        return json_reply(500, {"error": f"unexpected {seen}"})

    return script


@pytest.mark.parametrize("code", ["subscriber_lagged", "shutting_down"])
async def test_a_resumable_code_resumes_whatever_the_message(code: str) -> None:
    ending = {"error": "zzz: no words a client could match", "code": code, "resume_from": 1}
    with trio.fail_after(HANG):
        async with (
            scripted(resume_script(ending)) as server,
            AsyncCorrosionClient(server.addr, resume=FAST) as c,
            c.subscribe("SELECT k FROM t") as sub,
        ):
            events = [await sub.__anext__() for _ in range(5)]
    assert events == [*EXPECTED_HEAD, Change("insert", 2, (3,), 2)]
    assert sub.reconnects == 1
    assert [(s.method, s.path, s.query) for s in server.seen] == [
        ("POST", "/v1/subscriptions", {}),
        ("GET", "/v1/subscriptions/s1", {"from": "1"}),
    ]
    assert all(s.headers["corro-error-codes"] == "1" for s in server.seen)


async def test_the_blocking_client_resumes_on_a_code_too() -> None:
    ending = {"error": "zzz", "code": "subscriber_lagged"}
    async with scripted(resume_script(ending)) as server:

        def work() -> tuple[list[Event], int]:
            with CorrosionClient(server.addr, resume=FAST) as c, c.subscribe("SELECT k") as sub:
                return [next(sub) for _ in range(5)], sub.reconnects

        events, reconnects = await in_thread(work)
    assert events == [*EXPECTED_HEAD, Change("insert", 2, (3,), 2)] and reconnects == 1


async def test_an_error_line_without_a_code_is_not_resumed_whatever_it_says() -> None:
    """Corrosion sends no codes: a line that reads like our lag message ends the stream."""
    ending = {"error": "subscriber fell too far behind and was disconnected; resume with from=1"}
    with trio.fail_after(HANG):
        async with (
            scripted(resume_script(ending)) as server,
            AsyncCorrosionClient(server.addr, resume=FAST) as c,
            c.subscribe("SELECT k FROM t") as sub,
        ):
            assert [await sub.__anext__() for _ in range(4)] == EXPECTED_HEAD
            with pytest.raises(SubscriptionError) as err:
                await sub.__anext__()
    assert type(err.value) is SubscriptionError and err.value.code is None
    assert err.value.status == 200 and "resume with" in err.value.message
    assert sub.closed and len(server.seen) == 1


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (400, {"error": "zzz", "code": "changes_too_old", "min_change_id": 7}, ChangesTooOld,
         ErrorCode.CHANGES_TOO_OLD),
        (400, {"error": "zzz", "code": "no_such_subscription"}, SubscriptionGone,
         ErrorCode.NO_SUCH_SUBSCRIPTION),
        (404, {"error": "zzz"}, SubscriptionGone, None),
        (401, {"error": "zzz", "code": "unauthorized"}, Unauthorized, ErrorCode.UNAUTHORIZED),
        # Corrosion's messages without a code: only the status is left to go by
        (400, {"error": "subscription already deleted older changes, min change id: 5"},
         SubscriptionError, None),
        (400, {"error": "a `from` query param was supplied, but no existing subscription found"},
         SubscriptionError, None),
        (400, {"error": "zzz", "code": "a_code_from_the_future"}, SubscriptionError,
         "a_code_from_the_future"),
    ],
)  # fmt: skip
async def test_refusal_codes_pick_the_error_type(
    status: int, body: dict[str, Any], kind: type[ClientError], code: str | None
) -> None:
    with trio.fail_after(HANG):
        async with (
            scripted(lambda seen: json_reply(status, body)) as server,
            AsyncCorrosionClient(server.addr, resume=FAST) as c,
        ):
            with pytest.raises(ClientError) as err:
                async with c.attach("s1", from_change=3):
                    pass
    assert type(err.value) is kind and err.value.code == code
    assert err.value.status == status and err.value.message == body["error"]
    if kind is ChangesTooOld:
        assert isinstance(err.value, ChangesTooOld) and err.value.min_change_id == 7


async def test_changes_too_old_refuses_a_resume() -> None:
    def script(seen: Seen) -> Reply:
        if seen.method == "POST":
            return lines_reply(HEAD, IDS)  # ends without a line: the client resumes
        return json_reply(400, {"error": "zzz", "code": "changes_too_old", "min_change_id": 9})

    with trio.fail_after(HANG):
        async with (
            scripted(script) as server,
            AsyncCorrosionClient(server.addr) as c,
            c.subscribe("SELECT k FROM t") as sub,
        ):
            assert [await sub.__anext__() for _ in range(4)] == EXPECTED_HEAD
            with pytest.raises(ChangesTooOld) as err:
                await sub.__anext__()
    assert err.value.min_change_id == 9 and err.value.status == 400
    assert len(server.seen) == 2  # refused, not retried


async def test_changes_too_old_ends_a_stream() -> None:
    ending = {"error": "zzz", "code": "changes_too_old", "min_change_id": 9}
    with trio.fail_after(HANG):
        async with (
            scripted(resume_script(ending)) as server,
            AsyncCorrosionClient(server.addr) as c,
            c.subscribe("SELECT k FROM t") as sub,
        ):
            assert [await sub.__anext__() for _ in range(4)] == EXPECTED_HEAD
            with pytest.raises(ChangesTooOld) as err:
                await sub.__anext__()
    assert err.value.min_change_id == 9 and err.value.status == 200
    assert len(server.seen) == 1


async def test_every_client_error_carries_the_code() -> None:
    def script(seen: Seen) -> Reply:
        if seen.path == "/v1/transactions":
            refused = {"results": [{"error": "disk"}], "time": 0.0, "version": None}
            return json_reply(503, {**refused, "error": "disk", "code": "storage_fault"})
        if seen.path == "/v1/queries" and b"fails" in seen.body:
            return lines_reply([{"columns": ["x"]}, {"error": "zzz", "code": "bad_request"}])
        if seen.path == "/v1/queries":
            return json_reply(503, {"error": "busy", "code": "overloaded"})
        if seen.path == "/v1/health":
            return json_reply(503, {"error": "no lag", "code": "no_lag_info"})
        return json_reply(400, {"error": "no table", "code": "bad_request"})

    with trio.fail_after(HANG):
        async with scripted(script) as server, AsyncCorrosionClient(server.addr) as c:
            with pytest.raises(TransactionError) as tx:
                await c.transaction(["INSERT INTO t VALUES (1)"])
            assert tx.value.code == ErrorCode.STORAGE_FAULT and tx.value.status == 503
            assert tx.value.results == ({"error": "disk"},)
            with pytest.raises(QueryError) as query:
                await c.query("SELECT 1").start()
            assert query.value.code == ErrorCode.OVERLOADED
            with pytest.raises(QueryError) as mid_stream:
                async with c.query("SELECT fails") as rows:
                    [row async for row in rows]
            assert mid_stream.value.code == ErrorCode.BAD_REQUEST
            assert mid_stream.value.status == 200
            with pytest.raises(Unhealthy) as health:
                await c.health(p99_lag=1.0)
            assert health.value.code == ErrorCode.NO_LAG_INFO
            with pytest.raises(SubscriptionError) as updates:
                await c.updates("t").start()
            assert updates.value.code == ErrorCode.BAD_REQUEST


MALFORMED = [
    "not json",
    "[1, 2]",
    '"a string"',
    '{"row": [1, [1]], "eoq": {}}',
    '{"row": "ab"}',
    '{"row": [1, "not cells"]}',
    '{"row": [true, [1]]}',
    '{"change": ["insert", "1", [1], 2]}',
    '{"change": ["insert", 1, [1]]}',
    '{"columns": "k"}',
    '{"columns": [1]}',
    '{"eoq": 5}',
    '{"eoq": {"time": "soon"}}',
    '{"eoq": {"time": 0.1, "change_id": 1.5}}',
    '{"notify": ["update", 5]}',
    '{"notify": 5}',
    "{}",
    "[" * 100_000,  # nested too deep to parse
]


@pytest.mark.parametrize("line", MALFORMED)
async def test_a_malformed_line_ends_each_stream_with_a_typed_error(line: str) -> None:
    """Whatever the server sends, the caller gets a `ClientError` of the stream's kind (with
    the line quoted), never another exception; the stream is closed."""

    def script(seen: Seen) -> Reply:
        if seen.path == "/v1/queries":
            return lines_reply([{"columns": ["k"]}, {"future_line": 1}, line])
        if seen.path.startswith("/v1/updates"):
            return lines_reply([{"future_line": 1}, line])
        return lines_reply([{"columns": ["k"]}, {"future_line": 1}, line], IDS)

    with trio.fail_after(HANG):
        async with scripted(script) as server, AsyncCorrosionClient(server.addr) as c:
            with pytest.raises(QueryError) as query:
                async with c.query("SELECT k FROM t") as rows:
                    [row async for row in rows]
            assert rows.closed and query.value.status == 200
            with pytest.raises(SubscriptionError) as sub_err:
                async with c.subscribe("SELECT k FROM t") as sub:
                    [event async for event in sub]
            assert sub.closed and sub_err.value.status == 200
            with pytest.raises(SubscriptionError) as updates:
                async with c.updates("t") as notes:
                    [note async for note in notes]
            assert notes.closed and updates.value.status == 200
    for error in (query.value, sub_err.value, updates.value):
        assert repr(line[:200]) in error.message and error.code is None
