"""The store every subscription test runs on: a real SQLite file with the test schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from subs_harness import SCHEMA

from corrosion_py.store.store import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    schema = tmp_path / "schema.sql"
    schema.write_text(SCHEMA)
    st = await trio.to_thread.run_sync(lambda: Store.open(tmp_path / "n.db", schema_paths=[schema]))
    try:
        yield st
    finally:
        st.close()
