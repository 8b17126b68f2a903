"""`corrosion agent` reports a catch-up: a line every 5 s while versions are missing, one when
it is done (stderr is not a terminal under pytest, so the log path is what runs)."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from corrosion_py.cli import _report_catch_up, missing_versions

ACTOR = b"a" * 16


def state(gap_end: int, partials: int = 0) -> SimpleNamespace:
    need = {ACTOR: ((1, gap_end),)} if gap_end else {}
    partial = {ACTOR: {100 + i: ((0, 1),) for i in range(partials)}} if partials else {}
    return SimpleNamespace(need=need, partial_need=partial)


def test_missing_versions_counts_gaps_and_partials() -> None:
    assert missing_versions(state(0)) == 0
    assert missing_versions(state(10, partials=2)) == 12


async def test_catch_up_is_logged_until_done(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    states = iter([state(10)] * 3 + [state(4)] * 3 + [state(0)] * 5)
    agent: Any = SimpleNamespace(store=SimpleNamespace(sync_state=lambda: next(states)))
    log = logging.getLogger("test.catch_up")
    caplog.set_level(logging.INFO, logger="test.catch_up")
    with trio.move_on_after(10.5):
        await _report_catch_up(agent, log)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "catching up: 6 of 10 versions received",
        "caught up: 10 versions received in 6.0 s",
    ]
