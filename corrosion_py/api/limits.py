"""Limits of the HTTP API, with defaults sized for one node on a small machine.

Corrosion's concurrency limits (128 requests in all, 4 per route) are tighter than tests and
dashboards need; ours are per route (higher for the long-lived subscription streams) and
overall, and a request over a limit is answered 503 at
once (never queued), so a flood cannot pile up tasks and memory. A streaming response counts
until its stream ends.

The server's own bounds (connections, head size, timeouts) keep a client that sends slowly,
never reads, or sends garbage from holding more than one connection's worth of memory for more
than a bounded time.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class ApiConfig:
    """Every knob of the HTTP API; the defaults work for one node."""

    max_concurrency: int = 8192
    """Requests being handled at once, all routes together (streams included); more get 503."""
    max_concurrency_per_route: int = 256
    """Requests being handled at once on one route (``/v1/queries``, ...); more get 503."""
    max_listeners_per_route: int = 4096
    """Open subscription and update streams per route (long-lived, cheap: one task and a
    bounded buffer each); more get 503."""
    query_pool: int = 20
    """``/v1/queries`` statements running at once, each on a read-only connection of its own
    (Corrosion's read pool size); a query waits up to ``query_wait`` for one, then gets 503."""
    query_wait: float = 5.0
    query_timeout: float = 60.0
    """Default bound of a whole ``/v1/queries`` stream (``?timeout=`` overrides; 0 disables)."""
    query_batch_bytes: int = 64 * 1024
    """Rows are read and sent in batches of about this many encoded bytes (at most 1024 rows):
    the most a query holds in memory besides one row."""
    max_body_bytes: int = 16 * 1024 * 1024
    """Largest request body read; a larger one gets 413."""
    graceful_timeout: float = 2.0
    """At shutdown, how long requests in flight may take to finish before they are cancelled
    (streams are ended at once)."""
    max_connections: int = 10_000
    """Client connections open at once; one more is answered 503 and closed. (The process's
    open-file limit bounds them too: the server pauses accepting while it is reached.)"""
    max_header_bytes: int = 16 * 1024
    """Largest request head (request line and headers); a larger one gets 431 and the
    connection is closed."""
    keep_alive_timeout: float = 5.0
    """An idle connection (no request started) is closed after this many seconds."""
    read_timeout: float = 30.0
    """A request must arrive whole (head and body) within this many seconds of its first
    byte, else the connection is closed: a client sending a byte at a time holds a connection
    for this long at most."""
    send_timeout: float = 60.0
    """Each write of a response must be taken by the client within this many seconds, else
    the connection is closed (a client that stopped reading a stream)."""
