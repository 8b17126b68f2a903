"""A store and a subscription manager on real SQLite files, and a way to check a
subscription's events against the query run directly."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import trio

from corrosion_py.store.store import Store
from corrosion_py.subs import Change, Columns, EndOfQuery, Event, Row, SubscriptionManager
from corrosion_py.subs.manager import SubsConfig

SCHEMA = """
CREATE TABLE apps (id INTEGER PRIMARY KEY NOT NULL, name TEXT, region TEXT);
CREATE TABLE machines (id TEXT PRIMARY KEY NOT NULL, app_id INTEGER, region TEXT,
                       state TEXT, cpus INTEGER);
"""

QUERIES: list[tuple[str, Any]] = [
    ("SELECT * FROM machines WHERE state = 'started'", ()),
    ("SELECT m.id, a.name FROM machines m JOIN apps a ON a.id = m.app_id", ()),
    ("SELECT a.id, a.name, m.id FROM apps a LEFT JOIN machines m ON m.app_id = a.id", ()),
    (
        "SELECT a.name, m.id FROM apps a LEFT JOIN machines m "
        "ON m.app_id = a.id AND m.state = 'started' WHERE m.id IS NULL",
        (),
    ),
    ("SELECT * FROM apps WHERE EXISTS "
     "(SELECT 1 FROM machines WHERE machines.app_id = apps.id)", ()),
    ("SELECT * FROM apps WHERE id IN (SELECT app_id FROM machines WHERE state = 'started')", ()),
    ("SELECT app_id, count(*), sum(cpus) FROM machines GROUP BY app_id", ()),
    ("SELECT * FROM machines ORDER BY cpus DESC, id LIMIT 3", ()),
    ("SELECT region, count(*) FROM machines WHERE state = ? GROUP BY region", ["started"]),
    ("SELECT DISTINCT region FROM machines", ()),
    ("SELECT m.id, a.name FROM apps a, machines m WHERE m.app_id = a.id AND m.cpus > :c",
     {":c": 2}),
    ("SELECT a.name, m.id, m.cpus FROM apps a LEFT JOIN machines m ON m.app_id = a.id "
     "WHERE a.region = 'ams'", ()),
]  # fmt: skip


async def open_manager(
    nursery: trio.Nursery, store: Store, path: Path, **config: Any
) -> SubscriptionManager:
    manager = SubscriptionManager(store, path, SubsConfig(**config))
    await nursery.start(manager.run)
    return manager


class Mirror:
    """A client's copy of a subscription built only from its events."""

    def __init__(self) -> None:
        self.columns: tuple[str, ...] | None = None
        self.rows: dict[int, tuple[Any, ...]] = {}
        self.change_id = 0
        self.ended = False

    def apply(self, event: Event) -> None:
        if isinstance(event, Columns):
            self.columns = event.names
        elif isinstance(event, Row):
            assert event.rowid not in self.rows
            self.rows[event.rowid] = event.cells
        elif isinstance(event, EndOfQuery):
            self.change_id = event.change_id
            self.ended = True
        elif isinstance(event, Change):
            assert event.change_id == self.change_id + 1, "change ids are contiguous"
            self.change_id = event.change_id
            if event.kind == "insert":
                assert event.rowid not in self.rows
                self.rows[event.rowid] = event.cells
            elif event.kind == "update":
                assert event.rowid in self.rows
                self.rows[event.rowid] = event.cells
            else:
                assert event.kind == "delete"
                assert self.rows.pop(event.rowid) == event.cells

    def multiset(self) -> Counter[tuple[Any, ...]]:
        return Counter(self.rows.values())


def direct(store: Store, sql: str, params: Any) -> Counter[tuple[Any, ...]]:
    if isinstance(params, dict):
        params = {k.lstrip(":"): v for k, v in params.items()}
    return Counter(tuple(r) for r in store.read_sync(lambda c: c.execute(sql, params).fetchall()))
