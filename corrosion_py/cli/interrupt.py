"""Ctrl-C and SIGTERM for the commands that run until stopped (``subscribe``,
``dev-cluster``): both raise KeyboardInterrupt, which those commands turn into a clean end."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn


def _interrupt(signum: int, frame: Any) -> NoReturn:
    raise KeyboardInterrupt


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt inside (also when SIGINT came in ignored, as
    it does for background jobs of a non-interactive shell). Only the main thread can set
    handlers: elsewhere (a test running the command in a thread) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
