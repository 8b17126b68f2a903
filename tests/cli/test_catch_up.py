"""`corrosion agent` reports a catch-up: a line every 5 s while versions are missing, one when
it is done (stderr is not a terminal under pytest, so the log path is what runs). What counts
as missing is `Agent.missing_versions` (tests/agent/test_facade.py)."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from corrosion_py.cli.agent import report_catch_up


async def test_catch_up_is_logged_until_done(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    counts = iter([10] * 3 + [4] * 3 + [0] * 5)

    async def missing_versions() -> int:
        return next(counts)

    agent: Any = SimpleNamespace(missing_versions=missing_versions)
    log = logging.getLogger("test.catch_up")
    caplog.set_level(logging.INFO, logger="test.catch_up")
    with trio.move_on_after(10.5):
        await report_catch_up(agent, log)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "catching up: 6 of 10 versions received",
        "caught up: 10 versions received in 6.0 s",
    ]
