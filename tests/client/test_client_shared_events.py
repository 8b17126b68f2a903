"""The HTTP client and an embedded agent speak one vocabulary: the event classes are the same
objects, and the same subscription read both ways yields equal events of the same types
(BLOB cells included), so ``isinstance`` and ``==`` work across them."""

from __future__ import annotations

from pathlib import Path

import trio
from client_harness import HANG, agent_api, api

import corrosion_py.api_types
import corrosion_py.client
import corrosion_py.subs
from corrosion_py.api_types import Change, Columns, EndOfQuery, Event, Notify, Row
from corrosion_py.client import AsyncCorrosionClient

SQL = "SELECT k, v FROM kv"


def test_the_event_classes_are_the_same_objects() -> None:
    for name in ("Columns", "Row", "EndOfQuery", "Change", "Notify", "Event"):
        shared = getattr(corrosion_py.api_types, name)
        assert getattr(corrosion_py.subs, name) is shared, name
        assert getattr(corrosion_py.client, name) is shared, name


def without_time(events: list[Event]) -> list[Event]:
    return [EndOfQuery(0.0, e.change_id) if isinstance(e, EndOfQuery) else e for e in events]


async def test_embedded_and_http_subscribers_get_equal_events(tmp_path: Path) -> None:
    async with agent_api(tmp_path) as agent, AsyncCorrosionClient(api(agent)) as c:
        await agent.transaction([("INSERT INTO kv (k, v) VALUES (1, ?)", [b"\x00\xff"])])
        embedded: list[Event] = []
        remote: list[Event] = []
        notes: list[Notify] = []
        remote_notes: list[Notify] = []
        with trio.fail_after(HANG):
            async with (
                agent.subscribe(SQL) as (_, events),
                c.subscribe(SQL) as sub,
                agent.subs.updates("kv") as updates,
                c.updates("kv") as remote_updates,
            ):
                for _ in range(3):  # columns, the row, end of rows
                    embedded.append(await events.__anext__())
                    remote.append(await sub.__anext__())
                await agent.transaction([
                    ("UPDATE kv SET v = ? WHERE k = 1", [b"\x01"]),
                    ("INSERT INTO kv (k, v) VALUES (2, 'two')", []),
                    ("DELETE FROM kv WHERE k = 1", []),
                ])  # fmt: skip
                for _ in range(2):
                    embedded.append(await events.__anext__())
                    remote.append(await sub.__anext__())
                    notes.append(await updates.__anext__())
                    remote_notes.append(await remote_updates.__anext__())
    assert [type(e) for e in embedded] == [Columns, Row, EndOfQuery, Change, Change]
    assert [type(e) for e in remote] == [type(e) for e in embedded]
    assert without_time(remote) == without_time(embedded)
    assert embedded[1] == Row(1, (1, b"\x00\xff"))
    assert {e.kind for e in embedded if isinstance(e, Change)} == {"insert", "delete"}
    assert all(isinstance(n, Notify) for n in remote_notes) and remote_notes == notes
